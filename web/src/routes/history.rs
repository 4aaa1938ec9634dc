//! `GET /v1/history?days=N`: incidents received per UTC day by decision, and each list's
//! size at the end of each day (the dashboard plots both).

use axum::Json;
use axum::extract::State;
use ostracon_store::history::MAX_HISTORY_DAYS;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Operator, Submit};
use crate::error::{ApiError, ApiQuery};
use crate::state::AppState;

/// Days shown when the query names none.
pub(crate) const DEFAULT_HISTORY_DAYS: u32 = 30;

/// Query of `GET /v1/history`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryQuery {
    pub(crate) days: Option<u32>,
}

pub(crate) async fn history(
    operator: Operator<Submit>,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(node_history(&operator, &state, query).await?))
}

/// The days, oldest first: `{"days": [{"day", "decisions": {decision: n}, "list_sizes": {kind: n}}]}`.
pub(crate) async fn node_history(
    _operator: &Operator<Submit>,
    state: &AppState,
    query: HistoryQuery,
) -> Result<Value, ApiError> {
    let days = query.days.unwrap_or(DEFAULT_HISTORY_DAYS);
    if !(1..=MAX_HISTORY_DAYS).contains(&days) {
        return Err(ApiError::invalid("invalid_days", format!("days is 1 to {MAX_HISTORY_DAYS}")));
    }
    let ledger = state.ledger();
    let sizes = ledger.with_index(ostracon_store::index::BlocklistIndex::sizes);
    let history = ledger.store().history(days, state.env().now(), sizes).await?;
    let days: Vec<Value> = history
        .iter()
        .map(|day| {
            let sizes: serde_json::Map<String, Value> =
                day.list_sizes.iter().map(|(kind, n)| ((*kind).to_owned(), json!(n))).collect();
            json!({ "day": day.day, "decisions": day.decisions, "list_sizes": sizes })
        })
        .collect();
    Ok(json!({ "days": days }))
}
