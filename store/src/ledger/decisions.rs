//! The CrowdSec-compatible decision stream's reads, and each bouncer key's position in it
//! (spec/firewalls.md).
//!
//! A decision is an address entry (`ip` or `cidr`) this node lists with action `block`. A
//! bouncer's key remembers the change-feed position and time of its last pull, as the LAPI's
//! per-bouncer `LastPull` does; a position is delivery state, like an RTBL subscriber's, so it
//! changes without an audit leaf.
//!
//! Firewall sets cap a timeout (ipset at 24.8 days) and a bouncer re-adds only at its own
//! start, so no decision is sent for longer than [`MAX_DECISION_SECS`], and every live one is
//! sent again once per [`REFRESH_PERIOD_SECS`], at the second of the day its entry id picks: a
//! poll refreshes only the share of the list whose second passed since the key's last pull.

use ostracon_protocol::time::Timestamp;
use sqlx::Row as _;

use super::Ledger;
use crate::model::{EntryRecord, ListKind};
use crate::queries::{ENTRY_COLUMNS, entry_from_row};
use crate::traits::BlocklistStore as _;
use crate::{Result, Store};

/// The longest duration a decision is sent with (below ipset's 2,147,483 s ceiling, and long
/// enough that a day's refresh always comes first).
pub const MAX_DECISION_SECS: i64 = 7 * 86_400;

/// How often every live decision is sent again; migration 0011's index is on `id % 86400`.
pub const REFRESH_PERIOD_SECS: i64 = 86_400;

/// A key whose position is further behind than this many changes gets the whole list instead,
/// so one answer never carries an unbounded backlog of changes.
pub const FULL_PULL_AFTER_CHANGES: i64 = 100_000;

/// The filter every stream read uses: a live block decision at `$1` (now).
const LIVE: &str = "active = 1 AND action = 'block' AND (expires_at IS NULL OR expires_at > $1)";

/// What one pull sends a bouncer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecisionPull {
    /// Decisions to apply: every live one for a whole-list pull, else the changed and the due.
    pub new: Vec<EntryRecord>,
    /// Decisions to lift: entries that stopped being live.
    pub deleted: Vec<EntryRecord>,
    /// Whether this was a whole-list pull.
    pub whole: bool,
    /// The change-feed position the key now stands at.
    pub through: i64,
}

/// A bouncer key's position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BouncerCursor {
    /// Everything through this change has been sent.
    pub through: i64,
    /// When that pull was.
    pub pulled_at: Timestamp,
}

impl Ledger {
    /// One pull for the bouncer key `token_id`: the whole list when `startup`, when the key
    /// has no usable position, or when it last pulled a refresh period or more ago; else what
    /// changed since its position plus the decisions due for a refresh. The key's position
    /// moves to what this pull read.
    pub async fn pull_decisions(&self, token_id: i64, startup: bool, now: Timestamp) -> Result<DecisionPull> {
        let store = self.store();
        // Read the feed's end first: a change committed during the reads below is then sent
        // again next time, never skipped.
        let (pruned, through) = store.change_feed_bounds().await?;
        let cursor = store.bouncer_cursor(token_id).await?;
        let usable = match cursor {
            Some(cursor) if !startup => {
                cursor.through >= pruned
                    && through - cursor.through <= FULL_PULL_AFTER_CHANGES
                    && now.unix() - cursor.pulled_at.unix() < REFRESH_PERIOD_SECS
                    && now >= cursor.pulled_at
            }
            _ => false,
        };
        let pull = match cursor.filter(|_| usable) {
            Some(cursor) => {
                let (mut new, deleted) = store.decisions_changed(cursor.through, now).await?;
                for entry in store.decisions_due(cursor.pulled_at, now).await? {
                    if !new.iter().any(|known| known.id == entry.id) {
                        new.push(entry);
                    }
                }
                DecisionPull { new, deleted, whole: false, through }
            }
            None => DecisionPull {
                new: store.decisions_live(now).await?,
                deleted: store.decisions_lifted_since(now.plus_secs(-MAX_DECISION_SECS), now).await?,
                whole: true,
                through,
            },
        };
        sqlx::query(
            "INSERT INTO bouncer_cursors (token_id, seq, pulled_at) VALUES ($1, $2, $3) \
             ON CONFLICT (token_id) DO UPDATE SET seq = excluded.seq, pulled_at = excluded.pulled_at",
        )
        .bind(token_id)
        .bind(through)
        .bind(now.unix())
        .execute(store.pool())
        .await?;
        Ok(pull)
    }
}

