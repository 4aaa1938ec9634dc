//! The buddies pages (admin): requests waiting for us with the fingerprint of the key each
//! peer presented, approval with a trust level, trust changes, revocation, a new request, and
//! each buddy's delivery state; one peer's page with its keys beside those its web address
//! publishes, its standing, the weight of its reports and its recent reports. Each form calls
//! the operation its JSON route calls.

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use ostracon_store::model::Trust;
use serde::Deserialize;
use serde_json::Value;

use super::incidents::{form_encode, table_of};
use super::layout::{Section, Viewer, csrf_field, page, text};
use super::published_keys::{self, Published};
use super::{CsrfForm, SignedIn, error_page, html_response};
use crate::auth::{Admin, Submit};
use crate::error::ApiError;
use crate::routes::incidents::{ListQuery, list_incidents};
use crate::routes::peers::{
    add_peer, approve_peer, parse_jid, peer_with_delivery, revoke_peer, set_peer_trust, with_delivery,
};
use crate::routes::reputation::domain_reputation;
use crate::state::AppState;

pub(crate) async fn list(signed_in: SignedIn, State(state): State<AppState>) -> Response {
    let viewer = signed_in.viewer();
    let peers = match signed_in.operator::<Admin>() {
        Ok(_admin) => with_delivery(&state).await,
        Err(error) => Err(error),
    };
    match peers {
        Ok(peers) => html_response(StatusCode::OK, render(&viewer, &signed_in.csrf, &peers, None)),
        Err(error) => error_page(&viewer, &error),
    }
}

fn peer_page(jid: &str) -> String {
    format!("/buddies/{}", form_encode(jid))
}

/// The peer page's query: the web address to compare keys with, when the operator gave one.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct PeerQuery {
    #[serde(default)]
    published: String,
}

/// How many of a peer's reports its page shows.
const RECENT_REPORTS: u32 = 10;

pub(crate) async fn show(
    signed_in: SignedIn,
    State(state): State<AppState>,
    Path(jid): Path<String>,
    query: Result<Query<PeerQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let viewer = signed_in.viewer();
    let published_at = query.map(|Query(q)| q.published).unwrap_or_default();
    let answer = async {
        signed_in.operator::<Admin>()?;
        let jid = parse_jid(&jid)?;
        let peer = peer_with_delivery(&state, &jid).await?;
        let standing = domain_reputation(&state, &jid.to_string()).await?;
        let reports =
            ListQuery { reporter: Some(jid.to_string()), limit: Some(RECENT_REPORTS), ..ListQuery::default() };
        let reports = list_incidents(&signed_in.operator::<Submit>()?, &state, reports).await?;
        Ok::<_, ApiError>((peer, standing, reports))
    }
    .await;
    let (peer, standing, reports) = match answer {
        Ok(found) => found,
        Err(error) => return error_page(&viewer, &error),
    };
    // The fetch is the operator's own click on its own page: a GET the SameSite=Strict
    // session cookie never rides on from another site.
    let published = match published_at.trim() {
        "" => None,
        given => Some(match published_keys::document_url(given) {
            Ok(url) => published_keys::fetch(url, published_keys::FETCH_TIMEOUT).await,
            Err(error) => Err(error),
        }),
    };
    let body = peer_body(&signed_in.csrf, &peer, &standing, &reports, &published_at, published.as_ref());
    html_response(StatusCode::OK, page("Buddy", Section::Buddies, &viewer, body))
}

