//! The operator's web pages, server-rendered HTML (maud) under `/`: sign-in with a token, the
//! dashboard, incidents, buddies, and the public reputation, lookup and audit pages.
//!
//! Pages call the same operations as the JSON routes (`routes::incidents::submit_incident`,
//! `routes::lookup::look_up`, ...) with an [`Operator`] made from the session's token, so a
//! page can do exactly what its token could do through the API, and nothing is implemented
//! twice. Every form works without JavaScript. Every state-changing form carries the
//! session's CSRF token and is refused without it; cookies are `SameSite=Strict` too.

mod audit;
mod buddies;
mod dashboard;
mod incidents;
mod layout;
mod plot;
mod public;
mod published_keys;
mod reputation;
pub(crate) mod session;

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use ostracon_store::model::{Scope, TokenRecord};
use serde::Deserialize;

use crate::auth::{Operator, RequiredScope, hash_token, token_record_by_hash};
use crate::error::ApiError;
use crate::state::AppState;
use layout::{Section, Viewer, csrf_field, field_error, page, problem};
use session::{SESSION_COOKIE, SESSION_SECS, SIGN_IN_COOKIE, csrf_matches, set_cookie};

/// The pages' routes, merged into the node's router.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(sign_in_page))
        .route("/sign-in", post(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/dashboard", get(dashboard::dashboard))
        .route("/incidents", get(incidents::list).post(incidents::submit))
        .route("/incidents/new", get(incidents::new))
        .route("/incidents/{id}", get(incidents::show))
        .route("/incidents/{id}/retract", post(incidents::retract))
        .route("/incidents/{id}/accept", post(incidents::accept))
        .route("/incidents/{id}/respond", post(incidents::respond))
        .route("/buddies", get(buddies::list).post(buddies::add))
        .route("/buddies/{jid}", get(buddies::show))
        .route("/buddies/{jid}/approve", post(buddies::approve))
        .route("/buddies/{jid}/trust", post(buddies::trust))
        .route("/buddies/{jid}/revoke", post(buddies::revoke))
        .route("/reputation", get(reputation::list))
        .route("/reputation/lookup", get(reputation::find))
        .route("/reputation/{domain}", get(reputation::detail))
        .route("/reputation/{domain}/override", post(reputation::set_override))
        .route("/reputation/{domain}/clear", post(reputation::clear_override))
        .route("/lookup", get(public::lookup))
        .route("/audit", get(audit::audit))
        .route("/static/audit.js", get(audit::script))
        .route("/static/ostracon.css", get(stylesheet))
}

async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", include_str!("assets/ostracon.css"))
}

/// A file the pages load (the stylesheet, the audit page's script), cached for an hour.
pub(crate) fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
        ],
        body,
    )
        .into_response()
}

/// A rendered page with its status, and the headers every page carries: no caching of
/// operator data, no framing (clickjacking), and a policy that allows only our own resources.
pub(crate) fn html_response(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    response
}

/// An error as a page, in the status the JSON route would give.
pub(crate) fn error_page(viewer: &Viewer, error: &ApiError) -> Response {
    html_response(error.status, page("Error", Section::Other, viewer, problem(&error.message)))
}

/// A signed-in operator: the session's token, looked up again for this request.
pub(crate) struct SignedIn {
    pub(crate) token: TokenRecord,
    pub(crate) csrf: String,
}

impl SignedIn {
    pub(crate) fn viewer(&self) -> Viewer {
        Viewer::SignedIn { name: self.token.name.clone(), scope: self.token.scope, csrf: self.csrf.clone() }
    }

    /// The operator this session may act as for scope `S`, or the refusal the API would give.
    pub(crate) fn operator<S: RequiredScope>(&self) -> Result<Operator<S>, ApiError> {
        Operator::from_record(self.token.clone())
    }

