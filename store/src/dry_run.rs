//! The listing policy's dry run: what a different quorum threshold would list and delist,
//! computed from the evidence the node holds, without changing anything. Operators use it
//! before they change `listing_threshold` (spec/reputation.md, Listing quorum).

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::Row as _;

use crate::reputation::{ReputationParams, quorum};
use crate::{Result, Store, StoreError};

/// Most contributions one dry run reads from each of the candidates and the live entries.
pub const DRY_RUN_ROWS: i64 = 20_000;

/// One offender whose listing would change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DryRunItem {
    /// `ip`, `cidr`, `jid` or `domain`.
    pub kind: String,
    /// The offender.
    pub value: String,
    /// Each independent reporter's counted weight (by independence key), in thousandths.
    pub weights_milli: BTreeMap<String, i64>,
    /// Their sum.
    pub total_milli: i64,
}

/// What a threshold would change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DryRun {
    /// The threshold in force.
    pub threshold_now_milli: i64,
    /// The threshold tried.
    pub threshold_milli: i64,
    /// Offenders waiting for a quorum that the tried threshold would list.
    pub would_list: Vec<DryRunItem>,
    /// Listed offenders (from incidents) that the tried threshold would delist.
    pub would_delist: Vec<DryRunItem>,
    /// Offenders examined.
    pub examined: usize,
    /// Whether the row cap cut the examination short.
    pub truncated: bool,
}

impl Store {
    /// Evaluates `threshold_milli` against the candidates within the window and the live
    /// entries from incidents.
    pub async fn dry_run(&self, params: &ReputationParams, threshold_milli: i64, now_unix: i64) -> Result<DryRun> {
        let tried = ReputationParams { listing_threshold_milli: threshold_milli, ..params.clone() };
        let mut run = DryRun {
            threshold_now_milli: params.listing_threshold_milli,
            threshold_milli,
            would_list: Vec::new(),
            would_delist: Vec::new(),
            examined: 0,
            truncated: false,
        };
        for candidates in [true, false] {
            let query = if candidates {
                sqlx::query(
                    "SELECT kind, value, incident_id, weight_milli FROM candidate_reasons WHERE added_at >= $1 \
                     ORDER BY kind, value LIMIT $2",
                )
                .bind(now_unix - params.candidate_window_secs)
            } else {
                sqlx::query(
                    "SELECT e.kind, e.value, r.incident_id, r.weight_milli FROM entries e JOIN entry_reasons r \
                     ON r.entry_id = e.id WHERE e.active = 1 AND e.source = 'incidents' ORDER BY e.kind, e.value LIMIT $1",
                )
            };
            let rows = query.bind(DRY_RUN_ROWS).fetch_all(self.pool()).await?;
            run.truncated |= rows.len() as i64 == DRY_RUN_ROWS;
            let mut grouped: BTreeMap<(String, String), Vec<(String, i64)>> = BTreeMap::new();
            for row in rows {
                let incident_id: String = row.try_get("incident_id")?;
                let issuer = ostracon_protocol::ids::IncidentId::parse(&incident_id)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?
                    .issuer()
                    .to_string();
                grouped
                    .entry((row.try_get("kind")?, row.try_get("value")?))
                    .or_default()
                    .push((issuer, row.try_get("weight_milli")?));
            }
            run.examined += grouped.len();
            for ((kind, value), reports) in grouped {
                let now = quorum(reports.iter().map(|(i, w)| (i.as_str(), *w)), params);
                let then = quorum(reports.iter().map(|(i, w)| (i.as_str(), *w)), &tried);
                let item = DryRunItem { kind, value, weights_milli: then.weights, total_milli: then.total_milli };
                if candidates && then.listed && !now.listed {
                    run.would_list.push(item);
                } else if !candidates && !then.listed {
                    run.would_delist.push(item);
                }
            }
        }
        Ok(run)
    }
}
