//! The reputation pages (public, with the operator's forms for an admin): remote servers
//! worst first with the parts of each score, and one server's score, its parts, what it
//! changes (its reports' weight, whether they are ignored, whether its domain is listed),
//! and the override. Each calls the operation its JSON route calls.

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::layout::{Section, Viewer, csrf_field, field_error, page, text};
use super::{MaybeSignedIn, SignedIn, error_page, html_response};
use crate::auth::Admin;
use crate::error::ApiError;
use crate::routes::reputation::{
    ListQuery, OverrideBody, clear_score_override, domain_reputation, override_score, scores,
};
use crate::state::AppState;

/// Rows on one page of the list.
const PER_PAGE: i64 = 50;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListForm {
    #[serde(default)]
    order: String,
    offset: Option<i64>,
}

pub(crate) async fn list(
    session: MaybeSignedIn,
    State(state): State<AppState>,
    query: Result<Query<ListForm>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let viewer = session.viewer();
    let form = query.map(|Query(q)| q).unwrap_or_default();
    let order = if form.order == "best" { "best" } else { "worst" };
    let query = ListQuery { order: Some(order.to_owned()), limit: Some(PER_PAGE), offset: form.offset };
    let answer = match scores(&state, &query).await {
        Ok(answer) => answer,
        Err(error) => return error_page(&viewer, &error),
    };
    let rows = answer["scores"].as_array().cloned().unwrap_or_default();
    let body = html! {
        h1 { "Reputation of remote servers" }
        p { "Scores run from -100 to 100 (XEP-0275). Reports from a server whose standing as a reporter is at or below "
            (text(&answer["params"]["ignore_below"])) " are ignored; a server at or below "
            (text(&answer["params"]["domain_block_below"])) " may have its domain listed. Facts decay with a "
            (text(&answer["params"]["half_life_days"])) "-day half-life." }
        p {
            @if order == "worst" { "Worst first · " a href="/reputation?order=best" { "best first" } }
            @else { a href="/reputation?order=worst" { "worst first" } " · Best first" }
        }
        @if rows.is_empty() {
            p { "No server has a score yet." }
        } @else {
            div.table-wrap {
                table {
                    thead { tr { th scope="col" { "Server" } th scope="col" { "Score" } th scope="col" { "As a reporter" }
                        th scope="col" { "Parts" } th scope="col" { "Facts" } } }
                    tbody {
                        @for row in &rows {
                            @let domain = text(&row["domain"]);
                            tr {
                                td.mono { a href=(format!("/reputation/{domain}")) { (domain) } }
                                td { (text(&row["score"])) }
                                td { (text(&row["reporter_score"])) }
                                td { (components_inline(&row["components"])) }
                                td { (text(&row["facts"])) }
                            }
                        }
                    }
                }
            }
            @if let Some(next) = answer["next_offset"].as_i64() {
                p { a href=(format!("/reputation?order={order}&offset={next}")) { "More" } }
            }
        }
        form.filters method="get" action="/reputation/lookup" role="search" {
            div {
                label for="domain" { "A server's score" }
                input #domain type="text" name="domain" placeholder="spam.example" required;
            }
            div { button type="submit" { "Show" } }
        }
    };
    html_response(StatusCode::OK, page("Reputation", Section::Reputation, &viewer, body))
}

