//! The brake (spec/reputation.md, Brake): a budget, per peer and sliding hour, of entries its reports
//! may list or delist. A bad update or a compromised buddy can then rewrite at most that much
//! of our lists at once; what exceeds it is held, with a log leaf, until the operator
//! releases or discards it.

use ostracon_protocol::ids::{BareJid, IncidentId, Offender};
use ostracon_protocol::log::record::AuditRecord;
use ostracon_protocol::time::Timestamp;
use serde::Serialize;
use sqlx::Row as _;

use super::{Applied, Batch, Ledger, Listing, retract_in};
use crate::model::{EntrySource, offender_from_row, ts_from_row};
use crate::policy::ListingPolicy;
use crate::queries::offender_kind;
use crate::{Result, Store, StoreError};

/// Most changes held for one peer: past it, more is refused outright (still with a leaf),
/// so a flooding peer cannot grow the table without bound.
pub const MAX_HELD_PER_PEER: i64 = 10_000;

/// The budget covers this many minutes up to now (an hour, sliding: not each clock hour,
/// which would let a peer spend two budgets across the turn of an hour).
const BUDGET_WINDOW_MINUTES: i64 = 60;

/// Most held changes one release or discard handles (keeps its transaction short).
const RELEASE_BATCH: i64 = 1_000;

/// A peer's budget in one transaction: used in the window (this transaction included), and
/// taken by this transaction.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Spent {
    used: i64,
    granted: i64,
}

/// What a held change would do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
pub enum HeldKind {
    /// List one offender of the incident with the weight it would have had.
    List { offender: Offender, weight_milli: i64 },
    /// Apply the incident's retraction.
    Retract,
}

/// One change the brake held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HeldChange {
    /// Its id.
    pub id: i64,
    /// The peer whose report it came from.
    pub peer: String,
    /// The incident.
    pub incident: IncidentId,
    /// What it would do.
    #[serde(flatten)]
    pub kind: HeldKind,
    /// When it was held.
    pub held_at: Timestamp,
}

fn held_from_row(row: &sqlx::any::AnyRow) -> Result<HeldChange> {
    let change: String = row.try_get("change")?;
    let kind = match change.as_str() {
        "list" => HeldKind::List {
            offender: offender_from_row(&row.try_get::<String, _>("kind")?, &row.try_get::<String, _>("value")?)?,
            weight_milli: row.try_get("weight_milli")?,
        },
        "retract" => HeldKind::Retract,
        other => return Err(StoreError::Corrupt(format!("held change {other:?}"))),
    };
    Ok(HeldChange {
        id: row.try_get("id")?,
        peer: row.try_get("peer")?,
        incident: IncidentId::parse(&row.try_get::<String, _>("incident_id")?)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        kind,
        held_at: ts_from_row(row.try_get("held_at")?)?,
    })
}

impl Store {
    /// Held changes, oldest first, `limit` from `offset` (all peers, or one), and how many there are.
    pub async fn held_changes(&self, peer: Option<&str>, limit: i64, offset: i64) -> Result<(Vec<HeldChange>, i64)> {
        let rows = sqlx::query(
            "SELECT id, peer, incident_id, change, kind, value, weight_milli, held_at FROM held_changes \
             WHERE ($1 = '' OR peer = $1) ORDER BY id LIMIT $2 OFFSET $3",
        )
        .bind(peer.unwrap_or(""))
        .bind(limit)
        .bind(offset)
        .fetch_all(self.pool())
        .await?;
        let total: i64 = sqlx::query("SELECT COUNT(*) AS n FROM held_changes WHERE ($1 = '' OR peer = $1)")
            .bind(peer.unwrap_or(""))
            .fetch_one(self.pool())
            .await?
            .try_get("n")?;
        Ok((rows.iter().map(held_from_row).collect::<Result<_>>()?, total))
    }
}

impl Batch {
    /// Takes up to `wanted` entries from `peer`'s budget for the sixty minutes up to now;
    /// returns how many it got. The use is read once a transaction and written at commit
    /// ([`Batch::flush_budgets`]): writers are serialised, so nobody else spends meanwhile.
    pub(super) async fn take_budget(&mut self, peer: &str, wanted: usize, budget: u32) -> Result<usize> {
        if !self.budgets.contains_key(peer) {
            let used: i64 = sqlx::query(
                "SELECT CAST(COALESCE(SUM(used), 0) AS BIGINT) AS used FROM peer_budget_minutes \
                 WHERE peer = $1 AND minute >= $2",
            )
            .bind(peer)
            .bind(self.budget_window().0)
            .fetch_one(&mut *self.tx)
            .await?
            .try_get("used")?;
            self.budgets.insert(peer.to_owned(), Spent { used, granted: 0 });
        }
        let spent = self.budgets.get_mut(peer).ok_or_else(|| StoreError::Corrupt("budget".to_owned()))?;
        let granted = (i64::from(budget) - spent.used).clamp(0, i64::try_from(wanted).unwrap_or(i64::MAX));
        spent.used += granted;
        spent.granted += granted;
        Ok(usize::try_from(granted).unwrap_or(0))
    }

    /// The first minute of the budget's window and the current one.
    fn budget_window(&self) -> (i64, i64) {
        let minute = self.now.unix().div_euclid(60);
        // The window is this minute and the 59 before it.
        (minute - (BUDGET_WINDOW_MINUTES - 1), minute)
    }

