//! The incident pages: the list with its filters, the submit form (its fields carry the JSON
//! API's names), one incident's detail, and retraction. Each calls the operation the JSON
//! route calls.

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use ostracon_protocol::incident::{Category, Severity, Status};
use ostracon_protocol::limits::MAX_OFFENDERS;
use ostracon_store::model::{Decision, IncidentOrigin};
use serde::Deserialize;
use serde_json::Value;

use super::layout::{Section, Viewer, csrf_field, field_error, page, text};
use super::{CarriesCsrf, CsrfForm, SignedIn, confirmed, error_page, html_response};
use crate::auth::{Admin, Submit};
use crate::error::ApiError;
use crate::routes::incidents::{
    ListQuery, Respond, SubmitIncident, accept_incident, default_response_action, default_severity, list_incidents,
    respond_to_request, retract_incident, show_incident, submit_incident,
};
use crate::state::AppState;

/// The list's filters, as the JSON route's query names them; empty means any.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Filters {
    #[serde(default)]
    status: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    origin: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    reporter: String,
    before: Option<i64>,
}

fn given(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

pub(crate) async fn list(
    signed_in: SignedIn,
    State(state): State<AppState>,
    filters: Result<Query<Filters>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let viewer = signed_in.viewer();
    let Ok(Query(filters)) = filters else {
        return error_page(&viewer, &ApiError::bad_request("bad_filter", "the filters were not understood"));
    };
    let query = ListQuery {
        status: given(&filters.status),
        category: given(&filters.category),
        origin: given(&filters.origin),
        decision: given(&filters.decision),
        reporter: given(&filters.reporter),
        before: filters.before,
        ..ListQuery::default()
    };
    let answer = async { list_incidents(&signed_in.operator::<Submit>()?, &state, query).await }.await;
    let answer = match answer {
        Ok(answer) => answer,
        Err(error) => return error_page(&viewer, &error),
    };
    let select = |name: &'static str, label: &'static str, names: &[&str], chosen: &str| {
        html! {
            div {
                label for=(name) { (label) }
                select #(name) name=(name) {
                    option value="" selected[chosen.is_empty()] { "any" }
                    @for option in names {
                        option value=(option) selected[*option == chosen] { (option) }
                    }
                }
            }
        }
    };
    let incidents = answer["incidents"].as_array().cloned().unwrap_or_default();
    let body = html! {
        h1 { "Incidents" }
        p { a href="/incidents/new" { "Submit an incident" } }
        form.filters method="get" action="/incidents" aria-label="Filter incidents" {
            (select("status", "Status", Status::NAMES, &filters.status))
            (select("category", "Category", Category::NAMES, &filters.category))
            (select("origin", "Source", IncidentOrigin::NAMES, &filters.origin))
            (select("decision", "Decision", Decision::NAMES, &filters.decision))
            div {
                label for="reporter" { "Reporter" }
                input #reporter type="text" name="reporter" value=(filters.reporter) placeholder="example.org";
            }
            div { button type="submit" { "Filter" } }
        }
        @if incidents.is_empty() {
            p { "No incidents match." }
        } @else {
            (table_of(&incidents))
            @if let Some(next) = answer["next"].as_i64() {
                p { a href=(next_page(&filters, next)) { "Older incidents" } }
            }
        }
    };
    html_response(StatusCode::OK, page("Incidents", Section::Incidents, &viewer, body))
}

fn next_page(filters: &Filters, before: i64) -> String {
    let mut url = format!("/incidents?before={before}");
    for (name, value) in [
        ("status", &filters.status),
        ("category", &filters.category),
        ("origin", &filters.origin),
        ("decision", &filters.decision),
        ("reporter", &filters.reporter),
    ] {
        if !value.is_empty() {
            url.push_str(&format!("&{name}={}", form_encode(value)));
        }
    }
    url
}

/// Percent-encodes a query value (application/x-www-form-urlencoded).
pub(crate) fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// An incident's offenders as text (the JSON carries each as `{"kind", "value"}`).
fn offenders_of(incident: &Value) -> Vec<String> {
    incident["offenders"].as_array().into_iter().flatten().map(|offender| text(&offender["value"])).collect()
}

