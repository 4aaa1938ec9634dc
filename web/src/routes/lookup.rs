//! Public lookups: `GET /v1/lookup/{ip|cidr|jid|domain}/{value}` (listed or not, and why) and
//! `GET /v1/lookup/hash/{prefix}` (every listed SHA-256 with a 4-8 hex digit prefix, so the
//! asker never reveals the JID it checks).
//!
//! Matching runs on the in-memory index. Each entry that matched is explained (who reported,
//! each weight, the independent reporters, the sum and the threshold, spec/reputation.md) from
//! the reasons memory keeps beside its row (`ostracon_store::ledger::explained`), whose
//! explanation is rendered once for every entry that shares them; only reasons memory forgot
//! (after a bulk commit, or a replica's following) are read from the database, and offered
//! back. With an admin token the answer also
//! names the allow entry that covers the value and the evidence still waiting for a quorum:
//! neither is a public fact (spec/transparency-log.md, Sealed leaves).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse as _, Response};
use ostracon_protocol::ids::{BareJid, Cidr, Domain, Offender, parse_ip};
use ostracon_store::StoreError;
use ostracon_store::ledger::explained::{Indexed, Reasons};
use ostracon_store::model::{EntryReason, EntrySource, Listed};
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
) -> Result<Response, ApiError> {
    let answer = answer(&state, &kind, &value, reader.is_operator()).await?;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], answer.body()).into_response())
}

/// Whether `value` of `kind` is listed and why; for the operator, also what allows it and
/// the evidence still waiting for a quorum. The lookup page reads it as JSON.
pub(crate) async fn look_up(state: &AppState, kind: &str, value: &str, operator: bool) -> Result<Value, ApiError> {
    let body = answer(state, kind, value, operator).await?.body();
    serde_json::from_str(&body).map_err(|e| ApiError::from(StoreError::Corrupt(format!("lookup answer: {e}"))))
}

/// A lookup's answer: each match's explanation as JSON text, put together without building a
/// JSON tree.
pub(crate) struct Answer {
    query: Offender,
    allowed: bool,
    matches: Vec<String>,
    /// For the operator: `allowed_by` and, if any, `awaiting_quorum`.
    operator: Option<serde_json::Map<String, Value>>,
}

impl Answer {
    /// The JSON body: `query`, `listed`, `allowed`, `matches`, and the operator's fields.
    pub(crate) fn body(&self) -> String {
        let query = json!({ "kind": self.query.kind(), "value": self.query.to_string() });
        let listed = !self.matches.is_empty() && !self.allowed;
        let mut body = String::with_capacity(96 + self.matches.iter().map(|m| m.len() + 1).sum::<usize>());
        body.push_str(&format!("{{\"query\":{query},\"listed\":{listed},\"allowed\":{},\"matches\":[", self.allowed));
        for (n, explained) in self.matches.iter().enumerate() {
            if n > 0 {
                body.push(',');
            }
            body.push_str(explained);
        }
        body.push(']');
        for (name, value) in self.operator.iter().flatten() {
            body.push_str(&format!(",{}:{value}", Value::String(name.clone())));
        }
        body.push('}');
        body
    }
}

