//! The replicas of one node sharing a PostgreSQL database: each one's heartbeat, where its
//! memory stands in the log and whether it holds the XMPP link, for health reports.
//!
//! Nothing decides from these rows (the advisory locks do): they only say what each replica
//! last reported, so a stale row is a replica that stopped or lost the database.

use ostracon_protocol::time::Timestamp;
use sqlx::Row as _;

use crate::model::ts_from_row;
use crate::{Result, Store};

/// What one replica last reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaReport {
    /// Its name (`[database] replica`).
    pub name: String,
    /// Audit leaves its memory held.
    pub log_size: u64,
    /// Whether it held the XMPP link.
    pub holds_link: bool,
    /// When it started.
    pub started_at: Timestamp,
    /// When it last reported.
    pub seen_at: Timestamp,
}

impl Store {
    /// Records `report` (one row per replica name, replaced each time).
    pub async fn report_replica(&self, report: &ReplicaReport) -> Result<()> {
        sqlx::query(
            "INSERT INTO replicas (name, log_size, holds_link, started_at, seen_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (name) DO UPDATE SET log_size = excluded.log_size, holds_link = excluded.holds_link, \
             started_at = excluded.started_at, seen_at = excluded.seen_at",
        )
        .bind(report.name.as_str())
        .bind(i64::try_from(report.log_size).unwrap_or(i64::MAX))
        .bind(i64::from(report.holds_link))
        .bind(report.started_at.unix())
        .bind(report.seen_at.unix())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Every replica's last report seen at or after `since`, by name.
    pub async fn replica_reports(&self, since: Timestamp) -> Result<Vec<ReplicaReport>> {
        let rows = sqlx::query(
            "SELECT name, log_size, holds_link, started_at, seen_at FROM replicas WHERE seen_at >= $1 ORDER BY name",
        )
        .bind(since.unix())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ReplicaReport {
                    name: row.try_get("name")?,
                    log_size: u64::try_from(row.try_get::<i64, _>("log_size")?).unwrap_or(0),
                    holds_link: row.try_get::<i64, _>("holds_link")? != 0,
                    started_at: ts_from_row(row.try_get("started_at")?)?,
                    seen_at: ts_from_row(row.try_get("seen_at")?)?,
                })
            })
            .collect()
    }
}
