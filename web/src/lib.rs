//! Ostracon's HTTP surface: the public routes consumers pull (blocklists, lookups, the audit
//! log, the node's keys) and the operator API.
//!
//! **Architecture invariant:** `web` never imports `server`. It gets what it serves through
//! [`AppState`], built by whoever runs it, so routes are tested in process without a socket.
//!
//! Every error leaves as one JSON shape, `{"error": {"code", "message"}}` (see [`ApiError`]);
//! every route is rate-limited per client address and bodies are capped at [`MAX_BODY_BYTES`].

pub mod auth;
pub mod error;
pub mod metrics;
mod pages;
pub mod ratelimit;
mod routes;
pub mod serve;
pub mod state;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};

pub use error::ApiError;
pub use routes::blocklist::{CHECKPOINT_HEADER, CURSOR_HEADER, SIGNATURE_HEADER};
pub use routes::log::MAX_ENTRIES_PER_REQUEST;
pub use routes::meta::OPENAPI;
pub use state::{
    AppState, KeyRotated, KeyRotation, NodeInfo, PeerTraffic, Traffic, WebConfig, XmppHealth, XmppStatus, XmppTraffic,
};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Every route as `(method, path)`, in OpenAPI path syntax. `openapi.json` must list exactly these.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/.well-known/ostracon"),
    ("post", "/v1/incidents"),
    ("get", "/v1/incidents"),
    ("get", "/v1/incidents/{id}"),
    ("post", "/v1/incidents/{id}/retract"),
    ("post", "/v1/incidents/{id}/accept"),
    ("post", "/v1/incidents/{id}/request"),
    ("post", "/v1/incidents/{id}/inquire"),
    ("post", "/v1/incidents/{id}/respond"),
    ("get", "/v1/allow"),
    ("post", "/v1/allow"),
    ("delete", "/v1/allow"),
    ("get", "/v1/deny"),
    ("post", "/v1/deny"),
    ("delete", "/v1/deny"),
    ("get", "/v1/peers"),
    ("post", "/v1/peers"),
    ("get", "/v1/peers/scores"),
    ("post", "/v1/peers/scores/ask"),
    ("post", "/v1/peers/{jid}/approve"),
    ("post", "/v1/peers/{jid}/trust"),
    ("delete", "/v1/peers/{jid}"),
    ("get", "/v1/status"),
    ("get", "/v1/history"),
    ("post", "/v1/key/rotate"),
    ("get", "/v1/candidates"),
    ("get", "/v1/outbox"),
    ("get", "/v1/held"),
    ("post", "/v1/held/release"),
    ("post", "/v1/held/discard"),
    ("get", "/v1/tokens"),
    ("post", "/v1/tokens"),
    ("delete", "/v1/tokens/{name}"),
    ("get", "/v1/blocklist"),
    ("get", "/v1/blocklist/signature"),
    ("get", "/v1/blocklist/changes"),
    ("get", "/v1/decisions/stream"),
    ("get", "/v1/decisions"),
    ("get", "/v1/reputation"),
    ("get", "/v1/reputation/{domain}"),
    ("put", "/v1/reputation/{domain}/override"),
    ("delete", "/v1/reputation/{domain}/override"),
    ("get", "/v1/policy/dry-run"),
    ("get", "/v1/lookup/hash/{prefix}"),
    ("get", "/v1/lookup/{kind}/{value}"),
    ("get", "/v1/log/checkpoint"),
    ("get", "/v1/log/entries"),
    ("delete", "/v1/log/openings/{index}"),
    ("get", "/v1/log/proof/inclusion"),
    ("get", "/v1/log/proof/consistency"),
];

/// The application's routes.
pub fn router(state: AppState) -> Router {
    use routes::{
        blocklist, decisions, held, history, incidents, keys, lists, log, lookup, meta, peers, reputation, status,
        tokens, waiting,
    };
    Router::new()
        .route("/healthz", get(meta::healthz))
        .route("/metrics", get(meta::metrics))
        .route("/openapi.json", get(meta::openapi))
        .route("/.well-known/ostracon", get(meta::well_known))
        .route("/v1/incidents", post(incidents::submit).get(incidents::list))
        .route("/v1/incidents/{id}", get(incidents::show))
        .route("/v1/incidents/{id}/retract", post(incidents::retract))
        .route("/v1/incidents/{id}/accept", post(incidents::accept))
        .route("/v1/incidents/{id}/request", post(incidents::request))
        .route("/v1/incidents/{id}/inquire", post(incidents::inquire))
        .route("/v1/incidents/{id}/respond", post(incidents::respond))
        .route("/v1/allow", get(lists::list_allow).post(lists::add_allow).delete(lists::remove_allow))
        .route("/v1/deny", get(lists::list_deny).post(lists::add_deny).delete(lists::remove_deny))
        .route("/v1/peers", get(peers::list).post(peers::add))
        .route("/v1/status", get(status::status))
        .route("/v1/history", get(history::history))
        .route("/v1/key/rotate", post(keys::rotate))
        .route("/v1/candidates", get(waiting::candidates))
        .route("/v1/outbox", get(waiting::outbox))
        .route("/v1/held", get(held::list))
        .route("/v1/held/release", post(held::release))
        .route("/v1/held/discard", post(held::discard))
        .route("/v1/peers/scores", get(peers::scores))
        .route("/v1/peers/scores/ask", post(peers::ask_scores))
        .route("/v1/peers/{jid}/approve", post(peers::approve))
        .route("/v1/peers/{jid}/trust", post(peers::set_trust))
        .route("/v1/peers/{jid}", delete(peers::revoke))
        .route("/v1/tokens", get(tokens::list).post(tokens::create))
        .route("/v1/tokens/{name}", delete(tokens::revoke))
        .route("/v1/blocklist", get(blocklist::snapshot))
        .route("/v1/blocklist/signature", get(blocklist::signature))
        .route("/v1/blocklist/changes", get(blocklist::changes))
        .route("/v1/decisions/stream", get(decisions::stream))
        .route("/v1/decisions", get(decisions::live))
        .route("/v1/reputation", get(reputation::list))
        .route("/v1/reputation/{domain}", get(reputation::domain))
        .route("/v1/reputation/{domain}/override", put(reputation::set_override).delete(reputation::clear_override))
        .route("/v1/policy/dry-run", get(reputation::dry_run))
        .route("/v1/lookup/hash/{prefix}", get(lookup::hash_prefix))
        // `{*value}` so CIDRs (which contain '/') can be looked up too.
        .route("/v1/lookup/{kind}/{*value}", get(lookup::lookup))
        .route("/v1/log/checkpoint", get(log::checkpoint))
        .route("/v1/log/entries", get(log::entries))
        .route("/v1/log/openings/{index}", delete(log::erase_opening))
        .route("/v1/log/proof/inclusion", get(log::inclusion))
        .route("/v1/log/proof/consistency", get(log::consistency))
        .merge(pages::routes())
        .fallback(meta::not_found)
        .method_not_allowed_fallback(meta::method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), limit_and_count))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Per-client rate limit, then request counting by route template.
async fn limit_and_count(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |info| info.0.ip());
    let client = state.client_address(peer, request.headers());
    // The template, not the path: a shared string, so counting allocates nothing.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = match state.http().limiter().check(client, Instant::now()) {
        Ok(()) => next.run(request).await,
        Err(retry_after) => ApiError::rate_limited(retry_after).into_response(),
    };
    state.metrics().record(route.as_ref().map_or("unmatched", MatchedPath::as_str), response.status().as_u16());
    response
}