/// Incidents as the list shows them, newest first.
pub(crate) fn table_of(incidents: &[Value]) -> Markup {
    html! {
        div.table-wrap {
            table {
                caption.hint { "Newest first" }
                thead { tr { th scope="col" { "Received" } th scope="col" { "Incident" } th scope="col" { "Category" }
                    th scope="col" { "Severity" } th scope="col" { "Offenders" } th scope="col" { "Source" }
                    th scope="col" { "Decision" } th scope="col" { "Status" } } }
                tbody {
                    @for record in incidents {
                        (row(record))
                    }
                }
            }
        }
    }
}

fn row(record: &Value) -> Markup {
    let id = text(&record["id"]);
    let incident = &record["incident"];
    let offenders = offenders_of(incident);
    html! {
        tr {
            td { (text(&record["received_at"])) }
            td { a.mono href=(format!("/incidents/{id}")) { (id) } }
            td { (text(&incident["category"])) }
            td { (text(&incident["severity"])) }
            td.mono { (offenders.join(", ")) }
            td { (text(&record["origin"])) }
            td { (text(&record["decision"])) }
            td { (text(&incident["status"])) }
        }
    }
}

/// The submit form's fields, named as the JSON API names them.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct IncidentForm {
    csrf: Option<String>,
    #[serde(default)]
    offenders: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    description: String,
    share: Option<String>,
}

/// A textarea's non-empty lines, trimmed (offenders are one per line).
fn lines_of(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|line| !line.is_empty()).map(str::to_owned).collect()
}

impl CarriesCsrf for IncidentForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

impl CarriesCsrf for RespondForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

/// Which field an API error is about, so the page shows it beside that field.
fn field_of(error: &ApiError) -> &'static str {
    match error.code {
        "invalid_offender" | "too_many_offenders" => "offenders",
        "invalid_category" => "category",
        "invalid_severity" => "severity",
        "invalid_description" => "description",
        _ => "",
    }
}

fn form(viewer: &Viewer, csrf: &str, values: &IncidentForm, error: Option<&ApiError>) -> Markup {
    let error_for = |field: &str| error.filter(|e| field_of(e) == field).map(|e| e.message.as_str());
    let invalid = |field: &str| error_for(field).map(|_| "true");
    let described = |field: &str| error_for(field).map(|_| format!("{field}-error"));
    let severity =
        if values.severity.is_empty() { default_severity().as_str().to_owned() } else { values.severity.clone() };
    let body = html! {
        h1 { "Submit an incident" }
        @if let Some(error) = error.filter(|e| field_of(e).is_empty()) {
            p.notice.bad role="alert" { (error.message) }
        }
        form.stack method="post" action="/incidents" novalidate {
            (csrf_field(csrf))
            div {
                label for="offenders" { "Offenders " span.hint { "one per line: an IP, a CIDR, a JID or a domain; at most " (MAX_OFFENDERS) } }
                textarea #offenders name="offenders" required aria-invalid=[invalid("offenders")]
                    aria-describedby=[described("offenders")] { (values.offenders) }
                (field_error("offenders", error_for("offenders")))
            }
            div {
                label for="category" { "Category" }
                select #category name="category" required aria-invalid=[invalid("category")] aria-describedby=[described("category")] {
                    option value="" selected[values.category.is_empty()] disabled { "choose one" }
                    @for name in Category::NAMES {
                        option value=(name) selected[*name == values.category] { (name) }
                    }
                }
                (field_error("category", error_for("category")))
            }
            div {
                label for="severity" { "Severity" }
                select #severity name="severity" aria-invalid=[invalid("severity")] aria-describedby=[described("severity")] {
                    @for name in Severity::NAMES {
                        option value=(name) selected[*name == severity] { (name) }
                    }
                }
                (field_error("severity", error_for("severity")))
            }
            div {
                label for="description" { "Description " span.hint { "what happened; shared with buddies if you share it" } }
                textarea #description name="description" aria-invalid=[invalid("description")]
                    aria-describedby=[described("description")] { (values.description) }
                (field_error("description", error_for("description")))
            }
            div {
                label {
                    input type="checkbox" name="share" value="true" checked[values.share.is_some()];
                    " Share with my buddies (signed, over XMPP)"
                }
            }
            div { button type="submit" { "Submit" } }
        }
    };
    page("Submit an incident", Section::Incidents, viewer, body)
}

pub(crate) async fn new(signed_in: SignedIn) -> Response {
    html_response(StatusCode::OK, form(&signed_in.viewer(), &signed_in.csrf, &IncidentForm::default(), None))
}

