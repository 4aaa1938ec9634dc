//! What the brake held (spec/reputation.md, Brake), admin routes:
//! - `GET /v1/held?peer=&limit=&offset=`: the changes waiting, oldest first;
//! - `POST /v1/held/release` (`{"peer": JID}` or `{}` for all): applies them, a batch at a time;
//! - `POST /v1/held/discard` (same body): drops them, with a log leaf per incident.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Admin, Operator};
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::routes::peer_filter;
use crate::state::AppState;

/// Largest page of `GET /v1/held`.
const MAX_PAGE: i64 = 500;

/// Query of `GET /v1/held`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeldQuery {
    peer: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// Body of the release and discard routes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PeerBody {
    #[serde(default)]
    peer: Option<String>,
}

pub(crate) async fn list(
    _operator: Operator<Admin>,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<HeldQuery>,
) -> Result<Json<Value>, ApiError> {
    let peer = peer_filter(query.peer.as_deref())?.map(|jid| jid.to_string());
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid("invalid_limit", format!("limit is 1 to {MAX_PAGE}")));
    }
    let offset = query.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::invalid("invalid_offset", "offset is 0 or more"));
    }
    let (held, total) = state.ledger().store().held_changes(peer.as_deref(), limit, offset).await?;
    let next = (offset + limit < total).then_some(offset + limit);
    Ok(Json(json!({ "held": held, "total": total, "next_offset": next })))
}

pub(crate) async fn release(
    _operator: Operator<Admin>,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<PeerBody>,
) -> Result<Json<Value>, ApiError> {
    let peer = peer_filter(body.peer.as_deref())?;
    let applied = state.ledger().release_held(peer.as_ref(), state.env().now()).await?;
    Ok(Json(json!({
        "listed": applied.listed.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "delisted": applied.delisted.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "log_indexes": applied.leaves,
    })))
}

pub(crate) async fn discard(
    _operator: Operator<Admin>,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<PeerBody>,
) -> Result<Json<Value>, ApiError> {
    let peer = peer_filter(body.peer.as_deref())?;
    let discarded = state.ledger().discard_held(peer.as_ref(), state.env().now()).await?;
    Ok(Json(json!({ "discarded": discarded })))
}
