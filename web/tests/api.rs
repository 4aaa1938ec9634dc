//! The HTTP API in process (no socket): every route, the error shape, auth, bad input,
//! caching, signatures, the change feed, the log and its proofs, and 503 on a dead store.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use ostracon_protocol::ids::Domain;
use ostracon_protocol::keys::NodeKey;
use ostracon_protocol::log::checkpoint::SignedCheckpoint;
use ostracon_protocol::log::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use ostracon_protocol::time::Timestamp;
use ostracon_store::Store;
use ostracon_store::clock::{Environment as _, FixedEnvironment};
use ostracon_store::ledger::{Ledger, LedgerConfig};
use ostracon_store::model::Scope;
use ostracon_store::policy::ListingPolicy;
use ostracon_store::traits::{OutboxStore as _, TokenStore as _};
use ostracon_web::auth::hash_token;
use ostracon_web::{AppState, NodeInfo, ROUTES, WebConfig, router};
use serde_json::{Value, json};
use tower::ServiceExt as _;

const ADMIN: &str = "ost_admin-token-for-tests";
const SUBMIT: &str = "ost_submit-token-for-tests";

struct Node {
    app: Router,
    env: Arc<FixedEnvironment>,
    store: Store,
    ledger: Arc<Ledger>,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn key() -> NodeKey {
    NodeKey::from_seed(&[5; 32])
}

async fn node_with(config: WebConfig) -> Node {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ostracon-web-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    ));
    let store = Store::open(&format!("sqlite://{}/node.db", dir.display())).await.unwrap();
    let env = Arc::new(FixedEnvironment::new(Timestamp::from_unix(1_800_000_000).unwrap()));
    store.create_token("admin", Scope::Admin, &hash_token(ADMIN), env.now()).await.unwrap();
    store.create_token("ci", Scope::Submit, &hash_token(SUBMIT), env.now()).await.unwrap();
    let ledger = Arc::new(
        Ledger::open(
            store.clone(),
            key(),
            LedgerConfig {
                origin: "ops.example/ostracon".into(),
                key_name: "ops.example".into(),
                policy: ListingPolicy::default(),
                reputation: Default::default(),
                scope: ostracon_store::scope::PeerScope { refuse_documentation: false, ..Default::default() },
            },
        )
        .await
        .unwrap(),
    );
    let node = NodeInfo { domain: Domain::parse("ops.example").unwrap(), component: None };
    let state = AppState::new(Arc::clone(&ledger), env.clone(), node, &config);
    Node { app: router(state), env, store, ledger, _dir: TempDir(dir) }
}

async fn node() -> Node {
    node_with(WebConfig { rate_per_second: 0, rate_burst: 0, trusted_proxies: Vec::new() }).await
}

impl Node {
    async fn send(&self, request: Request<Body>) -> Response {
        self.app.clone().oneshot(request).await.unwrap()
    }

