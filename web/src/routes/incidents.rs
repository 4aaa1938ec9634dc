//! `POST /v1/incidents`, `GET /v1/incidents`, `GET /v1/incidents/{id}`,
//! `POST /v1/incidents/{id}/retract` (operator routes).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ostracon_protocol::ids::{IncidentId, Offender};
use ostracon_protocol::incident::{Action, Category, Evidence, Incident, Severity, Status};
use ostracon_protocol::limits::MAX_OFFENDERS;
use ostracon_store::model::{Decision, IncidentOrigin, IncidentRecord, OutboxJob, Verb};
use ostracon_store::traits::{IncidentFilter, IncidentStore as _};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Admin, Operator, Submit};
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::routes::{offender_list, parse_time};
use crate::state::AppState;

/// The body of `POST /v1/incidents`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubmitIncident {
    pub(crate) offenders: Vec<String>,
    pub(crate) category: Category,
    #[serde(default = "default_severity")]
    pub(crate) severity: Severity,
    #[serde(default)]
    pub(crate) description: String,
    #[serde(default)]
    pub(crate) evidence: Vec<Evidence>,
    #[serde(default)]
    pub(crate) action: Option<Action>,
    #[serde(default)]
    pub(crate) start: Option<String>,
    #[serde(default)]
    pub(crate) end: Option<String>,
    #[serde(default)]
    pub(crate) expires: Option<String>,
    #[serde(default)]
    pub(crate) ttl_seconds: Option<i64>,
    #[serde(default)]
    pub(crate) share: bool,
}

pub(crate) fn default_severity() -> Severity {
    Severity::Medium
}

pub(crate) async fn submit(
    operator: Operator<Submit>,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<SubmitIncident>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    Ok((StatusCode::CREATED, Json(submit_incident(&operator, &state, body).await?)))
}

/// Submits one of our own incidents, for the JSON route and the operator page alike.
pub(crate) async fn submit_incident(
    _operator: &Operator<Submit>,
    state: &AppState,
    body: SubmitIncident,
) -> Result<Value, ApiError> {
    if body.offenders.is_empty() {
        return Err(ApiError::invalid("invalid_offender", "an incident names at least one offender"));
    }
    if body.offenders.len() > MAX_OFFENDERS {
        return Err(ApiError::invalid("too_many_offenders", format!("at most {MAX_OFFENDERS} offenders per incident")));
    }
    let offenders: Vec<Offender> = offender_list(&body.offenders)?;
    let now = state.env().now();
    let start = body.start.as_deref().map(|t| parse_time("start", t)).transpose()?.unwrap_or(now);
    let end = body.end.as_deref().map(|t| parse_time("end", t)).transpose()?;
    let expires = match (body.expires.as_deref(), body.ttl_seconds) {
        (Some(_), Some(_)) => return Err(ApiError::invalid("invalid_expiry", "give expires or ttl_seconds, not both")),
        (Some(text), None) => Some(parse_time("expires", text)?),
        (None, Some(ttl)) if ttl > 0 => Some(now.plus_secs(ttl)),
        (None, Some(_)) => return Err(ApiError::invalid("invalid_expiry", "ttl_seconds must be positive")),
        (None, None) => None,
    };
    if expires.is_some_and(|at| at <= now) {
        return Err(ApiError::invalid("invalid_expiry", "expires must be in the future"));
    }
    let reporter = state.node().reporter();
    let incident = Incident {
        id: IncidentId::new(reporter.domain().clone(), state.env().uuid()),
        reporter,
        status: Status::New,
        category: body.category,
        severity: body.severity,
        offenders,
        start,
        end,
        reported: now,
        description: body.description,
        evidence: body.evidence,
        action: body.action,
        expires,
        related: None,
        history: Vec::new(),
    };
    incident.validate()?;
    let applied = state.ledger().submit_local(&incident, body.share, now).await?;
    let refused: Vec<Value> =
        applied.refused.iter().map(|(o, why)| json!({ "value": o.to_string(), "why": why })).collect();
    Ok(json!({
        "id": incident.id,
        "decision": Decision::Accepted,
        "listed": applied.listed.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "refused": refused,
        "log_index": applied.leaves.first(),
    }))
}

/// Query of `GET /v1/incidents`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    pub(crate) status: Option<String>,
    pub(crate) category: Option<String>,
    pub(crate) reporter: Option<String>,
    pub(crate) origin: Option<String>,
    pub(crate) decision: Option<String>,
    pub(crate) verb: Option<String>,
    pub(crate) before: Option<i64>,
    pub(crate) limit: Option<u32>,
}

/// How many of an incident's deliveries its detail shows (one per buddy it went to, and the
/// request and response rows); the outbox view pages through the rest.
const MAX_DELIVERIES_SHOWN: u32 = 200;