pub(crate) async fn submit(
    signed_in: SignedIn,
    State(state): State<AppState>,
    values: Result<axum::Form<IncidentForm>, FormRejection>,
) -> Response {
    let values = match signed_in.checked_form(values) {
        Ok(values) => values,
        Err(error) => return error_page(&signed_in.viewer(), &error),
    };
    let viewer = signed_in.viewer();
    let refuse = |error: ApiError| html_response(error.status, form(&viewer, &signed_in.csrf, &values, Some(&error)));
    let offenders = lines_of(&values.offenders);
    let Ok(category) = values.category.parse::<Category>() else {
        return refuse(ApiError::invalid("invalid_category", format!("choose one of {}", Category::NAMES.join(", "))));
    };
    let severity = match values.severity.as_str() {
        "" => default_severity(),
        text => match text.parse::<Severity>() {
            Ok(severity) => severity,
            Err(_) => {
                return refuse(ApiError::invalid(
                    "invalid_severity",
                    format!("choose one of {}", Severity::NAMES.join(", ")),
                ));
            }
        },
    };
    let body = SubmitIncident {
        offenders,
        category,
        severity,
        description: values.description.trim().to_owned(),
        evidence: Vec::new(),
        action: None,
        start: None,
        end: None,
        expires: None,
        ttl_seconds: None,
        share: values.share.is_some(),
    };
    let answer = async { submit_incident(&signed_in.operator::<Submit>()?, &state, body).await }.await;
    match answer {
        Ok(answer) => Redirect::to(&format!("/incidents/{}", text(&answer["id"]))).into_response(),
        Err(error) => refuse(error),
    }
}

pub(crate) async fn show(signed_in: SignedIn, State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let viewer = signed_in.viewer();
    let answer = async { show_incident(&signed_in.operator::<Submit>()?, &state, &id).await }.await;
    let record = match answer {
        Ok(record) => record,
        Err(error) => return error_page(&viewer, &error),
    };
    let incident = &record["incident"];
    let offenders = offenders_of(incident);
    let ours = record["origin"] == "local";
    let retracted = incident["status"] == Status::Retracted.as_str();
    let admin = signed_in.operator::<Admin>().is_ok();
    let request = record["verb"] == "request" && record["origin"] != "local";
    let waiting = record["decision"] == "pending" && !request;
    let body = html! {
        h1 { "Incident " span.mono { (id) } }
        dl.fields {
            dt { "Status" } dd { (text(&incident["status"])) }
            dt { "Category" } dd { (text(&incident["category"])) }
            dt { "Severity" } dd { (text(&incident["severity"])) }
            dt { "Reporter" } dd { (text(&incident["reporter"])) }
            dt { "Source" } dd { (text(&record["origin"])) }
            dt { "Decision" } dd { (text(&record["decision"])) @if let Some(why) = record["decision_reason"].as_str() { " (" (why) ")" } }
            dt { "Shared with buddies" } dd { @if record["share"] == true { "yes" } @else { "no" } }
            dt { "Received" } dd { (text(&record["received_at"])) }
            dt { "Updated" } dd { (text(&record["updated_at"])) }
            dt { "Expires" } dd { @if incident["expires"].is_null() { "no expiry" } @else { (text(&incident["expires"])) } }
            dt { "Log leaf" } dd {
                @if let Some(index) = record["log_index"].as_i64() {
                    a href=(format!("/v1/log/proof/inclusion?index={index}")) { "leaf " (index) }
                } @else { "none" }
            }
            dt { "Effect now" } dd {
                (text(&record["effect"]["listed"])) " listed, " (text(&record["effect"]["waiting"])) " waiting for a quorum, "
                (text(&record["effect"]["held"])) " held by the brake"
            }
        }
        h2 { "Deliveries" }
        (deliveries(&record["deliveries"]))
        h2 { "Offenders" }
        ul {
            @for offender in &offenders {
                li { a.mono href=(format!("/lookup?q={}", form_encode(offender))) { (offender) } }
            }
        }
        @if !text(&incident["description"]).is_empty() {
            h2 { "Description" }
            p { (text(&incident["description"])) }
        }
        @if admin && waiting {
            h2 { "Waiting for you" }
            p { "This report is not applied to the lists until you accept it"
                @if record["origin"] == "user-report" { " (a user's XEP-0377 report, relayed by their server)" } "." }
            form method="post" action=(format!("/incidents/{id}/accept")) {
                (csrf_field(&signed_in.csrf))
                button type="submit" { "Accept and apply" }
            }
        }
        @if admin && request {
            h2 { "Respond to this request" }
            p { "Another server asks you to act on these offenders. Name what you found (typically the addresses only "
                "your server knows); they are listed under your signature and sent back." }
            form.stack method="post" action=(format!("/incidents/{id}/respond")) {
                (csrf_field(&signed_in.csrf))
                div {
                    label for="respond-offenders" { "What you found " span.hint { "one per line" } }
                    textarea #respond-offenders name="offenders" required {}
                }
                div {
                    label for="respond-note" { "Note" }
                    input #respond-note type="text" name="note";
                }
                div { button type="submit" { "Respond" } }
            }
        }
        @if ours && !retracted {
            h2 { "Retract" }
            p { "Retracting delists what this incident alone listed, and tells the buddies it was shared with." }
            form method="post" action=(format!("/incidents/{id}/retract")) {
                (csrf_field(&signed_in.csrf))
                button.danger type="submit" { "Retract this incident" }
            }
        }
    };
    html_response(StatusCode::OK, page("Incident", Section::Incidents, &viewer, body))
}

