//! The CrowdSec-compatible decision API, at the paths and in the shapes the CrowdSec LAPI
//! uses, so an unmodified bouncer needs only `api_url` and `api_key` (spec/firewalls.md):
//! `GET /v1/decisions/stream?startup=` (stream-mode bouncers, each key with its own position)
//! and `GET /v1/decisions?ip=|range=` (live-mode bouncers).
//!
//! Every decision carries all six fields the bouncers dereference (`type`, `value`,
//! `duration` in Go syntax, `scenario`, `scope`, `origin`); a missing one crashes some. Only
//! our `block` entries are decisions, as `ban`: a bouncer acts on whatever type it is given.
//! Errors keep our error shape and add the LAPI's top-level `message`, which the bouncers'
//! client reads; a database outage is an error, never an empty `new`.
//! A stream answer goes gzipped to a client that accepts it, as Go's HTTP client does unasked:
//! a start-up pull of a large list is mostly repeated field names.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ostracon_protocol::ids::{Cidr, Offender, parse_ip};
use ostracon_protocol::time::Timestamp;
use ostracon_store::ledger::decisions::MAX_DECISION_SECS;
use ostracon_store::model::{EntryRecord, ListAction};
use ostracon_store::traits::BlocklistStore as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::authorize_bouncer;
use crate::error::{ApiError, ApiQuery};
use crate::routes::blocklist::accepts_gzip;
use crate::state::AppState;

/// The `origin` of every decision we give.
pub(crate) const ORIGIN: &str = "ostracon";

/// An error in our shape plus the LAPI's `{"message"}`.
pub(crate) struct LapiError(ApiError);

impl From<ApiError> for LapiError {
    fn from(error: ApiError) -> Self {
        Self(error)
    }
}

impl IntoResponse for LapiError {
    fn into_response(self) -> Response {
        let message = match self.0.status {
            StatusCode::FORBIDDEN => "access forbidden".to_owned(),
            _ => self.0.message.clone(),
        };
        self.0.respond(Some(&message))
    }
}

/// The filters both routes take, as the LAPI names them (comma-separated lists).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Filters {
    /// `ip,range` when absent, as the LAPI answers.
    scopes: Option<String>,
    origins: Option<String>,
    scenarios_containing: Option<String>,
    scenarios_not_containing: Option<String>,
}

impl Filters {
    fn keeps(&self, decision: &Decision) -> bool {
        let list = |text: &Option<String>| -> Vec<String> {
            text.as_deref()
                .unwrap_or("")
                .split(',')
                .map(|item| item.trim().to_ascii_lowercase())
                .filter(|item| !item.is_empty())
                .collect()
        };
        let scopes = list(&self.scopes);
        let scope_ok = if scopes.is_empty() {
            true
        } else {
            scopes.iter().any(|scope| *scope == decision.scope.to_ascii_lowercase())
        };
        let origins = list(&self.origins);
        let origin_ok = origins.is_empty() || origins.iter().any(|origin| origin == ORIGIN);
        let scenario = decision.scenario.to_ascii_lowercase();
        let containing = list(&self.scenarios_containing);
        let containing_ok = containing.is_empty() || containing.iter().any(|part| scenario.contains(part.as_str()));
        let not_containing_ok =
            !list(&self.scenarios_not_containing).iter().any(|part| scenario.contains(part.as_str()));
        scope_ok && origin_ok && containing_ok && not_containing_ok
    }
}

/// One decision as the LAPI gives it.
#[derive(Debug)]
struct Decision {
    id: i64,
    scope: &'static str,
    value: String,
    scenario: String,
    duration: String,
}

impl Decision {
    /// A live entry: its remaining time, capped (spec/firewalls.md, Durations).
    fn live(entry: &EntryRecord, now: Timestamp) -> Self {
        let remaining = entry.expires_at.map_or(MAX_DECISION_SECS, |until| (until.unix() - now.unix()).max(1));
        Self::new(entry, go_duration(remaining.min(MAX_DECISION_SECS)))
    }

    /// A lifted entry: expired, as the LAPI sends a deleted decision.
    fn lifted(entry: &EntryRecord) -> Self {
        Self::new(entry, "-1s".to_owned())
    }

    fn new(entry: &EntryRecord, duration: String) -> Self {
        let scope = match entry.offender {
            Offender::Cidr(_) => "Range",
            _ => "Ip",
        };
        Self {
            id: entry.id,
            scope,
            value: entry.offender.to_string(),
            scenario: format!("{ORIGIN}/{}", entry.source),
            duration,
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "origin": ORIGIN,
            "type": "ban",
            "scope": self.scope,
            "value": self.value,
            "duration": self.duration,
            "scenario": self.scenario,
        })
    }
}

/// Whole seconds as Go's `time.Duration` prints them (`167h59m59s`, `4m0s`, `30s`, `-1s`).
pub(crate) fn go_duration(seconds: i64) -> String {
    let sign = if seconds < 0 { "-" } else { "" };
    let seconds = seconds.unsigned_abs();
    let (hours, minutes, rest) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    match (hours, minutes) {
        (0, 0) => format!("{sign}{rest}s"),
        (0, _) => format!("{sign}{minutes}m{rest}s"),
        _ => format!("{sign}{hours}h{minutes}m{rest}s"),
    }
}

