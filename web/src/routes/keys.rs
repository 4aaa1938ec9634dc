//! `POST /v1/key/rotate`: the running node replaces its signing key. The old key signs an
//! announcement queued for every buddy, every signer switches at once, and a `key-rotated`
//! leaf records it; `409 key_rotation_refused` says why when it cannot (nothing changed).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::auth::{Admin, Operator};
use crate::error::ApiError;
use crate::state::{AppState, KeyRotated};

pub(crate) async fn rotate(
    _operator: Operator<Admin>,
    State(state): State<AppState>,
) -> Result<Json<KeyRotated>, ApiError> {
    let refused = |why: String| ApiError::new(StatusCode::CONFLICT, "key_rotation_refused", why);
    let rotate = state.key_rotation().ok_or_else(|| {
        refused("this node was started without its key files, so it cannot rotate its key".to_owned())
    })?;
    rotate().await.map(Json).map_err(refused)
}
