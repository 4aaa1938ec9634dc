//! A small HTTP client for the CLI verbs: they call a running node's API with the operator's
//! token, and turn our error shape back into a message.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::error::ServerError;

/// The node's API.
#[derive(Clone, Debug)]
pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// A raw response: status, headers and body bytes.
#[derive(Debug)]
pub struct RawResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
    /// Body.
    pub body: Vec<u8>,
}

/// The largest answer read (a 1M-entry JSON snapshot is about 120 MB).
const MAX_RESPONSE_BYTES: usize = 512 * 1024 * 1024;

impl ApiClient {
    /// A client for `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str, token: Option<String>) -> Result<Self, ServerError> {
        // reqwest would say only "builder error" for `127.0.0.1:8080`.
        let lower = base.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return Err(ServerError::Client(format!(
                "{base:?} is not a URL: add http:// or https:// (e.g. http://{})",
                base.trim_start_matches('/')
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("ostracon/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ServerError::Client(format!("HTTP client: {e}")))?;
        Ok(Self { base: base.trim_end_matches('/').to_owned(), token, http })
    }

    /// Any request; returns the raw response.
    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<RawResponse, ServerError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.to_string());
        }
        let response = request.send().await.map_err(|e| ServerError::Client(format!("{url}: {e}")))?;
        let status = response.status();
        let headers = response.headers().clone();
        // Read in chunks under a cap: a hostile server cannot make us allocate without bound.
        let mut response = response;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| ServerError::Client(format!("{url}: {e}")))? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(ServerError::Client(format!("{url}: the answer is over {MAX_RESPONSE_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(RawResponse { status, headers, body })
    }

    /// A request expecting JSON (or nothing) back; API errors become `ServerError::Client`.
    pub async fn json(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<Value, ServerError> {
        let response = self.raw(method, path, body).await?;
        let value: Value = if response.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&response.body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&response.body).into_owned()))
        };
        if response.status.is_success() {
            Ok(value)
        } else {
            let code = value["error"]["code"].as_str().unwrap_or("error");
            let message = value["error"]["message"].as_str().map_or_else(|| value.to_string(), str::to_owned);
            Err(ServerError::Client(format!("{} {code}: {message}", response.status.as_u16())))
        }
    }
}

/// Percent-encodes a query value (offenders contain ':' and '/').
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
