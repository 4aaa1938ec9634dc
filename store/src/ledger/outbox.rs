//! The outbox: rows that ask the XMPP side to send something, written in the transaction of
//! the decision that implies them, and the delivery outcomes the XMPP side reports back.
//!
//! **Invariant:** nothing leaves the node except through a row written here; a row is
//! removed from the queue only when the peer confirmed it, it expired, or the relation it
//! belongs to ended (`cancelled`).
//!
//! Finished rows are history: kept [`OUTBOX_HISTORY_SECS`] for `ostracon outbox` and the
//! peers' delivery state, then pruned, except the kinds later decisions read (which reports
//! a peer may ask about, which requests it answered or ignored); those grow with the
//! incidents shared, not with presence or key-fetch churn.

use ostracon_protocol::ids::{BareJid, IncidentId};
use ostracon_protocol::time::Timestamp;
use sqlx::Row as _;

use super::{Batch, Ledger};
use crate::Result;
use crate::model::OutboxJob;

/// How long a finished outbox row (delivered, failed, cancelled) is kept.
pub const OUTBOX_HISTORY_SECS: i64 = 30 * 86_400;

/// Kinds whose finished rows are kept: inquiries are answered only about reports and
/// responses queued for the asker, and a request's row dates its answer deadline.
const KEPT_KINDS: &str = "'report', 'response', 'request'";

/// Rows deleted per statement while pruning (the writer is released between them).
const PRUNE_BATCH: i64 = 10_000;

impl Batch {
    /// Queues one outbox row in this transaction.
    pub(super) fn enqueue(&mut self, peer: &str, job: &OutboxJob) -> Result<()> {
        let (kind, reference, payload) = job.columns()?;
        self.appends.outbox.push(super::appends::OutboxRow { peer: peer.to_owned(), kind, reference, payload });
        self.outbox_queued = true;
        Ok(())
    }

    /// Cancels every row still queued for `peer` (the relation ended: nothing more goes there).
    pub(super) async fn cancel_outbox(&mut self, peer: &str) -> Result<u64> {
        // What this transaction queued for the peer is cancelled with the rest.
        self.flush_appends().await?;
        let done = sqlx::query("UPDATE outbox SET state = 'cancelled' WHERE peer = $1 AND state = 'pending'")
            .bind(peer)
            .execute(&mut *self.tx)
            .await?;
        Ok(done.rows_affected())
    }

    /// Queues a report delivery of `id` for every buddy we share with, but `except`.
    pub(super) async fn queue_for_buddies(&mut self, id: &IncidentId, except: Option<&str>) -> Result<()> {
        let buddies = sqlx::query(
            "SELECT jid FROM peers WHERE state = 'buddy' AND trust IN ('accept', 'auto-apply') ORDER BY jid",
        )
        .fetch_all(&mut *self.tx)
        .await?;
        for row in buddies {
            let peer: String = row.try_get("jid")?;
            if Some(peer.as_str()) != except {
                self.enqueue(&peer, &OutboxJob::Report { incident: id.clone() })?;
            }
        }
        Ok(())
    }
}

impl Ledger {
    /// Queues one outbox row on its own: work that changes no other state (an operator's
    /// request, inquiry or score question, a key rotation's announcement).
    pub async fn enqueue(&self, peer: &BareJid, job: &OutboxJob, now: Timestamp) -> Result<()> {
        let _writer = self.writer.lock().await;
        let mut batch = self.begin(now).await?;
        batch.enqueue(&peer.to_string(), job)?;
        self.commit(batch).await.map(drop)
    }

    /// Queues `job` for `peer` unless the same job already waits for it (an inquiry repeated
    /// while its answer is queued asks for nothing more). Returns whether it was queued.
    pub async fn enqueue_once(&self, peer: &BareJid, job: &OutboxJob, now: Timestamp) -> Result<bool> {
        let _writer = self.writer.lock().await;
        let mut batch = self.begin(now).await?;
        let (kind, reference, _) = job.columns()?;
        let waiting = sqlx::query(
            "SELECT 1 FROM outbox WHERE peer = $1 AND kind = $2 AND reference = $3 AND state = 'pending' LIMIT 1",
        )
        .bind(peer.to_string())
        .bind(kind)
        .bind(reference)
        .fetch_optional(&mut *batch.tx)
        .await?;
        if waiting.is_some() {
            return Ok(false);
        }
        batch.enqueue(&peer.to_string(), job)?;
        self.commit(batch).await.map(|_| true)
    }

    /// Resolves when a commit queues outbox rows (or at once if one did since the last call
    /// was registered); the delivery loop waits on it between polls.
    pub fn outbox_queued(&self) -> tokio::sync::futures::Notified<'_> {
        self.outbox_queued.notified()
    }

    /// Marks outbox rows delivered, in one statement (a batch's confirmed rows together).
    pub async fn outbox_delivered(&self, ids: &[i64], now: Timestamp) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        // Row ids are integers the store assigned: written into the statement, so one
        // statement serves any number of them without a placeholder each.
        let mut sql = "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, next_attempt_at = $1 \
                       WHERE state = 'pending' AND id IN ("
            .to_owned();
        for (n, id) in ids.iter().enumerate() {
            if n > 0 {
                sql.push(',');
            }
            sql.push_str(itoa::Buffer::new().format(*id));
        }
        sql.push(')');
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now.unix()).execute(self.store.pool()).await?;
        Ok(())
    }

    /// Records a failed attempt: retry at `next`, or give up (`next` = `None`). A row
    /// cancelled meanwhile stays cancelled.
    pub async fn outbox_failed(&self, id: i64, error: &str, next: Option<Timestamp>) -> Result<()> {
        let error: String = error.chars().take(512).collect();
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $1, next_attempt_at = COALESCE($2, next_attempt_at), \
             state = CASE WHEN $2 IS NULL THEN 'failed' ELSE 'pending' END WHERE id = $3 AND state = 'pending'",
        )
        .bind(error)
        .bind(next.map(Timestamp::unix))
        .bind(id)
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    /// Deletes finished rows older than [`OUTBOX_HISTORY_SECS`] at `now`, but the kinds
    /// later decisions read; returns how many went.
    pub async fn prune_outbox(&self, now: Timestamp) -> Result<u64> {
        let cutoff = now.plus_secs(-OUTBOX_HISTORY_SECS).unix();
        let sql = format!(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE state IN ('delivered', 'failed', 'cancelled') \
             AND next_attempt_at < $1 AND kind NOT IN ({KEPT_KINDS}) LIMIT $2)"
        );
        let mut total = 0;
        loop {
            let _writer = self.writer.lock().await;
            let deleted = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(cutoff)
                .bind(PRUNE_BATCH)
                .execute(self.store.pool())
                .await?
                .rows_affected();
            total += deleted;
            if deleted < u64::try_from(PRUNE_BATCH).unwrap_or(u64::MAX) {
                return Ok(total);
            }
        }
    }
}
