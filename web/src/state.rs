//! What every route reads: the ledger, the environment (clock and ids), the node's public
//! description, the rate limiter, the metrics and the snapshot cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ostracon_protocol::ids::{BareJid, Domain};
use ostracon_store::clock::Environment;
use ostracon_store::ledger::Ledger;
use ostracon_store::model::ListKind;
use ostracon_store::snapshot::{Actions, Format, Snapshot};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;

/// What `/.well-known/ostracon` publishes about this node.
#[derive(Clone, Debug, Serialize)]
pub struct NodeInfo {
    /// The operator's XMPP domain.
    pub domain: Domain,
    /// The node's component JID, once XMPP is configured.
    pub component: Option<BareJid>,
}

impl NodeInfo {
    /// The JID this node reports as: its component, or its domain while XMPP is off.
    pub fn reporter(&self) -> BareJid {
        self.component.clone().unwrap_or_else(|| BareJid::from_domain(self.domain.clone()))
    }
}

/// HTTP settings.
#[derive(Clone, Debug)]
pub struct WebConfig {
    /// Sustained requests per second per client address.
    pub rate_per_second: u32,
    /// Burst size per client address.
    pub rate_burst: u32,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self { rate_per_second: 50, rate_burst: 200, trusted_proxies: Vec::new() }
    }
}

struct Cached {
    version: u64,
    snapshot: Arc<Snapshot>,
}

/// The XMPP link as `/healthz` reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XmppHealth {
    /// `off` (not configured), `connecting` or `online`.
    pub state: &'static str,
    /// Why it is not online, in words the operator can act on.
    pub last_error: Option<String>,
    /// What the operator should know while it works (a list outgrowing one RTBL stanza).
    pub warnings: Vec<String>,
}

/// Reports the XMPP link's state for `/healthz`.
pub type XmppStatus = Arc<dyn Fn() -> XmppHealth + Send + Sync>;

/// The XMPP side's numbers for `/metrics` and `/v1/status`.
#[derive(Clone, Debug, Default)]
pub struct Traffic {
    /// Link-wide counters as (name, help, value).
    pub counters: Vec<(&'static str, &'static str, u64)>,
    /// Per peer, since the node started.
    pub peers: Vec<PeerTraffic>,
}

/// One peer's counts since the node started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerTraffic {
    /// The peer's JID (or `other` past the tally's bound).
    pub peer: String,
    /// Deliveries it confirmed.
    pub delivered: u64,
    /// Delivery attempts that failed.
    pub failed: u64,
    /// Its stanzas we refused.
    pub refused: u64,
}

/// Reports the XMPP side's numbers.
pub type XmppTraffic = Arc<dyn Fn() -> Traffic + Send + Sync>;

/// What a key rotation on the running node did (`POST /v1/key/rotate`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyRotated {
    /// The retired key's id.
    pub old: String,
    /// The new key's id.
    pub new: String,
    /// The new key's fingerprint, as buddies will see it.
    pub fingerprint: String,
    /// Buddies the signed announcement was queued for.
    pub announced_to: Vec<String>,
    /// The `key-rotated` audit leaf.
    pub log_index: u64,
}

/// Rotates the running node's key: the server owns the key files, so it supplies this.
/// An `Err` says why the rotation was refused, and nothing changed.
pub type KeyRotation =
    Arc<dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = Result<KeyRotated, String>> + Send>> + Send + Sync>;

struct Inner {
    xmpp: XmppStatus,
    traffic: XmppTraffic,
    ledger: Arc<Ledger>,
    env: Arc<dyn Environment>,
    node: NodeInfo,
    key_rotation: Option<KeyRotation>,
    /// This process's name among the node's replicas on one PostgreSQL database.
    replica: Option<String>,
    /// Replaced whole by [`AppState::reload`] (SIGHUP): requests in flight keep the old one.
    http: std::sync::RwLock<Arc<HttpPolicy>>,
    metrics: Metrics,
    snapshots: Mutex<HashMap<(ListKind, Format, Actions), Cached>>,
    /// One snapshot build at a time: a burst of clients after a change waits for one build
    /// instead of starting one each (CrowdSec's thundering herd, crowdsec#2450).
    build: tokio::sync::Mutex<()>,
    /// The operator pages' signed-in sessions.
    sessions: crate::pages::session::Sessions,
}

/// The HTTP settings that change at run time: the rate limiter and the trusted proxies.
pub struct HttpPolicy {
    limiter: RateLimiter,
    trusted_proxies: Vec<ipnet::IpNet>,
}

impl From<&WebConfig> for HttpPolicy {
    fn from(config: &WebConfig) -> Self {
        Self {
            limiter: RateLimiter::new(config.rate_per_second, config.rate_burst),
            trusted_proxies: config.trusted_proxies.clone(),
        }
    }
}

impl HttpPolicy {
    /// The per-client rate limiter.
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }
}

