//! Replicas: keeping one process's memory current with what other replicas of the same node
//! commit to the shared PostgreSQL database.
//!
//! Every replica writes. PostgreSQL serialises their writes (each write transaction takes the
//! node's transaction-level advisory lock, [`crate::Store::begin_log_write`]), and a writer
//! first brings its memory up to the database (`catch_up_in`, inside that transaction), so
//! leaf `n` is assigned once and every replica's tree holds the same leaves. Between writes a
//! replica follows: woken by the notification a replica sends after its commits
//! ([`Ledger::announce_commits`]), or by its poll when a notification is lost, it reads, in
//! one snapshot, the audit leaves past its tree and the entries those commits changed (each
//! changed entry carries its commit's leaf as its log index), and moves its index. Its caches
//! key on the list version and the peers version, which move with it.

use std::future::Future;
use std::time::Duration;

use futures_util::TryStreamExt as _;
use ostracon_protocol::ids::Offender;
use ostracon_protocol::log::merkle::Hash;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row as _};

use super::Ledger;
use crate::model::{Listed, offender_from_row};
use crate::queries::{ENTRY_COLUMNS, entry_from_row};
use crate::{Result, StoreError};

/// What one catch-up applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaughtUp {
    /// Audit leaves other replicas committed that memory now holds.
    pub leaves: u64,
    /// Entries those commits changed (listed, changed or unlisted), re-read.
    pub entries: usize,
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
    /// Applies what other replicas committed since memory's position, read in one snapshot
    /// of the database. Takes the writer lock, so it never interleaves with this replica's own
    /// commits.
    pub async fn catch_up(&self) -> Result<CaughtUp> {
        let _writer = self.writer.lock().await;
        let mut snapshot = self.store.begin_snapshot().await?;
        let caught_up = self.catch_up_in(&mut snapshot).await?;
        snapshot.commit().await?;
        Ok(caught_up)
    }

    /// Announces this replica's commits to the others until `stop` resolves: one
    /// notification on [`crate::db::COMMIT_CHANNEL`] for whatever committed since the last.
    ///
    /// At most one announcement per `pause`: each costs the database a transaction, and under
    /// a burst one announcement covers many commits.
    pub async fn announce_commits(&self, pause: Duration, stop: impl Future<Output = ()>) {
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

    /// [`Ledger::catch_up`] on `connection`: a snapshot, or a writer's own transaction after
    /// the advisory lock (nothing can commit between what it reads and what it then writes).
    /// The caller holds the writer lock.
    pub(super) async fn catch_up_in(&self, connection: &mut AnyConnection) -> Result<CaughtUp> {
        let size = self.log_size();
        let mut leaves = Vec::new();
        each_leaf_from(&mut *connection, size, |hash| leaves.push(hash)).await?;
        if leaves.is_empty() {
            return Ok(CaughtUp::default());
        }
        // Every commit that changes an entry gives it that commit's leaf as its log index
        // (a listing, a stronger or merely another contribution, a delisting), so the entries
        // at or past the old size are exactly the ones changed since, whether or not the
        // change feed has a row for them.
        let from = i64::try_from(size).map_err(|_| StoreError::Corrupt("log size out of range".to_owned()))?;
        let sql = format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE log_index >= $1");
        let mut changed: Vec<(Offender, Option<Listed>)> = Vec::new();
        for row in sqlx::query(sqlx::AssertSqlSafe(sql)).bind(from).fetch_all(&mut *connection).await? {
            let entry = entry_from_row(&row)?;
            let listed = entry.active.then(|| Listed::from(&entry));
            changed.push((entry.offender, listed));
        }
        let last_seq = crate::queries::max_change_seq(&mut *connection).await?;
        let allow = allow_set(connection).await?;

        let caught_up = CaughtUp { leaves: leaves.len() as u64, entries: changed.len() };
        let mut memory = self.memory.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        for hash in leaves {
            memory.tree.push(hash);
        }
        memory.allow = allow;
        let list_changed = !changed.is_empty() || last_seq != memory.change_seq;
        // What another replica changed may be any entry's reasons (a reporter's new weight
        // moves no entry's log index): memory forgets them all, and lookups read them again.
        memory.index.for_each_row_mut(|row| row.reasons = None);
        memory.reasons_epoch += 1;
        for (offender, listed) in changed {
            match listed {
                Some(listed) => {
                    memory.index.insert(&offender, super::explained::Indexed { listed, reasons: None });
                }
                None => {
                    memory.index.remove(&offender);
                }
            }
        }
        memory.change_seq = last_seq;
        if list_changed {
            memory.list_version += 1;
            self.list_changed.send_replace(memory.list_version);
        }
        drop(memory);
        // Or any peer's row: the peer table's readers reload it.
        self.peers_version.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        // Another replica may have queued deliveries; whichever replica holds the XMPP link
        // sends them now.
        self.outbox_queued.notify_waiters();
        Ok(caught_up)
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
        let (idx, hash) = leaf_of(&row)?;
        if idx != next {
            return Err(StoreError::Corrupt(format!("audit log has a gap before leaf {idx}")));
        }
        visit(hash);
        next += 1;
    }
    Ok(u64::try_from(next - from).unwrap_or(0))
}

/// An `idx, leaf_hash` row of the audit table.
pub(super) fn leaf_of(row: &AnyRow) -> Result<(i64, Hash)> {
    let hash: Vec<u8> = row.try_get("leaf_hash")?;
    let hash = hash.try_into().map_err(|_| StoreError::Corrupt("leaf hash is not 32 bytes".to_owned()))?;
    Ok((row.try_get("idx")?, hash))
}

/// The operator's allow entries.
pub(super) async fn allow_set(connection: &mut AnyConnection) -> Result<super::allow::AllowList> {
    sqlx::query("SELECT kind, value FROM allow_entries")
        .fetch_all(connection)
        .await?
        .iter()
        .map(|row| offender_from_row(&row.try_get::<String, _>("kind")?, &row.try_get::<String, _>("value")?))
        .collect()
}
