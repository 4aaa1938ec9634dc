//! Public list publication: `GET /v1/blocklist?kind=&format=&action=` (signed snapshot, ETag,
//! gzip; plain text carries only `block` unless `action=` asks for more),
//! `GET /v1/blocklist/signature?kind=&format=&action=` (the detached signature and checkpoint), and
//! `GET /v1/blocklist/changes?since=&kind=&limit=` (deltas with a client-held cursor).

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use ostracon_store::model::ListKind;
use ostracon_store::snapshot::{Actions, Format, Snapshot};
use ostracon_store::traits::BlocklistStore as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiQuery};
use crate::state::AppState;

/// Header carrying the detached signature: `keyid="…", sig="…"` (Ed25519 over the exact body).
pub const SIGNATURE_HEADER: &str = "ostracon-signature";
/// Header naming the log size the snapshot reflects.
pub const CHECKPOINT_HEADER: &str = "ostracon-checkpoint-size";
/// Header with the change-feed cursor to continue from.
pub const CURSOR_HEADER: &str = "ostracon-cursor";

/// `?kind=&format=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SnapshotQuery {
    kind: Option<String>,
    format: Option<String>,
    action: Option<String>,
}

fn parse_query(query: &SnapshotQuery) -> Result<(ListKind, Format, Actions), ApiError> {
    let list = match query.kind.as_deref().unwrap_or("ip") {
        "ip" => ListKind::Ip,
        "jid" => ListKind::Jid,
        "domain" => ListKind::Domain,
        other => {
            return Err(ApiError::bad_request("bad_kind", format!("unknown kind {other:?}; use ip, jid or domain")));
        }
    };
    let format = query.format.as_deref().unwrap_or("json");
    let format = Format::parse(format).ok_or_else(|| {
        ApiError::bad_request(
            "bad_format",
            format!("unknown format {format:?}; use json, txt, ndjson, csv, nft or ipset"),
        )
    })?;
    if format.addresses_only() && list != ListKind::Ip {
        return Err(ApiError::bad_request(
            "bad_format",
            format!("format {} carries address lists only; use kind=ip", format.as_str()),
        ));
    }
    let actions = match query.action.as_deref() {
        None => Actions::default_for(format),
        Some(text) => Actions::parse(text).ok_or_else(|| {
            ApiError::bad_request(
                "bad_action",
                format!("unknown action {text:?}; use block, quarantine, observe or all"),
            )
        })?,
    };
    Ok((list, format, actions))
}

fn signature_value(snapshot: &Snapshot) -> String {
    format!("keyid=\"{}\", sig=\"{}\"", snapshot.key_id, STANDARD.encode(snapshot.signature))
}

fn header(value: &str) -> HeaderValue {
    // Every value here is ASCII we produced (hex, base64, digits).
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

pub(crate) async fn snapshot(
    State(state): State<AppState>,
    request_headers: HeaderMap,
    ApiQuery(query): ApiQuery<SnapshotQuery>,
) -> Result<Response, ApiError> {
    let (list, format, actions) = parse_query(&query)?;
    let snapshot = state.snapshot(list, format, actions).await?;
    let not_modified = request_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == snapshot.etag || tag.trim() == "*"));
    let gzip = request_headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).is_some_and(accepts_gzip);

    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else if gzip {
        let mut response = Response::new(Body::from(snapshot.gzip.clone()));
        response.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        response
    } else {
        let mut response = Response::new(inflated(snapshot.gzip.clone()));
        response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(snapshot.body_len));
        response
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, header(&snapshot.etag));
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=10"));
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    headers.insert(SIGNATURE_HEADER, header(&signature_value(&snapshot)));
    headers.insert(CHECKPOINT_HEADER, HeaderValue::from(snapshot.checkpoint.checkpoint().size));
    headers.insert(CURSOR_HEADER, HeaderValue::from(snapshot.cursor));
    let link = format!(
        "</v1/blocklist/signature?kind={}&format={}&action={}>; rel=\"signature\"",
        list.as_str(),
        format.as_str(),
        actions.as_str()
    );
    headers.insert(header::LINK, header(&link));
    Ok(response)
}

