//! Operator tokens (admin routes): `GET|POST /v1/tokens`, `DELETE /v1/tokens/{name}`.
//! A new token is shown once, in the creation response; only its hash is stored.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ostracon_store::model::Scope;
use ostracon_store::traits::TokenStore as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Admin, Operator, hash_token, token_from_bytes};
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;

/// Body of `POST /v1/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateToken {
    name: String,
    scope: Scope,
}

pub(crate) async fn list(_operator: Operator<Admin>, State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "tokens": state.ledger().store().tokens().await? })))
}

pub(crate) async fn create(
    _operator: Operator<Admin>,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateToken>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let valid_name = !body.name.is_empty()
        && body.name.len() <= 64
        && body.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !valid_name {
        return Err(ApiError::invalid("invalid_name", "token names are 1-64 of A-Z a-z 0-9 - _ ."));
    }
    let token = token_from_bytes(&state.env().random_bytes());
    let record =
        state.ledger().store().create_token(&body.name, body.scope, &hash_token(&token), state.env().now()).await?;
    Ok((StatusCode::CREATED, Json(json!({ "token": token, "name": record.name, "scope": record.scope }))))
}

pub(crate) async fn revoke(
    _operator: Operator<Admin>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.ledger().store().revoke_token(&name, state.env().now()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no active token named {name:?}")))
    }
}
