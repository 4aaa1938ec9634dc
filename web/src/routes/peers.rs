//! Buddies (XEP-0267), operator routes: `GET|POST /v1/peers`, `POST /v1/peers/{jid}/approve`,
//! `POST /v1/peers/{jid}/trust`, `DELETE /v1/peers/{jid}`.
//!
//! Each route is one ledger operation (`store/src/ledger/peers.rs`): the peer row, the outbox
//! rows it implies and an audit leaf in one transaction; the XMPP component (in `server`)
//! sends what was queued. Nothing is sent or approved without the operator calling one of
//! these routes.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ostracon_protocol::ids::BareJid;
use ostracon_store::model::{OutboxJob, PeerDelivery, PeerRecord, PeerState, Trust};
use ostracon_store::traits::PeerStore as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Admin, Operator};
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;

fn peer_json(peer: &PeerRecord) -> Value {
    peer_json_with(peer, None)
}

/// A peer, with how deliveries to it are going when `delivery` is given.
fn peer_json_with(peer: &PeerRecord, delivery: Option<&PeerDelivery>) -> Value {
    json!({
        "jid": peer.jid,
        "state": peer.state,
        "trust": peer.trust,
        // The key it signs with now (the one its operator reads out from `ostracon key show`);
        // `keys` also holds the retired ones still valid for old signatures.
        "fingerprint": peer.keys.iter().rev().find(|k| k.valid_until.is_none()).map(|k| k.key.fingerprint()),
        "keys": peer.keys.iter().map(|k| json!({
            "kid": k.kid, "fingerprint": k.key.fingerprint(), "valid_from": k.valid_from, "valid_until": k.valid_until,
        })).collect::<Vec<_>>(),
        "created_at": peer.created_at,
        "updated_at": peer.updated_at,
        "delivery": delivery,
    })
}

pub(crate) fn parse_jid(text: &str) -> Result<BareJid, ApiError> {
    let jid = BareJid::parse(text).map_err(|e| ApiError::invalid("invalid_jid", e.to_string()))?;
    if !jid.is_domain() {
        return Err(ApiError::invalid("invalid_jid", "a peer is a node's component JID, without a localpart"));
    }
    Ok(jid)
}

pub(crate) async fn list(_operator: Operator<Admin>, State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "peers": with_delivery(&state).await? })))
}

/// Every peer, with how deliveries to it are going (also in `GET /v1/status`).
pub(crate) async fn with_delivery(state: &AppState) -> Result<Vec<Value>, ApiError> {
    let store = state.ledger().store();
    let peers = store.peers().await?;
    let mut out = Vec::with_capacity(peers.len());
    for peer in &peers {
        let delivery = store.peer_delivery(&peer.jid.to_string()).await?;
        out.push(peer_json_with(peer, Some(&delivery)));
    }
    Ok(out)
}

/// One peer, with how deliveries to it are going.
pub(crate) async fn peer_with_delivery(state: &AppState, jid: &BareJid) -> Result<Value, ApiError> {
    let store = state.ledger().store();
    let peer = store.peer(jid).await?.ok_or_else(|| ApiError::not_found(format!("no peer {jid}")))?;
    let delivery = store.peer_delivery(&peer.jid.to_string()).await?;
    Ok(peer_json_with(&peer, Some(&delivery)))
}

/// Body of `POST /v1/peers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddPeer {
    jid: String,
    #[serde(default = "default_trust")]
    trust: Trust,
}

fn default_trust() -> Trust {
    Trust::Accept
}

/// Body of the approve and trust routes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TrustBody {
    #[serde(default)]
    trust: Option<Trust>,
}

pub(crate) async fn add(
    operator: Operator<Admin>,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<AddPeer>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    Ok((StatusCode::ACCEPTED, Json(add_peer(&operator, &state, &body.jid, body.trust).await?)))
}

/// Asks a node to be our buddy (its operator approves on their side).
pub(crate) async fn add_peer(
    _operator: &Operator<Admin>,
    state: &AppState,
    jid: &str,
    trust: Trust,
) -> Result<Value, ApiError> {
    let jid = parse_jid(jid)?;
    if Some(&jid) == state.node().component.as_ref() {
        return Err(ApiError::invalid("invalid_jid", "a node cannot be its own buddy"));
    }
    let peer = state.ledger().request_buddy(&jid, trust, state.env().now()).await?;
    Ok(peer_json(&peer))
}