/// A snapshot's body for a client that does not take gzip, inflated 64 KiB at a time as the
/// client reads: the node keeps only the gzip, and a hundred slow readers cost a hundred
/// small buffers, not a hundred bodies.
fn inflated(gzip: Bytes) -> Body {
    let decoder = flate2::read::GzDecoder::new(bytes::Buf::reader(gzip));
    let chunks = futures_util::stream::unfold(Some(decoder), |decoder| async move {
        let mut decoder = decoder?;
        let mut chunk = vec![0; 64 * 1024];
        match std::io::Read::read(&mut decoder, &mut chunk) {
            Ok(0) => None,
            Ok(n) => {
                chunk.truncate(n);
                Some((Ok(Bytes::from(chunk)), Some(decoder)))
            }
            Err(error) => Some((Err(error), None)),
        }
    });
    Body::from_stream(chunks)
}

/// True if an Accept-Encoding value accepts gzip (explicitly or through `*`) with a non-zero q.
pub(crate) fn accepts_gzip(accepted: &str) -> bool {
    accepted.split(',').any(|coding| {
        let mut parts = coding.split(';');
        let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let refused = parts
            .any(|p| p.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()).is_some_and(|q| q <= 0.0));
        (name == "gzip" || name == "*") && !refused
    })
}

pub(crate) async fn signature(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<SnapshotQuery>,
) -> Result<Json<Value>, ApiError> {
    let (list, format, actions) = parse_query(&query)?;
    let snapshot = state.snapshot(list, format, actions).await?;
    Ok(Json(json!({
        "kind": list,
        "format": format.as_str(),
        "action": actions.as_str(),
        "etag": snapshot.etag,
        "keyid": snapshot.key_id,
        "alg": "ed25519",
        "sig": STANDARD.encode(snapshot.signature),
        "cursor": snapshot.cursor,
        "entries": snapshot.entries,
        "checkpoint": snapshot.checkpoint.to_text(),
    })))
}

/// `?since=&kind=&limit=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangesQuery {
    since: Option<String>,
    kind: Option<String>,
    limit: Option<u32>,
}

pub(crate) async fn changes(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ChangesQuery>,
) -> Result<Json<Value>, ApiError> {
    let since: i64 = match query.since.as_deref() {
        None => 0,
        Some(text) => text.parse().ok().filter(|n: &i64| *n >= 0).ok_or_else(|| {
            ApiError::bad_request("bad_cursor", format!("since={text:?} is not a cursor (a non-negative integer)"))
        })?,
    };
    let list = match query.kind.as_deref() {
        None => None,
        Some(kind) => Some(parse_query(&SnapshotQuery { kind: Some(kind.to_owned()), format: None, action: None })?.0),
    };
    let limit = query.limit.unwrap_or(1_000).clamp(1, 10_000);
    let store = state.ledger().store();
    let (pruned, last) = store.change_feed_bounds().await?;
    if since < pruned || since > last {
        return Err(ApiError::new(
            StatusCode::GONE,
            "cursor_expired",
            format!(
                "cursor {since} is outside the retained change feed ({pruned}..={last}); \
                 fetch a new snapshot from /v1/blocklist and continue from its cursor"
            ),
        ));
    }
    // A poll with nothing new (the usual one) needs no second read.
    let changes = if since == last { Vec::new() } else { store.changes_since(since, list, limit + 1).await? };
    let more = changes.len() > limit as usize;
    let changes = &changes[..changes.len().min(limit as usize)];
    let cursor = changes.last().map_or(since, |c| c.seq);
    Ok(Json(json!({
        "changes": changes.iter().map(|c| json!({
            "seq": c.seq, "op": c.op, "kind": c.offender.kind(), "value": c.offender.to_string(),
            "action": c.action, "expires": c.expires_at, "at": c.at, "log_index": c.log_index,
        })).collect::<Vec<_>>(),
        "cursor": cursor,
        "more": more,
    })))
}

#[cfg(test)]
mod tests {
    use super::accepts_gzip;

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip("gzip"));
        assert!(accepts_gzip("br, GZIP;q=0.5"));
        assert!(accepts_gzip("*"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("br, deflate"));
        assert!(!accepts_gzip(""));
    }
}