fn peer_body(
    csrf: &str,
    peer: &Value,
    standing: &Value,
    reports: &Value,
    published_at: &str,
    published: Option<&Result<Published, ApiError>>,
) -> Markup {
    let jid = text(&peer["jid"]);
    let delivery = &peer["delivery"];
    let trust = text(&peer["trust"]);
    let weight = &standing["consequences"]["reporter_weight"][trust.as_str()];
    let reports = reports["incidents"].as_array().map(Vec::as_slice).unwrap_or_default();
    let presented: Vec<String> =
        peer["keys"].as_array().into_iter().flatten().map(|key| text(&key["fingerprint"])).collect();
    html! {
        h1 { "Buddy " span.mono { (jid) } }
        dl.fields {
            dt { "State" } dd { (text(&peer["state"])) }
            dt { "Trust" } dd { (trust) }
            dt { "Weight of its reports" } dd {
                @if trust == "observe" { "none: an observed peer's reports are kept and shown, never listed" }
                @else { (text(weight)) " each, toward the listing threshold" }
            }
            dt { "Its standing" } dd {
                "score " (text(&standing["score"])) ", as a reporter " (text(&standing["reporter_score"]))
                @if standing["consequences"]["reports_ignored"] == true { ", " span.bad { "its reports are ignored" } }
                " (" a href=(format!("/reputation/{}", form_encode(&jid))) { "the parts of its score" } ")"
            }
            dt { "Deliveries" } dd {
                (text(&delivery["status"])) ", " (text(&delivery["pending"])) " pending, " (text(&delivery["failed"])) " given up"
                @if let Some(at) = delivery["last_delivered_at"].as_str() { ", last delivered " (at) }
                @if let Some(error) = delivery["last_error"].as_str() { br; span.hint { "last error: " (error) } }
            }
            dt { "Known since" } dd { (text(&peer["created_at"])) }
        }
        h2 { "Keys it presented over XMPP" }
        @if presented.is_empty() {
            p { "Not fetched yet." }
        } @else {
            div.table-wrap { table {
                thead { tr { th scope="col" { "Key" } th scope="col" { "Fingerprint" } th scope="col" { "Valid" } } }
                tbody {
                    @for key in peer["keys"].as_array().into_iter().flatten() {
                        tr {
                            td.mono { (text(&key["kid"])) }
                            td.mono { (text(&key["fingerprint"])) }
                            td { "from " (text(&key["valid_from"]))
                                @if let Some(until) = key["valid_until"].as_str() { " until " (until) } }
                        }
                    }
                }
            } }
        }
        h2 { "Compare with what its web address publishes" }
        form.filters method="get" action=(peer_page(&jid)) {
            div {
                label for="published" { "Its node's web address " span.hint { "for example https://ops.example.net" } }
                input #published type="url" name="published" value=(published_at) required;
            }
            div { button type="submit" { "Fetch and compare" } }
        }
        @match published {
            None => {}
            Some(Err(error)) => p.notice.bad role="alert" { (error.message) },
            Some(Ok(published)) => (comparison(&jid, &presented, peer["fingerprint"].as_str(), published)),
        }
        @if peer["state"] == "pending" {
            h2 { "Approve" }
            form method="post" action=(format!("/buddies/{jid}/approve")) {
                (csrf_field(csrf))
                label for="approve-trust" { "Trust" }
                (trust_select("approve-trust", "accept"))
                " " button type="submit" { "Approve" }
            }
        }
        h2 { "Its recent reports" }
        @if reports.is_empty() {
            p { "None yet." }
        } @else {
            (table_of(reports))
            p { a href=(format!("/incidents?reporter={}", form_encode(&jid))) { "All its reports" } }
        }
        @if peer["state"] != "revoked" {
            h2 { "Revoke" }
            form method="post" action=(format!("/buddies/{jid}/revoke")) {
                (csrf_field(csrf))
                button.danger type="submit" { "Revoke this peer" }
            }
        }
    }
}

/// The fingerprints a web address publishes beside those presented over XMPP, and whether
/// the current key is among them.
fn comparison(jid: &str, presented: &[String], current: Option<&str>, published: &Published) -> Markup {
    let same_node = published.component.as_deref().is_none_or(|component| component == jid);
    let agrees = same_node && current.is_some_and(|key| published.fingerprints.iter().any(|f| f == key));
    html! {
        @if agrees {
            p.notice.good role="status" { "The key it signs with now is the one " (published.url) " publishes." }
        } @else if !same_node {
            p.notice.bad role="alert" { (published.url) " is the node " span.mono { (published.component.as_deref().unwrap_or_default()) }
                ", not " span.mono { (jid) } "." }
        } @else {
            p.notice.bad role="alert" { "The key it presented is not one " (published.url) " publishes. Do not approve it "
                "until its operator explains why." }
        }
        div.table-wrap { table {
            caption.hint { (published.url) " names the domain " (published.domain) }
            thead { tr { th scope="col" { "Published fingerprint" } th scope="col" { "Presented over XMPP" } } }
            tbody {
                @for fingerprint in &published.fingerprints {
                    tr {
                        td.mono { (fingerprint) }
                        td { @if presented.contains(fingerprint) { "yes" } @else { "no" } }
                    }
                }
            }
        } }
    }
}

