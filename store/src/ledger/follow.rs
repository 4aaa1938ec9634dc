//! Replicas: keeping one process's memory current with what other replicas of the same node
//! commit to the shared PostgreSQL database.
//!
//! Every replica writes. PostgreSQL serialises their writes (each write transaction takes the
//! node's transaction-level advisory lock, [`crate::Store::begin_write`]), and a writer first
//! brings its memory up to the database (`catch_up_in`, inside that transaction), so leaf `n`
//! is assigned once and every replica's tree holds the same leaves. Between writes a replica
//! follows: woken by the notification a replica sends after its commits
//! ([`Ledger::announce_commits`]), or by its poll when a notification is lost, it reads the audit leaves past its tree and the change-feed rows past its
//! position, re-reads the entries they name and moves its index. Its caches key on the list
//! version and the peers version, which move with it.

use std::collections::BTreeSet;
use std::future::Future;

use futures_util::TryStreamExt as _;
use ostracon_protocol::ids::Offender;
use ostracon_protocol::log::merkle::Hash;
use sqlx::{Any, AnyConnection, Row as _};

use super::{Ledger, Memory, push_placeholders};
use crate::db::Dialect;
use crate::index::BlocklistIndex;
use crate::model::{Listed, offender_from_row};
use crate::queries::{ENTRY_COLUMNS, entry_from_row, offender_kind};
use crate::{Result, StoreError};

/// Offenders re-read per statement while following (two bind parameters each).
const FOLLOW_CHUNK: usize = 500;

/// What one catch-up applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaughtUp {
    /// Audit leaves other replicas committed that memory now holds.
    pub leaves: u64,
    /// Offenders whose index entry was re-read.
    pub offenders: usize,
    /// Whether the change feed had been pruned past this replica's position, so the whole
    /// index was reloaded.
    pub reloaded: bool,
}

/// Where this replica's memory stands against the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// Leaves in memory.
    pub log_size: u64,
    /// Leaves in the database.
    pub database_log_size: u64,
}

impl Ledger {
    /// Applies what other replicas committed since memory's position. Takes the writer lock,
    /// so it never interleaves with this replica's own commits.
    pub async fn catch_up(&self) -> Result<CaughtUp> {
        let _writer = self.writer.lock().await;
        let mut connection = self.store.pool().acquire().await?;
        self.catch_up_in(&mut connection).await
    }

    /// Announces this replica's commits to the others until `stop` resolves: one
    /// notification on [`crate::db::COMMIT_CHANNEL`] for whatever committed since the last.
    ///
    /// At most one announcement per `pause`: each costs the database a transaction, and under
    /// a burst one announcement covers many commits.
    pub async fn announce_commits(&self, pause: std::time::Duration, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = self.committed.notified() => {}
                () = &mut stop => return,
            }
            if let Err(error) = self.store.announce_commit().await {
                // The others' poll finds the commit instead.
                tracing::debug!(%error, "could not announce a commit to the other replicas");
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = &mut stop => return,
            }
        }
    }

    /// Memory's log size and the database's, for health reports.
    pub async fn position(&self) -> Result<Position> {
        let database_log_size: i64 = sqlx::query("SELECT COALESCE(MAX(idx) + 1, 0) AS n FROM audit_log")
            .fetch_one(self.store.pool())
            .await?
            .try_get("n")?;
        Ok(Position { log_size: self.log_size(), database_log_size: u64::try_from(database_log_size).unwrap_or(0) })
    }

    /// [`Ledger::catch_up`] on `connection` (a writer's own transaction, after the advisory
    /// lock: nothing can commit between what it reads and what it then writes). The caller
    /// holds the writer lock.
    pub(super) async fn catch_up_in(&self, connection: &mut AnyConnection) -> Result<CaughtUp> {
        let (size, seq) = {
            let memory = self.read_memory();
            (memory.tree.len(), memory.change_seq)
        };
        let mut leaves = Vec::new();
        each_leaf_from(&mut *connection, size, |hash| leaves.push(hash)).await?;
        if leaves.is_empty() {
            return Ok(CaughtUp::default());
        }
        let pruned_through: i64 =
            sqlx::query("SELECT COALESCE(MAX(value), '0') AS v FROM meta WHERE key = 'changes_pruned_through'")
                .fetch_one(&mut *connection)
                .await?
                .try_get::<String, _>("v")?
                .parse()
                .map_err(|_| StoreError::Corrupt("changes_pruned_through is not a number".to_owned()))?;
        let reloaded = pruned_through > seq;
        let (changed, last_seq) = if reloaded {
            (Vec::new(), super::last_change_seq(&mut *connection).await?)
        } else {
            changed_since(connection, seq).await?
        };
        let rows = if reloaded {
            Rows::Whole(Box::new(active_index(&mut *connection).await?))
        } else {
            entries_of(connection, &changed, self.store.dialect()).await?
        };
        let allow: super::allow::AllowList = sqlx::query("SELECT kind, value FROM allow_entries")
            .fetch_all(&mut *connection)
            .await?
            .iter()
            .map(|row| offender_from_row(&row.try_get::<String, _>("kind")?, &row.try_get::<String, _>("value")?))
            .collect::<Result<_>>()?;

        let caught_up = CaughtUp { leaves: leaves.len() as u64, offenders: changed.len(), reloaded };
        let mut memory = self.memory.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        for hash in leaves {
            memory.tree.push(hash);
        }
        memory.allow = allow;
        let list_changed = reloaded || last_seq != memory.change_seq;
        apply_rows(&mut memory, rows, &changed, reloaded);
        memory.change_seq = last_seq;
        if list_changed {
            memory.list_version += 1;
            self.list_changed.send_replace(memory.list_version);
        }
        drop(memory);
        // What another replica changed may be any entry's reasons or any peer's row: drop
        // every rendered explanation and let the peer table's readers reload it.
        self.explanations.changed(&[], true);
        self.peers_version.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        // Another replica may have queued deliveries; whichever replica holds the XMPP link
        // sends them now.
        self.outbox_queued.notify_waiters();
        Ok(caught_up)
    }
}

