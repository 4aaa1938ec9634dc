//! `GET /healthz`, `GET /metrics`, `GET /openapi.json`, `GET /.well-known/ostracon`, and the
//! fallback for unknown routes.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use ostracon_store::traits::PeerStore as _;

use crate::auth::{Metrics, Reader};
use crate::error::ApiError;
use crate::metrics::PeerFamily;
use crate::state::{AppState, NodeInfo, PeerTraffic};

/// The OpenAPI 3.1 document, kept in step with the routes by a test.
pub const OPENAPI: &str = include_str!("../../openapi.json");

pub(crate) async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let database = state.ledger().ping().await.is_ok();
    let xmpp = state.xmpp_status();
    // Lists are still served while the XMPP link is down: 200, but `degraded` with the
    // reason. Without its database the node serves nothing it can vouch for: 503.
    let code = if database { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let healthy = database && matches!(xmpp.state, "off" | "online" | "standby");
    let mut body = json!({
        "status": if healthy { "ok" } else { "degraded" },
        "database": if database { "ok" } else { "unavailable" },
        "log_size": state.ledger().log_size(),
        "listed": state.ledger().with_index(|index| index.len()),
        "xmpp": xmpp.state,
        "xmpp_error": xmpp.last_error,
        "warnings": xmpp.warnings,
    });
    if let Some(name) = state.replica()
        && database
    {
        body["replica"] = json!(name);
        body["replicas"] = replicas(&state).await.unwrap_or(Value::Null);
    }
    (code, Json(body))
}

/// Every replica that reported in the last [`REPLICA_SEEN_SECS`]: whether it holds the XMPP
/// link and how many leaves its memory is behind the database's log.
async fn replicas(state: &AppState) -> Result<Value, ApiError> {
    let position = state.ledger().position().await?;
    let now = state.env().now();
    let reports = state.ledger().store().replica_reports(now.plus_secs(-REPLICA_SEEN_SECS)).await?;
    Ok(Value::Array(
        reports
            .into_iter()
            .map(|report| {
                json!({
                    "name": report.name,
                    "holds_xmpp_link": report.holds_link,
                    "log_size": report.log_size,
                    "behind": position.database_log_size.saturating_sub(report.log_size),
                    "seen_secs_ago": (now.unix() - report.seen_at.unix()).max(0),
                    "started_at": report.started_at.to_string(),
                })
            })
            .collect(),
    ))
}

/// Replicas silent for longer are left out of `/healthz` (they report every second).
const REPLICA_SEEN_SECS: i64 = 30;

/// `GET /metrics`: public counters and gauges; with a `metrics` (or admin) token, Prometheus's
/// `authorization` setting, also the per-peer families, since who our buddies are and how
/// their deliveries go is not public.
pub(crate) async fn metrics(reader: Reader<Metrics>, State(state): State<AppState>) -> Response {
    let gauges = [
        ("ostracon_log_size", "Leaves in the audit log.", state.ledger().log_size() as f64),
        ("ostracon_listed_entries", "Entries on the published lists.", state.ledger().with_index(|i| i.len()) as f64),
    ];
    let traffic = state.xmpp_traffic();
    let peers = match reader.is_operator() {
        // The database is down: the counters still answer, the peer families wait for it.
        true => peer_families(&state, &traffic.peers).await.unwrap_or_default(),
        false => Vec::new(),
    };
    let mut response = state.metrics().render(&traffic.counters, &gauges, &peers).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

/// The per-peer families: what each peer confirmed, failed and had refused since the node
/// started, and its outbox now (depth, age of the oldest item). One indexed read per peer.
async fn peer_families(state: &AppState, tallies: &[PeerTraffic]) -> Result<Vec<PeerFamily>, ApiError> {
    let store = state.ledger().store();
    let now = state.env().now().unix();
    let mut pending = Vec::new();
    let mut oldest = Vec::new();
    for peer in store.peers().await? {
        let jid = peer.jid.to_string();
        let delivery = store.peer_delivery(&jid).await?;
        let age = delivery.oldest_pending_at.map_or(0, |at| (now - at.unix()).max(0));
        pending.push((jid.clone(), delivery.pending as f64));
        oldest.push((jid, age as f64));
    }
    let tally = |pick: fn(&PeerTraffic) -> u64| -> Vec<(String, f64)> {
        tallies.iter().map(|t| (t.peer.clone(), pick(t) as f64)).collect()
    };
    Ok(vec![
        PeerFamily {
            name: "ostracon_peer_deliveries_total",
            help: "Outbox items the peer confirmed, since the node started.",
            kind: "counter",
            samples: tally(|t| t.delivered),
        },
        PeerFamily {
            name: "ostracon_peer_delivery_failures_total",
            help: "Delivery attempts to the peer that failed (error answer or timeout; retried), since the node started.",
            kind: "counter",
            samples: tally(|t| t.failed),
        },
        PeerFamily {
            name: "ostracon_peer_refusals_total",
            help: "Stanzas from the buddy that we refused with an error, since the node started.",
            kind: "counter",
            samples: tally(|t| t.refused),
        },
        PeerFamily {
            name: "ostracon_peer_outbox_pending",
            help: "Outbox items waiting for delivery to the peer.",
            kind: "gauge",
            samples: pending,
        },
        PeerFamily {
            name: "ostracon_peer_outbox_oldest_seconds",
            help: "Age of the oldest item waiting for the peer (0 when none waits).",
            kind: "gauge",
            samples: oldest,
        },
    ])
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
