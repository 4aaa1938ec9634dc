//! The buddies page (admin): requests waiting for us with the fingerprint of the key each
//! peer presented, approval with a trust level, trust changes, revocation, a new request, and
//! each buddy's delivery state. Each form calls the operation its JSON route calls.

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use ostracon_store::model::Trust;
use serde::Deserialize;
use serde_json::Value;

use super::layout::{Section, Viewer, csrf_field, page, text};
use super::{CsrfForm, SignedIn, error_page, html_response};
use crate::auth::Admin;
use crate::error::ApiError;
use crate::routes::peers::{add_peer, approve_peer, parse_jid, revoke_peer, set_peer_trust, with_delivery};
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
                "(they read it out from " code { "ostracon key show" } ", or it is in their node's " code { "/.well-known/ostracon" } ")." }
            div.table-wrap {
                table {
                    thead { tr { th scope="col" { "Peer" } th scope="col" { "Key fingerprint it presented" } th scope="col" { "Asked" } th scope="col" { "Decide" } } }
                    tbody {
                        @for peer in &pending {
                            @let jid = text(&peer["jid"]);
                            tr {
                                td.mono { (jid) }
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
                                td.mono { (jid) }
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

async fn change(signed_in: &SignedIn, state: &AppState, change: Change, form: &TrustForm) -> Result<(), ApiError> {
    signed_in.check_csrf(form.csrf.as_deref())?;
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
    let viewer = signed_in.viewer();
    let Ok(axum::Form(form)) = form else {
        return error_page(&viewer, &ApiError::bad_request("bad_form", "the form was not understood"));
    };
    match change(&signed_in, &state, what, &form).await {
        Ok(()) => Redirect::to("/buddies").into_response(),
        // A stale form is refused as such; other refusals show on the page, beside the peers.
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
