//! Ostracon's HTTP surface: the public routes consumers pull (blocklists, lookups, the audit
//! log, the node's keys) and the operator API.
//!
//! **Architecture invariant:** `web` never imports `server`. It gets what it serves through
//! [`AppState`], built by whoever runs it, so routes are tested in process without a socket.
//!
//! Every error leaves as one JSON shape, `{"error": {"code", "message"}}` (see [`ApiError`]).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ostracon_protocol::keys::PublishedKey;
use serde::Serialize;
use serde_json::json;

/// What `/.well-known/ostracon` publishes about this node.
#[derive(Clone, Debug, Serialize)]
pub struct NodeInfo {
    /// The operator's XMPP domain.
    pub domain: String,
    /// The node's component JID, once XMPP is configured.
    pub component: Option<String>,
    /// Public keys with ids and validity.
    pub keys: Vec<PublishedKey>,
}

/// Everything the routes read.
#[derive(Clone)]
pub struct AppState {
    node: Arc<NodeInfo>,
}

impl AppState {
    /// State for a node described by `node`.
    pub fn new(node: NodeInfo) -> Self {
        Self { node: Arc::new(node) }
    }
}

/// Errors the HTTP layer answers with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// No route or no such resource.
    #[error("{0}")]
    NotFound(String),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        (status, Json(json!({ "error": { "code": code, "message": self.to_string() } }))).into_response()
    }
}

/// The application's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/.well-known/ostracon", get(well_known))
        .fallback(not_found)
        .with_state(state)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn well_known(State(state): State<AppState>) -> Json<NodeInfo> {
    Json((*state.node).clone())
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".to_owned())
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use ostracon_protocol::keys::NodeKey;
    use ostracon_protocol::time::Timestamp;
    use tower::ServiceExt as _;

    use super::*;

    fn app() -> Router {
        let key = NodeKey::from_seed(&[3; 32]);
        router(AppState::new(NodeInfo {
            domain: "example.org".to_owned(),
            component: None,
            keys: vec![PublishedKey::new(key.public(), Timestamp::from_unix(1_800_000_000).unwrap())],
        }))
    }

    async fn get_json(path: &str) -> (StatusCode, serde_json::Value) {
        let response = app().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn well_known_publishes_the_signing_key() {
        let (status, body) = get_json("/.well-known/ostracon").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["domain"], "example.org");
        let key = NodeKey::from_seed(&[3; 32]).public();
        assert_eq!(body["keys"][0]["key"], key.to_base64());
        assert_eq!(body["keys"][0]["kid"], key.key_id().to_string());
    }

    #[tokio::test]
    async fn unknown_routes_get_the_json_error_shape() {
        let (status, body) = get_json("/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "not_found");
        assert!(body["error"]["message"].is_string());
    }
}