impl Store {
    /// A bouncer key's position, if it has pulled before.
    pub async fn bouncer_cursor(&self, token_id: i64) -> Result<Option<BouncerCursor>> {
        let row = sqlx::query("SELECT seq, pulled_at FROM bouncer_cursors WHERE token_id = $1")
            .bind(token_id)
            .fetch_optional(self.pool())
            .await?;
        row.map(|row| {
            Ok(BouncerCursor {
                through: row.try_get("seq")?,
                pulled_at: crate::model::ts_from_row(row.try_get("pulled_at")?)?,
            })
        })
        .transpose()
    }

    /// Every live decision, by entry id.
    pub async fn decisions_live(&self, now: Timestamp) -> Result<Vec<EntryRecord>> {
        let sql = format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE (kind = $2 OR kind = $3) AND {LIVE} ORDER BY id");
        self.address_entries(&sql, now, &[]).await
    }

    /// Address entries that stopped being live since `since` (their last change is later):
    /// a whole-list pull lifts them, since a bouncer may hold them from an earlier run. An
    /// older one has lapsed in every set already, having been sent for at most
    /// [`MAX_DECISION_SECS`].
    pub async fn decisions_lifted_since(&self, since: Timestamp, now: Timestamp) -> Result<Vec<EntryRecord>> {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM entries WHERE (kind = $2 OR kind = $3) AND updated_at >= $4 \
             AND NOT ({LIVE}) ORDER BY id"
        );
        self.address_entries(&sql, now, &[since.unix()]).await
    }

    /// The address entries changed after feed position `after`, split into live (new) and
    /// not (deleted), each once whatever the number of its changes.
    pub async fn decisions_changed(&self, after: i64, now: Timestamp) -> Result<(Vec<EntryRecord>, Vec<EntryRecord>)> {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS}, CASE WHEN {LIVE} THEN 1 ELSE 0 END AS live FROM \
             (SELECT DISTINCT kind AS changed_kind, value AS changed_value FROM list_changes \
              WHERE seq > $4 AND (kind = $2 OR kind = $3)) changed \
             JOIN entries ON kind = changed_kind AND value = changed_value ORDER BY id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now.unix())
            .bind(ListKind::Ip.entry_kinds()[0])
            .bind(ListKind::Ip.entry_kinds()[1])
            .bind(after)
            .fetch_all(self.pool())
            .await?;
        let (mut new, mut deleted) = (Vec::new(), Vec::new());
        for row in &rows {
            let entry = entry_from_row(row)?;
            if row.try_get::<i64, _>("live")? == 1 { new.push(entry) } else { deleted.push(entry) }
        }
        Ok((new, deleted))
    }

    /// The live decisions whose refresh second of the day fell in `(since, now]`.
    pub async fn decisions_due(&self, since: Timestamp, now: Timestamp) -> Result<Vec<EntryRecord>> {
        let (from, to) = (since.unix().rem_euclid(REFRESH_PERIOD_SECS), now.unix().rem_euclid(REFRESH_PERIOD_SECS));
        if now <= since {
            return Ok(Vec::new());
        }
        // The slot test is written exactly as the index is, so both dialects use it.
        let window = if from < to {
            "(id % 86400) > $4 AND (id % 86400) <= $5"
        } else {
            "((id % 86400) > $4 OR (id % 86400) <= $5)"
        };
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM entries WHERE {window} AND (kind = $2 OR kind = $3) AND {LIVE} ORDER BY id"
        );
        self.address_entries(&sql, now, &[from, to]).await
    }

    /// Runs an entries query whose `$1` is now, `$2` and `$3` the address kinds, and the rest
    /// `extra`.
    async fn address_entries(&self, sql: &str, now: Timestamp, extra: &[i64]) -> Result<Vec<EntryRecord>> {
        let kinds = ListKind::Ip.entry_kinds();
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).bind(now.unix()).bind(kinds[0]).bind(kinds[1]);
        for value in extra {
            query = query.bind(*value);
        }
        query.fetch_all(self.pool()).await?.iter().map(entry_from_row).collect()
    }
}
