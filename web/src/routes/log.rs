//! The audit log as a transparency log: `GET /v1/log/checkpoint` (signed note),
//! `GET /v1/log/entries?start=&end=`, `GET /v1/log/proof/inclusion?index=&size=`,
//! `GET /v1/log/proof/consistency?old=&new=`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ostracon_protocol::log::record::AuditRecord;
use ostracon_store::traits::AuditLogStore as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiQuery};
use crate::state::AppState;

/// Most leaves returned by one `entries` request.
pub const MAX_ENTRIES_PER_REQUEST: u64 = 1_000;

pub(crate) async fn checkpoint(State(state): State<AppState>) -> Result<Response, ApiError> {
    state.ledger().ping().await?;
    let note = state.ledger().checkpoint()?;
    let mut response = note.to_text().into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// `?start=&end=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EntriesQuery {
    start: u64,
    end: Option<u64>,
}

pub(crate) async fn entries(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<EntriesQuery>,
) -> Result<Json<Value>, ApiError> {
    let size = state.ledger().log_size();
    let end = query.end.unwrap_or(size).min(size).min(query.start.saturating_add(MAX_ENTRIES_PER_REQUEST));
    if query.start > end {
        return Err(ApiError::bad_request("bad_range", format!("start {} is beyond the log size {size}", query.start)));
    }
    let leaves = state.ledger().store().leaves(query.start, end).await?;
    Ok(Json(json!({
        "size": size,
        "entries": leaves.iter().map(|(index, bytes, _)| json!({
            "index": index,
            "leaf": STANDARD.encode(bytes),
            "record": AuditRecord::from_leaf(bytes).ok(),
        })).collect::<Vec<_>>(),
    })))
}

/// `?index=&size=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InclusionQuery {
    index: u64,
    size: Option<u64>,
}

pub(crate) async fn inclusion(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<InclusionQuery>,
) -> Result<Json<Value>, ApiError> {
    let size = query.size.unwrap_or_else(|| state.ledger().log_size());
    let proof = state
        .ledger()
        .inclusion_proof(query.index, size)
        .map_err(|e| ApiError::bad_request("bad_proof_request", e.to_string()))?;
    Ok(Json(
        json!({ "index": query.index, "size": size, "hashes": proof.iter().map(|h| STANDARD.encode(h)).collect::<Vec<_>>() }),
    ))
}

/// `?old=&new=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConsistencyQuery {
    old: u64,
    new: Option<u64>,
}

pub(crate) async fn consistency(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ConsistencyQuery>,
) -> Result<Json<Value>, ApiError> {
    let new = query.new.unwrap_or_else(|| state.ledger().log_size());
    let proof = state
        .ledger()
        .consistency_proof(query.old, new)
        .map_err(|e| ApiError::bad_request("bad_proof_request", e.to_string()))?;
    Ok(Json(
        json!({ "old": query.old, "new": new, "hashes": proof.iter().map(|h| STANDARD.encode(h)).collect::<Vec<_>>() }),
    ))
}
