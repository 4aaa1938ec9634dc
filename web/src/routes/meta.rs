//! `GET /healthz`, `GET /metrics`, `GET /openapi.json`, `GET /.well-known/ostracon`, and the
//! fallback for unknown routes.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::{AppState, NodeInfo};

/// The OpenAPI 3.1 document, kept in step with the routes by a test.
pub const OPENAPI: &str = include_str!("../../openapi.json");

pub(crate) async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let database = state.ledger().ping().await.is_ok();
    let xmpp = state.xmpp_status();
    // Lists are still served while the XMPP link is down: 200, but `degraded` with the
    // reason. Without its database the node serves nothing it can vouch for: 503.
    let code = if database { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let healthy = database && matches!(xmpp.state, "off" | "online");
    (
        code,
        Json(json!({
            "status": if healthy { "ok" } else { "degraded" },
            "database": if database { "ok" } else { "unavailable" },
            "log_size": state.ledger().log_size(),
            "listed": state.ledger().with_index(|index| index.len()),
            "xmpp": xmpp.state,
            "xmpp_error": xmpp.last_error,
        })),
    )
}

pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let gauges = [
        ("ostracon_log_size", "Leaves in the audit log.", state.ledger().log_size() as f64),
        ("ostracon_listed_entries", "Entries on the published lists.", state.ledger().with_index(|i| i.len()) as f64),
    ];
    let counters = state.xmpp_traffic();
    let mut response = state.metrics().render(&counters, &gauges).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

pub(crate) async fn openapi() -> Response {
    let mut response = OPENAPI.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The node's identity and keys, each with the fingerprint operators compare (`ostracon key
/// show` prints the same for the current key; buddies see it in `peers list`).
pub(crate) async fn well_known(State(state): State<AppState>) -> Json<Value> {
    let node: &NodeInfo = state.node();
    let mut document = serde_json::to_value(node).unwrap_or_default();
    let keys = state.ledger().published_keys();
    document["keys"] = keys
        .iter()
        .map(|key| {
            let mut published = serde_json::to_value(key).unwrap_or_default();
            published["fingerprint"] = json!(key.key.fingerprint());
            published
        })
        .collect();
    Json(document)
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method; see /openapi.json",
    )
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no_route", "no such route; see /openapi.json")
}
