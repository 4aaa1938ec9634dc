//! Local allow and deny entries (operator routes):
//! `GET|POST|DELETE /v1/allow`, `GET|POST|DELETE /v1/deny` (`DELETE` takes `?value=`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ostracon_store::model::ListAction;
use ostracon_store::traits::BlocklistStore as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Admin, Operator};
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::routes::{offender, parse_time};
use crate::state::AppState;

/// `?value=` of the `DELETE` routes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ValueQuery {
    value: String,
}

/// Body of `POST /v1/allow`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AllowBody {
    value: String,
    #[serde(default)]
    note: String,
}

pub(crate) async fn list_allow(
    _operator: Operator<Admin>,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let entries = state.ledger().store().allow_entries().await?;
    Ok(Json(json!({ "allow": entries.iter().map(|e| json!({
        "value": e.offender.to_string(), "kind": e.offender.kind(), "note": e.note,
        "created_at": e.created_at, "log_index": e.log_index,
    })).collect::<Vec<_>>() })))
}

pub(crate) async fn add_allow(
    _operator: Operator<Admin>,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<AllowBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if body.note.chars().count() > 1024 {
        return Err(ApiError::invalid("invalid_note", "note is over 1024 characters"));
    }
    let offender = offender(&body.value)?;
    let applied = state.ledger().allow(&offender, &body.note, state.env().now()).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "value": offender.to_string(),
            "delisted": applied.delisted.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })),
    ))
}

pub(crate) async fn remove_allow(
    _operator: Operator<Admin>,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ValueQuery>,
) -> Result<StatusCode, ApiError> {
    state.ledger().disallow(&offender(&query.value)?, state.env().now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /v1/deny`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DenyBody {
    value: String,
    #[serde(default = "default_action")]
    action: ListAction,
    #[serde(default)]
    expires: Option<String>,
    #[serde(default)]
    ttl_seconds: Option<i64>,
}

fn default_action() -> ListAction {
    ListAction::Block
}

pub(crate) async fn list_deny(
    _operator: Operator<Admin>,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let entries = state.ledger().store().operator_entries().await?;
    Ok(Json(json!({ "deny": entries.iter().map(|e| json!({
        "value": e.offender.to_string(), "kind": e.offender.kind(), "action": e.action,
        "expires": e.expires_at, "first_seen": e.first_seen, "log_index": e.log_index,
    })).collect::<Vec<_>>() })))
}

pub(crate) async fn add_deny(
    _operator: Operator<Admin>,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<DenyBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let now = state.env().now();
    let expires = match (body.expires.as_deref(), body.ttl_seconds) {
        (Some(_), Some(_)) => return Err(ApiError::invalid("invalid_expiry", "give expires or ttl_seconds, not both")),
        (Some(text), None) => Some(parse_time("expires", text)?),
        (None, Some(ttl)) if ttl > 0 => Some(now.plus_secs(ttl)),
        (None, Some(_)) => return Err(ApiError::invalid("invalid_expiry", "ttl_seconds must be positive")),
        (None, None) => None,
    };
    let offender = offender(&body.value)?;
    state.ledger().deny(&offender, body.action, expires, now).await?;
    Ok((StatusCode::CREATED, Json(json!({ "value": offender.to_string(), "action": body.action, "expires": expires }))))
}

pub(crate) async fn remove_deny(
    _operator: Operator<Admin>,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ValueQuery>,
) -> Result<StatusCode, ApiError> {
    state.ledger().undeny(&offender(&query.value)?, state.env().now()).await?;
    Ok(StatusCode::NO_CONTENT)
}
