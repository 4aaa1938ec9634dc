//! Two nodes as components of one real Prosody: the XEP-0267 buddy handshake with key
//! pinning, a signed XEP-0268 report delivered, verified and listed, refusals of a non-buddy,
//! and delivery of a report queued while the receiving node was down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ostracon::config::{Config, XmppSection};
use ostracon::{SystemEnvironment, serve};
use ostracon_tests::prosody::{ComponentSpec, Prosody, available};
use ostracon_tests::{TempDir, free_port};
use serde_json::{Value, json};
use tokio::sync::oneshot;

const TOKEN: &str = "ost_xmpp-integration-admin";

/// One node running in process.
struct Node {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    config: Config,
    _dir: Arc<TempDir>,
}

impl Node {
    async fn start(domain: &str, prosody: &Prosody, dir: Arc<TempDir>) -> Self {
        let mut config = Config::default();
        config.node.domain = domain.to_owned();
        config.node.data_dir = dir.path().join(domain);
        config.http.listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
        config.http.rate_per_second = 0;
        config.xmpp = Some(XmppSection {
            component: format!("incidents.{domain}"),
            server: prosody.component_address.to_string(),
            secret_file: None,
            secret: Some(format!("{domain}-component-secret")),
            auto_approve: false,
        });
        Self::run(config, dir).await
    }

    async fn run(config: Config, dir: Arc<TempDir>) -> Self {
        let listener = tokio::net::TcpListener::bind(config.http.listen).await.unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let url = format!("http://{}", config.http.listen);
        let running = config.clone();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(error) =
                serve(running, Arc::new(SystemEnvironment), Some(TOKEN.to_owned()), listener, shutdown).await
            {
                panic!("node failed: {error}");
            }
        });
        Self { url, stop: Some(stop), task: Some(task), config, _dir: dir }
    }

    async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }

    async fn restart(&mut self) {
        self.stop().await;
        let restarted = Self::run(self.config.clone(), Arc::clone(&self._dir)).await;
        *self = restarted;
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let client = reqwest::Client::new();
        let mut request = client.request(method, format!("{}{path}", self.url)).bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let bytes = response.bytes().await.unwrap_or_default();
                (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await.1
    }

    /// Polls `check` on `path` until it holds (the network is asynchronous; no fixed sleeps).
    async fn wait_for(&self, what: &str, path: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let value = self.get(path).await;
            if check(&value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} at {}{path}; last answer: {value}",
                self.url
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn peer<'a>(peers: &'a Value, jid: &str) -> Option<&'a Value> {
    peers["peers"].as_array()?.iter().find(|p| p["jid"] == jid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn buddies_exchange_signed_reports_through_prosody() {
    if !available() {
        return;
    }
    let components: Vec<ComponentSpec> = ["alpha.test", "beta.test"]
        .iter()
        .map(|d| ComponentSpec { domain: format!("incidents.{d}"), secret: format!("{d}-component-secret") })
        .collect();
    let prosody = Prosody::start(&["alpha.test", "beta.test"], &components);
    let dir = Arc::new(TempDir::new("xmpp"));
    let alpha = Node::start("alpha.test", &prosody, Arc::clone(&dir)).await;
    let mut beta = Node::start("beta.test", &prosody, Arc::clone(&dir)).await;
    alpha.wait_for("alpha online", "/healthz", |h| h["xmpp"] == "online").await;
    beta.wait_for("beta online", "/healthz", |h| h["xmpp"] == "online").await;

    // Alpha's operator asks beta; beta's operator sees alpha's key fingerprints, then approves.
    let (status, body) =
        alpha.call(reqwest::Method::POST, "/v1/peers", Some(json!({ "jid": "incidents.beta.test" }))).await;
    assert_eq!(status, 202, "{body}");
    let pending = beta
        .wait_for("alpha's request with keys at beta", "/v1/peers", |p| {
            peer(p, "incidents.alpha.test")
                .is_some_and(|a| a["state"] == "pending" && !a["keys"].as_array().unwrap().is_empty())
        })
        .await;
    let alpha_key = &peer(&pending, "incidents.alpha.test").unwrap()["keys"][0];
    let alpha_published = alpha.get("/.well-known/ostracon").await;
    assert_eq!(alpha_key["kid"], alpha_published["keys"][0]["kid"], "beta fetched alpha's real key over XMPP");
    assert_eq!(
        alpha.get("/v1/peers").await["peers"][0]["state"],
        "requested",
        "nothing happens without beta's operator"
    );

    let (status, body) = beta.call(reqwest::Method::POST, "/v1/peers/incidents.alpha.test/approve", None).await;
    assert_eq!(status, 200, "{body}");
    alpha
        .wait_for("beta as buddy at alpha", "/v1/peers", |p| {
            peer(p, "incidents.beta.test")
                .is_some_and(|b| b["state"] == "buddy" && !b["keys"].as_array().unwrap().is_empty())
        })
        .await;

    // A shared incident at alpha reaches beta as a signed report and lands on beta's list.
    let (status, created) = alpha
        .call(
            reqwest::Method::POST,
            "/v1/incidents",
            Some(json!({ "offenders": ["198.51.100.77", "flooder@spam.example"], "category": "muc-abuse", "severity": "high", "share": true })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("incidents.alpha.test:"));
    let lookup = beta.wait_for("the report at beta", "/v1/lookup/ip/198.51.100.77", |l| l["listed"] == true).await;
    assert_eq!(lookup["matches"][0]["why"]["reasons"][0]["incident"], id);
    assert_eq!(lookup["matches"][0]["why"]["reasons"][0]["reporter"], "incidents.alpha.test");
    let stored = beta.get(&format!("/v1/incidents/{id}")).await;
    assert_eq!(stored["origin"], "peer");
    assert_eq!(stored["decision"], "accepted");
    assert_eq!(stored["provenance"][0]["signer"], "incidents.alpha.test", "the signed envelope is kept as provenance");
    let (_, jids) = (0, beta.get("/v1/lookup/jid/flooder@spam.example").await);
    assert_eq!(jids["listed"], true);

    // A report queued while beta is down is delivered once it is back.
    beta.stop().await;
    let (status, created) = alpha
        .call(
            reqwest::Method::POST,
            "/v1/incidents",
            Some(json!({ "offenders": ["203.0.113.200"], "category": "spam", "share": true })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    beta.restart().await;
    beta.wait_for("the delayed report at beta", "/v1/lookup/ip/203.0.113.200", |l| l["listed"] == true).await;
    assert!(prosody.log().contains("incidents.beta.test"));
}
