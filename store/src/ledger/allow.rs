//! The operator's allow list: what it holds in memory, and the ledger operations that add and
//! remove entries.
//!
//! An allowed address block covers every address and narrower block inside it, as fail2ban's
//! `ignoreip` and CrowdSec's allowlists do: allowing `192.0.2.128/25` protects `192.0.2.130`.
//! Names are allowed exactly: allowing a domain keeps the domain itself off our lists (no
//! server-wide block), not every user on it.

use std::collections::BTreeSet;

use ostracon_protocol::ids::{Cidr, Offender};
use ostracon_protocol::log::record::AuditRecord;
use ostracon_protocol::time::Timestamp;
use sqlx::Row as _;

use super::{Applied, Batch, Ledger, MemoryOp, offender_from_row};
use crate::index::BlocklistIndex;
use crate::queries::offender_kind;
use crate::{Result, StoreError};

/// The allow entries, arranged to answer "is this covered?" in time independent of their
/// number (the address blocks sit in a [`BlocklistIndex`]).
#[derive(Default)]
pub(super) struct AllowList {
    exact: BTreeSet<Offender>,
    addresses: BlocklistIndex,
}

impl AllowList {
    pub(super) fn insert(&mut self, offender: Offender) {
        if matches!(offender, Offender::Ip(_) | Offender::Cidr(_)) {
            self.addresses.insert(&offender, 0);
        }
        self.exact.insert(offender);
    }

    pub(super) fn remove(&mut self, offender: &Offender) {
        self.addresses.remove(offender);
        self.exact.remove(offender);
    }

    /// Whether this very entry exists.
    pub(super) fn has(&self, offender: &Offender) -> bool {
        self.exact.contains(offender)
    }

    /// The allow entry that covers `offender`: itself, or an address block containing it.
    pub(super) fn covering(&self, offender: &Offender) -> Option<Offender> {
        if self.exact.contains(offender) {
            return Some(offender.clone());
        }
        let found = match offender {
            Offender::Ip(ip) => self.addresses.lookup_ip(*ip),
            Offender::Cidr(cidr) => self.addresses.lookup_cidr(cidr),
            Offender::Jid(_) | Offender::Domain(_) => Vec::new(),
        };
        found.into_iter().next().map(|(covering, _)| covering)
    }
}

impl FromIterator<Offender> for AllowList {
    fn from_iter<I: IntoIterator<Item = Offender>>(offenders: I) -> Self {
        let mut list = Self::default();
        for offender in offenders {
            list.insert(offender);
        }
        list
    }
}

/// Whether the address or block `inner` lies inside `outer` (an address or a block).
fn inside(inner: &Offender, outer: &Offender) -> bool {
    let net = |offender: &Offender| match offender {
        Offender::Ip(ip) => Some(Cidr::from_net(ipnet::IpNet::from(*ip)).net()),
        Offender::Cidr(cidr) => Some(cidr.net()),
        Offender::Jid(_) | Offender::Domain(_) => None,
    };
    match (net(inner), net(outer)) {
        (Some(inner), Some(outer)) => outer.contains(&inner),
        _ => false,
    }
}

impl Batch {
    /// The listed and candidate addresses and blocks inside `block`.
    ///
    /// Allowing a block is a rare operator action, so this reads every address row once
    /// rather than keeping a second, range-ordered index of the list.
    async fn addresses_inside(&mut self, block: &Offender) -> Result<BTreeSet<Offender>> {
        let mut found = BTreeSet::new();
        for sql in [
            "SELECT kind, value FROM entries WHERE active = 1 AND kind IN ('ip', 'cidr')",
            "SELECT DISTINCT kind, value FROM candidate_reasons WHERE kind IN ('ip', 'cidr')",
        ] {
            for row in sqlx::query(sql).fetch_all(&mut *self.tx).await? {
                let offender =
                    offender_from_row(&row.try_get::<String, _>("kind")?, &row.try_get::<String, _>("value")?)?;
                if &offender != block && inside(&offender, block) {
                    found.insert(offender);
                }
            }
        }
        Ok(found)
    }

    /// Contradicts what was reported about `offender` and delists it.
    async fn take_off_for_allow(&mut self, offender: &Offender) -> Result<()> {
        let entry = self.entry(offender).await?;
        self.contradict(offender, entry.as_ref()).await?;
        if let Some(entry) = entry
            && entry.active
        {
            self.delist(&entry, "allowed").await?;
        }
        Ok(())
    }
}

impl Ledger {
    /// True if an allow entry covers this offender (itself, or a block containing it).
    pub fn is_allowed(&self, offender: &Offender) -> bool {
        self.read_memory().allow.covering(offender).is_some()
    }

    /// The allow entry covering this offender, if any.
    pub fn allowed_by(&self, offender: &Offender) -> Option<Offender> {
        self.read_memory().allow.covering(offender)
    }

    /// The operator allows an offender: it leaves the list now and is never listed while
    /// allowed; for a block, so does every address and narrower block inside it, and the
    /// reports behind them count as contradicted.
    pub async fn allow(&self, offender: &Offender, note: &str, now: Timestamp) -> Result<Applied> {
        let _writer = self.writer.lock().await;
        if self.read_memory().allow.has(offender) {
            return Err(StoreError::Conflict { what: format!("allow entry {offender}") });
        }
        let mut batch = self.begin(now).await?;
        let log_index =
            batch.leaf(&AuditRecord::AllowAdded { at: now, offender: offender.clone(), note: note.to_owned() })?;
        sqlx::query("INSERT INTO allow_entries (kind, value, note, created_at, log_index) VALUES ($1, $2, $3, $4, $5)")
            .bind(offender_kind(offender))
            .bind(offender.to_string())
            .bind(note)
            .bind(now.unix())
            .bind(log_index as i64)
            .execute(&mut *batch.tx)
            .await?;
        batch.take_off_for_allow(offender).await?;
        if matches!(offender, Offender::Cidr(_)) {
            for inside in batch.addresses_inside(offender).await? {
                batch.take_off_for_allow(&inside).await?;
            }
        }
        batch.ops.push(MemoryOp::Allow(offender.clone()));
        self.commit(batch).await
    }

    /// Removes an allow entry.
    pub async fn disallow(&self, offender: &Offender, now: Timestamp) -> Result<Applied> {
        let _writer = self.writer.lock().await;
        if !self.read_memory().allow.has(offender) {
            return Err(StoreError::NotFound { what: format!("allow entry {offender}") });
        }
        let mut batch = self.begin(now).await?;
        batch.leaf(&AuditRecord::AllowRemoved { at: now, offender: offender.clone() })?;
        sqlx::query("DELETE FROM allow_entries WHERE kind = $1 AND value = $2")
            .bind(offender_kind(offender))
            .bind(offender.to_string())
            .execute(&mut *batch.tx)
            .await?;
        batch.ops.push(MemoryOp::Disallow(offender.clone()));
        self.commit(batch).await
    }
}