/// To whom the incident went and when, as the outbox recorded it.
fn deliveries(deliveries: &Value) -> Markup {
    let items = deliveries["items"].as_array().map(Vec::as_slice).unwrap_or_default();
    html! {
        @if items.is_empty() {
            p { "Not sent to any server." }
        } @else {
            div.table-wrap { table {
                thead { tr { th scope="col" { "Server" } th scope="col" { "What" } th scope="col" { "State" }
                    th scope="col" { "Queued" } th scope="col" { "Delivered" } th scope="col" { "Attempts" } } }
                tbody {
                    @for item in items {
                        tr {
                            td.mono { (text(&item["peer"])) }
                            td { (text(&item["kind"])) }
                            td {
                                (text(&item["state"]))
                                @if let Some(error) = item["last_error"].as_str() { br; span.hint { (error) } }
                                @if let Some(next) = item["next_attempt_at"].as_str() { br; span.hint { "next try " (next) } }
                            }
                            td { (text(&item["queued_at"])) }
                            td { @if item["delivered_at"].is_null() { "not yet" } @else { (text(&item["delivered_at"])) } }
                            td { (text(&item["attempts"])) }
                        }
                    }
                }
            } }
            @if deliveries["more"] == true {
                p.hint { "More deliveries than shown; " code { "ostracon outbox" } " lists them all." }
            }
        }
    }
}

pub(crate) async fn retract(
    signed_in: SignedIn,
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: Result<axum::Form<CsrfForm>, FormRejection>,
) -> Response {
    let action = async { retract_incident(&signed_in.operator::<Submit>()?, &state, &id).await };
    confirmed(&signed_in, form, action, &format!("/incidents/{id}")).await
}

pub(crate) async fn accept(
    signed_in: SignedIn,
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: Result<axum::Form<CsrfForm>, FormRejection>,
) -> Response {
    let action = async { accept_incident(&signed_in.operator::<Admin>()?, &state, &id).await };
    confirmed(&signed_in, form, action, &format!("/incidents/{id}")).await
}

/// The respond form's fields.
#[derive(Debug, Deserialize)]
pub(crate) struct RespondForm {
    csrf: Option<String>,
    #[serde(default)]
    offenders: String,
    #[serde(default)]
    note: String,
}

pub(crate) async fn respond(
    signed_in: SignedIn,
    State(state): State<AppState>,
    Path(id): Path<String>,
    values: Result<axum::Form<RespondForm>, FormRejection>,
) -> Response {
    let values = match signed_in.checked_form(values) {
        Ok(values) => values,
        Err(error) => return error_page(&signed_in.viewer(), &error),
    };
    let viewer = signed_in.viewer();
    let body = Respond {
        offenders: lines_of(&values.offenders),
        action: default_response_action(),
        note: values.note.trim().to_owned(),
        ttl_seconds: None,
    };
    let answer = async { respond_to_request(&signed_in.operator::<Admin>()?, &state, &id, body).await }.await;
    match answer {
        Ok(answer) => Redirect::to(&format!("/incidents/{}", text(&answer["id"]))).into_response(),
        Err(error) => error_page(&viewer, &error),
    }
}
