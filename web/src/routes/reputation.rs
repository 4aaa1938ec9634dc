//! Reputation (spec/reputation.md):
//! - `GET /v1/reputation/{domain}` (public): a domain's score on the XEP-0275 scale, computed
//!   now from the facts the node holds, with its components and the consequences it has;
//! - `GET /v1/reputation?order=worst|best&limit=&offset=` (public): the stored scores, sorted
//!   and paged;
//! - `PUT|DELETE /v1/reputation/{domain}/override` (admin): the operator fixes a score;
//! - `GET /v1/policy/dry-run?threshold=` (admin): what another listing threshold would list
//!   and delist.

use axum::Json;
use axum::extract::{Path, State};
use ostracon_protocol::ids::Domain;
use ostracon_store::dry_run::DryRunItem;
use ostracon_store::facts::ScoreOrder;
use ostracon_store::reputation::{
    ReputationParams, recommends_domain_entry, reporter_score, reporter_weight, score, server_domain,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Admin, Operator};
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::routes::weight;
use crate::state::AppState;

/// Largest page of `GET /v1/reputation`.
const MAX_PAGE: i64 = 500;

fn parse_domain(domain: &str) -> Result<Domain, ApiError> {
    Domain::parse(domain).map_err(|e| ApiError::invalid("invalid_domain", e.to_string()))
}

fn params_json(params: &ReputationParams) -> Value {
    json!({
        "half_life_days": params.half_life_secs / 86_400,
        "ignore_below": params.ignore_below,
        "domain_block_below": params.domain_block_below,
        "listing_threshold": weight(params.listing_threshold_milli),
    })
}

pub(crate) async fn domain(State(state): State<AppState>, Path(domain): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(domain_reputation(&state, &domain).await?))
}

/// One domain's score now, its components and its consequences (public).
pub(crate) async fn domain_reputation(state: &AppState, domain: &str) -> Result<Value, ApiError> {
    let domain = parse_domain(domain)?;
    let params = &state.ledger().config().reputation;
    let store = state.ledger().store();
    let subject = store.reputation_subject(&domain, params).await?;
    let explained = score(&subject, params, state.env().now());
    let as_reporter = reporter_score(&subject, params, state.env().now()).score;
    let fixed = store.reputation_override(&domain).await?;
    Ok(json!({
        "domain": domain,
        "server": server_domain(domain.as_str()),
        "score": explained.score,
        "raw": explained.raw,
        "components": explained.components,
        "overridden": explained.overridden,
        "override": fixed,
        "facts": subject.facts.len(),
        "reporter_score": as_reporter,
        "consequences": {
            "reporter_weight": {
                "accept": reporter_weight(ostracon_store::model::Trust::Accept, as_reporter, params) as f64 / 1000.0,
                "auto-apply": reporter_weight(ostracon_store::model::Trust::AutoApply, as_reporter, params) as f64 / 1000.0,
            },
            "reports_ignored": as_reporter <= params.ignore_below,
            "domain_entry_recommended": recommends_domain_entry(&explained, params),
        },
        "params": params_json(params),
    }))
}

/// Query of `GET /v1/reputation`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    #[serde(default)]
    pub(crate) order: Option<String>,
    #[serde(default)]
    pub(crate) limit: Option<i64>,
    #[serde(default)]
    pub(crate) offset: Option<i64>,
}

pub(crate) async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(scores(&state, &query).await?))
}

/// A page of the stored scores, worst or best first (public).
pub(crate) async fn scores(state: &AppState, query: &ListQuery) -> Result<Value, ApiError> {
    let order = match query.order.as_deref() {
        None | Some("worst") => ScoreOrder::Worst,
        Some("best") => ScoreOrder::Best,
        Some(other) => {
            return Err(ApiError::invalid("invalid_order", format!("order is worst or best (is {other:?})")));
        }
    };
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid("invalid_limit", format!("limit is 1 to {MAX_PAGE}")));
    }
    let offset = query.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::invalid("invalid_offset", "offset is 0 or more"));
    }
    let (rows, total) = state.ledger().store().reputation_scores(order, limit, offset).await?;
    let next = (offset + limit < total).then_some(offset + limit);
    Ok(json!({
        "order": if order == ScoreOrder::Worst { "worst" } else { "best" },
        "total": total,
        "offset": offset,
        "next_offset": next,
        "scores": rows,
        "params": params_json(&state.ledger().config().reputation),
    }))
}

