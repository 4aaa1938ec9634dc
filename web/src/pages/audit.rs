//! The public audit page, `/audit`: the latest signed checkpoint, a browser of the log's
//! leaves, and for each leaf a check the reader's own browser runs (`assets/audit.js`, with
//! WebCrypto): the checkpoint's Ed25519 signature under a key the reader gives (filled in
//! with the key this node publishes, to be replaced by one pinned elsewhere), then the
//! leaf's inclusion proof up to the signed root. Without JavaScript the proofs are links.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use ostracon_store::traits::AuditLogStore as _;
use serde::Deserialize;

use super::layout::{Section, page};
use super::{MaybeSignedIn, asset, error_page, html_response};
use crate::error::ApiError;
use crate::state::AppState;

/// Leaves shown on one page of the browser.
const LEAVES_PER_PAGE: u64 = 20;

/// Longest excerpt of a leaf shown in the table; the whole leaf is one link away.
const LEAF_EXCERPT_CHARS: usize = 240;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuditQuery {
    /// The first leaf of the page; the newest page when absent.
    start: Option<u64>,
}

pub(crate) async fn audit(
    session: MaybeSignedIn,
    State(state): State<AppState>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let viewer = session.viewer();
    match render(&state, query.map(|Query(q)| q).unwrap_or_default()).await {
        Ok(body) => html_response(StatusCode::OK, page("Audit log", Section::Audit, &viewer, body)),
        Err(error) => error_page(&viewer, &error),
    }
}

async fn render(state: &AppState, query: AuditQuery) -> Result<Markup, ApiError> {
    let ledger = state.ledger();
    ledger.ping().await?;
    let checkpoint = ledger.checkpoint()?.to_text();
    let size = ledger.log_size();
    let start = query.start.unwrap_or_else(|| size.saturating_sub(LEAVES_PER_PAGE)).min(size);
    let end = start.saturating_add(LEAVES_PER_PAGE).min(size);
    let leaves = ledger.store().leaves(start, end).await?;
    let key = ledger.published_keys().last().map(|k| k.key.to_base64()).unwrap_or_default();
    Ok(html! {
        h1 { "Audit log" }
        p { "Every change to this node's lists and every decision is a leaf of an append-only Merkle tree (RFC 9162). "
            "The node signs checkpoints of the tree; " code { "ostracon verify" } " and this page check them." }
        h2 { "Latest checkpoint" }
        pre.mono #checkpoint { (checkpoint) }
        div {
            label for="key" { "Public key to check the signature with " span.hint { "(base64; this node publishes the one filled in at "
                a href="/.well-known/ostracon" { "/.well-known/ostracon" } "; paste one you pinned to check against it)" } }
            input #key type="text" name="key" value=(key) spellcheck="false" autocomplete="off";
        }
        h2 { "Leaves " (start) " to " (end.saturating_sub(1)) " of " (size) }
        nav aria-label="Leaf pages" {
            @if start > 0 {
                a href=(format!("/audit?start={}", start.saturating_sub(LEAVES_PER_PAGE))) { "Older leaves" } " "
            }
            @if end < size {
                a href=(format!("/audit?start={end}")) { "Newer leaves" }
            }
        }
        div.table-wrap {
            table {
                thead { tr { th scope="col" { "Leaf" } th scope="col" { "Time" } th scope="col" { "Record" } th scope="col" { "Check" } } }
                tbody {
                    @for (index, bytes, at) in leaves.iter().rev() {
                        @let record = String::from_utf8_lossy(bytes);
                        tr {
                            td { (index) }
                            td { (at) }
                            td.mono {
                                (record.chars().take(LEAF_EXCERPT_CHARS).collect::<String>())
                                @if record.chars().count() > LEAF_EXCERPT_CHARS {
                                    "… " a href=(format!("/v1/log/entries?start={index}&end={}", index + 1)) { "whole leaf" }
                                }
                            }
                            td {
                                button type="button" data-leaf=(index) hidden { "Verify in this browser" }
                                " " a href=(format!("/v1/log/proof/inclusion?index={index}&size={size}")) { "proof" }
                                p #(format!("verdict-{index}")) role="status" aria-live="polite" {}
                            }
                        }
                    }
                }
            }
        }
        script src="/static/audit.js" defer {}
    })
}

pub(crate) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("assets/audit.js"))
}