/// An incident as the operator routes show it, with what it does to our lists now.
async fn incident_json(state: &AppState, record: &IncidentRecord) -> Result<Value, ApiError> {
    let effect = state.ledger().store().incident_effect(&record.incident.id).await?;
    Ok(json!({
        "seq": record.seq,
        "id": record.incident.id,
        "verb": record.verb,
        "counterpart": record.counterpart,
        "origin": record.origin,
        "decision": record.decision,
        "decision_reason": record.decision_reason,
        "share": record.share,
        "received_at": record.received_at,
        "updated_at": record.updated_at,
        "log_index": record.log_index,
        "incident": record.incident,
        "provenance": record.provenance,
        "effect": effect,
    }))
}

/// To whom an incident went and when (its detail only: a list of 500 would read 500 times).
async fn deliveries_json(state: &AppState, id: &IncidentId) -> Result<Value, ApiError> {
    let (deliveries, more) = state.ledger().store().incident_deliveries(id, MAX_DELIVERIES_SHOWN).await?;
    let deliveries: Vec<Value> = deliveries
        .iter()
        .map(|item| {
            let delivered = item.state == "delivered";
            json!({
                "peer": item.peer,
                "kind": item.job.kind(),
                "state": item.state,
                "attempts": item.attempts,
                "queued_at": item.created_at,
                "delivered_at": delivered.then_some(item.next_attempt_at),
                "next_attempt_at": (item.state == "pending").then_some(item.next_attempt_at),
                "last_error": item.last_error,
            })
        })
        .collect();
    Ok(json!({ "items": deliveries, "more": more }))
}

pub(crate) async fn list(
    operator: Operator<Submit>,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(list_incidents(&operator, &state, query).await?))
}

/// A page of incidents, newest first, and where the next page starts.
pub(crate) async fn list_incidents(
    _operator: &Operator<Submit>,
    state: &AppState,
    query: ListQuery,
) -> Result<Value, ApiError> {
    let check = |field: &'static str, value: &Option<String>, names: &[&str]| -> Result<(), ApiError> {
        match value {
            Some(v) if !names.contains(&v.as_str()) => {
                Err(ApiError::bad_request("bad_filter", format!("unknown {field} {v:?}; one of {}", names.join(", "))))
            }
            _ => Ok(()),
        }
    };
    check("status", &query.status, Status::NAMES)?;
    check("category", &query.category, Category::NAMES)?;
    check("origin", &query.origin, IncidentOrigin::NAMES)?;
    check("decision", &query.decision, Decision::NAMES)?;
    check("verb", &query.verb, Verb::NAMES)?;
    let limit = query.limit.unwrap_or(50).clamp(1, 500);
    let filter = IncidentFilter {
        status: query.status,
        category: query.category,
        reporter: query.reporter,
        origin: query.origin.as_deref().and_then(|v| v.parse().ok()),
        decision: query.decision.as_deref().and_then(|v| v.parse().ok()),
        verb: query.verb.as_deref().and_then(|v| v.parse().ok()),
        before: query.before,
        limit,
    };
    let records = state.ledger().store().incidents(&filter).await?;
    let next = (records.len() == limit as usize).then(|| records.last().map(|r| r.seq)).flatten();
    let mut incidents = Vec::with_capacity(records.len());
    for record in &records {
        incidents.push(incident_json(state, record).await?);
    }
    Ok(json!({ "incidents": incidents, "next": next }))
}

fn parse_id(text: &str) -> Result<IncidentId, ApiError> {
    IncidentId::parse(text).map_err(|e| ApiError::bad_request("bad_id", e.to_string()))
}

pub(crate) async fn show(
    operator: Operator<Submit>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(show_incident(&operator, &state, &id).await?))
}

/// One incident, as the list shows each, and to whom it went.
pub(crate) async fn show_incident(_operator: &Operator<Submit>, state: &AppState, id: &str) -> Result<Value, ApiError> {
    let id = parse_id(id)?;
    let record = state
        .ledger()
        .store()
        .incident(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("incident {id} not found")))?;
    let mut answer = incident_json(state, &record).await?;
    answer["deliveries"] = deliveries_json(state, &id).await?;
    Ok(answer)
}

pub(crate) async fn retract(
    operator: Operator<Submit>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(retract_incident(&operator, &state, &id).await?))
}

/// Retracts one of our incidents: what it listed alone is delisted.
pub(crate) async fn retract_incident(
    _operator: &Operator<Submit>,
    state: &AppState,
    id: &str,
) -> Result<Value, ApiError> {
    let id = parse_id(id)?;
    let applied = state.ledger().retract(&id, state.env().now()).await?;
    Ok(json!({
        "id": id,
        "status": Status::Retracted,
        "delisted": applied.delisted.iter().map(ToString::to_string).collect::<Vec<_>>(),
    }))
}

