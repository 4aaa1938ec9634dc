//! What another node's web address publishes at `/.well-known/ostracon`: its domain and key
//! fingerprints, fetched for the buddies page so the operator compares them with the key the
//! peer presented over XMPP (two channels an attacker would have to hold at once).
//!
//! The address is the operator's own (the page is admin-only), but the answer is a stranger's:
//! no redirects, a short timeout, and the body is read up to a cap before it is parsed.

use std::time::Duration;

use axum::http::StatusCode;
use reqwest::Url;
use serde::Deserialize;

use crate::error::ApiError;

/// The largest `/.well-known/ostracon` document read: a node publishes a few keys.
const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// How long the peer's web server has to answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The path every node publishes its keys at.
const WELL_KNOWN: &str = "/.well-known/ostracon";

/// What a node's web address says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Published {
    /// The address read.
    pub(crate) url: String,
    /// The XMPP domain it names.
    pub(crate) domain: String,
    /// Its component JID, when it has XMPP configured.
    pub(crate) component: Option<String>,
    /// The fingerprints of the keys it publishes, newest last.
    pub(crate) fingerprints: Vec<String>,
}

#[derive(Deserialize)]
struct Document {
    domain: String,
    #[serde(default)]
    component: Option<String>,
    #[serde(default)]
    keys: Vec<DocumentKey>,
}

#[derive(Deserialize)]
struct DocumentKey {
    fingerprint: String,
}

/// The address to read: the operator's text as a node's base address or the document's own,
/// over http or https only.
pub(crate) fn document_url(text: &str) -> Result<Url, ApiError> {
    let refused = |why: &str| ApiError::invalid("invalid_url", why.to_owned());
    let mut url = Url::parse(text.trim()).map_err(|e| refused(&format!("not a web address: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(refused("the address is http:// or https:// with a host"));
    }
    if !url.path().ends_with(WELL_KNOWN) {
        let path = format!("{}{WELL_KNOWN}", url.path().trim_end_matches('/'));
        url.set_path(&path);
    }
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// Reads and parses the document at `url`, within the bounds above.
pub(crate) async fn fetch(url: Url) -> Result<Published, ApiError> {
    let failed =
        |why: String| ApiError::new(StatusCode::BAD_GATEWAY, "published_keys_unavailable", format!("{url}: {why}"));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(FETCH_TIMEOUT)
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let mut response = client.get(url.clone()).send().await.map_err(|e| failed(e.to_string()))?;
    if !response.status().is_success() {
        return Err(failed(format!("answered {}", response.status())));
    }
    if response.content_length().is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64) {
        return Err(failed(format!("the document is over {MAX_DOCUMENT_BYTES} bytes")));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| failed(e.to_string()))? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(failed(format!("the document is over {MAX_DOCUMENT_BYTES} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    let document: Document =
        serde_json::from_slice(&body).map_err(|e| failed(format!("not an Ostracon node's document: {e}")))?;
    Ok(Published {
        url: url.to_string(),
        domain: document.domain,
        component: document.component,
        fingerprints: document.keys.into_iter().map(|key| key.fingerprint).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_address_points_at_the_document_and_other_schemes_are_refused() {
        let url = |text: &str| document_url(text).map(|u| u.to_string());
        assert_eq!(url("https://ops.example").unwrap(), "https://ops.example/.well-known/ostracon");
        assert_eq!(url("https://ops.example/ostracon/").unwrap(), "https://ops.example/ostracon/.well-known/ostracon");
        assert_eq!(
            url(" http://127.0.0.1:8080/.well-known/ostracon?x=1#y ").unwrap(),
            "http://127.0.0.1:8080/.well-known/ostracon"
        );
        for bad in ["file:///etc/passwd", "gopher://ops.example", "ops.example", "", "data:text/plain,x"] {
            assert_eq!(document_url(bad).unwrap_err().code, "invalid_url", "{bad}");
        }
    }
}
