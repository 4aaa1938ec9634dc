//! `GET /v1/reputation/{domain}` (public): a remote domain's score on the XEP-0275 scale with
//! the components behind it, computed by the function in `spec/reputation.md`.

use axum::Json;
use axum::extract::{Path, State};
use ostracon_protocol::ids::Domain;
use ostracon_store::reputation::{ReputationParams, score};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::AppState;

pub(crate) async fn domain(State(state): State<AppState>, Path(domain): Path<String>) -> Result<Json<Value>, ApiError> {
    let domain = Domain::parse(&domain).map_err(|e| ApiError::invalid("invalid_domain", e.to_string()))?;
    let subject = state.ledger().store().reputation_subject(&domain).await?;
    let params = ReputationParams::default();
    let explained = score(&subject, &params, state.env().now());
    Ok(Json(json!({
        "domain": domain,
        "score": explained.score,
        "raw": explained.raw,
        "components": explained.components,
        "overridden": explained.overridden,
        "facts": subject.facts.len(),
        "params": { "half_life_days": params.half_life_secs / 86_400, "ignore_below": params.ignore_below },
    })))
}