pub(crate) async fn approve(
    operator: Operator<Admin>,
    State(state): State<AppState>,
    Path(jid): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let jid = parse_jid(&jid)?;
    // The body is optional: no body approves with trust `accept`.
    let body: TrustBody = if body.is_empty() {
        TrustBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid("invalid_body", e.to_string()))?
    };
    let trust = body.trust.unwrap_or(Trust::Accept);
    Ok(Json(approve_peer(&operator, &state, &jid, trust).await?))
}

/// Approves a node that asked to be our buddy, with the trust we give its reports.
pub(crate) async fn approve_peer(
    _operator: &Operator<Admin>,
    state: &AppState,
    jid: &BareJid,
    trust: Trust,
) -> Result<Value, ApiError> {
    let peer = state.ledger().approve_buddy(jid, trust, state.env().now()).await?;
    Ok(peer_json(&peer))
}

pub(crate) async fn set_trust(
    operator: Operator<Admin>,
    State(state): State<AppState>,
    Path(jid): Path<String>,
    ApiJson(body): ApiJson<TrustBody>,
) -> Result<Json<Value>, ApiError> {
    let trust = body.trust.ok_or_else(|| ApiError::invalid("invalid_body", "trust is required"))?;
    Ok(Json(set_peer_trust(&operator, &state, &parse_jid(&jid)?, trust).await?))
}

/// Changes how far we act on a buddy's reports.
pub(crate) async fn set_peer_trust(
    _operator: &Operator<Admin>,
    state: &AppState,
    jid: &BareJid,
    trust: Trust,
) -> Result<Value, ApiError> {
    let peer = state.ledger().set_trust(jid, trust, state.env().now()).await?;
    Ok(peer_json(&peer))
}

pub(crate) async fn revoke(
    operator: Operator<Admin>,
    State(state): State<AppState>,
    Path(jid): Path<String>,
) -> Result<StatusCode, ApiError> {
    revoke_peer(&operator, &state, &parse_jid(&jid)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends a buddyship (or refuses a request).
pub(crate) async fn revoke_peer(_operator: &Operator<Admin>, state: &AppState, jid: &BareJid) -> Result<(), ApiError> {
    state.ledger().revoke_buddy(jid, state.env().now()).await?;
    Ok(())
}

/// Body of `POST /v1/peers/scores/ask`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AskScore {
    subject: String,
}

/// `POST /v1/peers/scores/ask`: asks every buddy its XEP-0275 score for a subject.
pub(crate) async fn ask_scores(
    _operator: Operator<Admin>,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<AskScore>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let subject = BareJid::parse(&body.subject).map_err(|e| ApiError::invalid("invalid_jid", e.to_string()))?;
    let now = state.env().now();
    let mut asked = Vec::new();
    for peer in state.ledger().store().peers().await?.into_iter().filter(|p| p.state == PeerState::Buddy) {
        state.ledger().enqueue(&peer.jid, &OutboxJob::ScoreQuery { subject: subject.clone() }, now).await?;
        asked.push(peer.jid.to_string());
    }
    Ok((StatusCode::ACCEPTED, Json(json!({ "subject": subject, "asked": asked }))))
}

/// `?subject=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubjectQuery {
    subject: String,
}

/// `GET /v1/peers/scores?subject=`: the buddies' latest answers.
pub(crate) async fn scores(
    _operator: Operator<Admin>,
    State(state): State<AppState>,
    crate::error::ApiQuery(query): crate::error::ApiQuery<SubjectQuery>,
) -> Result<Json<Value>, ApiError> {
    let subject = BareJid::parse(&query.subject).map_err(|e| ApiError::invalid("invalid_jid", e.to_string()))?;
    let answers = state.ledger().store().peer_scores(&subject.to_string()).await?;
    Ok(Json(json!({
        "subject": subject,
        "answers": answers.iter().map(|(peer, num, at)| json!({ "peer": peer, "num": num, "received_at": at })).collect::<Vec<_>>(),
    })))
}