/// Shared state of the routes.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    /// State over a ledger.
    pub fn new(ledger: Arc<Ledger>, env: Arc<dyn Environment>, node: NodeInfo, config: &WebConfig) -> Self {
        Self::with_xmpp_status(
            ledger,
            env,
            node,
            config,
            Arc::new(|| XmppHealth { state: "off", last_error: None, warnings: Vec::new() }),
        )
    }

    /// State whose `/healthz` reports the XMPP link through `xmpp`.
    pub fn with_xmpp_status(
        ledger: Arc<Ledger>,
        env: Arc<dyn Environment>,
        node: NodeInfo,
        config: &WebConfig,
        xmpp: XmppStatus,
    ) -> Self {
        Self::with_xmpp(ledger, env, node, config, xmpp, Arc::new(Traffic::default))
    }

    /// State whose `/healthz` reports the XMPP link through `xmpp` and whose `/metrics`
    /// count its traffic through `traffic`.
    pub fn with_xmpp(
        ledger: Arc<Ledger>,
        env: Arc<dyn Environment>,
        node: NodeInfo,
        config: &WebConfig,
        xmpp: XmppStatus,
        traffic: XmppTraffic,
    ) -> Self {
        Self(Arc::new(Inner {
            xmpp,
            traffic,
            ledger,
            env,
            node,
            key_rotation: None,
            replica: None,
            http: std::sync::RwLock::new(Arc::new(HttpPolicy::from(config))),
            metrics: Metrics::default(),
            snapshots: Mutex::new(HashMap::new()),
            build: tokio::sync::Mutex::new(()),
            sessions: crate::pages::session::Sessions::default(),
        }))
    }

    /// The same state, able to rotate the node's key through `rotate` (set while building the
    /// state, before it is shared).
    pub fn with_key_rotation(mut self, rotate: KeyRotation) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.0) {
            inner.key_rotation = Some(rotate);
        }
        self
    }

    /// The same state, named `name` among the node's replicas on one PostgreSQL database
    /// (`/healthz` then reports every replica; set while building the state).
    pub fn with_replica(mut self, name: String) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.0) {
            inner.replica = Some(name);
        }
        self
    }

    /// This process's name among the node's replicas, when it runs as one.
    pub fn replica(&self) -> Option<&str> {
        self.0.replica.as_deref()
    }

    /// How to rotate the running node's key, when the server supplied it.
    pub fn key_rotation(&self) -> Option<&KeyRotation> {
        self.0.key_rotation.as_ref()
    }

    /// Whether `peer` is one of the reverse proxies whose forwarded headers we believe.
    pub(crate) fn trusts(&self, peer: std::net::IpAddr) -> bool {
        self.http().trusted_proxies.iter().any(|net| net.contains(&peer.to_canonical()))
    }

    /// The operator pages' sessions.
    pub(crate) fn sessions(&self) -> &crate::pages::session::Sessions {
        &self.0.sessions
    }

    /// The client a request is from: the socket's peer, or, when that peer is a trusted
    /// proxy, the nearest address in `X-Forwarded-For` that is not one (each proxy appends
    /// the address it saw, so everything left of the first untrusted hop can be forged).
    pub fn client_address(&self, peer: std::net::IpAddr, headers: &axum::http::HeaderMap) -> std::net::IpAddr {
        let http = self.http();
        let trusted = |ip: &std::net::IpAddr| http.trusted_proxies.iter().any(|net| net.contains(&ip.to_canonical()));
        if !trusted(&peer) {
            return peer;
        }
        let hops = headers.get_all("x-forwarded-for").iter().filter_map(|value| value.to_str().ok());
        let hops: Vec<&str> = hops.flat_map(|value| value.split(',')).map(str::trim).collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop.parse::<std::net::IpAddr>() {
                Ok(ip) if trusted(&ip) => client = ip,
                Ok(ip) => return ip,
                // A malformed hop: nothing left of it can be believed.
                Err(_) => return client,
            }
        }
        client
    }

    /// The XMPP link's state.
    pub fn xmpp_status(&self) -> XmppHealth {
        (self.0.xmpp)()
    }

    /// The XMPP link's traffic so far.
    pub fn xmpp_traffic(&self) -> Traffic {
        (self.0.traffic)()
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.0.ledger
    }

    /// Time and ids.
    pub fn env(&self) -> &dyn Environment {
        self.0.env.as_ref()
    }

    /// The node's public description.
    pub fn node(&self) -> &NodeInfo {
        &self.0.node
    }

    /// The HTTP settings in force now (rate limiter, trusted proxies).
    pub fn http(&self) -> Arc<HttpPolicy> {
        Arc::clone(&self.0.http.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Applies new rate limits and trusted proxies (a reload): clients start with full buckets.
    pub fn reload(&self, config: &WebConfig) {
        *self.0.http.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(HttpPolicy::from(config));
    }

    /// Request counters.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    fn cached(&self, key: (ListKind, Format, Actions), version: u64) -> Option<Arc<Snapshot>> {
        let cache = self.0.snapshots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.get(&key).filter(|cached| cached.version == version).map(|cached| Arc::clone(&cached.snapshot))
    }

    /// The current snapshot of a list, built at most once per list change.
    pub async fn snapshot(&self, list: ListKind, format: Format, actions: Actions) -> Result<Arc<Snapshot>, ApiError> {
        // The database must answer even when a cached snapshot exists: a node that cannot
        // reach its store says so (503) instead of serving a list it can no longer vouch for.
        self.ledger().ping().await?;
        let version = self.ledger().list_version();
        let key = (list, format, actions);
        if let Some(snapshot) = self.cached(key, version) {
            return Ok(snapshot);
        }
        let _build = self.0.build.lock().await;
        if let Some(snapshot) = self.cached(key, version) {
            return Ok(snapshot);
        }
        let snapshot = Arc::new(self.ledger().build_snapshot(list, format, actions, self.env().now()).await?);
        let mut cache = self.0.snapshots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.insert(key, Cached { version, snapshot: Arc::clone(&snapshot) });
        Ok(snapshot)
    }
}