async fn answer(state: &AppState, kind: &str, value: &str, operator: bool) -> Result<Answer, ApiError> {
    if value.len() > 3 * 1024 {
        return Err(ApiError::invalid("invalid_value", "value is too long"));
    }
    let invalid = |e: ostracon_protocol::Error| ApiError::invalid("invalid_value", e.to_string());
    let (query, matches): (Offender, Vec<(Offender, Indexed)>) = match kind {
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
    let mut explained = Vec::with_capacity(matches.len());
    for (offender, row) in &matches {
        if let Some(text) = explanation(state, offender, row).await? {
            explained.push(text);
        }
    }
    let mut answer = Answer { query, allowed: allowed_by.is_some(), matches: explained, operator: None };
    if operator {
        let mut extra = serde_json::Map::new();
        extra.insert("allowed_by".to_owned(), json!(allowed_by.map(|entry| entry.to_string())));
        // Evidence that has not (yet) made a quorum for exactly this offender.
        let params = &state.ledger().config().reputation;
        let candidates = state.ledger().store().candidate_reasons(&answer.query).await?;
        if !candidates.is_empty() {
            extra.insert("awaiting_quorum".to_owned(), quorum_json(EntrySource::Incidents, &candidates, params));
        }
        answer.operator = Some(extra);
    }
    Ok(answer)
}

/// One listed entry explained, as JSON text, from its row and the reasons memory keeps (read
/// from the database and offered to memory if it forgot them). A reputation entry is
/// explained from the database each time (its score moves with time). `None` if the domain
/// behind a reputation entry is gone.
async fn explanation(state: &AppState, offender: &Offender, entry: &Indexed) -> Result<Option<String>, ApiError> {
    let listed = &entry.listed;
    let ledger = state.ledger();
    let params = &ledger.config().reputation;
    let render = |reasons: &[EntryReason]| quorum_json(EntrySource::Incidents, reasons, params).to_string();
    let why: Cow<'_, str> = match (listed.source, &entry.reasons) {
        (EntrySource::Incidents, Some(reasons)) => Cow::Borrowed(reasons.rendered(render)),
        (EntrySource::Incidents, None) => {
            let epoch = ledger.reasons_epoch();
            let reasons = Arc::new(Reasons::new(ledger.store().entry_reasons(listed.id).await?));
            ledger.offer_reasons(offender, listed.id, epoch, &reasons);
            Cow::Owned(reasons.rendered(render).to_owned())
        }
        // The operator's own entry needs no quorum.
        (EntrySource::Operator, _) => {
            Cow::Owned(json!({ "source": listed.source, "reasons": [], "threshold": 0.0 }).to_string())
        }
        (EntrySource::Reputation, _) => {
            let Offender::Domain(domain) = offender else { return Ok(None) };
            let subject = ledger.store().reputation_subject(domain, params).await?;
            let score = reputation::score(&subject, params, state.env().now());
            Cow::Owned(
                json!({
                    "source": listed.source,
                    "score": score.score,
                    "components": score.components,
                    "domain_block_below": params.domain_block_below,
                })
                .to_string(),
            )
        }
    };
    Ok(Some(entry_json(offender, listed, &why)))
}

/// One match as JSON, byte for byte what serde writes for the object of `value`, `kind`,
/// `action`, `source`, `first_seen`, `expires`, `listings`, `log_index` and `why` (its keys
/// in order), without building it: every listed lookup writes one.
fn entry_json(offender: &Offender, listed: &Listed, why: &str) -> String {
    let value = serde_json::to_string(&offender.to_string()).unwrap_or_default();
    let mut text = String::with_capacity(160 + value.len() + why.len());
    // Actions, sources and kinds are fixed lowercase words and times are digits and
    // punctuation: nothing to escape.
    let _ = write!(text, "{{\"action\":\"{}\",\"expires\":", listed.action.as_str());
    match listed.expires() {
        Some(expires) => {
            let _ = write!(text, "\"{expires}\"");
        }
        None => text.push_str("null"),
    }
    let _ = write!(
        text,
        ",\"first_seen\":\"{}\",\"kind\":\"{}\",\"listings\":{},\"log_index\":{},\"source\":\"{}\",\"value\":{value},\"why\":{why}}}",
        listed.first_seen(),
        offender.kind(),
        listed.listings,
        listed.log_index,
        listed.source.as_str(),
    );
    text
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

#[cfg(test)]
mod tests {
    use ostracon_protocol::time::Timestamp;
    use ostracon_store::model::ListAction;

    use super::*;

    #[test]
    fn a_match_is_written_byte_for_byte_as_serde_writes_it() {
        let at = |secs| Timestamp::from_unix(secs).unwrap();
        let offenders = ["192.0.2.1", "2001:db8::/32", "zoë\\x@bad.example", "bad.example"];
        for (n, text) in offenders.into_iter().enumerate() {
            let offender = Offender::parse(text).unwrap();
            for expires in [None, Some(at(1_900_000_000 + n as i64))] {
                let listed =
                    Listed::new(7, ListAction::Quarantine, EntrySource::Operator, at(1_700_000_000), expires, 3, 42);
                let why = r#"{"reasons":[],"source":"operator","threshold":0.0}"#;
                let serde = json!({
                    "value": offender.to_string(),
                    "kind": offender.kind(),
                    "action": listed.action,
                    "source": listed.source,
                    "first_seen": listed.first_seen(),
                    "expires": listed.expires(),
                    "listings": listed.listings,
                    "log_index": listed.log_index,
                    "why": serde_json::from_str::<Value>(why).unwrap(),
                })
                .to_string();
                assert_eq!(entry_json(&offender, &listed, why), serde);
            }
        }
    }
}
