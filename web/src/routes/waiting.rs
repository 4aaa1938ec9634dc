//! What waits, admin routes (neither is a public fact):
//! - `GET /v1/candidates?limit=&offset=`: offenders with accepted evidence short of a quorum,
//!   each explained as a lookup explains a listing (reasons, weights, independent reporters,
//!   sum, threshold);
//! - `GET /v1/outbox?peer=&state=&before=&limit=`: what we queued for peers, newest first,
//!   with attempts, the next try and the last error (payloads stay inside).

use axum::Json;
use axum::extract::State;
use ostracon_store::model::EntrySource;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Admin, Operator};
use crate::error::{ApiError, ApiQuery};
use crate::routes::lookup::quorum_json;
use crate::routes::peer_filter;
use crate::state::AppState;

/// Largest page of `GET /v1/candidates` (each candidate reads its reasons).
const MAX_CANDIDATES: u32 = 100;
/// Largest page of `GET /v1/outbox`.
const MAX_OUTBOX: u32 = 500;
/// The outbox states a filter may name.
const OUTBOX_STATES: [&str; 4] = ["pending", "delivered", "failed", "cancelled"];

/// A page size: 50 unless given, refused outside 1 to `max`.
fn page_limit(limit: Option<u32>, max: u32) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(50);
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::invalid("invalid_limit", format!("limit is 1 to {max}")))
    }
}

/// Query of `GET /v1/candidates`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CandidatesQuery {
    limit: Option<u32>,
    offset: Option<u32>,
}

pub(crate) async fn candidates(
    operator: Operator<Admin>,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<CandidatesQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = page_limit(query.limit, MAX_CANDIDATES)?;
    Ok(Json(waiting_candidates(&operator, &state, limit, query.offset.unwrap_or(0)).await?))
}

/// A page of the offenders waiting for a quorum, each explained; for the route and the dashboard.
pub(crate) async fn waiting_candidates(
    _operator: &Operator<Admin>,
    state: &AppState,
    limit: u32,
    offset: u32,
) -> Result<Value, ApiError> {
    let (total, page) = state.ledger().store().candidates(limit, offset).await?;
    let params = &state.ledger().config().reputation;
    let candidates: Vec<Value> = page
        .iter()
        .map(|(offender, reasons)| {
            json!({
                "kind": offender.kind(),
                "value": offender.to_string(),
                "why": quorum_json(EntrySource::Incidents, reasons, params),
            })
        })
        .collect();
    let next = (u64::from(offset) + u64::from(limit) < total).then(|| offset + limit);
    Ok(json!({ "candidates": candidates, "total": total, "next_offset": next }))
}

/// Query of `GET /v1/outbox`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OutboxQuery {
    peer: Option<String>,
    state: Option<String>,
    before: Option<i64>,
    limit: Option<u32>,
}

pub(crate) async fn outbox(
    _operator: Operator<Admin>,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<OutboxQuery>,
) -> Result<Json<Value>, ApiError> {
    let peer = peer_filter(query.peer.as_deref())?.map(|jid| jid.to_string());
    if let Some(wanted) = query.state.as_deref()
        && !OUTBOX_STATES.contains(&wanted)
    {
        return Err(ApiError::invalid(
            "invalid_state",
            format!("state {wanted:?} is not one of {}", OUTBOX_STATES.join(", ")),
        ));
    }
    let limit = page_limit(query.limit, MAX_OUTBOX)?;
    let items =
        state.ledger().store().outbox_items(peer.as_deref(), query.state.as_deref(), query.before, limit).await?;
    let next = (items.len() == limit as usize).then(|| items.last().map(|item| item.id)).flatten();
    let items = items
        .iter()
        .map(|item| {
            // What the item is about: the incident, the subject, the old key, the presence type.
            let (kind, reference, payload) = item.job.columns()?;
            let about = if kind == "presence" { payload } else { reference };
            let about = (!about.is_empty()).then_some(about);
            Ok(json!({
                "id": item.id,
                "peer": item.peer,
                "kind": kind,
                "about": about,
                "state": item.state,
                "attempts": item.attempts,
                "queued_at": item.created_at,
                "next_attempt_at": item.next_attempt_at,
                "last_error": item.last_error,
            }))
        })
        .collect::<Result<Vec<Value>, ApiError>>()?;
    Ok(Json(json!({ "outbox": items, "next": next })))
}
