//! Shared by the XMPP integration tests: a node running in process with a real
//! configuration, and polling helpers (the network is asynchronous; tests never sleep a
//! fixed time to wait for an outcome).
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ostracon::config::{Config, XmppSection};
use ostracon::{SystemEnvironment, serve};
use ostracon_tests::TempDir;
use ostracon_tests::free_port;
use ostracon_tests::prosody::{ComponentSpec, Prosody};
use serde_json::Value;
use tokio::sync::oneshot;

pub const TOKEN: &str = "ost_xmpp-integration-admin";

/// Runs the real `ostracon` binary against the node at `url` (with the admin token), and
/// returns its standard output; fails the test if it fails.
pub fn cli(url: &str, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ostracon"))
        .args(args)
        .args(["--url", url, "--token", TOKEN])
        .env_remove("OSTRACON_CONFIG")
        .output()
        .unwrap();
    assert!(output.status.success(), "ostracon {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// The value of `family{peer="PEER"}` in a `/metrics` text, if it is there.
pub fn peer_sample(metrics: &str, family: &str, peer: &str) -> Option<u64> {
    let prefix = format!("{family}{{peer=\"{peer}\"}} ");
    metrics.lines().find_map(|line| line.strip_prefix(&prefix)).and_then(|n| n.parse().ok())
}

/// `GET /metrics`, with the admin token or without.
pub async fn metrics(url: &str, admin: bool) -> String {
    let mut request = reqwest::Client::new().get(format!("{url}/metrics"));
    if admin {
        request = request.bearer_auth(TOKEN);
    }
    request.send().await.unwrap().text().await.unwrap()
}

/// A node's HTTP API, called with the admin token: a node in process ([`Node`] derefs to
/// it) or a replica running as its own process.
pub struct Api {
    pub url: String,
}

/// One node running in process.
pub struct Node {
    api: Api,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    pub config: Config,
    _dir: Arc<TempDir>,
}

impl Node {
    pub async fn start(domain: &str, prosody: &Prosody, dir: Arc<TempDir>) -> Self {
        Self::start_with(domain, prosody, dir, |_| {}).await
    }

    /// Waits until the node's XMPP link to its server is up.
    pub async fn wait_online(&self) {
        let what = format!("{} online", self.config.node.domain);
        self.wait_for(&what, "/healthz", |h| h["xmpp"] == "online").await;
    }

    /// Like `start`, with a chance to change the configuration first.
    pub async fn start_with(
        domain: &str,
        prosody: &Prosody,
        dir: Arc<TempDir>,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let mut config = Self::http_config(domain, &dir);
        config.xmpp = Some(XmppSection {
            component: format!("incidents.{domain}"),
            server: prosody.component_address.to_string(),
            secret_file: None,
            secret: Some(format!("{domain}-component-secret")),
            auto_approve: false,
            abuse_addresses: vec![format!("xmpp:abuse@{domain}")],
            forward_hops: 0,
        });
        adjust(&mut config);
        Self::run(config, dir).await
    }

    /// A node with XMPP off, serving HTTP at `listen`.
    pub async fn start_http_only(domain: &str, listen: SocketAddr, dir: Arc<TempDir>) -> Self {
        let mut config = Self::http_config(domain, &dir);
        config.http.listen = listen;
        Self::run(config, dir).await
    }

    fn http_config(domain: &str, dir: &TempDir) -> Config {
        let mut config = Config::default();
        config.node.domain = domain.to_owned();
        config.node.data_dir = dir.path().join(domain);
        config.http.listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
        config.http.rate_per_second = 0;
        // The tests' offenders are in the documentation ranges.
        config.lists.refuse_documentation_ranges = false;
        config
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
        Self { api: Api { url }, stop: Some(stop), task: Some(task), config, _dir: dir }
    }

    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }

    pub async fn restart(&mut self) {
        self.stop().await;
        let restarted = Self::run(self.config.clone(), Arc::clone(&self._dir)).await;
        *self = restarted;
    }
}

impl std::ops::Deref for Node {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Api {
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
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

    pub async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await.1
    }

    /// Polls `check` on `path` until it holds (the network is asynchronous; no fixed sleeps).
    pub async fn wait_for(&self, what: &str, path: &str, check: impl Fn(&Value) -> bool) -> Value {
        self.wait_for_within(Duration::from_secs(30), what, path, check).await
    }

    /// Like `wait_for`, with a longer bound for recoveries that include an IQ timeout and a
    /// retry (an answer lost on a dead s2s link is only noticed when the 30 s IQ timeout fires).
    pub async fn wait_for_within(
        &self,
        within: Duration,
        what: &str,
        path: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
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

/// The peer `jid` in a `/v1/peers` answer.
pub fn peer<'a>(peers: &'a Value, jid: &str) -> Option<&'a Value> {
    peers["peers"].as_array()?.iter().find(|p| p["jid"] == jid)
}

/// Makes `a` and `b` buddies through the operator routes, each trusting the other with
/// `auto-apply` (weight 1.0: one report lists, spec/reputation.md), and waits until both
/// pinned keys.
pub async fn make_buddies(a: &Api, a_jid: &str, b: &Api, b_jid: &str) {
    make_buddies_trusting(a, a_jid, b, b_jid, "auto-apply").await;
}

/// [`make_buddies`] with `trust` on both sides.
pub async fn make_buddies_trusting(a: &Api, a_jid: &str, b: &Api, b_jid: &str, trust: &str) {
    let request = serde_json::json!({ "jid": b_jid, "trust": trust });
    let (status, body) = a.call(reqwest::Method::POST, "/v1/peers", Some(request)).await;
    assert_eq!(status, 202, "{body}");
    b.wait_for("the buddy request with keys", "/v1/peers", |p| {
        peer(p, a_jid).is_some_and(|x| x["state"] == "pending" && !x["keys"].as_array().unwrap().is_empty())
    })
    .await;
    let approval = serde_json::json!({ "trust": trust });
    let (status, body) = b.call(reqwest::Method::POST, &format!("/v1/peers/{a_jid}/approve"), Some(approval)).await;
    assert_eq!(status, 200, "{body}");
    a.wait_for("the buddy with keys", "/v1/peers", |p| {
        peer(p, b_jid).is_some_and(|x| x["state"] == "buddy" && !x["keys"].as_array().unwrap().is_empty())
    })
    .await;
}

/// The component each test domain's node runs as (`incidents.DOMAIN`), with the secret
/// `Node::start` configures for it.
pub fn component_specs(domains: &[&str]) -> Vec<ComponentSpec> {
    domains
        .iter()
        .map(|d| ComponentSpec { domain: format!("incidents.{d}"), secret: format!("{d}-component-secret") })
        .collect()
}