    /// A posted form, understood and carrying this session's CSRF token; otherwise the
    /// refusal (400 for a form that could not be read, 403 for a stale or forged one).
    pub(crate) fn checked_form<T: CarriesCsrf>(
        &self,
        form: Result<axum::Form<T>, axum::extract::rejection::FormRejection>,
    ) -> Result<T, ApiError> {
        let axum::Form(form) = form.map_err(|_| ApiError::bad_request("bad_form", "the form was not understood"))?;
        self.check_csrf(form.csrf())?;
        Ok(form)
    }

    /// Refuses a form whose CSRF token is not this session's.
    pub(crate) fn check_csrf(&self, given: Option<&str>) -> Result<(), ApiError> {
        if csrf_matches(&self.csrf, given) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "this form is stale or did not come from this node's pages; reload it and try again",
            ))
        }
    }
}

/// The session of a request, if any: read from the head, before any body.
pub(crate) struct MaybeSignedIn(pub(crate) Option<SignedIn>);

impl MaybeSignedIn {
    pub(crate) fn viewer(&self) -> Viewer {
        self.0.as_ref().map_or(Viewer::SignedOut, SignedIn::viewer)
    }
}

impl FromRequestParts<AppState> for MaybeSignedIn {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(session) = state.sessions().find(&parts.headers, state.env().now()) else { return Ok(Self(None)) };
        // A revoked token, or one that can no longer sign in, ends the session here.
        let token = token_record_by_hash(state, session.token_hash).await.ok().filter(|t| can_sign_in(t.scope));
        Ok(Self(token.map(|token| SignedIn { token, csrf: session.csrf })))
    }
}

/// A page that needs an operator: without a session it sends the browser to sign in.
impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Ok(MaybeSignedIn(session)) = MaybeSignedIn::from_request_parts(parts, state).await;
        session.ok_or_else(|| Redirect::to("/").into_response())
    }
}

/// Tokens that open the pages: the ones that submit or administer. A bouncer's or a
/// scraper's key opens nothing here.
fn can_sign_in(scope: Scope) -> bool {
    matches!(scope, Scope::Submit | Scope::Admin)
}

/// Whether the browser reached us over TLS: through a trusted proxy that says so.
fn over_tls(state: &AppState, peer: Option<std::net::IpAddr>, headers: &HeaderMap) -> bool {
    peer.is_some_and(|peer| state.trusts(peer))
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// The socket peer of a request, when the listener recorded it (in-process tests have none).
pub(crate) struct Peer(Option<std::net::IpAddr>);

impl FromRequestParts<AppState> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.get::<ConnectInfo<std::net::SocketAddr>>().map(|info| info.0.ip())))
    }
}