/// Body of `PUT /v1/reputation/{domain}/override`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OverrideBody {
    pub(crate) score: i64,
    #[serde(default)]
    pub(crate) note: String,
}

pub(crate) async fn set_override(
    operator: Operator<Admin>,
    State(state): State<AppState>,
    Path(domain): Path<String>,
    ApiJson(body): ApiJson<OverrideBody>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(override_score(&operator, &state, &domain, &body).await?))
}

/// The operator fixes a domain's score; what that lists and delists.
pub(crate) async fn override_score(
    _operator: &Operator<Admin>,
    state: &AppState,
    domain: &str,
    body: &OverrideBody,
) -> Result<Value, ApiError> {
    let domain = parse_domain(domain)?;
    if !(-100..=100).contains(&body.score) {
        return Err(ApiError::invalid("invalid_score", "score is an integer in [-100, 100]"));
    }
    if body.note.chars().count() > 1024 {
        return Err(ApiError::invalid("invalid_note", "note is over 1024 characters"));
    }
    let applied =
        state.ledger().set_reputation_override(&domain, Some((body.score, &body.note)), state.env().now()).await?;
    Ok(json!({
        "domain": domain,
        "score": body.score,
        "listed": applied.listed.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "delisted": applied.delisted.iter().map(ToString::to_string).collect::<Vec<_>>(),
    }))
}

pub(crate) async fn clear_override(
    operator: Operator<Admin>,
    State(state): State<AppState>,
    Path(domain): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(clear_score_override(&operator, &state, &domain).await?))
}

/// The computed score applies again; what that lists and delists.
pub(crate) async fn clear_score_override(
    _operator: &Operator<Admin>,
    state: &AppState,
    domain: &str,
) -> Result<Value, ApiError> {
    let domain = parse_domain(domain)?;
    let applied = state.ledger().set_reputation_override(&domain, None, state.env().now()).await?;
    Ok(json!({
        "domain": domain,
        "listed": applied.listed.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "delisted": applied.delisted.iter().map(ToString::to_string).collect::<Vec<_>>(),
    }))
}

/// Query of `GET /v1/policy/dry-run`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DryRunQuery {
    threshold: f64,
}

pub(crate) async fn dry_run(
    _operator: Operator<Admin>,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<DryRunQuery>,
) -> Result<Json<Value>, ApiError> {
    if !(query.threshold.is_finite() && (0.001..=100.0).contains(&query.threshold)) {
        return Err(ApiError::invalid("invalid_threshold", "threshold is a weight from 0.001 to 100"));
    }
    let threshold_milli = (query.threshold * 1000.0).round() as i64;
    let params = &state.ledger().config().reputation;
    let run = state.ledger().store().dry_run(params, threshold_milli, state.env().now().unix()).await?;
    // Weights in the unit every route uses (1.0 = one full reporter), not the store's thousandths.
    let items = |items: &[DryRunItem]| -> Vec<Value> {
        items
            .iter()
            .map(|item| {
                json!({
                    "kind": item.kind,
                    "value": item.value,
                    "independent_reporters": item.weights_milli.iter()
                        .map(|(voice, milli)| (voice.clone(), json!(weight(*milli))))
                        .collect::<serde_json::Map<_, _>>(),
                    "total_weight": weight(item.total_milli),
                })
            })
            .collect()
    };
    Ok(Json(json!({
        "threshold": weight(run.threshold_milli),
        "threshold_now": weight(run.threshold_now_milli),
        "would_list": items(&run.would_list),
        "would_delist": items(&run.would_delist),
        "examined": run.examined,
        "truncated": run.truncated,
    })))
}
