//! The dashboard: the node's health (database, XMPP link, log), the lists' sizes, the latest
//! decisions, the reports ignored and why, what the XMPP side refused, and what waits for a
//! quorum or for the operator. An admin sees all of it; a submit token sees its incidents.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde_json::Value;

use super::layout::{Section, page, text};
use super::plot;
use super::{SignedIn, error_page, html_response};
use crate::auth::{Admin, Submit};
use crate::error::ApiError;
use crate::routes::history::{HistoryQuery, node_history};
use crate::routes::incidents::{ListQuery, list_incidents};
use crate::routes::status::node_status;
use crate::routes::waiting::waiting_candidates;
use crate::state::AppState;

/// Rows shown in each of the dashboard's short tables.
const RECENT: u32 = 10;

pub(crate) async fn dashboard(signed_in: SignedIn, State(state): State<AppState>) -> Response {
    let viewer = signed_in.viewer();
    match render(&signed_in, &state).await {
        Ok(body) => html_response(StatusCode::OK, page("Dashboard", Section::Dashboard, &viewer, body)),
        Err(error) => error_page(&viewer, &error),
    }
}

async fn render(signed_in: &SignedIn, state: &AppState) -> Result<Markup, ApiError> {
    let submit = signed_in.operator::<Submit>()?;
    let recent = list_incidents(&submit, state, ListQuery { limit: Some(RECENT), ..ListQuery::default() }).await?;
    let ignored = ListQuery { decision: Some("ignored".to_owned()), limit: Some(RECENT), ..ListQuery::default() };
    let ignored = list_incidents(&submit, state, ignored).await?;
    let awaiting = ListQuery {
        decision: Some("pending".to_owned()),
        verb: Some("report".to_owned()),
        limit: Some(RECENT),
        ..ListQuery::default()
    };
    let awaiting = list_incidents(&submit, state, awaiting).await?;
    let requests = ListQuery {
        verb: Some("request".to_owned()),
        origin: Some("peer".to_owned()),
        limit: Some(RECENT),
        ..ListQuery::default()
    };
    let requests = list_incidents(&submit, state, requests).await?;
    let health = match signed_in.operator::<Admin>() {
        Ok(admin) => Some((node_status(&admin, state).await?, waiting_candidates(&admin, state, RECENT, 0).await?)),
        Err(_) => None,
    };
    let sizes = state.ledger().with_index(ostracon_store::index::BlocklistIndex::sizes);
    let history = node_history(&submit, state, HistoryQuery::default()).await?;
    let days = history["days"].as_array().map(Vec::as_slice).unwrap_or_default();
    Ok(html! {
        h1 { "Dashboard" }
        @if let Some((status, _)) = &health {
            (health_cards(status))
        }
        h2 { "Lists" }
        div.cards {
            @for (kind, count) in &sizes {
                div.card { div.hint { (kind) } div.value { (count) } }
            }
        }
        p { "Download them from " a href="/v1/blocklist?kind=ip&format=txt" { "the blocklist" } ", or " a href="/lookup" { "look a value up" } "." }
        div.plots {
            (plot::decisions(days))
            (plot::list_sizes(days))
        }
        h2 { "Waiting for you" }
        p.hint { "Reports that are applied only once you accept them (unsigned ones, users' XEP-0377 reports)." }
        (incident_table(&awaiting["incidents"], true))
        h2 { "Requests from other servers" }
        p.hint { "Open one to respond with what your server knows." }
        (incident_table(&requests["incidents"], false))
        h2 { "Recent decisions" }
        (incident_table(&recent["incidents"], false))
        h2 { "Reports ignored, and why" }
        (incident_table(&ignored["incidents"], true))
        @if let Some((status, waiting)) = &health {
            h2 { "Refused at the edge" }
            (refusals(&status["counters"]))
            h2 { "Waiting for a quorum" }
            (candidates_table(waiting))
            h2 { "Held by the brake" }
            p { (text(&status["held"])) " listings wait for the operator (" code { "ostracon held list" } ")." }
        }
    })
}

fn health_cards(status: &Value) -> Markup {
    let database_ok = status["database"] == "ok";
    let xmpp = text(&status["xmpp"]["state"]);
    html! {
        h2 { "Health" }
        div.cards {
            div.card {
                div.hint { "Database" }
                div.value.ok[database_ok].bad[!database_ok] { (text(&status["database"])) }
            }
            div.card {
                div.hint { "XMPP link" }
                div.value.ok[xmpp == "online"].bad[xmpp != "online"] { (xmpp) }
                @if let Some(error) = status["xmpp"]["last_error"].as_str() { div.hint { (error) } }
            }
            div.card { div.hint { "Audit log size" } div.value { (text(&status["log_size"])) } div.hint { a href="/v1/log/checkpoint" { "latest checkpoint" } } }
            div.card { div.hint { "Listed entries" } div.value { (text(&status["listed"])) } }
            div.card { div.hint { "Peers" } div.value { (status["peers"].as_array().map_or(0, Vec::len)) } }
        }
    }
}

/// The XMPP side's counters of what it refused (bad signatures, strangers, floods, ...),
/// those that are not zero.
fn refusals(counters: &Value) -> Markup {
    let counted: Vec<(&String, &Value)> = counters
        .as_object()
        .map(|c| c.iter().filter(|(_, v)| v.as_u64().is_some_and(|n| n > 0)).collect())
        .unwrap_or_default();
    html! {
        @if counted.is_empty() {
            p { "Nothing refused since the node started." }
        } @else {
            div.table-wrap {
                table {
                    thead { tr { th scope="col" { "What" } th scope="col" { "Since start" } } }
                    tbody {
                        @for (name, count) in &counted {
                            tr { td.mono { (name) } td { (text(count)) } }
                        }
                    }
                }
            }
        }
    }
}

fn incident_table(records: &Value, with_reason: bool) -> Markup {
    let records = records.as_array().cloned().unwrap_or_default();
    html! {
        @if records.is_empty() {
            p { "None." }
        } @else {
            div.table-wrap {
                table {
                    thead { tr { th scope="col" { "Received" } th scope="col" { "Incident" } th scope="col" { "From" }
                        th scope="col" { "Decision" } @if with_reason { th scope="col" { "Why" } } } }
                    tbody {
                        @for record in &records {
                            @let id = text(&record["id"]);
                            tr {
                                td { (text(&record["received_at"])) }
                                td { a.mono href=(format!("/incidents/{id}")) { (id) } }
                                td { (text(&record["incident"]["reporter"])) }
                                td { (text(&record["decision"])) }
                                @if with_reason { td { (text(&record["decision_reason"])) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn candidates_table(waiting: &Value) -> Markup {
    let candidates = waiting["candidates"].as_array().cloned().unwrap_or_default();
    html! {
        @if candidates.is_empty() {
            p { "Nothing waits for a quorum." }
        } @else {
            div.table-wrap {
                table {
                    thead { tr { th scope="col" { "Offender" } th scope="col" { "Weight" } th scope="col" { "Threshold" } } }
                    tbody {
                        @for candidate in &candidates {
                            tr {
                                td.mono { (text(&candidate["value"])) }
                                td { (text(&candidate["why"]["total_weight"])) }
                                td { (text(&candidate["why"]["threshold"])) }
                            }
                        }
                    }
                }
            }
        }
    }
}