/// The rows memory needs for the index after a catch-up.
enum Rows {
    /// The entries named by the change feed that are active (the others are unlisted).
    Changed(Vec<(Offender, Listed)>),
    /// Every active entry (the feed was pruned past this replica's position).
    Whole(Box<BlocklistIndex<Listed>>),
}

fn apply_rows(memory: &mut Memory, rows: Rows, changed: &[Offender], reloaded: bool) {
    match rows {
        Rows::Whole(index) => {
            debug_assert!(reloaded);
            memory.index = *index;
        }
        Rows::Changed(active) => {
            for offender in changed {
                memory.index.remove(offender);
            }
            for (offender, row) in active {
                memory.index.insert(&offender, row);
            }
        }
    }
}

/// Visits the hashes of the audit leaves from index `from` on, in order; a gap is corruption.
pub(super) async fn each_leaf_from<'c>(
    executor: impl sqlx::Executor<'c, Database = Any>,
    from: u64,
    mut visit: impl FnMut(Hash),
) -> Result<u64> {
    let from = i64::try_from(from).map_err(|_| StoreError::Corrupt("log size out of range".to_owned()))?;
    let mut rows =
        sqlx::query("SELECT idx, leaf_hash FROM audit_log WHERE idx >= $1 ORDER BY idx").bind(from).fetch(executor);
    let mut next = from;
    while let Some(row) = rows.try_next().await? {
        let idx: i64 = row.try_get("idx")?;
        if idx != next {
            return Err(StoreError::Corrupt(format!("audit log has a gap before leaf {idx}")));
        }
        let hash: Vec<u8> = row.try_get("leaf_hash")?;
        visit(hash.try_into().map_err(|_| StoreError::Corrupt("leaf hash is not 32 bytes".to_owned()))?);
        next += 1;
    }
    Ok(u64::try_from(next - from).unwrap_or(0))
}

/// Every active entry, streamed into a new index (materialising the rows first would cost
/// several times the memory the index itself needs).
pub(super) async fn active_index<'c>(
    executor: impl sqlx::Executor<'c, Database = Any>,
) -> Result<BlocklistIndex<Listed>> {
    let mut index = BlocklistIndex::new();
    let sql = format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE active = 1");
    let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(executor);
    while let Some(row) = rows.try_next().await? {
        let entry = entry_from_row(&row)?;
        index.insert(&entry.offender, Listed::from(&entry));
    }
    Ok(index)
}

/// The distinct offenders the change feed names after `seq`, and its last sequence number.
async fn changed_since(connection: &mut AnyConnection, seq: i64) -> Result<(Vec<Offender>, i64)> {
    let mut rows = sqlx::query("SELECT seq, kind, value FROM list_changes WHERE seq > $1 ORDER BY seq")
        .bind(seq)
        .fetch(connection);
    let mut seen = BTreeSet::new();
    let mut last = seq;
    while let Some(row) = rows.try_next().await? {
        last = row.try_get("seq")?;
        seen.insert(offender_from_row(&row.try_get::<String, _>("kind")?, &row.try_get::<String, _>("value")?)?);
    }
    Ok((seen.into_iter().collect(), last))
}

/// The active entries among `offenders`, read as one multi-row statement per chunk.
async fn entries_of(connection: &mut AnyConnection, offenders: &[Offender], dialect: Dialect) -> Result<Rows> {
    let mut active = Vec::new();
    for chunk in offenders.chunks(FOLLOW_CHUNK) {
        let mut sql = format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE active = 1 AND (kind, value) IN (VALUES ");
        push_placeholders(&mut sql, dialect, chunk.len(), 2, 1);
        sql.push(')');
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for offender in chunk {
            query = query.bind(offender_kind(offender)).bind(offender.to_string());
        }
        for row in query.fetch_all(&mut *connection).await? {
            let entry = entry_from_row(&row)?;
            active.push((entry.offender.clone(), Listed::from(&entry)));
        }
    }
    Ok(Rows::Changed(active))
}
