//! The audit log as a transparency log: `GET /v1/log/checkpoint` (signed note),
//! `GET /v1/log/entries?start=&end=`, `GET /v1/log/proof/inclusion?index=&size=`,
//! `GET /v1/log/proof/consistency?old=&new=`, and for the operator
//! `DELETE /v1/log/openings/{index}`.
//!
//! Everyone reads the same leaves. A sealed leaf shows the public only its time, its event and
//! its commitment; an admin token also gets the opening (salt and record) while it is kept.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ostracon_protocol::log::seal::LogLeaf;
use ostracon_store::StoreError;
use ostracon_store::traits::AuditLogStore as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Admin, Operator, Reader};
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
    reader: Reader<Admin>,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<EntriesQuery>,
) -> Result<Json<Value>, ApiError> {
    let size = state.ledger().log_size();
    let end = query.end.unwrap_or(size).min(size).min(query.start.saturating_add(MAX_ENTRIES_PER_REQUEST));
    if query.start > end {
        return Err(ApiError::bad_request("bad_range", format!("start {} is beyond the log size {size}", query.start)));
    }
    let store = state.ledger().store();
    let leaves = store.leaves(query.start, end).await?;
    let mut openings: std::collections::HashMap<u64, _> = if reader.is_operator() {
        store.openings(query.start, end).await?.into_iter().collect()
    } else {
        Default::default()
    };
    Ok(Json(json!({
        "size": size,
        "entries": leaves.iter().map(|(index, bytes, _)| {
            let mut entry = json!({
                "index": index,
                "leaf": STANDARD.encode(bytes),
                "record": LogLeaf::from_leaf(bytes).ok(),
            });
            if let Some(opening) = openings.remove(index) {
                entry["opening"] = json!({ "salt": STANDARD.encode(opening.salt), "record": opening.record });
            }
            entry
        }).collect::<Vec<_>>(),
    })))
}

/// `DELETE /v1/log/openings/{index}`: forgets what sealed leaf `index` said, for good.
pub(crate) async fn erase_opening(
    _operator: Operator<Admin>,
    State(state): State<AppState>,
    axum::extract::Path(index): axum::extract::Path<String>,
) -> Result<Json<Value>, ApiError> {
    let index: u64 = index
        .parse()
        .map_err(|_| ApiError::bad_request("bad_index", format!("{index:?} is not a log index (0, 1, 2, …)")))?;
    let applied = state.ledger().erase_opening(index, state.env().now()).await?;
    Ok(Json(json!({ "erased": index, "log_index": applied.leaves.first() })))
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
    let proof = state.ledger().inclusion_proof(query.index, size).await.map_err(proof_error)?;
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
    let proof = state.ledger().consistency_proof(query.old, new).await.map_err(proof_error)?;
    Ok(Json(
        json!({ "old": query.old, "new": new, "hashes": proof.iter().map(|h| STANDARD.encode(h)).collect::<Vec<_>>() }),
    ))
}

/// A proof the tree cannot give (a size or index beyond it) is the asker's error; a store
/// that cannot read the leaves a proof needs is ours.
fn proof_error(error: StoreError) -> ApiError {
    match error {
        StoreError::Protocol(e) => ApiError::bad_request("bad_proof_request", e.to_string()),
        other => ApiError::from(other),
    }
}
