//! The one error shape of the HTTP API, `{"error": {"code", "message"}}`, and the JSON body
//! extractor that reports malformed or oversized bodies in that shape.
//!
//! Internal failures are logged with their detail and answered with a generic message, so
//! nothing about the database or the host leaks to clients.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, RequestExt as _};
use ostracon_store::StoreError;
use serde::de::DeserializeOwned;
use serde_json::json;

/// An error answer.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// A stable machine-readable code.
    pub code: &'static str,
    /// A human-readable message naming the problem.
    pub message: String,
    /// Seconds to wait, for 429 and some 503s.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// Any status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None }
    }

    /// 400.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 422: well-formed but invalid (an invalid IP, JID or CIDR...).
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 429.
    pub fn rate_limited(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after.max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many requests; slow down")
        }
    }

    /// 503: the store cannot answer. Lists are never served empty instead.
    pub fn unavailable() -> Self {
        Self {
            retry_after: Some(5),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the node's database is unavailable; no data is served rather than possibly wrong data",
            )
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound { what } => Self::not_found(format!("{what} not found")),
            StoreError::Conflict { what } => {
                Self::new(StatusCode::CONFLICT, "conflict", format!("{what} already exists"))
            }
            StoreError::Rejected(message) => Self::new(StatusCode::CONFLICT, "rejected", message),
            StoreError::KeysNotFetched { .. } => Self::new(StatusCode::CONFLICT, "keys_not_fetched", error.to_string()),
            StoreError::Protocol(error) => Self::invalid("invalid", error.to_string()),
            StoreError::Unavailable(error) => {
                tracing::error!(%error, "database unavailable");
                Self::unavailable()
            }
            other => {
                tracing::error!(error = %other, "internal error");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the node's log")
            }
        }
    }
}

impl From<ostracon_protocol::Error> for ApiError {
    fn from(error: ostracon_protocol::Error) -> Self {
        Self::invalid("invalid", error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.respond(None)
    }
}

impl ApiError {
    /// The answer, with the CrowdSec LAPI's top-level `message` beside our `error` when
    /// `lapi_message` is given (the bouncers' client reads that field).
    pub fn respond(self, lapi_message: Option<&str>) -> Response {
        let mut body = json!({ "error": { "code": self.code, "message": self.message } });
        if let Some(message) = lapi_message {
            body["message"] = json!(message);
        }
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// A JSON body whose parse errors come back in our error shape.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + 'static> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        match request.extract::<Json<T>, _>().await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(error) => ApiError::invalid("invalid_body", error.body_text()),
        JsonRejection::JsonSyntaxError(error) => ApiError::bad_request("bad_json", error.body_text()),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(error) => {
            if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "request body is over the size limit")
            } else {
                ApiError::bad_request("bad_body", error.body_text())
            }
        }
        other => ApiError::bad_request("bad_body", other.body_text()),
    }
}

/// A query string whose parse errors come back in our error shape.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + 'static> axum::extract::FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::bad_request("bad_query", rejection.body_text())),
        }
    }
}