    /// Writes what this transaction took from each peer's budget.
    pub(super) async fn flush_budgets(&mut self) -> Result<()> {
        let (oldest, minute) = self.budget_window();
        for (peer, spent) in std::mem::take(&mut self.budgets) {
            if spent.granted == 0 {
                continue;
            }
            sqlx::query(
                "INSERT INTO peer_budget_minutes (peer, minute, used) VALUES ($1, $2, $3) \
                 ON CONFLICT (peer, minute) DO UPDATE SET used = peer_budget_minutes.used + excluded.used",
            )
            .bind(&peer)
            .bind(minute)
            .bind(spent.granted)
            .execute(&mut *self.tx)
            .await?;
            // Minutes out of the window are of no further use: at most sixty rows a peer.
            sqlx::query("DELETE FROM peer_budget_minutes WHERE peer = $1 AND minute < $2")
                .bind(&peer)
                .bind(oldest)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    /// Holds one change for the operator; returns why, for the leaf (`false` in the second
    /// place when the peer's held changes are at their cap and it was refused instead).
    pub(super) async fn hold(
        &mut self,
        peer: &str,
        incident: &IncidentId,
        change: Option<(&Offender, i64)>,
        budget: u32,
    ) -> Result<(String, bool)> {
        let held: i64 = sqlx::query("SELECT COUNT(*) AS n FROM held_changes WHERE peer = $1")
            .bind(peer)
            .fetch_one(&mut *self.tx)
            .await?
            .try_get("n")?;
        if held >= MAX_HELD_PER_PEER {
            return Ok((
                format!(
                    "refused by the brake: {peer} is over its budget of {budget} entries an hour and {held} changes already wait"
                ),
                false,
            ));
        }
        let (kind, value, weight) = match change {
            Some((offender, weight)) => ("list", Some(offender), weight),
            None => ("retract", None, 0),
        };
        sqlx::query(
            "INSERT INTO held_changes (peer, incident_id, change, kind, value, weight_milli, held_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(peer)
        .bind(incident.to_string())
        .bind(kind)
        .bind(value.map_or("", offender_kind))
        .bind(value.map(ToString::to_string).unwrap_or_default())
        .bind(weight)
        .bind(self.now.unix())
        .execute(&mut *self.tx)
        .await?;
        Ok((
            format!("held by the brake: {peer} is over its budget of {budget} entries an hour; waits for the operator"),
            true,
        ))
    }
}

impl Ledger {
    /// The operator applies what the brake held (for one peer, or all), oldest first, up to
    /// a batch: listings with the weight they would have had, retractions in full.
    pub async fn release_held(&self, peer: Option<&BareJid>, now: Timestamp) -> Result<Applied> {
        let _writer = self.writer.lock().await;
        let mut batch = self.begin(now).await?;
        let held = take_held(&mut batch, peer).await?;
        for change in &held {
            let Some(record) = batch.stored_incident(&change.incident).await? else { continue };
            match &change.kind {
                // A retracted report lists nothing, held or not.
                HeldKind::List { .. } if record.incident.status == ostracon_protocol::incident::Status::Retracted => {}
                HeldKind::List { offender, weight_milli } => {
                    let incident = &record.incident;
                    let listing = Listing {
                        offender,
                        action: ListingPolicy::action_for(incident.action),
                        expires: incident.expires,
                        severity: incident.severity,
                        source: EntrySource::Incidents,
                        reason: Some((&incident.id, &incident.reporter, *weight_milli)),
                    };
                    if !self.is_allowed(offender) {
                        batch.list_many(&[listing], &self.config).await?;
                    }
                }
                HeldKind::Retract => retract_in(&mut batch, record.incident, &self.config).await?,
            }
        }
        self.commit(batch).await
    }

    /// The operator drops what the brake held (for one peer, or all), up to a batch, with a
    /// leaf per incident saying so. Returns how many changes went.
    pub async fn discard_held(&self, peer: Option<&BareJid>, now: Timestamp) -> Result<usize> {
        let _writer = self.writer.lock().await;
        let mut batch = self.begin(now).await?;
        let held = take_held(&mut batch, peer).await?;
        let incidents: std::collections::BTreeSet<&IncidentId> = held.iter().map(|h| &h.incident).collect();
        for incident in incidents {
            let record = AuditRecord::IncidentIgnored {
                at: now,
                id: incident.clone(),
                reporter: String::new(),
                why: "what the brake held was discarded by the operator".to_owned(),
            };
            batch.leaf(&record)?;
        }
        self.commit(batch).await?;
        Ok(held.len())
    }
}

/// Reads and deletes up to a batch of held changes.
async fn take_held(batch: &mut Batch, peer: Option<&BareJid>) -> Result<Vec<HeldChange>> {
    let peer = peer.map(ToString::to_string).unwrap_or_default();
    let rows = sqlx::query(
        "SELECT id, peer, incident_id, change, kind, value, weight_milli, held_at FROM held_changes \
         WHERE ($1 = '' OR peer = $1) ORDER BY id LIMIT $2",
    )
    .bind(&peer)
    .bind(RELEASE_BATCH)
    .fetch_all(&mut *batch.tx)
    .await?;
    let held: Vec<HeldChange> = rows.iter().map(held_from_row).collect::<Result<_>>()?;
    if let Some(last) = held.last() {
        sqlx::query("DELETE FROM held_changes WHERE ($1 = '' OR peer = $1) AND id <= $2")
            .bind(&peer)
            .bind(last.id)
            .execute(&mut *batch.tx)
            .await?;
    }
    Ok(held)
}