    async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => builder.header(header::CONTENT_TYPE, "application/json").body(Body::from(body.to_string())),
            None => builder.body(Body::empty()),
        }
        .unwrap();
        let response = self.send(request).await;
        let status = response.status();
        let bytes = to_bytes(response.into_body(), 64 << 20).await.unwrap();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, value)
    }

    async fn text(&self, path: &str) -> (StatusCode, String, axum::http::HeaderMap) {
        let response = self.send(Request::get(path).body(Body::empty()).unwrap()).await;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = to_bytes(response.into_body(), 64 << 20).await.unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap(), headers)
    }

    async fn submit(&self, offenders: &[&str]) -> Value {
        let (status, body) = self
            .call(
                "POST",
                "/v1/incidents",
                Some(SUBMIT),
                Some(json!({ "offenders": offenders, "category": "spam", "severity": "high", "share": true })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }
}

/// The hashes of a proof answer.
fn proof_hashes(proof: &Value) -> Vec<[u8; 32]> {
    proof["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| base64::engine::general_purpose::STANDARD.decode(h.as_str().unwrap()).unwrap().try_into().unwrap())
        .collect()
}

fn assert_error(status: StatusCode, body: &Value, expected_status: StatusCode, code: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

#[tokio::test]
async fn submit_then_lookup_explains_why() {
    let node = node().await;
    let created = node.submit(&["192.0.2.7", "198.51.100.0/24", "Bot@Bad.Example/x", "spam.example"]).await;
    assert_eq!(created["listed"].as_array().unwrap().len(), 4);
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("ops.example:"));

    let (status, body) = node.call("GET", "/v1/lookup/ip/198.51.100.9", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["listed"], true);
    let matched = &body["matches"][0];
    assert_eq!(matched["value"], "198.51.100.0/24");
    assert_eq!(matched["why"]["reasons"][0]["incident"], id);
    assert_eq!(matched["why"]["reasons"][0]["reporter"], "ops.example");
    assert_eq!(matched["why"]["total_weight"], 1.0);
    assert_eq!(matched["why"]["threshold"], 1.0);
    assert!(matched["expires"].is_string());
    assert!(matched["log_index"].is_u64());

    let (_, body) = node.call("GET", "/v1/lookup/jid/someone@spam.example", None, None).await;
    assert_eq!(body["listed"], true, "a domain entry covers its JIDs");
    let (_, body) = node.call("GET", "/v1/lookup/cidr/198.51.100.0/25", None, None).await;
    assert_eq!(body["listed"], true, "a covering CIDR matches");
    let (_, body) = node.call("GET", "/v1/lookup/ip/203.0.113.1", None, None).await;
    assert_eq!(body["listed"], false);
    assert_eq!(body["matches"], json!([]));

    let hash = ostracon_protocol::rtbl::sha256_hex("bot@bad.example");
    let (status, body) = node.call("GET", &format!("/v1/lookup/hash/{}", &hash[..6]), None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["matches"].as_array().unwrap().iter().any(|m| m["sha256"] == hash), "{body}");

    let (status, body) = node.call("GET", &format!("/v1/incidents/{id}"), Some(SUBMIT), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["incident"]["category"], "spam");
    assert_eq!(body["share"], true);
    assert_eq!(body["effect"], json!({ "listed": 4, "waiting": 0, "held": 0 }), "what it does to our lists");
    let (_, body) = node.call("GET", "/v1/incidents?category=spam&limit=10", Some(SUBMIT), None).await;
    assert_eq!(body["incidents"].as_array().unwrap().len(), 1);
    let (status, body) = node.call("GET", "/v1/incidents?decision=maybe", Some(SUBMIT), None).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_filter");
    assert!(body["error"]["message"].as_str().unwrap().contains("accepted, ignored, pending"), "{body}");

    let (status, body) = node.call("POST", &format!("/v1/incidents/{id}/retract"), Some(SUBMIT), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["delisted"].as_array().unwrap().len(), 4);
    let (status, body) = node.call("POST", &format!("/v1/incidents/{id}/retract"), Some(SUBMIT), None).await;
    assert_error(status, &body, StatusCode::CONFLICT, "rejected");
    let (_, body) = node.call("GET", "/v1/lookup/ip/198.51.100.9", None, None).await;
    assert_eq!(body["listed"], false);
    let (_, body) = node.call("GET", &format!("/v1/incidents/{id}"), Some(SUBMIT), None).await;
    assert_eq!(body["effect"]["listed"], 0, "retracted: {body}");
}

#[tokio::test]
async fn operator_routes_need_the_right_token() {
    let node = node().await;
    let body = json!({ "offenders": ["192.0.2.1"], "category": "spam" });
    let (status, error) = node.call("POST", "/v1/incidents", None, Some(body.clone())).await;
    assert_error(status, &error, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, error) = node.call("POST", "/v1/incidents", Some("ost_wrong"), Some(body.clone())).await;
    assert_error(status, &error, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, error) = node.call("GET", "/v1/tokens", Some(SUBMIT), None).await;
    assert_error(status, &error, StatusCode::FORBIDDEN, "forbidden");
    let (status, _) = node.call("GET", "/v1/tokens", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK);

    // A new token works once created and stops working once revoked.
    let (status, created) =
        node.call("POST", "/v1/tokens", Some(ADMIN), Some(json!({ "name": "bot", "scope": "submit" }))).await;
    assert_eq!(status, StatusCode::CREATED);
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("ost_"));
    let (status, _) = node.call("POST", "/v1/incidents", Some(&token), Some(body.clone())).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = node.call("DELETE", "/v1/tokens/bot", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = node.call("GET", "/v1/incidents", Some(&token), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let listed = node.store.tokens().await.unwrap();
    assert!(!serde_json::to_string(&listed).unwrap().contains(&token), "tokens are never stored in clear");
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_writes_nothing() {
    let node = node().await;
    let before = node.ledger.log_size();
    let cases: Vec<(&str, Value, StatusCode, &str)> = vec![
        ("not json", Value::String("{".into()), StatusCode::BAD_REQUEST, "bad_json"),
        (
            "unknown field",
            json!({ "offenders": ["192.0.2.1"], "category": "spam", "colour": "red" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        ("missing category", json!({ "offenders": ["192.0.2.1"] }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        (
            "bad category",
            json!({ "offenders": ["192.0.2.1"], "category": "mean" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "invalid IP",
            json!({ "offenders": ["192.0.2.1", "192.0.2.300"], "category": "spam" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_offender",
        ),
        (
            "invalid CIDR",
            json!({ "offenders": ["192.0.2.0/33"], "category": "spam" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_offender",
        ),
        (
            "invalid JID",
            json!({ "offenders": ["a b@bad.example"], "category": "spam" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_offender",
        ),
        (
            "no offenders",
            json!({ "offenders": [], "category": "spam" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_offender",
        ),
        (
            "expiry in the past",
            json!({ "offenders": ["192.0.2.1"], "category": "spam", "expires": "2001-01-01T00:00:00Z" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_expiry",
        ),
        (
            "description too long",
            json!({ "offenders": ["192.0.2.1"], "category": "spam", "description": "x".repeat(5000) }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
    ];
    for (name, body, status, code) in cases {
        let request = Request::post("/v1/incidents")
            .header(header::AUTHORIZATION, format!("Bearer {SUBMIT}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(match &body {
                Value::String(raw) => raw.clone(),
                other => other.to_string(),
            }))
            .unwrap();
        let response = node.send(request).await;
        let got = response.status();
        let value: Value = serde_json::from_slice(&to_bytes(response.into_body(), 1 << 20).await.unwrap()).unwrap();
        assert_eq!(got, status, "{name}: {value}");
        assert_eq!(value["error"]["code"], code, "{name}: {value}");
    }
    assert!(
        node.call(
            "POST",
            "/v1/incidents",
            Some(SUBMIT),
            Some(json!({ "offenders": ["192.0.2.1", "192.0.2.300"], "category": "spam" }))
        )
        .await
        .1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("offenders[1]"),
        "the message names the bad offender"
    );

    let oversized =
        json!({ "offenders": ["192.0.2.1"], "category": "spam", "description": "x".repeat(300_000) }).to_string();
    let request = Request::post("/v1/incidents")
        .header(header::AUTHORIZATION, format!("Bearer {SUBMIT}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(oversized))
        .unwrap();
    let response = node.send(request).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let request = Request::post("/v1/incidents")
        .header(header::AUTHORIZATION, format!("Bearer {SUBMIT}"))
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(node.send(request).await.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    for (path, status, code) in [
        ("/v1/blocklist?kind=planets", StatusCode::BAD_REQUEST, "bad_kind"),
        ("/v1/blocklist?format=xml", StatusCode::BAD_REQUEST, "bad_format"),
        ("/v1/blocklist/changes?since=abc", StatusCode::BAD_REQUEST, "bad_cursor"),
        ("/v1/blocklist/changes?since=-4", StatusCode::BAD_REQUEST, "bad_cursor"),
        ("/v1/lookup/ip/300.1.1.1", StatusCode::UNPROCESSABLE_ENTITY, "invalid_value"),
        ("/v1/lookup/planet/x", StatusCode::BAD_REQUEST, "bad_kind"),
        ("/v1/lookup/hash/abc", StatusCode::BAD_REQUEST, "bad_prefix"),
        ("/v1/lookup/hash/ABCD", StatusCode::BAD_REQUEST, "bad_prefix"),
        ("/v1/log/proof/inclusion?index=5&size=2", StatusCode::BAD_REQUEST, "bad_proof_request"),
        ("/v1/nowhere", StatusCode::NOT_FOUND, "no_route"),
        ("/v1/log/entries", StatusCode::BAD_REQUEST, "bad_query"),
        ("/v1/blocklist?colour=red", StatusCode::BAD_REQUEST, "bad_query"),
        ("/v1/blocklist/changes?limit=lots", StatusCode::BAD_REQUEST, "bad_query"),
    ] {
        let (got, body) = node.call("GET", path, None, None).await;
        assert_error(got, &body, status, code);
    }
    let (status, body) = node.call("DELETE", "/healthz", None, None).await;
    assert_error(status, &body, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    let (status, body) = node.call("GET", "/v1/incidents/not-an-id", Some(SUBMIT), None).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_id");
    assert_eq!(node.ledger.log_size(), before, "nothing was written");
}

#[tokio::test]
async fn snapshots_are_signed_cached_and_compressed() {
    let node = node().await;
    node.submit(&["192.0.2.7", "2001:db8::1"]).await;
    let (status, text, headers) = node.text("/v1/blocklist?kind=ip&format=txt").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text, "192.0.2.7\n2001:db8::1\n");
    let signature = headers[ostracon_web::SIGNATURE_HEADER].to_str().unwrap();
    let sig = signature.split("sig=\"").nth(1).unwrap().trim_end_matches('"');
    let sig: [u8; 64] = base64::engine::general_purpose::STANDARD.decode(sig).unwrap().try_into().unwrap();
    assert!(key().public().verify(text.as_bytes(), &sig), "detached signature over the exact body");
    assert!(signature.contains(&key().key_id().to_string()));
    assert_eq!(headers[ostracon_web::CHECKPOINT_HEADER].to_str().unwrap(), node.ledger.log_size().to_string());
    let etag = headers[header::ETAG].to_str().unwrap().to_owned();

    let request = Request::get("/v1/blocklist?kind=ip&format=txt")
        .header(header::IF_NONE_MATCH, &etag)
        .body(Body::empty())
        .unwrap();
    let response = node.send(request).await;
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert!(to_bytes(response.into_body(), 1024).await.unwrap().is_empty());

    let request = Request::get("/v1/blocklist?kind=ip&format=txt")
        .header(header::ACCEPT_ENCODING, "br, gzip;q=0.8")
        .body(Body::empty())
        .unwrap();
    let response = node.send(request).await;
    assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
    let zipped = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    let mut unzipped = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(zipped.as_ref()), &mut unzipped).unwrap();
    assert_eq!(unzipped, text);

    // A change gives a new ETag; the old one no longer matches.
    node.submit(&["192.0.2.8"]).await;
    let request = Request::get("/v1/blocklist?kind=ip&format=txt")
        .header(header::IF_NONE_MATCH, &etag)
        .body(Body::empty())
        .unwrap();
    assert_eq!(node.send(request).await.status(), StatusCode::OK);

    let (status, signature) = node.call("GET", "/v1/blocklist/signature?kind=ip&format=txt", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let checkpoint = SignedCheckpoint::parse(signature["checkpoint"].as_str().unwrap()).unwrap();
    checkpoint.verify_signature("ops.example", key().public().verifying_key()).unwrap();

    for format in ["json", "ndjson", "csv"] {
        let (status, body, headers) = node.text(&format!("/v1/blocklist?kind=ip&format={format}")).await;
        assert_eq!(status, StatusCode::OK, "{format}");
        assert!(body.contains("192.0.2.8"), "{format}: {body}");
        assert!(headers[header::CONTENT_TYPE].to_str().unwrap().contains(if format == "csv" { "csv" } else { "json" }));
    }
    let (_, jids, _) = node.text("/v1/blocklist?kind=jid&format=txt").await;
    assert_eq!(jids, "");
}

#[tokio::test]
async fn the_change_feed_follows_a_cursor_and_expires_it() {
    let node = node().await;
    node.submit(&["192.0.2.1", "bot@bad.example"]).await;
    let (_, snapshot) = node.call("GET", "/v1/blocklist?kind=ip&format=json", None, None).await;
    let cursor = snapshot["cursor"].as_i64().unwrap();
    node.submit(&["192.0.2.2"]).await;
    let (status, page) = node.call("GET", &format!("/v1/blocklist/changes?since={cursor}&kind=ip"), None, None).await;
    assert_eq!(status, StatusCode::OK);
    let changes = page["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["value"], "192.0.2.2");
    assert_eq!(changes[0]["op"], "add");
    let (_, page) = node.call("GET", "/v1/blocklist/changes?since=0&limit=1", None, None).await;
    assert_eq!(page["more"], true);
    assert_eq!(page["changes"].as_array().unwrap().len(), 1);

    // Expiry produces tombstones; once they age past the horizon, old cursors get 410.
    node.env.advance(4 * 86_400);
    node.ledger.expire(node.env.now()).await.unwrap();
    let (_, page) = node.call("GET", &format!("/v1/blocklist/changes?since={cursor}"), None, None).await;
    assert!(page["changes"].as_array().unwrap().iter().any(|c| c["op"] == "remove"));
    node.env.advance(8 * 86_400);
    node.ledger.prune_changes(node.env.now()).await.unwrap();
    let (status, body) = node.call("GET", &format!("/v1/blocklist/changes?since={cursor}"), None, None).await;
    assert_error(status, &body, StatusCode::GONE, "cursor_expired");
    assert!(body["error"]["message"].as_str().unwrap().contains("snapshot"));
    let (status, _) = node.call("GET", "/v1/blocklist/changes?since=99999", None, None).await;
    assert_eq!(status, StatusCode::GONE, "a cursor from the future is not silently accepted");
}

#[tokio::test]
async fn the_log_is_verifiable_over_http() {
    let node = node().await;
    node.submit(&["192.0.2.1"]).await;
    let (_, old_text, _) = node.text("/v1/log/checkpoint").await;
    let old = SignedCheckpoint::parse(&old_text).unwrap();
    node.submit(&["192.0.2.2", "192.0.2.3"]).await;
    let (status, text, _) = node.text("/v1/log/checkpoint").await;
    assert_eq!(status, StatusCode::OK);
    let new = SignedCheckpoint::parse(&text).unwrap();
    new.verify_signature("ops.example", key().public().verifying_key()).unwrap();
    let size = new.checkpoint().size;
    assert_eq!(size, 5);

    let (_, entries) = node.call("GET", "/v1/log/entries?start=0", None, None).await;
    let leaves: Vec<Vec<u8>> = entries["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| base64::engine::general_purpose::STANDARD.decode(e["leaf"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(leaves.len() as u64, size);
    assert_eq!(entries["entries"][0]["record"]["event"], "incident-accepted");
    let (_, proof) = node.call("GET", &format!("/v1/log/proof/inclusion?index=3&size={size}"), None, None).await;
    let hashes = proof_hashes(&proof);
    verify_inclusion(&leaf_hash(&leaves[3]), 3, size, &hashes, &new.checkpoint().root).unwrap();
    let (_, proof) = node
        .call("GET", &format!("/v1/log/proof/consistency?old={}&new={size}", old.checkpoint().size), None, None)
        .await;
    let hashes = proof_hashes(&proof);
    verify_consistency(old.checkpoint().size, size, &old.checkpoint().root, &new.checkpoint().root, &hashes).unwrap();
}

#[tokio::test]
async fn allow_and_deny_entries() {
    let node = node().await;
    node.submit(&["192.0.2.1"]).await;
    let (status, body) =
        node.call("POST", "/v1/allow", Some(ADMIN), Some(json!({ "value": "192.0.2.1", "note": "ours" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["delisted"], json!(["192.0.2.1"]));
    let (_, lookup) = node.call("GET", "/v1/lookup/ip/192.0.2.1", None, None).await;
    assert_eq!((lookup["listed"].clone(), lookup["allowed"].clone()), (json!(false), json!(true)));
    let (status, body) = node.call("POST", "/v1/allow", Some(SUBMIT), Some(json!({ "value": "192.0.2.1" }))).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    // An allowed block covers what lies inside it.
    node.submit(&["203.0.113.130"]).await;
    let (status, body) = node
        .call("POST", "/v1/allow", Some(ADMIN), Some(json!({ "value": "203.0.113.128/25", "note": "office" })))
        .await;
    assert_eq!((status, body["delisted"].clone()), (StatusCode::CREATED, json!(["203.0.113.130"])), "{body}");
    let (_, lookup) = node.call("GET", "/v1/lookup/ip/203.0.113.200", Some(ADMIN), None).await;
    assert_eq!(lookup["allowed_by"], "203.0.113.128/25", "{lookup}");
    // Which allow entry covers a value is the operator's business.
    let (_, public) = node.call("GET", "/v1/lookup/ip/203.0.113.200", None, None).await;
    assert!(public.get("allowed_by").is_none() && public["listed"] == false, "{public}");

    let (status, body) = node
        .call(
            "POST",
            "/v1/deny",
            Some(ADMIN),
            Some(json!({ "value": "spam.example", "action": "quarantine", "ttl_seconds": 3600 })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, list) = node.call("GET", "/v1/deny", Some(ADMIN), None).await;
    assert_eq!(list["deny"][0]["value"], "spam.example");
    assert_eq!(list["deny"][0]["action"], "quarantine");
    // Plain text is read by consumers that block whatever is in it: only `block` entries,
    // unless the consumer asks; the formats that carry each action carry every entry.
    let node = &node;
    let body = |path: &'static str| async move { node.text(path).await.1 };
    assert_eq!(body("/v1/blocklist?kind=domain&format=txt").await, "");
    assert_eq!(body("/v1/blocklist?kind=domain&format=txt&action=quarantine").await, "spam.example\n");
    assert_eq!(body("/v1/blocklist?kind=domain&format=txt&action=all").await, "spam.example\n");
    assert_eq!(body("/v1/blocklist?kind=domain&format=txt&action=block").await, "");
    let json: Value = serde_json::from_str(&body("/v1/blocklist?kind=domain").await).unwrap();
    assert_eq!((json["items"][0]["action"].as_str(), json.get("action")), (Some("quarantine"), None), "{json}");
    let only: Value = serde_json::from_str(&body("/v1/blocklist?kind=domain&action=block").await).unwrap();
    assert_eq!((only["items"].as_array().map(Vec::len), only["action"].as_str()), (Some(0), Some("block")), "{only}");
    let (status, refused) = node.call("GET", "/v1/blocklist?kind=domain&format=txt&action=ban", None, None).await;
    assert_error(status, &refused, StatusCode::BAD_REQUEST, "bad_action");
    let (status, body) = node.call("POST", "/v1/deny", Some(ADMIN), Some(json!({ "value": "192.0.2.1" }))).await;
    assert_error(status, &body, StatusCode::CONFLICT, "rejected");
    let (status, _) = node.call("DELETE", "/v1/deny?value=spam.example", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = node.call("DELETE", "/v1/allow?value=192.0.2.1", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = node.call("DELETE", "/v1/allow?value=192.0.2.1", Some(ADMIN), None).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn a_dead_store_answers_503_never_an_empty_list() {
    let node = node().await;
    node.submit(&["192.0.2.1"]).await;
    let (status, _, _) = node.text("/v1/blocklist?kind=ip&format=txt").await;
    assert_eq!(status, StatusCode::OK);
    node.store.close().await;
    for path in ["/v1/blocklist?kind=ip&format=txt", "/v1/blocklist/changes?since=0", "/v1/log/checkpoint"] {
        let (status, body) = node.call("GET", path, None, None).await;
        assert_error(status, &body, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    }
    // A public lookup is answered from memory, which holds what the last commit left: the
    // whole answer, not an empty one.
    let (status, body) = node.call("GET", "/v1/lookup/ip/192.0.2.1", None, None).await;
    assert_eq!((status, &body["listed"]), (StatusCode::OK, &json!(true)), "{body}");
    assert_eq!(body["matches"][0]["why"]["reasons"].as_array().map(Vec::len), Some(1), "{body}");
    let (status, body) = node.call("GET", "/healthz", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["database"], "unavailable");
}

#[tokio::test]
async fn public_routes_are_rate_limited_per_client() {
    let node = node_with(WebConfig { rate_per_second: 1, rate_burst: 2, trusted_proxies: Vec::new() }).await;
    for _ in 0..2 {
        assert_eq!(node.call("GET", "/healthz", None, None).await.0, StatusCode::OK);
    }
    let response = node.send(Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key(header::RETRY_AFTER));
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_rate_and_others_cannot_forge_one() {
    use axum::extract::ConnectInfo;
    let proxy: ipnet::IpNet = "10.0.0.1/32".parse().unwrap();
    let node = node_with(WebConfig { rate_per_second: 1, rate_burst: 1, trusted_proxies: vec![proxy] }).await;
    let from = |peer: &str, forwarded: Option<&str>| {
        let mut request = Request::get("/healthz");
        if let Some(forwarded) = forwarded {
            request = request.header("x-forwarded-for", forwarded);
        }
        let mut request = request.body(Body::empty()).unwrap();
        request.extensions_mut().insert(ConnectInfo(std::net::SocketAddr::new(peer.parse().unwrap(), 40_000)));
        request
    };
    // Through the proxy: the client the proxy saw (the rightmost hop) is the key, not the proxy.
    assert_eq!(node.send(from("10.0.0.1", Some("203.0.113.1"))).await.status(), StatusCode::OK);
    assert_eq!(node.send(from("10.0.0.1", Some("203.0.113.2"))).await.status(), StatusCode::OK);
    let again = from("10.0.0.1", Some("198.51.100.9, 203.0.113.1"));
    assert_eq!(node.send(again).await.status(), StatusCode::TOO_MANY_REQUESTS, "a forged left hop changes nothing");
    // A client that is not a trusted proxy cannot pick its bucket with the header.
    assert_eq!(node.send(from("192.0.2.7", Some("203.0.113.50"))).await.status(), StatusCode::OK);
    let forged = from("192.0.2.7", Some("203.0.113.51"));
    assert_eq!(node.send(forged).await.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn the_token_is_checked_before_the_body_is_read() {
    let node = node().await;
    // Without a token, an invalid body gets 401, not a schema message.
    let (status, body) = node.call("POST", "/v1/incidents", None, Some(json!({}))).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let garbage = Request::post("/v1/peers")
        .header(header::AUTHORIZATION, format!("Bearer {SUBMIT}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    let response = node.send(garbage).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN, "the scope is checked before the body is parsed");
}

#[tokio::test]
async fn openapi_lists_exactly_the_routes_and_every_route_exists() {
    let node = node().await;
    let (status, document) = node.call("GET", "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(document["openapi"], "3.1.0");
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push((method.clone(), path.clone()));
        }
    }
    let mut routes: Vec<(String, String)> = ROUTES.iter().map(|(m, p)| ((*m).to_owned(), (*p).to_owned())).collect();
    documented.sort();
    routes.sort();
    assert_eq!(documented, routes);
    for (method, path) in ROUTES {
        let concrete = path
            .replace("{id}", "ops.example:00000000-0000-0000-0000-000000000001")
            .replace("{name}", "x")
            .replace("{prefix}", "abcd")
            .replace("{index}", "0")
            .replace("{kind}", "ip")
            .replace("{value}", "192.0.2.1");
        let request = Request::builder()
            .method(method.to_uppercase().as_str())
            .uri(concrete.as_str())
            .body(Body::empty())
            .unwrap();
        let response = node.send(request).await;
        let status = response.status();
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        assert!(
            status != StatusCode::METHOD_NOT_ALLOWED && value["error"]["code"] != "no_route",
            "{method} {path}: {status} {value}"
        );
    }
    let (_, metrics, _) = node.text("/metrics").await;
    assert!(metrics.contains("ostracon_http_requests_total{route=\"/openapi.json\",status=\"200\"}"), "{metrics}");
    assert!(metrics.contains("ostracon_log_size"));
}

#[tokio::test]
async fn peers_are_managed_by_the_operator_only() {
    let node = node().await;
    let (status, body) =
        node.call("POST", "/v1/peers", Some(ADMIN), Some(json!({ "jid": "incidents.beta.example" }))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["state"], "requested");
    assert_eq!(body["trust"], "accept");
    let queued = node.store.outbox_for("incidents.beta.example", 10).await.unwrap();
    let subscribe = ostracon_store::model::OutboxJob::Presence {
        presence: ostracon_protocol::xml::buddies::BuddyPresence::Subscribe,
    };
    // Our `subscribe`, and a disco#info probe that shows a wrong or unreachable JID at once.
    let jobs: Vec<_> = queued.iter().map(|item| item.job.clone()).collect();
    assert_eq!(jobs, vec![ostracon_store::model::OutboxJob::Probe, subscribe], "newest first");

    // How deliveries to it go: queued, then unreachable after two failures.
    let delivery = async || node.call("GET", "/v1/peers", Some(ADMIN), None).await.1["peers"][0]["delivery"].clone();
    assert_eq!(delivery().await["status"], "queued");
    let now = node.env.now();
    for _ in 0..2 {
        node.ledger.outbox_failed(queued[0].id, "remote-server-not-found", Some(now.plus_secs(2))).await.unwrap();
    }
    let failing = delivery().await;
    assert_eq!((failing["status"].clone(), failing["attempts"].clone()), (json!("unreachable"), json!(2)), "{failing}");
    assert_eq!(failing["last_error"], "remote-server-not-found");
    let (status, body) =
        node.call("POST", "/v1/peers", Some(SUBMIT), Some(json!({ "jid": "incidents.gamma.example" }))).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) =
        node.call("POST", "/v1/peers", Some(ADMIN), Some(json!({ "jid": "someone@beta.example" }))).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid_jid");
    let (status, body) = node.call("POST", "/v1/peers/incidents.beta.example/approve", Some(ADMIN), None).await;
    assert_error(status, &body, StatusCode::CONFLICT, "rejected");
    let (status, body) = node.call("POST", "/v1/peers/incidents.nobody.example/approve", Some(ADMIN), None).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = node
        .call("POST", "/v1/peers/incidents.beta.example/trust", Some(ADMIN), Some(json!({ "trust": "observe" })))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["trust"], "observe");

    let (status, _) = node.call("DELETE", "/v1/peers/incidents.beta.example", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, peers) = node.call("GET", "/v1/peers", Some(ADMIN), None).await;
    assert_eq!(peers["peers"][0]["state"], "revoked");
    let rows: Vec<(String, String)> = node
        .store
        .outbox_for("incidents.beta.example", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|item| match item.job {
            ostracon_store::model::OutboxJob::Presence { presence } => (presence.as_type().to_owned(), item.state),
            other => (other.kind().to_owned(), item.state),
        })
        .collect();
    // Revoking cancels what still waited for the peer (our unanswered `subscribe`, the probe).
    let expected =
        [("unsubscribed", "pending"), ("unsubscribe", "pending"), ("probe", "cancelled"), ("subscribe", "cancelled")];
    assert_eq!(rows, expected.map(|(p, s)| (p.to_owned(), s.to_owned())));
}

#[tokio::test]
async fn reputation_explains_a_domains_score() {
    let node = node().await;
    let (status, neutral) = node.call("GET", "/v1/reputation/spam.example", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(neutral["score"], 0);
    node.submit(&["bot1@spam.example", "bot2@spam.example", "spam.example", "192.0.2.1"]).await;
    let (_, scored) = node.call("GET", "/v1/reputation/spam.example", None, None).await;
    // One high-severity incident at full weight (-20), counted once although it names three offenders there.
    assert_eq!(scored["components"]["incidents"], -20, "{scored}");
    assert_eq!(scored["score"], -16);
    let (_, other) = node.call("GET", "/v1/reputation/notspam.example", None, None).await;
    assert_eq!(other["score"], 0, "a suffix match is not a subdomain");
    let (status, body) = node.call("GET", "/v1/reputation/bad%20domain", None, None).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid_domain");
}

#[tokio::test]
async fn reputation_list_overrides_and_dry_run_check_their_input_and_tokens() {
    let node = node().await;
    node.submit(&["bot1@spam.example"]).await;
    let (status, list) = node.call("GET", "/v1/reputation?order=worst&limit=10", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((&list["total"], &list["scores"][0]["domain"]), (&json!(1), &json!("spam.example")), "{list}");
    for (query, code) in
        [("order=sideways", "invalid_order"), ("limit=0", "invalid_limit"), ("offset=-1", "invalid_offset")]
    {
        let (status, body) = node.call("GET", &format!("/v1/reputation?{query}"), None, None).await;
        assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, code);
    }
    let (status, body) = node.call("GET", "/v1/reputation?bogus=1", None, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let fixed = json!({ "score": -70, "note": "spam haven" });
    let (status, body) = node.call("PUT", "/v1/reputation/spam.example/override", None, Some(fixed.clone())).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, body) =
        node.call("PUT", "/v1/reputation/spam.example/override", Some(SUBMIT), Some(fixed.clone())).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) =
        node.call("PUT", "/v1/reputation/spam.example/override", Some(ADMIN), Some(json!({ "score": 101 }))).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid_score");
    let (status, body) = node.call("PUT", "/v1/reputation/spam.example/override", Some(ADMIN), Some(fixed)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["listed"], json!(["spam.example"]), "a fixed low score recommends a domain entry: {body}");
    let (_, shown) = node.call("GET", "/v1/reputation/spam.example", None, None).await;
    assert_eq!((&shown["score"], &shown["consequences"]["domain_entry_recommended"]), (&json!(-70), &json!(true)));
    let (status, _) = node.call("DELETE", "/v1/reputation/spam.example/override", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = node.call("DELETE", "/v1/reputation/spam.example/override", Some(ADMIN), None).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");

    let (status, body) = node.call("GET", "/v1/policy/dry-run?threshold=2", None, None).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, body) = node.call("GET", "/v1/policy/dry-run?threshold=0", Some(ADMIN), None).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid_threshold");
    let (status, run) = node.call("GET", "/v1/policy/dry-run?threshold=2", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(run["would_delist"][0]["value"], "bot1@spam.example", "{run}");
}

#[tokio::test]
async fn a_public_reader_learns_no_allow_note_and_an_erased_opening_keeps_every_proof() {
    let node = node().await;
    node.submit(&["192.0.2.1"]).await;
    let (status, _) = node
        .call("POST", "/v1/allow", Some(ADMIN), Some(json!({ "value": "198.51.100.0/24", "note": "office of J. Doe" })))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, old_text, _) = node.text("/v1/log/checkpoint").await;
    let old = SignedCheckpoint::parse(&old_text).unwrap().checkpoint().clone();

    // The public reads a sealed leaf: when, what kind, and a commitment.
    let (status, public) = node.call("GET", "/v1/log/entries?start=0", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let text = public.to_string();
    assert!(!text.contains("J. Doe") && !text.contains("198.51.100"), "{text}");
    let sealed = public["entries"].as_array().unwrap().iter().find(|e| e["record"]["sealed"].is_string()).unwrap();
    assert_eq!(sealed["record"]["event"], "allow-added");
    assert!(sealed.get("opening").is_none());
    let index = sealed["index"].as_u64().unwrap();

    // The operator reads the opening; a bad token is refused, not served as public.
    let (_, admin) = node.call("GET", "/v1/log/entries?start=0", Some(ADMIN), None).await;
    let opening = &admin["entries"][index as usize]["opening"];
    assert_eq!(opening["record"]["note"], "office of J. Doe", "{admin}");
    assert_eq!(opening["record"]["offender"]["value"], "198.51.100.0/24");
    let (status, body) = node.call("GET", "/v1/log/entries?start=0", Some("ost_wrong"), None).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, body) = node.call("GET", "/v1/log/entries?start=0", Some(SUBMIT), None).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");

    // Erasing: admin only, then the opening is gone and the old checkpoint still extends.
    let path = format!("/v1/log/openings/{index}");
    let (status, body) = node.call("DELETE", &path, Some(SUBMIT), None).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = node.call("DELETE", &path, Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["erased"], index);
    let (status, body) = node.call("DELETE", &path, Some(ADMIN), None).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = node.call("DELETE", "/v1/log/openings/x", Some(ADMIN), None).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_index");
    let (_, admin) = node.call("GET", "/v1/log/entries?start=0", Some(ADMIN), None).await;
    assert!(admin["entries"][index as usize].get("opening").is_none(), "{admin}");
    let last = admin["entries"].as_array().unwrap().last().unwrap();
    assert_eq!(last["record"], json!({ "at": "2027-01-15T08:00:00Z", "event": "opening-erased", "index": index }));
    let (_, new_text, _) = node.text("/v1/log/checkpoint").await;
    let new = SignedCheckpoint::parse(&new_text).unwrap().checkpoint().clone();
    let (_, proof) =
        node.call("GET", &format!("/v1/log/proof/consistency?old={}&new={}", old.size, new.size), None, None).await;
    let hashes = proof_hashes(&proof);
    verify_consistency(old.size, new.size, &old.root, &new.root, &hashes).unwrap();
}

#[tokio::test]
async fn a_node_without_its_key_files_refuses_a_key_rotation_and_changes_nothing() {
    let node = node().await;
    let (status, body) = node.call("POST", "/v1/key/rotate", Some(SUBMIT), None).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let size = node.ledger.log_size();
    let (status, body) = node.call("POST", "/v1/key/rotate", Some(ADMIN), None).await;
    assert_error(status, &body, StatusCode::CONFLICT, "key_rotation_refused");
    assert_eq!(node.ledger.log_size(), size);
    assert_eq!(node.ledger.signing_key().key_id(), key().key_id());
}

#[tokio::test]
async fn what_waits_is_for_admins_and_its_filters_are_checked() {
    let node = node().await;
    for path in ["/v1/candidates", "/v1/outbox"] {
        assert_eq!(node.call("GET", path, None, None).await.0, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(node.call("GET", path, Some(SUBMIT), None).await.0, StatusCode::FORBIDDEN, "{path}");
    }
    let (status, empty) = node.call("GET", "/v1/candidates", Some(ADMIN), None).await;
    assert_eq!((status, &empty["total"], &empty["candidates"]), (StatusCode::OK, &json!(0), &json!([])));
    let (status, empty) = node.call("GET", "/v1/outbox", Some(ADMIN), None).await;
    assert_eq!((status, &empty["outbox"], &empty["next"]), (StatusCode::OK, &json!([]), &Value::Null));
    for (path, code) in [
        ("/v1/outbox?state=lost", "invalid_state"),
        ("/v1/outbox?limit=0", "invalid_limit"),
        ("/v1/outbox?peer=not%20a%20jid", "invalid_jid"),
        ("/v1/candidates?limit=101", "invalid_limit"),
    ] {
        let (status, body) = node.call("GET", path, Some(ADMIN), None).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(code)), "{path}");
    }
    let (_, refused) = node.call("GET", "/v1/outbox?state=lost", Some(ADMIN), None).await;
    assert!(refused["error"]["message"].as_str().unwrap().contains("pending, delivered, failed, cancelled"));
}

#[tokio::test]
async fn per_peer_metrics_need_a_metrics_or_admin_token_and_a_metrics_token_can_do_nothing_else() {
    let node = node().await;
    let (status, created) =
        node.call("POST", "/v1/tokens", Some(ADMIN), Some(json!({ "name": "prometheus", "scope": "metrics" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let metrics_token = created["token"].as_str().unwrap().to_owned();
    let scrape = |token: Option<String>| {
        let mut request = Request::get("/metrics");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request.body(Body::empty()).unwrap();
        async { node.send(request).await }
    };
    for token in [Some(metrics_token.clone()), Some(ADMIN.to_owned())] {
        let response = scrape(token).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = String::from_utf8(to_bytes(response.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap();
        assert!(body.contains("# TYPE ostracon_peer_deliveries_total counter"), "{body}");
    }
    let public = scrape(None).await;
    let body = String::from_utf8(to_bytes(public.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap();
    assert!(body.contains("ostracon_log_size") && !body.contains("ostracon_peer_"), "{body}");
    assert_eq!(
        scrape(Some(SUBMIT.to_owned())).await.status(),
        StatusCode::FORBIDDEN,
        "a submit token is not a scraper"
    );
    // The scraper's token opens nothing else.
    for (method, path) in [("GET", "/v1/status"), ("GET", "/v1/peers"), ("GET", "/v1/incidents")] {
        assert_eq!(node.call(method, path, Some(&metrics_token), None).await.0, StatusCode::FORBIDDEN, "{path}");
    }
}

const BOUNCER: &str = "ost_bouncer-key-for-tests";
const SECOND_BOUNCER: &str = "ost_second-bouncer-key-for-tests";

impl Node {
    /// A CrowdSec-style request: the key in `X-Api-Key`.
    async fn bouncer(&self, path: &str, key: Option<&str>) -> (StatusCode, Value) {
        let mut builder = Request::get(path).header(header::USER_AGENT, "crowdsec-firewall-bouncer/-");
        if let Some(key) = key {
            builder = builder.header("X-Api-Key", key);
        }
        let response = self.send(builder.body(Body::empty()).unwrap()).await;
        let status = response.status();
        let bytes = to_bytes(response.into_body(), 64 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    async fn deny(&self, value: &str, action: &str, ttl: Option<u64>) {
        let mut body = json!({ "value": value, "action": action });
        if let Some(ttl) = ttl {
            body["ttl_seconds"] = json!(ttl);
        }
        let (status, body) = self.call("POST", "/v1/deny", Some(ADMIN), Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
}

/// The values of a stream answer's `new` or `deleted`, sorted.
fn decision_values(answer: &Value, field: &str) -> Vec<String> {
    let mut values: Vec<String> = answer[field]
        .as_array()
        .unwrap_or_else(|| panic!("{field} is not an array: {answer}"))
        .iter()
        .map(|d| d["value"].as_str().unwrap().to_owned())
        .collect();
    values.sort();
    values
}

#[tokio::test]
async fn the_decision_stream_gives_each_bouncer_key_its_own_position_and_every_field() {
    let node = node().await;
    node.store.create_token("fw", Scope::Bouncer, &hash_token(BOUNCER), node.env.now()).await.unwrap();
    node.store.create_token("fw2", Scope::Bouncer, &hash_token(SECOND_BOUNCER), node.env.now()).await.unwrap();
    node.deny("192.0.2.7", "block", Some(4 * 3600)).await;
    node.deny("198.51.100.0/24", "block", None).await;
    node.deny("2001:db8::/48", "block", Some(30 * 86_400)).await;
    node.deny("203.0.113.5", "quarantine", None).await;
    node.deny("bot@spam.example", "block", None).await;

    let (status, startup) = node.bouncer("/v1/decisions/stream?startup=true", Some(BOUNCER)).await;
    assert_eq!(status, StatusCode::OK, "{startup}");
    // Only address entries with action block, each with all six fields the bouncers read.
    assert_eq!(decision_values(&startup, "new"), ["192.0.2.7", "198.51.100.0/24", "2001:db8::/48"]);
    let by_value =
        |value: &str| startup["new"].as_array().unwrap().iter().find(|d| d["value"] == value).unwrap().clone();
    let ip = by_value("192.0.2.7");
    assert_eq!(
        (ip["type"].as_str(), ip["scope"].as_str(), ip["origin"].as_str(), ip["scenario"].as_str()),
        (Some("ban"), Some("Ip"), Some("ostracon"), Some("ostracon/operator")),
        "{ip}"
    );
    assert_eq!(ip["duration"], "4h0m0s");
    assert_eq!(by_value("198.51.100.0/24")["scope"], "Range");
    // No expiry, or one past what a set can hold: sent for the cap, refreshed before it lapses.
    assert_eq!(by_value("198.51.100.0/24")["duration"], "168h0m0s");
    assert_eq!(by_value("2001:db8::/48")["duration"], "168h0m0s");
    // A recent address entry that is not a ban is lifted: the stream keeps no history of
    // what it sent, and a stale ban costs more than a redundant lift.
    assert_eq!(decision_values(&startup, "deleted"), ["203.0.113.5"]);

    // Nothing changed: nothing new for this key.
    let (_, again) = node.bouncer("/v1/decisions/stream?", Some(BOUNCER)).await;
    assert_eq!((decision_values(&again, "new"), decision_values(&again, "deleted")), (vec![], vec![]));

    // A delisting and a listing reach this key as one deleted and one new.
    let (status, _) = node.call("DELETE", "/v1/deny?value=192.0.2.7", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    node.deny("192.0.2.99", "block", Some(600)).await;
    let (_, changed) = node.bouncer("/v1/decisions/stream", Some(BOUNCER)).await;
    assert_eq!(decision_values(&changed, "new"), ["192.0.2.99"]);
    assert_eq!(decision_values(&changed, "deleted"), ["192.0.2.7"]);
    assert_eq!(changed["deleted"][0]["duration"], "-1s");
    assert_eq!(changed["new"][0]["duration"], "10m0s");

    // The other key has its own position: never pulled, it gets the whole list, and the
    // recent delisting as deleted (it may hold it from an earlier run).
    let (_, second) = node.bouncer("/v1/decisions/stream", Some(SECOND_BOUNCER)).await;
    assert_eq!(decision_values(&second, "new"), ["192.0.2.99", "198.51.100.0/24", "2001:db8::/48"]);
    assert_eq!(decision_values(&second, "deleted"), ["192.0.2.7", "203.0.113.5"]);

    // The LAPI's filters.
    let (_, ranges) = node.bouncer("/v1/decisions/stream?startup=true&scopes=range", Some(SECOND_BOUNCER)).await;
    assert_eq!(decision_values(&ranges, "new"), ["198.51.100.0/24", "2001:db8::/48"]);
    let (_, theirs) =
        node.bouncer("/v1/decisions/stream?startup=true&origins=crowdsec,cscli", Some(SECOND_BOUNCER)).await;
    assert_eq!(decision_values(&theirs, "new"), Vec::<String>::new());
    let (_, not_ours) =
        node.bouncer("/v1/decisions/stream?startup=true&scenarios_not_containing=operator", Some(SECOND_BOUNCER)).await;
    assert_eq!(decision_values(&not_ours, "new"), Vec::<String>::new());
    let (status, body) = node.bouncer("/v1/decisions/stream?startup=maybe", Some(BOUNCER)).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_query");
}

#[tokio::test]
async fn a_stream_answer_is_gzipped_for_a_bouncer_that_accepts_it_and_means_the_same() {
    let node = node().await;
    node.store.create_token("fw", Scope::Bouncer, &hash_token(BOUNCER), node.env.now()).await.unwrap();
    node.store.create_token("fw2", Scope::Bouncer, &hash_token(SECOND_BOUNCER), node.env.now()).await.unwrap();
    for last in 1..=40 {
        node.deny(&format!("192.0.2.{last}"), "block", Some(3600)).await;
    }
    // What Go's HTTP client sends unasked.
    let request = Request::get("/v1/decisions/stream?startup=true")
        .header("X-Api-Key", BOUNCER)
        .header(header::ACCEPT_ENCODING, "gzip")
        .body(Body::empty())
        .unwrap();
    let response = node.send(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
    let zipped = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    let mut unzipped = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(zipped.as_ref()), &mut unzipped).unwrap();
    assert!(zipped.len() * 3 < unzipped.len(), "{} bytes gzipped from {}", zipped.len(), unzipped.len());
    let gzipped: Value = serde_json::from_str(&unzipped).unwrap();
    // The same pull, plain, by a key at the same position.
    let (_, plain) = node.bouncer("/v1/decisions/stream?startup=true", Some(SECOND_BOUNCER)).await;
    assert_eq!(decision_values(&gzipped, "new").len(), 40);
    assert_eq!(gzipped, plain);
}

#[tokio::test]
async fn long_decisions_are_sent_again_once_a_day_and_a_key_away_a_day_gets_the_whole_list() {
    let node = node().await;
    node.store.create_token("fw", Scope::Bouncer, &hash_token(BOUNCER), node.env.now()).await.unwrap();
    node.deny("198.51.100.0/24", "block", None).await;
    node.deny("192.0.2.7", "block", None).await;
    let (_, startup) = node.bouncer("/v1/decisions/stream?startup=true", Some(BOUNCER)).await;
    assert_eq!(decision_values(&startup, "new").len(), 2);
    // Entry ids 1 and 2 are refreshed at seconds 1 and 2 of the (UTC) day; the test clock
    // starts at second 28,800.
    node.env.advance(40_000);
    let (_, before) = node.bouncer("/v1/decisions/stream", Some(BOUNCER)).await;
    assert_eq!(decision_values(&before, "new"), Vec::<String>::new(), "{before}");
    node.env.advance(20_000);
    let (_, due) = node.bouncer("/v1/decisions/stream", Some(BOUNCER)).await;
    assert_eq!(decision_values(&due, "new"), ["192.0.2.7", "198.51.100.0/24"], "{due}");
    assert_eq!(due["new"][0]["duration"], "168h0m0s");
    let (_, after) = node.bouncer("/v1/decisions/stream", Some(BOUNCER)).await;
    assert_eq!(decision_values(&after, "new"), Vec::<String>::new());
    node.env.advance(86_400);
    let (_, whole) = node.bouncer("/v1/decisions/stream", Some(BOUNCER)).await;
    assert_eq!(decision_values(&whole, "new").len(), 2, "{whole}");
}

#[tokio::test]
async fn bouncer_keys_are_checked_first_and_only_bouncer_keys_pass() {
    let node = node().await;
    node.store.create_token("fw", Scope::Bouncer, &hash_token(BOUNCER), node.env.now()).await.unwrap();
    for key in [None, Some("ost_unknown"), Some(ADMIN), Some(SUBMIT)] {
        for path in
            ["/v1/decisions/stream?startup=true", "/v1/decisions?ip=192.0.2.7", "/v1/decisions/stream?startup=x"]
        {
            let (status, body) = node.bouncer(path, key).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{key:?} {path}: {body}");
            // The LAPI's shape, which the bouncers' client reads, beside ours.
            assert_eq!(body["message"], "access forbidden", "{body}");
            assert_eq!(body["error"]["code"], "forbidden", "{body}");
        }
    }
    // A bouncer key is read-only: it opens nothing else.
    let (status, body) = node.call("GET", "/v1/incidents", Some(BOUNCER), None).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = node.call("GET", "/v1/lookup/ip/192.0.2.7", Some(BOUNCER), None).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn live_mode_answers_the_decisions_covering_one_address_or_null() {
    let node = node().await;
    node.store.create_token("fw", Scope::Bouncer, &hash_token(BOUNCER), node.env.now()).await.unwrap();
    node.deny("198.51.100.0/24", "block", None).await;
    node.deny("203.0.113.5", "quarantine", None).await;
    let (status, hit) = node.bouncer("/v1/decisions?ip=198.51.100.9", Some(BOUNCER)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(hit.as_array().map(Vec::len), Some(1), "{hit}");
    assert_eq!((hit[0]["value"].as_str(), hit[0]["scope"].as_str()), (Some("198.51.100.0/24"), Some("Range")));
    let (_, hit) = node.bouncer("/v1/decisions?scope=ip&value=198.51.100.200", Some(BOUNCER)).await;
    assert_eq!(hit.as_array().map(Vec::len), Some(1), "{hit}");
    for miss in
        ["/v1/decisions?ip=192.0.2.1", "/v1/decisions?ip=203.0.113.5", "/v1/decisions?ip=198.51.100.9&type=captcha"]
    {
        let (status, body) = node.bouncer(miss, Some(BOUNCER)).await;
        assert_eq!((status, body), (StatusCode::OK, Value::Null), "{miss}");
    }
    let (status, body) = node.bouncer("/v1/decisions?ip=not-an-ip", Some(BOUNCER)).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_query");
    assert!(body["message"].as_str().is_some(), "{body}");
}

#[tokio::test]
async fn a_dead_store_answers_the_bouncer_an_error_never_an_empty_stream() {
    let node = node().await;
    node.store.create_token("fw", Scope::Bouncer, &hash_token(BOUNCER), node.env.now()).await.unwrap();
    node.deny("192.0.2.7", "block", None).await;
    node.store.close().await;
    let (status, body) = node.bouncer("/v1/decisions/stream?startup=true", Some(BOUNCER)).await;
    assert_error(status, &body, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert!(body["message"].as_str().is_some() && body.get("new").is_none(), "{body}");
}

#[tokio::test]
async fn firewall_formats_load_as_one_transaction_with_contained_entries_merged() {
    let node = node().await;
    for value in ["192.0.2.0/24", "192.0.2.7", "198.51.100.7", "2001:db8::/48", "2001:db8::1"] {
        node.deny(value, "block", None).await;
    }
    node.deny("203.0.113.5", "quarantine", None).await;
    let (status, nft, headers) = node.text("/v1/blocklist?kind=ip&format=nft").await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.contains_key("ostracon-signature"));
    assert!(nft.contains("flags interval; auto-merge;"), "{nft}");
    assert!(nft.contains("add element inet ostracon blocked4 { 192.0.2.0/24, 198.51.100.7 }"), "{nft}");
    assert!(nft.contains("add element inet ostracon blocked6 { 2001:db8::/48 }"), "{nft}");
    assert!(!nft.contains("203.0.113.5"), "{nft}");
    let (_, ipset, _) = node.text("/v1/blocklist?kind=ip&format=ipset").await;
    let adds: Vec<&str> = ipset.lines().filter(|line| line.starts_with("add ")).collect();
    assert_eq!(
        adds,
        ["add ostracon-v4-new 192.0.2.0/24", "add ostracon-v4-new 198.51.100.7", "add ostracon-v6-new 2001:db8::/48"]
    );
    assert!(ipset.contains("swap ostracon-v4-new ostracon-v4\ndestroy ostracon-v4-new\n"), "{ipset}");
    let (status, body) = node.call("GET", "/v1/blocklist?kind=jid&format=nft", None, None).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_format");
}

#[tokio::test]
async fn the_history_counts_today_and_checks_its_window() {
    let node = node().await;
    assert_eq!(node.call("GET", "/v1/history", None, None).await.0, StatusCode::UNAUTHORIZED);
    let created = node.submit(&["192.0.2.7", "spam.example"]).await;
    let (status, body) = node.call("GET", "/v1/history?days=3", Some(SUBMIT), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let days = body["days"].as_array().unwrap();
    assert_eq!(days.len(), 3);
    let today = &days[2];
    assert_eq!(today["decisions"], json!({ "accepted": 1 }), "{body}");
    assert_eq!(today["list_sizes"], json!({ "ip": 1, "cidr": 0, "jid": 0, "domain": 1 }));
    assert_eq!(days[1]["list_sizes"]["ip"], 0, "nothing was listed yesterday");
    assert!(today["day"].as_str().unwrap().ends_with("T00:00:00Z"), "{today}");
    // The incident's detail says it went nowhere: it was not shared.
    let (_, detail) =
        node.call("GET", &format!("/v1/incidents/{}", created["id"].as_str().unwrap()), Some(ADMIN), None).await;
    assert_eq!(detail["deliveries"], json!({ "items": [], "more": false }));
    for (path, status, code) in [
        ("/v1/history?days=0", StatusCode::UNPROCESSABLE_ENTITY, "invalid_days"),
        ("/v1/history?days=91", StatusCode::UNPROCESSABLE_ENTITY, "invalid_days"),
        ("/v1/history?weeks=2", StatusCode::BAD_REQUEST, "bad_query"),
    ] {
        let (got, body) = node.call("GET", path, Some(ADMIN), None).await;
        assert_eq!((got, body["error"]["code"].as_str()), (status, Some(code)), "{path}: {body}");
    }
}

#[tokio::test]
async fn a_lookup_answered_from_memory_follows_every_change_to_its_entry() {
    let node = node().await;
    let reasons = |body: &Value| -> Vec<String> {
        body["matches"][0]["why"]["reasons"]
            .as_array()
            .map(|r| r.iter().map(|r| r["incident"].as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    };
    let first = node.submit(&["192.0.2.7"]).await["id"].as_str().unwrap().to_owned();
    let (_, once) = node.call("GET", "/v1/lookup/ip/192.0.2.7", None, None).await;
    let (_, again) = node.call("GET", "/v1/lookup/ip/192.0.2.7", None, None).await;
    assert_eq!(once, again, "the cached answer is the rendered one");
    assert_eq!(reasons(&again), [first.as_str()]);
    // A second report adds its reason; a retraction takes the first one away.
    let second = node.submit(&["192.0.2.7"]).await["id"].as_str().unwrap().to_owned();
    let (_, both) = node.call("GET", "/v1/lookup/ip/192.0.2.7", None, None).await;
    assert_eq!(reasons(&both).len(), 2, "{both}");
    let (status, _) = node.call("POST", &format!("/v1/incidents/{first}/retract"), Some(SUBMIT), None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, after) = node.call("GET", "/v1/lookup/ip/192.0.2.7", None, None).await;
    assert_eq!(reasons(&after), [second.as_str()], "{after}");
    // Delisted, it is not listed any more; the operator's own entry is explained as such.
    let (status, _) = node.call("POST", &format!("/v1/incidents/{second}/retract"), Some(SUBMIT), None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, gone) = node.call("GET", "/v1/lookup/ip/192.0.2.7", None, None).await;
    assert_eq!((gone["listed"].clone(), gone["matches"].clone()), (json!(false), json!([])));
    let (status, _) =
        node.call("POST", "/v1/deny", Some(ADMIN), Some(json!({ "value": "192.0.2.7", "action": "block" }))).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, denied) = node.call("GET", "/v1/lookup/ip/192.0.2.7", None, None).await;
    assert_eq!(denied["matches"][0]["source"], "operator", "{denied}");
}