async fn sign_in_page(
    MaybeSignedIn(session): MaybeSignedIn,
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Response {
    if session.is_some() {
        return Redirect::to("/dashboard").into_response();
    }
    let secure = over_tls(&state, peer, &headers);
    sign_in_form(&state, StatusCode::OK, None, secure)
}

/// The sign-in form, with a fresh CSRF token in the form and in its cookie.
fn sign_in_form(state: &AppState, status: StatusCode, error: Option<&str>, secure: bool) -> Response {
    let csrf = hex::encode(state.env().random_bytes());
    let body = html! {
        h1 { "Sign in" }
        p { "Sign in with one of this node's tokens (" code { "ostracon token create NAME --scope admin" } "). "
            "Looking a value up needs no token: " a href="/lookup" { "lookup" } "." }
        form.stack method="post" action="/sign-in" {
            (csrf_field(&csrf))
            div {
                label for="token" { "Token" }
                input #token type="password" name="token" autocomplete="current-password" required
                    aria-invalid=[error.map(|_| "true")] aria-describedby=[error.map(|_| "token-error")];
                (field_error("token", error))
            }
            div { button type="submit" { "Sign in" } }
        }
    };
    let mut response = html_response(status, page("Sign in", Section::SignIn, &Viewer::SignedOut, body));
    response.headers_mut().append(header::SET_COOKIE, set_cookie(SIGN_IN_COOKIE, &csrf, 3600, secure));
    response
}

#[derive(Debug, Deserialize)]
struct SignInForm {
    #[serde(default)]
    token: String,
    csrf: Option<String>,
}

async fn sign_in(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    form: Result<axum::Form<SignInForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let secure = over_tls(&state, peer, &headers);
    let client = state.client_address(peer.unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()), &headers);
    if let Err(wait) = state.sessions().attempt_sign_in(client, std::time::Instant::now()) {
        let mut response = sign_in_form(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            Some(&format!("too many sign-in attempts from your address; try again in {wait} s")),
            secure,
        );
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return response;
    }
    let Ok(axum::Form(form)) = form else {
        return sign_in_form(&state, StatusCode::BAD_REQUEST, Some("the form was not understood"), secure);
    };
    let expected = session::cookie(&headers, SIGN_IN_COOKIE).unwrap_or("");
    if !csrf_matches(expected, form.csrf.as_deref()) {
        return sign_in_form(
            &state,
            StatusCode::FORBIDDEN,
            Some("this sign-in form is stale or came from another site; try again"),
            secure,
        );
    }
    let token = form.token.trim();
    let refused = || sign_in_form(&state, StatusCode::UNAUTHORIZED, Some("unknown or revoked token"), secure);
    // The same bound the API's Authorization header has: nothing longer is one of our tokens.
    if token.is_empty() || token.len() > 256 {
        return refused();
    }
    let hash = hash_token(token);
    let record = match token_record_by_hash(&state, hash).await {
        Ok(record) if can_sign_in(record.scope) => record,
        Ok(record) => {
            let message = format!("a {} token cannot sign in; use an admin or submit token", record.scope);
            return sign_in_form(&state, StatusCode::FORBIDDEN, Some(&message), secure);
        }
        Err(error) if error.status == StatusCode::UNAUTHORIZED => return refused(),
        Err(error) => return error_page(&Viewer::SignedOut, &error),
    };
    let now = state.env().now();
    let cookie = state.sessions().open(hash, state.env().random_bytes(), state.env().random_bytes(), now);
    tracing::info!(token = %record.name, "signed in to the operator pages");
    let mut response = Redirect::to("/dashboard").into_response();
    let cookies = response.headers_mut();
    cookies.append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, &cookie, SESSION_SECS, secure));
    cookies.append(header::SET_COOKIE, set_cookie(SIGN_IN_COOKIE, "", 0, secure));
    response
}

/// Runs a form that only confirms an action (it carries nothing but its CSRF token): the
/// token is checked before `action` runs, then the browser goes to `then`, or sees the refusal.
pub(crate) async fn confirmed(
    signed_in: &SignedIn,
    form: Result<axum::Form<CsrfForm>, axum::extract::rejection::FormRejection>,
    action: impl Future<Output = Result<serde_json::Value, ApiError>>,
    then: &str,
) -> Response {
    let given = form.ok().and_then(|axum::Form(form)| form.csrf);
    let outcome = match signed_in.check_csrf(given.as_deref()) {
        Ok(()) => action.await,
        Err(error) => Err(error),
    };
    match outcome {
        Ok(_) => Redirect::to(then).into_response(),
        Err(error) => error_page(&signed_in.viewer(), &error),
    }
}

/// A form that carries the session's CSRF token in its `csrf` field.
pub(crate) trait CarriesCsrf {
    /// The token the form carried, if any.
    fn csrf(&self) -> Option<&str>;
}

/// A form that carries only its CSRF token.
#[derive(Debug, Deserialize)]
pub(crate) struct CsrfForm {
    pub(crate) csrf: Option<String>,
}

async fn sign_out(
    signed_in: SignedIn,
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    form: Result<axum::Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let given = form.ok().and_then(|axum::Form(form)| form.csrf);
    if let Err(error) = signed_in.check_csrf(given.as_deref()) {
        return error_page(&signed_in.viewer(), &error);
    }
    state.sessions().close(&headers);
    let mut response = Redirect::to("/").into_response();
    let secure = over_tls(&state, peer, &headers);
    response.headers_mut().append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", 0, secure));
    response
}
