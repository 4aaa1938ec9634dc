//! `GET /v1/status` (admin): what `ostracon status` prints. The XMPP link and why it is down,
//! the database, the list and the log, what the brake holds, each peer with its delivery
//! state and last error, and the XMPP side's refusal counters.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::auth::{Admin, Operator};
use crate::error::ApiError;
use crate::routes::peers;
use crate::state::AppState;

pub(crate) async fn status(operator: Operator<Admin>, State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(node_status(&operator, &state).await?))
}

/// The node's state, for the route, `ostracon status` and the dashboard.
pub(crate) async fn node_status(_operator: &Operator<Admin>, state: &AppState) -> Result<Value, ApiError> {
    let ledger = state.ledger();
    let database = ledger.ping().await.is_ok();
    let xmpp = state.xmpp_status();
    let (_, held) = ledger.store().held_changes(None, 1, 0).await?;
    let node = state.node();
    let counters: serde_json::Map<String, Value> =
        state.xmpp_traffic().counters.into_iter().map(|(name, _, value)| (name.to_owned(), json!(value))).collect();
    Ok(json!({
        "node": {
            "domain": node.domain,
            "component": node.component,
            "key": ledger.published_keys().last().map(|k| json!({ "kid": k.kid, "fingerprint": k.key.fingerprint() })),
        },
        "xmpp": { "state": xmpp.state, "last_error": xmpp.last_error, "warnings": xmpp.warnings },
        "database": if database { "ok" } else { "unavailable" },
        "log_size": ledger.log_size(),
        "listed": ledger.with_index(|index| index.len()),
        "held": held,
        "peers": peers::with_delivery(state).await?,
        "counters": counters,
    }))
}