fn components_inline(components: &Value) -> String {
    components
        .as_object()
        .map(|parts| parts.iter().map(|(name, value)| format!("{name} {}", text(value))).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

#[derive(Debug, Deserialize)]
pub(crate) struct DomainForm {
    #[serde(default)]
    domain: String,
}

/// The list's "show one server" box, without JavaScript.
pub(crate) async fn find(query: Result<Query<DomainForm>, axum::extract::rejection::QueryRejection>) -> Response {
    let domain = query.map(|Query(q)| q.domain).unwrap_or_default();
    let domain: String =
        domain.trim().chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-')).collect();
    Redirect::to(&format!("/reputation/{domain}")).into_response()
}

pub(crate) async fn detail(
    session: MaybeSignedIn,
    State(state): State<AppState>,
    Path(domain): Path<String>,
) -> Response {
    let viewer = session.viewer();
    let csrf = session.0.as_ref().filter(|s| s.operator::<Admin>().is_ok()).map(|s| s.csrf.clone());
    match domain_reputation(&state, &domain).await {
        Ok(answer) => html_response(StatusCode::OK, render_detail(&viewer, csrf.as_deref(), &domain, &answer, None)),
        Err(error) => error_page(&viewer, &error),
    }
}

fn render_detail(
    viewer: &Viewer,
    csrf: Option<&str>,
    domain: &str,
    answer: &Value,
    error: Option<&ApiError>,
) -> Markup {
    let consequences = &answer["consequences"];
    let field_error_for = |field: &str| error.filter(|e| e.code == field).map(|e| e.message.as_str());
    let body = html! {
        h1 { "Reputation of " span.mono { (text(&answer["domain"])) } }
        @if let Some(error) = error.filter(|e| !matches!(e.code, "invalid_score" | "invalid_note")) {
            p.notice.bad role="alert" { (error.message) }
        }
        div.cards {
            div.card { div.hint { "Score" } div.value { (text(&answer["score"])) }
                @if answer["overridden"] == true { div.hint { "fixed by the operator" } } }
            div.card { div.hint { "Computed from the facts" } div.value { (text(&answer["raw"])) } div.hint { (text(&answer["facts"])) " facts" } }
            div.card { div.hint { "As a reporter" } div.value { (text(&answer["reporter_score"])) } }
        }
        h2 { "Parts of the score" }
        @if answer["components"].as_object().is_none_or(serde_json::Map::is_empty) {
            p { "No facts about this server yet." }
        } @else {
            div.table-wrap {
                table {
                    thead { tr { th scope="col" { "Part" } th scope="col" { "Contribution" } } }
                    tbody {
                        @for (name, value) in answer["components"].as_object().into_iter().flatten() {
                            tr { td { (name) } td { (text(value)) } }
                        }
                    }
                }
            }
        }
        h2 { "What it changes" }
        dl.fields {
            dt { "Weight of its reports" } dd { (text(&consequences["reporter_weight"]["accept"])) " from an accept buddy, "
                (text(&consequences["reporter_weight"]["auto-apply"])) " from an auto-apply buddy" }
            dt { "Its reports are ignored" } dd { @if consequences["reports_ignored"] == true { span.bad { "yes" } } @else { "no" } }
            dt { "Its domain is recommended for the list" } dd { @if consequences["domain_entry_recommended"] == true { span.bad { "yes" } } @else { "no" } }
        }
        @if let Some(csrf) = csrf {
            h2 { "Override" }
            @if let Some(fixed) = answer["override"].as_object() {
                p { "Fixed at " (text(&fixed.get("score").cloned().unwrap_or_default())) ": "
                    (text(&fixed.get("note").cloned().unwrap_or_default())) }
                form method="post" action=(format!("/reputation/{domain}/clear")) {
                    (csrf_field(csrf))
                    button.secondary type="submit" { "Clear the override" }
                }
            }
            form.stack method="post" action=(format!("/reputation/{domain}/override")) {
                (csrf_field(csrf))
                div {
                    label for="score" { "Score " span.hint { "-100 to 100" } }
                    input #score type="text" inputmode="numeric" name="score" required
                        aria-invalid=[field_error_for("invalid_score").map(|_| "true")]
                        aria-describedby=[field_error_for("invalid_score").map(|_| "score-error")];
                    (field_error("score", field_error_for("invalid_score")))
                }
                div {
                    label for="note" { "Why " span.hint { "kept with the override, in the log" } }
                    input #note type="text" name="note";
                    (field_error("note", field_error_for("invalid_note")))
                }
                div { button type="submit" { "Fix the score" } }
            }
        }
    };
    page("Reputation", Section::Reputation, viewer, body)
}

#[derive(Debug, Deserialize)]
pub(crate) struct OverrideForm {
    csrf: Option<String>,
    #[serde(default)]
    score: String,
    #[serde(default)]
    note: String,
}

impl super::CarriesCsrf for OverrideForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

pub(crate) async fn set_override(
    signed_in: SignedIn,
    State(state): State<AppState>,
    Path(domain): Path<String>,
    form: Result<axum::Form<OverrideForm>, FormRejection>,
) -> Response {
    let form = match signed_in.checked_form(form) {
        Ok(form) => form,
        Err(error) => return error_page(&signed_in.viewer(), &error),
    };
    let outcome = match (signed_in.operator::<Admin>(), form.score.trim().parse::<i64>()) {
        (Err(error), _) => Err(error),
        (Ok(_), Err(_)) => Err(ApiError::invalid("invalid_score", "score is an integer in [-100, 100]")),
        (Ok(admin), Ok(score)) => {
            override_score(&admin, &state, &domain, &OverrideBody { score, note: form.note.trim().to_owned() }).await
        }
    };
    after_change(&signed_in, &state, &domain, outcome).await
}

pub(crate) async fn clear_override(
    signed_in: SignedIn,
    State(state): State<AppState>,
    Path(domain): Path<String>,
    form: Result<axum::Form<super::CsrfForm>, FormRejection>,
) -> Response {
    let viewer = signed_in.viewer();
    let given = form.ok().and_then(|axum::Form(form)| form.csrf);
    if let Err(error) = signed_in.check_csrf(given.as_deref()) {
        return error_page(&viewer, &error);
    }
    let outcome = async { clear_score_override(&signed_in.operator::<Admin>()?, &state, &domain).await }.await;
    after_change(&signed_in, &state, &domain, outcome).await
}

/// Back to the server's page, or the page again with the refusal beside its field.
async fn after_change(
    signed_in: &SignedIn,
    state: &AppState,
    domain: &str,
    outcome: Result<Value, ApiError>,
) -> Response {
    let viewer = signed_in.viewer();
    match outcome {
        Ok(_) => Redirect::to(&format!("/reputation/{domain}")).into_response(),
        Err(error) => match domain_reputation(state, domain).await {
            Ok(answer) => html_response(
                error.status,
                render_detail(&viewer, Some(&signed_in.csrf), domain, &answer, Some(&error)),
            ),
            Err(_) => error_page(&viewer, &error),
        },
    }
}
