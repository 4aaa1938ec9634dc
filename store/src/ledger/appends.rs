//! Rows a transaction only appends and never reads back: audit leaves and their openings,
//! change-feed rows and outbox rows. They are kept in the batch and written at commit, a few
//! multi-row statements for the whole transaction instead of one round trip each (a group of
//! received reports wrote about a dozen single-row statements per report, and the round trips
//! through the database driver, not the rows, were most of its cost).
//!
//! Whatever reads one of these tables inside a transaction must flush first
//! ([`super::Batch::flush_appends`]); the leaf indices and hashes are assigned when a row is
//! kept, so nothing else waits for the write.

use sqlx::{Any, Transaction};

use super::push_placeholders;
use crate::Result;
use crate::db::Dialect;

/// Bind parameters per statement: under SQLite's 32,766 and PostgreSQL's 65,535.
pub(super) const MAX_PARAMETERS: usize = 30_000;

/// One audit leaf: its index, bytes and hash.
pub(super) struct LeafRow {
    pub(super) index: i64,
    pub(super) bytes: Vec<u8>,
    pub(super) hash: Vec<u8>,
}

/// The opening of a sealed leaf.
pub(super) struct OpeningRow {
    pub(super) index: i64,
    pub(super) salt: Vec<u8>,
    pub(super) record: Vec<u8>,
}

/// One change-feed row.
pub(super) struct ChangeRow {
    pub(super) kind: &'static str,
    pub(super) value: String,
    pub(super) op: &'static str,
    pub(super) action: Option<&'static str>,
    pub(super) expires_at: Option<i64>,
    pub(super) log_index: i64,
}

/// One outbox row.
pub(super) struct OutboxRow {
    pub(super) peer: String,
    pub(super) kind: &'static str,
    pub(super) reference: String,
    pub(super) payload: String,
}

/// What a transaction appends, in the order it was kept.
#[derive(Default)]
pub(super) struct Appends {
    pub(super) leaves: Vec<LeafRow>,
    pub(super) openings: Vec<OpeningRow>,
    pub(super) changes: Vec<ChangeRow>,
    pub(super) outbox: Vec<OutboxRow>,
}

impl Appends {
    /// Writes everything kept, stamped `at`, and empties the lists.
    pub(super) async fn flush(&mut self, tx: &mut Transaction<'static, Any>, dialect: Dialect, at: i64) -> Result<()> {
        for chunk in std::mem::take(&mut self.leaves).chunks(MAX_PARAMETERS / 4) {
            let mut sql = "INSERT INTO audit_log (idx, leaf, leaf_hash, at) VALUES ".to_owned();
            push_placeholders(&mut sql, dialect, chunk.len(), 4, 1);
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for leaf in chunk {
                query = query.bind(leaf.index).bind(leaf.bytes.as_slice()).bind(leaf.hash.as_slice()).bind(at);
            }
            query.execute(&mut **tx).await?;
        }
        for chunk in std::mem::take(&mut self.openings).chunks(MAX_PARAMETERS / 3) {
            let mut sql = "INSERT INTO log_openings (idx, salt, record) VALUES ".to_owned();
            push_placeholders(&mut sql, dialect, chunk.len(), 3, 1);
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for opening in chunk {
                query = query.bind(opening.index).bind(opening.salt.as_slice()).bind(opening.record.as_slice());
            }
            query.execute(&mut **tx).await?;
        }
        for chunk in std::mem::take(&mut self.changes).chunks(MAX_PARAMETERS / 7) {
            let mut sql =
                "INSERT INTO list_changes (kind, value, op, action, expires_at, at, log_index) VALUES ".to_owned();
            push_placeholders(&mut sql, dialect, chunk.len(), 7, 1);
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for change in chunk {
                query = query
                    .bind(change.kind)
                    .bind(change.value.as_str())
                    .bind(change.op)
                    .bind(change.action)
                    .bind(change.expires_at)
                    .bind(at)
                    .bind(change.log_index);
            }
            query.execute(&mut **tx).await?;
        }
        for chunk in std::mem::take(&mut self.outbox).chunks(MAX_PARAMETERS / 8) {
            let mut sql = "INSERT INTO outbox (peer, kind, reference, payload, created_at, next_attempt_at, attempts, \
                           state) VALUES "
                .to_owned();
            push_placeholders(&mut sql, dialect, chunk.len(), 8, 1);
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for row in chunk {
                query = query
                    .bind(row.peer.as_str())
                    .bind(row.kind)
                    .bind(row.reference.as_str())
                    .bind(row.payload.as_str())
                    .bind(at)
                    .bind(at)
                    .bind(0i64)
                    .bind("pending");
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }
}
