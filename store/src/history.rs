//! What the lists and the decisions did day by day, for the dashboard's plots and
//! `GET /v1/history`: incidents received per day by decision, and each list's size at the end
//! of each day, walked back from its size now through the change feed.
//!
//! A feed `add` is a listing or a change of action or expiry; it grows the list only when the
//! value's previous change (if any) was a `remove`. Every delisting, expiry included, is a
//! `remove`. The reads cover only the window asked for, on indexes, so their cost grows with
//! the changes in the window, not with the history.

use std::collections::BTreeMap;

use ostracon_protocol::time::Timestamp;
use sqlx::Row as _;

use crate::index::KINDS;
use crate::{Result, Store};

/// Seconds in a day (UTC days: the buckets are `unix time / DAY`).
const DAY: i64 = 86_400;

/// The longest window read.
pub const MAX_HISTORY_DAYS: u32 = 90;

/// One UTC day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayHistory {
    /// Its first second.
    pub day: Timestamp,
    /// Incidents received that day, by decision.
    pub decisions: BTreeMap<String, u64>,
    /// The number of entries of each kind at the end of the day (or now, for today), in
    /// [`KINDS`] order.
    pub list_sizes: [(&'static str, i64); 4],
}

impl Store {
    /// The last `days` UTC days up to `now` (capped at [`MAX_HISTORY_DAYS`]), oldest first;
    /// `sizes_now` are the lists' sizes at `now`, as the in-memory index counts them.
    pub async fn history(
        &self,
        days: u32,
        now: Timestamp,
        sizes_now: [(&'static str, usize); 4],
    ) -> Result<Vec<DayHistory>> {
        let days = i64::from(days.clamp(1, MAX_HISTORY_DAYS));
        let today = now.unix().div_euclid(DAY);
        let first = today - days + 1;
        let since = first * DAY;

        let mut decisions: BTreeMap<i64, BTreeMap<String, u64>> = BTreeMap::new();
        let rows = sqlx::query(
            "SELECT received_at / 86400 AS day, decision, COUNT(*) AS n FROM incidents \
             WHERE received_at >= $1 GROUP BY received_at / 86400, decision",
        )
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        for row in &rows {
            let n = u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0);
            decisions.entry(row.try_get("day")?).or_default().insert(row.try_get("decision")?, n);
        }

        // How much each day changed each list: removes shrink it, and an add grows it unless
        // the value was already listed (its previous change was an add too).
        let rows = sqlx::query(
            "SELECT c.at / 86400 AS day, c.kind AS kind, SUM(CASE \
               WHEN c.op = 'remove' THEN -1 \
               WHEN COALESCE((SELECT p.op FROM list_changes p WHERE p.kind = c.kind AND p.value = c.value \
                   AND p.seq < c.seq ORDER BY p.seq DESC LIMIT 1), 'remove') = 'remove' THEN 1 \
               ELSE 0 END) AS net \
             FROM list_changes c WHERE c.at >= $1 GROUP BY c.at / 86400, c.kind",
        )
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        let mut net: BTreeMap<i64, [i64; 4]> = BTreeMap::new();
        for row in &rows {
            let kind: String = row.try_get("kind")?;
            if let Some(slot) = KINDS.iter().position(|k| *k == kind) {
                net.entry(row.try_get("day")?).or_default()[slot] += row.try_get::<i64, _>("net")?;
            }
        }

        // Walk back from now: the end of day d is the day after it minus what the day after did.
        let mut size: [i64; 4] = std::array::from_fn(|slot| i64::try_from(sizes_now[slot].1).unwrap_or(i64::MAX));
        let mut out = Vec::with_capacity(usize::try_from(days).unwrap_or(0));
        for day in (first..=today).rev() {
            if day < today {
                let after = net.get(&(day + 1)).copied().unwrap_or_default();
                for slot in 0..4 {
                    size[slot] -= after[slot];
                }
            }
            out.push(DayHistory {
                day: Timestamp::from_unix(day * DAY).unwrap_or(now),
                decisions: decisions.remove(&day).unwrap_or_default(),
                list_sizes: std::array::from_fn(|slot| (KINDS[slot], size[slot])),
            });
        }
        out.reverse();
        Ok(out)
    }
}
