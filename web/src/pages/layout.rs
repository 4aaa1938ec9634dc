//! The frame every page shares: the document head, the navigation for who is reading, and the
//! small pieces pages repeat (a CSRF field, a field's inline error, a value shown as text).

use maud::{DOCTYPE, Markup, html};
use ostracon_store::model::Scope;
use serde_json::Value;

/// Who is reading a page: signed out, or an operator with a token of some scope.
#[derive(Clone, Debug)]
pub(crate) enum Viewer {
    SignedOut,
    SignedIn { name: String, scope: Scope, csrf: String },
}

impl Viewer {
    /// The signed-in operator's name, scope and CSRF token.
    fn signed_in(&self) -> Option<(&str, Scope, &str)> {
        match self {
            Self::SignedOut => None,
            Self::SignedIn { name, scope, csrf } => Some((name, *scope, csrf)),
        }
    }
}

/// Which navigation entry is the current page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Section {
    SignIn,
    Dashboard,
    Incidents,
    Buddies,
    Reputation,
    Lookup,
    Audit,
    Other,
}

/// A whole page.
pub(crate) fn page(title: &str, section: Section, viewer: &Viewer, body: Markup) -> Markup {
    let current = |s: Section| (s == section).then_some("page");
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Ostracon" }
                link rel="stylesheet" href="/static/ostracon.css";
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    a.brand href="/" { "Ostracon" }
                    nav aria-label="Main" {
                        ul {
                            @if viewer.signed_in().is_some() {
                                li { a href="/dashboard" aria-current=[current(Section::Dashboard)] { "Dashboard" } }
                                li { a href="/incidents" aria-current=[current(Section::Incidents)] { "Incidents" } }
                            }
                            @if viewer.signed_in().is_some_and(|(_, scope, _)| scope == Scope::Admin) {
                                li { a href="/buddies" aria-current=[current(Section::Buddies)] { "Buddies" } }
                            }
                            li { a href="/reputation" aria-current=[current(Section::Reputation)] { "Reputation" } }
                            li { a href="/lookup" aria-current=[current(Section::Lookup)] { "Lookup" } }
                            li { a href="/audit" aria-current=[current(Section::Audit)] { "Audit log" } }
                            @if viewer.signed_in().is_none() {
                                li { a href="/" aria-current=[current(Section::SignIn)] { "Sign in" } }
                            }
                        }
                    }
                    @if let Some((name, scope, csrf)) = viewer.signed_in() {
                        form.inline method="post" action="/sign-out" {
                            (csrf_field(csrf))
                            span.hint { (name) " (" (scope.as_str()) ") " }
                            button.secondary type="submit" { "Sign out" }
                        }
                    }
                }
                main #main { (body) }
            }
        }
    }
}

/// The hidden CSRF field every form carries.
pub(crate) fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

/// A field's error, linked to the field by `aria-describedby`.
pub(crate) fn field_error(id: &str, error: Option<&str>) -> Markup {
    html! {
        @if let Some(error) = error {
            p.field-error id=(format!("{id}-error")) role="alert" { (error) }
        }
    }
}

/// A JSON value as text: strings without quotes, nothing for null.
pub(crate) fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// An error page's body.
pub(crate) fn problem(message: &str) -> Markup {
    html! {
        h1 { "Something is wrong" }
        p.notice.bad role="alert" { (message) }
        p { a href="/" { "Back to the start" } }
    }
}