fn trust_select(id: &str, chosen: &str) -> Markup {
    html! {
        select #(id) name="trust" {
            @for name in Trust::NAMES {
                option value=(name) selected[*name == chosen] { (name) }
            }
        }
    }
}

fn render(viewer: &Viewer, csrf: &str, peers: &[Value], error: Option<&ApiError>) -> Markup {
    let in_state = |wanted: &str| peers.iter().filter(move |p| p["state"] == wanted).collect::<Vec<_>>();
    let pending = in_state("pending");
    let body = html! {
        h1 { "Buddies" }
        @if let Some(error) = error {
            p.notice.bad role="alert" { (error.message) }
        }
        h2 { "Asking to be our buddy" }
        @if pending.is_empty() {
            p { "No requests wait for you." }
        } @else {
            p { "Approve only a key whose fingerprint the peer's operator has confirmed to you another way "
                "(they read it out from " code { "ostracon key show" } "), or that its node's web address publishes: "
                "a peer's page fetches its " code { "/.well-known/ostracon" } " to compare." }
            div.table-wrap {
                table {
                    thead { tr { th scope="col" { "Peer" } th scope="col" { "Key fingerprint it presented" } th scope="col" { "Asked" } th scope="col" { "Decide" } } }
                    tbody {
                        @for peer in &pending {
                            @let jid = text(&peer["jid"]);
                            tr {
                                td.mono { a href=(peer_page(&jid)) { (jid) } }
                                td.mono { @if peer["fingerprint"].is_null() { "not fetched yet" } @else { (text(&peer["fingerprint"])) } }
                                td { (text(&peer["created_at"])) }
                                td {
                                    form method="post" action=(format!("/buddies/{jid}/approve")) {
                                        (csrf_field(csrf))
                                        label for=(format!("trust-{jid}")) { "Trust" }
                                        (trust_select(&format!("trust-{jid}"), "accept"))
                                        " " button type="submit" { "Approve" }
                                    }
                                    form method="post" action=(format!("/buddies/{jid}/revoke")) {
                                        (csrf_field(csrf))
                                        button.secondary type="submit" { "Refuse" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Buddies and requests we sent" }
        (peer_table(csrf, peers.iter().filter(|p| p["state"] != "pending").collect()))
        h2 { "Ask a node to be our buddy" }
        form.stack method="post" action="/buddies" {
            (csrf_field(csrf))
            div {
                label for="jid" { "Its component JID " span.hint { "for example incidents.example.net" } }
                input #jid type="text" name="jid" required;
            }
            div { label for="new-trust" { "Trust" } (trust_select("new-trust", "accept")) }
            div { button type="submit" { "Send the request" } }
        }
    };
    page("Buddies", Section::Buddies, viewer, body)
}

fn peer_table(csrf: &str, peers: Vec<&Value>) -> Markup {
    html! {
        @if peers.is_empty() {
            p { "None yet." }
        } @else {
            div.table-wrap {
                table {
                    thead { tr { th scope="col" { "Peer" } th scope="col" { "State" } th scope="col" { "Trust" }
                        th scope="col" { "Key fingerprint" } th scope="col" { "Deliveries" } th scope="col" { "Change" } } }
                    tbody {
                        @for peer in &peers {
                            @let jid = text(&peer["jid"]);
                            @let delivery = &peer["delivery"];
                            tr {
                                td.mono { a href=(peer_page(&jid)) { (jid) } }
                                td { (text(&peer["state"])) }
                                td { (text(&peer["trust"])) }
                                td.mono { (text(&peer["fingerprint"])) }
                                td {
                                    (text(&delivery["pending"])) " pending"
                                    @if let Some(error) = delivery["last_error"].as_str() { br; span.hint { "last error: " (error) } }
                                }
                                td {
                                    @if peer["state"] == "buddy" {
                                        form method="post" action=(format!("/buddies/{jid}/trust")) {
                                            (csrf_field(csrf))
                                            label for=(format!("trust-{jid}")) { "Trust" }
                                            (trust_select(&format!("trust-{jid}"), &text(&peer["trust"])))
                                            " " button.secondary type="submit" { "Set" }
                                        }
                                    }
                                    @if peer["state"] != "revoked" {
                                        form method="post" action=(format!("/buddies/{jid}/revoke")) {
                                            (csrf_field(csrf))
                                            button.danger type="submit" { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A form that names a trust level.
#[derive(Debug, Deserialize)]
pub(crate) struct TrustForm {
    csrf: Option<String>,
    trust: Option<String>,
    jid: Option<String>,
}

fn trust_of(form: &TrustForm) -> Result<Trust, ApiError> {
    form.trust
        .as_deref()
        .unwrap_or("accept")
        .parse()
        .map_err(|_| ApiError::invalid("invalid_trust", format!("trust is one of {}", Trust::NAMES.join(", "))))
}

/// What a buddies form asks for.
enum Change {
    Add,
    Approve(String),
    Trust(String),
    Revoke(String),
}

impl super::CarriesCsrf for TrustForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

async fn change(signed_in: &SignedIn, state: &AppState, change: Change, form: &TrustForm) -> Result<(), ApiError> {
    let admin = signed_in.operator::<Admin>()?;
    match change {
        Change::Add => {
            add_peer(&admin, state, form.jid.as_deref().unwrap_or("").trim(), trust_of(form)?).await?;
        }
        Change::Approve(jid) => {
            approve_peer(&admin, state, &parse_jid(&jid)?, trust_of(form)?).await?;
        }
        Change::Trust(jid) => {
            set_peer_trust(&admin, state, &parse_jid(&jid)?, trust_of(form)?).await?;
        }
        Change::Revoke(jid) => revoke_peer(&admin, state, &parse_jid(&jid)?).await?,
    }
    Ok(())
}

async fn answer(
    signed_in: SignedIn,
    state: AppState,
    what: Change,
    form: Result<axum::Form<TrustForm>, FormRejection>,
) -> Response {
    let form = match signed_in.checked_form(form) {
        Ok(form) => form,
        Err(error) => return error_page(&signed_in.viewer(), &error),
    };
    let viewer = signed_in.viewer();
    match change(&signed_in, &state, what, &form).await {
        Ok(()) => Redirect::to("/buddies").into_response(),
        // A refusal of the scope is a page of its own; others show beside the peers.
        Err(error) if error.status == StatusCode::FORBIDDEN => error_page(&viewer, &error),
        Err(error) => match with_delivery(&state).await {
            Ok(peers) => html_response(error.status, render(&viewer, &signed_in.csrf, &peers, Some(&error))),
            Err(_) => error_page(&viewer, &error),
        },
    }
}

pub(crate) async fn add(
    signed_in: SignedIn,
    State(state): State<AppState>,
    form: Result<axum::Form<TrustForm>, FormRejection>,
) -> Response {
    answer(signed_in, state, Change::Add, form).await
}

pub(crate) async fn approve(
    signed_in: SignedIn,
    State(state): State<AppState>,
    Path(jid): Path<String>,
    form: Result<axum::Form<TrustForm>, FormRejection>,
) -> Response {
    answer(signed_in, state, Change::Approve(jid), form).await
}

pub(crate) async fn trust(
    signed_in: SignedIn,
    State(state): State<AppState>,
    Path(jid): Path<String>,
    form: Result<axum::Form<TrustForm>, FormRejection>,
) -> Response {
    answer(signed_in, state, Change::Trust(jid), form).await
}

pub(crate) async fn revoke(
    signed_in: SignedIn,
    State(state): State<AppState>,
    Path(jid): Path<String>,
    form: Result<axum::Form<CsrfForm>, FormRejection>,
) -> Response {
    let form = form.map(|axum::Form(f)| axum::Form(TrustForm { csrf: f.csrf, trust: None, jid: None }));
    answer(signed_in, state, Change::Revoke(jid), form).await
}