/// `POST /v1/incidents/{id}/accept`: the operator applies a waiting incident (an unsigned
/// report or a user's XEP-0377 report) to the lists.
pub(crate) async fn accept(
    operator: Operator<Admin>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(accept_incident(&operator, &state, &id).await?))
}

/// Applies a waiting incident to the lists.
pub(crate) async fn accept_incident(
    _operator: &Operator<Admin>,
    state: &AppState,
    id: &str,
) -> Result<Value, ApiError> {
    let id = parse_id(id)?;
    let applied = state.ledger().accept_pending(&id, state.env().now()).await?;
    Ok(json!({
        "id": id,
        "decision": Decision::Accepted,
        "listed": applied.listed.iter().map(ToString::to_string).collect::<Vec<_>>(),
    }))
}

/// Body of the request and inquire routes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ToPeer {
    to: String,
}

fn peer_jid(text: &str) -> Result<ostracon_protocol::ids::BareJid, ApiError> {
    ostracon_protocol::ids::BareJid::parse(text)
        .ok()
        .filter(ostracon_protocol::ids::BareJid::is_domain)
        .ok_or_else(|| ApiError::invalid("invalid_jid", format!("{text:?} is not a node's component JID")))
}

/// `POST /v1/incidents/{id}/request`: asks the offender's home server (`to`) to act.
pub(crate) async fn request(
    _operator: Operator<Submit>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ToPeer>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = parse_id(&id)?;
    let to = peer_jid(&body.to)?;
    let record = state
        .ledger()
        .store()
        .incident(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("incident {id} not found")))?;
    if record.origin != IncidentOrigin::Local || record.verb != Verb::Report {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "rejected",
            "only this node's own reports can be sent as requests",
        ));
    }
    state.ledger().enqueue(&to, &OutboxJob::Request { incident: id.clone() }, state.env().now()).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id, "requested_of": to }))))
}

/// `POST /v1/incidents/{id}/inquire`: asks `to` for its report about `id` (XEP-0268 inquiry).
pub(crate) async fn inquire(
    _operator: Operator<Submit>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ToPeer>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = parse_id(&id)?;
    let to = peer_jid(&body.to)?;
    state.ledger().enqueue(&to, &OutboxJob::Inquiry { incident: id.clone() }, state.env().now()).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id, "inquired_of": to }))))
}

/// Body of `POST /v1/incidents/{id}/respond`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Respond {
    /// What this node found: typically the offenders' IPs, which only the home server knows.
    pub(crate) offenders: Vec<String>,
    #[serde(default = "default_response_action")]
    pub(crate) action: Action,
    #[serde(default)]
    pub(crate) note: String,
    #[serde(default)]
    pub(crate) ttl_seconds: Option<i64>,
}

pub(crate) fn default_response_action() -> Action {
    Action::BlockHost
}

/// `POST /v1/incidents/{id}/respond`: the home server confirms a request, lists what it found
/// under its own signature, and answers the requester.
pub(crate) async fn respond(
    operator: Operator<Admin>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Respond>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    Ok((StatusCode::CREATED, Json(respond_to_request(&operator, &state, &id, body).await?)))
}

/// Confirms a request from another server: lists what we found, signed, and answers it.
pub(crate) async fn respond_to_request(
    _operator: &Operator<Admin>,
    state: &AppState,
    id: &str,
    body: Respond,
) -> Result<Value, ApiError> {
    let request_id = parse_id(id)?;
    if body.offenders.is_empty() || body.offenders.len() > MAX_OFFENDERS {
        return Err(ApiError::invalid("invalid_offender", format!("a response names 1 to {MAX_OFFENDERS} offenders")));
    }
    let offenders = offender_list(&body.offenders)?;
    let request = state
        .ledger()
        .store()
        .incident(&request_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("request {request_id} not found")))?;
    let now = state.env().now();
    let expires = match body.ttl_seconds {
        Some(ttl) if ttl > 0 => Some(now.plus_secs(ttl)),
        Some(_) => return Err(ApiError::invalid("invalid_expiry", "ttl_seconds must be positive")),
        None => None,
    };
    let reporter = state.node().reporter();
    let response = Incident {
        id: IncidentId::new(reporter.domain().clone(), state.env().uuid()),
        reporter,
        status: Status::New,
        category: request.incident.category,
        severity: request.incident.severity,
        offenders,
        start: request.incident.start,
        end: request.incident.end,
        reported: now,
        description: body.note.clone(),
        evidence: Vec::new(),
        action: None,
        expires,
        related: Some(request_id.clone()),
        history: vec![ostracon_protocol::incident::HistoryItem { action: body.action, at: now, note: body.note }],
    };
    response.validate()?;
    let applied = state.ledger().respond(&request_id, &response, now).await?;
    Ok(json!({
        "id": response.id,
        "answers": request_id,
        "listed": applied.listed.iter().map(ToString::to_string).collect::<Vec<_>>(),
    }))
}
