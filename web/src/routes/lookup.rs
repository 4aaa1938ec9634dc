//! Public lookups: `GET /v1/lookup/{ip|cidr|jid|domain}/{value}` (listed or not, and why) and
//! `GET /v1/lookup/hash/{prefix}` (every listed SHA-256 with a 4-8 hex digit prefix, so the
//! asker never reveals the JID it checks).
//!
//! Matching runs on the in-memory index; the database is read only for the entries that
//! matched, to explain them: who reported, each weight, the independent reporters, the sum
//! and the threshold (spec/reputation.md). With an admin token the answer also names the
//! allow entry that covers the value and the evidence still waiting for a quorum: neither is
//! a public fact (spec/transparency-log.md, Sealed leaves).

use axum::Json;
use axum::extract::{Path, State};
use ostracon_protocol::ids::{BareJid, Cidr, Domain, Offender, parse_ip};
use ostracon_store::index::EntryId;
use ostracon_store::model::{EntryReason, EntrySource};
use ostracon_store::reputation::{self, ReputationParams};
use ostracon_store::traits::BlocklistStore as _;
use serde_json::{Value, json};

use crate::auth::{Admin, Reader};
use crate::error::ApiError;
use crate::routes::weight;
use crate::state::AppState;

pub(crate) async fn lookup(
    reader: Reader<Admin>,
    State(state): State<AppState>,
    Path((kind, value)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(look_up(&state, &kind, &value, reader.is_operator()).await?))
}

/// Whether `value` of `kind` is listed and why; for the operator, also what allows it and
/// the evidence still waiting for a quorum. The JSON route and the lookup page both use it.
pub(crate) async fn look_up(state: &AppState, kind: &str, value: &str, operator: bool) -> Result<Value, ApiError> {
    if value.len() > 3 * 1024 {
        return Err(ApiError::invalid("invalid_value", "value is too long"));
    }
    let invalid = |e: ostracon_protocol::Error| ApiError::invalid("invalid_value", e.to_string());
    let (query, matches): (Offender, Vec<(Offender, EntryId)>) = match kind {
        "ip" => {
            let ip = parse_ip(value).map_err(invalid)?;
            (Offender::Ip(ip), state.ledger().with_index(|index| index.lookup_ip(ip)))
        }
        "cidr" => {
            let cidr = Cidr::parse(value).map_err(invalid)?;
            (Offender::Cidr(cidr), state.ledger().with_index(|index| index.lookup_cidr(&cidr)))
        }
        "jid" => {
            let jid = BareJid::parse(value).map_err(invalid)?;
            let matches = state.ledger().with_index(|index| index.lookup_jid(&jid));
            (Offender::from_jid(jid), matches)
        }
        "domain" => {
            let domain = Domain::parse(value).map_err(invalid)?;
            let matches = state.ledger().with_index(|index| index.lookup_domain(&domain));
            (Offender::Domain(domain), matches)
        }
        other => {
            return Err(ApiError::bad_request(
                "bad_kind",
                format!("unknown lookup kind {other:?}; use ip, cidr, jid or domain"),
            ));
        }
    };
    let allowed_by = state.ledger().allowed_by(&query);
    let allowed = allowed_by.is_some();
    let store = state.ledger().store();
    let params = &state.ledger().config().reputation;
    let mut explained = Vec::with_capacity(matches.len());
    for (offender, id) in &matches {
        let Some(entry) = store.entries_by_id(&[*id]).await?.into_iter().next() else { continue };
        let reasons = store.entry_reasons(entry.id).await?;
        let why = match entry.source {
            // The operator's own entry needs no quorum.
            EntrySource::Operator => json!({ "source": entry.source, "reasons": [], "threshold": 0.0 }),
            EntrySource::Reputation => {
                let Offender::Domain(domain) = offender else { continue };
                let subject = store.reputation_subject(domain, params).await?;
                let score = reputation::score(&subject, params, state.env().now());
                json!({
                    "source": entry.source,
                    "score": score.score,
                    "components": score.components,
                    "domain_block_below": params.domain_block_below,
                })
            }
            EntrySource::Incidents => quorum_json(entry.source, &reasons, params),
        };
        explained.push(json!({
            "value": offender.to_string(),
            "kind": offender.kind(),
            "action": entry.action,
            "source": entry.source,
            "first_seen": entry.first_seen,
            "expires": entry.expires_at,
            "listings": entry.listings,
            "log_index": entry.log_index,
            "why": why,
        }));
    }
    let mut body = json!({
        "query": { "kind": query.kind(), "value": query.to_string() },
        "listed": !explained.is_empty() && !allowed,
        "allowed": allowed,
        "matches": explained,
    });
    if operator {
        body["allowed_by"] = json!(allowed_by.map(|entry| entry.to_string()));
        // Evidence that has not (yet) made a quorum for exactly this offender.
        let candidates = store.candidate_reasons(&query).await?;
        if !candidates.is_empty() {
            body["awaiting_quorum"] = quorum_json(EntrySource::Incidents, &candidates, params);
        }
    }
    Ok(body)
}

/// The numbers behind a quorum decision: each reason with its weight, each independent
/// reporter (by issuer) with the weight it counts with, the sum and the threshold.
pub(crate) fn quorum_json(source: EntrySource, reasons: &[EntryReason], params: &ReputationParams) -> Value {
    let issuers: Vec<String> = reasons.iter().map(|r| r.incident_id.issuer().to_string()).collect();
    let decision =
        reputation::quorum(issuers.iter().map(String::as_str).zip(reasons.iter().map(|r| r.weight_milli)), params);
    json!({
        "source": source,
        "reasons": reasons.iter().map(|r| json!({
            "incident": r.incident_id, "issuer": r.incident_id.issuer(), "reporter": r.reporter,
            "weight": weight(r.weight_milli), "added_at": r.added_at,
        })).collect::<Vec<_>>(),
        "independent_reporters": decision.weights.iter()
            .map(|(voice, milli)| (voice.clone(), json!(weight(*milli))))
            .collect::<serde_json::Map<_, _>>(),
        "total_weight": weight(decision.total_milli),
        "threshold": weight(decision.threshold_milli),
        "quorum": decision.listed,
    })
}

pub(crate) async fn hash_prefix(
    State(state): State<AppState>,
    Path(prefix): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let matches = state
        .ledger()
        .with_index(|index| index.hashes_with_prefix(&prefix))
        .ok_or_else(|| ApiError::bad_request("bad_prefix", "the prefix is 4 to 8 lowercase hex digits of a SHA-256"))?;
    Ok(Json(json!({
        "prefix": prefix,
        "matches": matches.iter().map(|(hash, offender, _)| json!({ "sha256": hash, "kind": offender.kind() })).collect::<Vec<_>>(),
    })))
}
