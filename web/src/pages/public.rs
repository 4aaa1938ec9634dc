//! The public lookup page, `/lookup?q=`: an IP, a CIDR, a JID or a domain, and each listing
//! that covers it explained (who reported it, each weight, the threshold, the expiry, the log
//! leaf), from the same operation as `GET /v1/lookup/{kind}/{value}`. Signed out it shows
//! what the public route shows; an admin also sees what the admin route adds.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use ostracon_protocol::ids::Offender;
use ostracon_store::model::Scope;
use serde::Deserialize;
use serde_json::Value;

use super::layout::{Section, Viewer, page, text};
use super::{MaybeSignedIn, html_response};
use crate::routes::lookup::look_up;
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct LookupQuery {
    #[serde(default)]
    q: String,
}

pub(crate) async fn lookup(
    session: MaybeSignedIn,
    State(state): State<AppState>,
    query: Result<Query<LookupQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let viewer = session.viewer();
    let asked = query.map(|Query(query)| query.q.trim().to_owned()).unwrap_or_default();
    let admin = session.0.as_ref().is_some_and(|s| s.token.scope == Scope::Admin);
    let (status, result) = if asked.is_empty() {
        (StatusCode::OK, html! {})
    } else {
        match Offender::parse(&asked) {
            Err(error) => {
                (StatusCode::UNPROCESSABLE_ENTITY, html! { p.notice.bad role="alert" { (asked) ": " (error) } })
            }
            Ok(offender) => match look_up(&state, offender.kind(), &offender.to_string(), admin).await {
                Ok(answer) => (StatusCode::OK, explained(&answer)),
                Err(error) => (error.status, html! { p.notice.bad role="alert" { (error.message) } }),
            },
        }
    };
    let body = html! {
        h1 { "Look a value up" }
        form.stack role="search" method="get" action="/lookup" {
            div {
                label for="q" { "IP address, CIDR block, JID or domain" }
                input #q type="search" name="q" value=(asked) placeholder="192.0.2.7, 198.51.100.0/24, bot@spam.example, spam.example" required;
            }
            div { button type="submit" { "Look up" } }
        }
        (result)
        (lists_section(&viewer))
    };
    html_response(status, page("Lookup", Section::Lookup, &viewer, body))
}

/// One lookup's answer, each match with its reasons.
fn explained(answer: &Value) -> Markup {
    let value = text(&answer["query"]["value"]);
    let matches = answer["matches"].as_array().cloned().unwrap_or_default();
    html! {
        section aria-labelledby="verdict" {
            @if answer["listed"] == true {
                h2 #verdict { span.bad { "Listed: " } span.mono { (value) } }
            } @else if answer["allowed"] == true {
                h2 #verdict { span.ok { "Allowed: " } span.mono { (value) } }
                p { "This node's operator allows it, so no listing applies." }
            } @else {
                h2 #verdict { span.ok { "Not listed: " } span.mono { (value) } }
            }
            @for listing in &matches {
                (one_listing(listing))
            }
            @if let Some(awaiting) = answer.get("awaiting_quorum") {
                h3 { "Evidence short of a quorum (visible to the operator only)" }
                (reasons(awaiting))
            }
        }
    }
}

fn one_listing(listing: &Value) -> Markup {
    let why = &listing["why"];
    html! {
        article.card {
            h3 { span.mono { (text(&listing["value"])) } " (" (text(&listing["kind"])) ")" }
            dl.fields {
                dt { "Action" } dd { (text(&listing["action"])) }
                dt { "Listed by" } dd { (source_text(&text(&listing["source"]))) }
                dt { "First seen" } dd { (text(&listing["first_seen"])) }
                dt { "Expires" } dd { @if listing["expires"].is_null() { "no expiry" } @else { (text(&listing["expires"])) } }
                dt { "Log leaf" } dd {
                    @if let Some(index) = listing["log_index"].as_i64() {
                        a href=(format!("/v1/log/proof/inclusion?index={index}")) { "leaf " (index) }
                    } @else { "none" }
                }
                @if let Some(score) = why.get("score") {
                    dt { "Reputation score" } dd { (text(score)) " (listed below " (text(&why["domain_block_below"])) ")" }
                }
            }
            @if why.get("reasons").is_some_and(|r| r.as_array().is_some_and(|r| !r.is_empty())) {
                (reasons(why))
            }
        }
    }
}

fn source_text(source: &str) -> &'static str {
    match source {
        "operator" => "this node's operator",
        "reputation" => "the reputation of its server",
        "incidents" => "a quorum of reports",
        _ => "this node",
    }
}

/// Each reason with its weight, the independent reporters, the sum and the threshold.
fn reasons(why: &Value) -> Markup {
    let rows = why["reasons"].as_array().cloned().unwrap_or_default();
    html! {
        div.table-wrap {
            table {
                caption { "Total weight " (text(&why["total_weight"])) " of a threshold of " (text(&why["threshold"]))
                    @if why["quorum"] == true { " (quorum reached)" } }
                thead { tr { th scope="col" { "Reporter" } th scope="col" { "Incident" } th scope="col" { "Weight" } th scope="col" { "Added" } } }
                tbody {
                    @for reason in &rows {
                        tr {
                            td { (text(&reason["issuer"])) }
                            td.mono { (text(&reason["incident"])) }
                            td { (text(&reason["weight"])) }
                            td { (text(&reason["added_at"])) }
                        }
                    }
                }
            }
        }
    }
}

/// Where the signed lists are, in every format.
fn lists_section(viewer: &Viewer) -> Markup {
    let kinds = ["ip", "cidr", "jid", "domain"];
    let formats = ["txt", "json", "csv"];
    html! {
        h2 { "The signed lists" }
        p { "Each list is signed by this node's key and logged; " code { "ostracon verify" } " checks a download." }
        div.table-wrap {
            table {
                thead { tr { th scope="col" { "Kind" } th scope="col" { "Downloads" } } }
                tbody {
                    @for kind in kinds {
                        tr {
                            td { (kind) }
                            td {
                                @for format in formats {
                                    a href=(format!("/v1/blocklist?kind={kind}&format={format}")) { (format) } " "
                                }
                                @if kind == "ip" {
                                    a href="/v1/blocklist?kind=ip&format=nft" { "nft" } " "
                                    a href="/v1/blocklist?kind=ip&format=ipset" { "ipset" }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if matches!(viewer, Viewer::SignedOut) {
            p.hint { "The audit log: " a href="/v1/log/checkpoint" { "latest checkpoint" } "." }
        }
    }
}
