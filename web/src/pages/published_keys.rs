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
pub(crate) const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

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

/// Reads and parses the document at `url`, within the bounds above and `timeout`.
pub(crate) async fn fetch(url: Url, timeout: Duration) -> Result<Published, ApiError> {
    let failed =
        |why: String| ApiError::new(StatusCode::BAD_GATEWAY, "published_keys_unavailable", format!("{url}: {why}"));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
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
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// A web server on loopback that answers every request with `answer` (or never, when
    /// `None`), and the address of its document.
    async fn server(answer: Option<Vec<u8>>) -> Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/.well-known/ostracon", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut request = [0; 4096];
                    let _ = stream.read(&mut request).await;
                    match answer {
                        Some(answer) => {
                            let _ = stream.write_all(&answer).await;
                        }
                        None => tokio::time::sleep(Duration::from_secs(60)).await,
                    }
                });
            }
        });
        Url::parse(&url).unwrap()
    }

    fn http(head: &str, body: &[u8]) -> Vec<u8> {
        let mut answer = format!("HTTP/1.1 {head}\r\nconnection: close\r\n\r\n").into_bytes();
        answer.extend_from_slice(body);
        answer
    }

    #[tokio::test]
    async fn a_hostile_web_address_gets_a_defined_refusal() {
        let short = Duration::from_millis(300);
        let refusal = |answer: Result<Published, ApiError>| {
            let error = answer.unwrap_err();
            assert_eq!((error.status, error.code), (StatusCode::BAD_GATEWAY, "published_keys_unavailable"));
            error.message
        };
        // A body past the cap, announced or not, is refused while it is read.
        let endless = http("200 OK", &vec![b' '; MAX_DOCUMENT_BYTES + 1]);
        assert!(refusal(fetch(server(Some(endless)).await, short).await).contains("over 65536 bytes"));
        let announced = format!("200 OK\r\ncontent-length: {}", 10 * MAX_DOCUMENT_BYTES);
        assert!(refusal(fetch(server(Some(http(&announced, b""))).await, short).await).contains("over"));
        // A redirect is not followed; a document that is not a node's is refused; a server
        // that never answers runs out of time.
        let redirect = http("302 Found\r\nlocation: http://169.254.169.254/", b"");
        assert!(refusal(fetch(server(Some(redirect)).await, short).await).contains("answered 302"));
        let html = http("200 OK", b"<html>not json</html>");
        assert!(refusal(fetch(server(Some(html)).await, short).await).contains("not an Ostracon node's document"));
        refusal(fetch(server(None).await, short).await);
        // A node's document is read.
        let document =
            br#"{"domain":"ops.example","component":"incidents.ops.example","keys":[{"fingerprint":"ab12"}]}"#;
        let published = fetch(server(Some(http("200 OK", document))).await, short).await.unwrap();
        assert_eq!((published.domain.as_str(), published.fingerprints), ("ops.example", vec!["ab12".to_owned()]));
    }

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