/// `?startup=` and the filters.
#[derive(Debug, Deserialize)]
pub(crate) struct StreamQuery {
    startup: Option<String>,
    #[serde(flatten)]
    filters: Filters,
}

pub(crate) async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<ApiQuery<StreamQuery>, ApiError>,
) -> Result<Response, LapiError> {
    // The key first, before the query is looked at.
    let bouncer = authorize_bouncer(&state, &headers).await?;
    let ApiQuery(query) = query?;
    let startup = match query.startup.as_deref() {
        None | Some("" | "false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad_request("bad_query", format!("startup={other:?}; use true or false")).into());
        }
    };
    let now = state.env().now();
    let pull = state.ledger().pull_decisions(bouncer.id, startup, now).await.map_err(ApiError::from)?;
    let render = |decisions: Vec<Decision>| -> Vec<Value> {
        decisions.iter().filter(|d| query.filters.keeps(d)).map(Decision::to_json).collect()
    };
    let new = render(pull.new.iter().map(|entry| Decision::live(entry, now)).collect());
    let deleted = render(pull.deleted.iter().map(Decision::lifted).collect());
    let body = json!({ "new": new, "deleted": deleted }).to_string().into_bytes();
    let gzip = headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).is_some_and(accepts_gzip);
    if !gzip || body.len() < GZIP_FROM_BYTES {
        return Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response());
    }
    // Compressing megabytes is CPU work that must not hold a runtime worker.
    let internal =
        || ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the node's log");
    let compressed = tokio::task::spawn_blocking(move || gzip_bytes(&body))
        .await
        .map_err(|_| internal())?
        .map_err(|_| internal())?;
    let mut response = Response::new(Body::from(compressed));
    let response_headers = response.headers_mut();
    response_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response_headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    response_headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    Ok(response)
}

/// Below this a stream answer goes as it is: gzip would save less than its own framing costs.
const GZIP_FROM_BYTES: usize = 1024;

/// A fast gzip level: the answer is made once per pull, and level 1 already removes most of
/// the repeated field names.
fn gzip_bytes(body: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 8), flate2::Compression::fast());
    encoder.write_all(body)?;
    encoder.finish()
}

/// `?ip=` or `?range=` (or `scope=ip&value=`), and the filters.
#[derive(Debug, Deserialize)]
pub(crate) struct LiveQuery {
    ip: Option<String>,
    range: Option<String>,
    scope: Option<String>,
    value: Option<String>,
    r#type: Option<String>,
    #[serde(flatten)]
    filters: Filters,
}

pub(crate) async fn live(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<ApiQuery<LiveQuery>, ApiError>,
) -> Result<Json<Value>, LapiError> {
    authorize_bouncer(&state, &headers).await?;
    let ApiQuery(query) = query?;
    let invalid = |e: ostracon_protocol::Error| ApiError::bad_request("bad_query", e.to_string());
    let by_scope = |wanted: &str| query.scope.as_deref().is_some_and(|s| s.eq_ignore_ascii_case(wanted));
    let matches = match (&query.ip, &query.range, &query.value) {
        (Some(ip), _, _) => {
            let ip = parse_ip(ip).map_err(invalid)?;
            state.ledger().with_index(|index| index.lookup_ip(ip))
        }
        (None, Some(range), _) => {
            let cidr = Cidr::parse(range).map_err(invalid)?;
            state.ledger().with_index(|index| index.lookup_cidr(&cidr))
        }
        (None, None, Some(value)) if by_scope("ip") => {
            let ip = parse_ip(value).map_err(invalid)?;
            state.ledger().with_index(|index| index.lookup_ip(ip))
        }
        (None, None, Some(value)) if by_scope("range") => {
            let cidr = Cidr::parse(value).map_err(invalid)?;
            state.ledger().with_index(|index| index.lookup_cidr(&cidr))
        }
        _ => {
            return Err(ApiError::bad_request("bad_query", "give ip=, range=, or scope=ip|range with value=").into());
        }
    };
    if query.r#type.as_deref().is_some_and(|t| !t.eq_ignore_ascii_case("ban")) {
        return Ok(Json(Value::Null));
    }
    let now = state.env().now();
    let ids: Vec<i64> = matches.iter().map(|(_, row)| row.listed.id).collect();
    let entries = state.ledger().store().entries_by_id(&ids).await.map_err(ApiError::from)?;
    let decisions: Vec<Value> = entries
        .iter()
        .filter(|e| e.active && e.action == ListAction::Block && e.expires_at.is_none_or(|until| until > now))
        .map(|entry| Decision::live(entry, now))
        .filter(|decision| query.filters.keeps(decision))
        .map(|decision| decision.to_json())
        .collect();
    // The LAPI answers `null`, not `[]`, when nothing matches; live bouncers expect that.
    Ok(Json(if decisions.is_empty() { Value::Null } else { Value::Array(decisions) }))
}

#[cfg(test)]
mod tests {
    use super::go_duration;

    #[test]
    fn durations_print_as_go_does() {
        assert_eq!(go_duration(30), "30s");
        assert_eq!(go_duration(240), "4m0s");
        assert_eq!(go_duration(4 * 3600), "4h0m0s");
        assert_eq!(go_duration(7 * 86_400 - 1), "167h59m59s");
        assert_eq!(go_duration(-1), "-1s");
    }
}
