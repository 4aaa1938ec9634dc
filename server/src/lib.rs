//! The Ostracon daemon: configuration, the node's signing key and admin token, the
//! maintenance loop (expiry, change-feed pruning), the HTTP service, and the command-line
//! verbs (`init`, `verify`, and the operator verbs that call a running node's API).
//!
//! `main.rs` only parses the command line; everything runnable lives here so tests can start
//! a node in process on a port of their choosing.

pub mod check;
pub mod client;
pub mod config;
pub mod dnsbl;
pub mod error;
pub mod export;
pub mod init;
pub mod keyfile;
pub mod output;
pub mod reload;
pub mod replica;
pub mod rotation;
pub mod status;
pub mod verify;
pub mod xmpp;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ostracon_protocol::ids::{BareJid, Domain};
use ostracon_protocol::keys::PublishedKey;
use ostracon_protocol::time::Timestamp;
use ostracon_store::Store;
use ostracon_store::clock::Environment;
use ostracon_store::ledger::Ledger;
use ostracon_store::model::Scope;
use ostracon_store::traits::TokenStore as _;
use ostracon_web::auth::{hash_token, token_from_bytes};
use ostracon_web::{AppState, NodeInfo};
use tokio::net::TcpListener;

use crate::config::{ADMIN_TOKEN_FILE, Config, Finding, Severity};
use crate::error::ServerError;

/// The real clock and the OS's randomness.
#[derive(Debug, Default)]
pub struct SystemEnvironment;

impl Environment for SystemEnvironment {
    fn now(&self) -> Timestamp {
        Timestamp::from_datetime(chrono::Utc::now())
    }

    fn uuid(&self) -> uuid::Uuid {
        uuid::Uuid::new_v4()
    }

    fn random_bytes(&self) -> [u8; 32] {
        rand::random()
    }
}

/// How often expiry and pruning run.
pub const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(15);

/// Makes sure an admin token exists: the one in `OSTRACON_ADMIN_TOKEN` if set, else a new one
/// written to `DATA_DIR/admin.token` (mode 0600) when the node has no token at all.
pub async fn ensure_admin_token(
    store: &Store,
    config: &Config,
    fixed: Option<&str>,
    env: &dyn Environment,
) -> Result<Option<PathBuf>, ServerError> {
    if let Some(token) = fixed {
        if token.len() < 16 {
            return Err(ServerError::Config("OSTRACON_ADMIN_TOKEN must be at least 16 characters".to_owned()));
        }
        store.put_token("admin", Scope::Admin, &hash_token(token), env.now()).await?;
        return Ok(None);
    }
    if !store.tokens().await?.is_empty() {
        return Ok(None);
    }
    let token = token_from_bytes(&env.random_bytes());
    let path = config.node.data_dir.join(ADMIN_TOKEN_FILE);
    keyfile::write_private(&path, &format!("{token}\n"))?;
    store.put_token("admin", Scope::Admin, &hash_token(&token), env.now()).await?;
    Ok(Some(path))
}

/// `ostracon key rotate` on a stopped node: it takes the data directory's lock (refused
/// while a node runs: the CLI then asks the running node instead), opens the ledger, and
/// rotates as the running node does ([`rotation::rotate`]).
pub async fn rotate_key(config: &Config, env: &dyn Environment) -> Result<ostracon_web::KeyRotated, ServerError> {
    let _lock = keyfile::hold(&config.node.data_dir, "key rotate")?;
    let key = keyfile::load_or_create(&config.node.data_dir, env.now())?;
    let store = Store::open(&config.database_url()).await?;
    let ledger = Ledger::open(store.clone(), key.key, config.ledger_config()?).await?;
    let component = config.component()?;
    let replica = replica_name(config, &store);
    let rotated = rotation::rotate(&ledger, &config.node.data_dir, component.as_ref(), env, replica.as_deref()).await;
    store.close().await;
    rotated
}

/// Reads every listed entry's reasons into memory while the node already serves (start-up
/// reads only the rows; a lookup meanwhile reads its entry's reasons itself).
async fn load_reasons(ledger: Arc<Ledger>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let started = std::time::Instant::now();
    tokio::select! {
        loaded = ledger.load_reasons() => match loaded {
            Ok(entries) => {
                let millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                tracing::info!(entries, millis, "the listed entries' reasons are in memory");
            }
            Err(error) => tracing::warn!(%error, "reading the listed entries' reasons failed; lookups read them as asked"),
        },
        _ = stop.changed() => {}
    }
}

/// This process's name among the node's replicas; `None` on SQLite, which one process serves.
fn replica_name(config: &Config, store: &Store) -> Option<String> {
    (store.dialect() == ostracon_store::Dialect::Postgres)
        .then(|| config.database.replica.clone().unwrap_or_else(|| replica::default_name(config.http.listen.port())))
}

/// Runs the node on `listener` until `shutdown` resolves.
pub async fn serve(
    config: Config,
    env: Arc<dyn Environment>,
    admin_token: Option<String>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    serve_with_reload(config, None, env, admin_token, listener, shutdown).await
}

/// [`serve`], re-reading `config_path` on SIGHUP ([`reload`]).
pub async fn serve_with_reload(
    config: Config,
    config_path: Option<PathBuf>,
    env: Arc<dyn Environment>,
    admin_token: Option<String>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let errors: Vec<Finding> = config.check(None).into_iter().filter(|f| f.severity == Severity::Error).collect();
    if !errors.is_empty() {
        return Err(ServerError::Refused(errors));
    }
    let domain = Domain::parse(&config.node.domain).map_err(|e| ServerError::Config(e.to_string()))?;
    let component = config.component()?;
    let key = keyfile::load_or_create(&config.node.data_dir, env.now())?;
    let _lock = keyfile::hold(&config.node.data_dir, "serve")?;
    let _database_lock = replica::hold_sqlite(&config.database_url())?;
    let store = Store::open(&config.database_url()).await?;
    let replica = replica_name(&config, &store);
    let timings = replica::ReplicaTimings::default();
    if let Some(path) = ensure_admin_token(&store, &config, admin_token.as_deref(), env.as_ref()).await? {
        tracing::info!(path = %path.display(), "created an admin token (the file holds it; it is not logged)");
    }
    let mut published = keyfile::load_retired(&config.node.data_dir)?;
    published.push(PublishedKey::new(key.key.public(), key.valid_from));
    let ledger = Arc::new(
        Ledger::open(store.clone(), key.key.clone(), config.ledger_config()?).await?.with_published_keys(published),
    );
    let node = NodeInfo { domain: domain.clone(), component: component.clone() };
    let web = reload::web_config(&config);
    let link_status = Arc::new(xmpp::connection::LinkStatus::default());
    let status_for_web = Arc::clone(&link_status);
    let traffic_for_web = Arc::clone(&link_status);
    let state = AppState::with_xmpp(
        Arc::clone(&ledger),
        Arc::clone(&env),
        node,
        &web,
        Arc::new(move || ostracon_web::XmppHealth {
            state: status_for_web.as_str(),
            last_error: status_for_web.last_error(),
            warnings: status_for_web.warnings(),
        }),
        Arc::new(move || ostracon_web::Traffic {
            counters: traffic_for_web.counters(),
            peers: traffic_for_web
                .peer_tallies()
                .into_iter()
                .map(|(peer, [delivered, failed, refused])| ostracon_web::PeerTraffic {
                    peer,
                    delivered,
                    failed,
                    refused,
                })
                .collect(),
        }),
    )
    .with_key_rotation(key_rotation(
        Arc::clone(&ledger),
        config.node.data_dir.clone(),
        component.clone(),
        Arc::clone(&env),
        replica.clone(),
    ));
    let state = match &replica {
        Some(name) => state.with_replica(name.clone()),
        None => state,
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = vec![tokio::spawn(maintain(Arc::clone(&ledger), Arc::clone(&env), stop_rx.clone()))];
    tasks.push(tokio::spawn(load_reasons(Arc::clone(&ledger), stop_rx.clone())));
    let holds_link = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some(name) = replica {
        let (announcer, mut stop) = (Arc::clone(&ledger), stop_rx.clone());
        tasks.push(tokio::spawn(async move {
            announcer
                .announce_commits(timings.announce_every, async move {
                    let _ = stop.changed().await;
                })
                .await;
        }));
        tasks.push(tokio::spawn(replica::follow(
            Arc::clone(&ledger),
            name,
            Arc::clone(&holds_link),
            Arc::clone(&env),
            timings,
            stop_rx.clone(),
        )));
    }
    let mut component_secret = None;
    if let (Some(section), Some(component)) = (&config.xmpp, component) {
        let secret = config.xmpp_secret()?.ok_or_else(|| ServerError::Config("[xmpp] has no secret".to_owned()))?;
        let secret = xmpp::connection::ComponentSecret::new(secret);
        component_secret = Some(secret.clone());
        let server =
            section.server.parse().map_err(|_| ServerError::Config("[xmpp] server is not HOST:PORT".to_owned()))?;
        let link = xmpp::connection::LinkConfig {
            component: component.to_string(),
            server,
            secret,
            server_domain: domain.to_string(),
        };
        let settings = xmpp::node::NodeSettings {
            jid: component,
            server_domain: domain.clone(),
            strangers: ostracon_store::ledger::peers::StrangerLimits {
                auto_approve: section.auto_approve,
                ..Default::default()
            },
            rates: xmpp::limits::SenderRates::default(),
            name: "Ostracon".to_owned(),
            abuse_addresses: section.abuse_addresses.clone(),
            forward_hops: section.forward_hops,
            reputation: config.reputation.params(),
            rtbl: config.rtbl.settings(&domain).map_err(|problems| ServerError::Config(problems.join("; ")))?,
        };
        let (ledger, env, status) = (Arc::clone(&ledger), Arc::clone(&env), Arc::clone(&link_status));
        let start_link = move |stop: tokio::sync::watch::Receiver<bool>| {
            let (out_tx, out_rx) = tokio::sync::mpsc::channel(1024);
            // Stanzas read but not yet handled: with the handlers' own bound, at most about
            // (64 + 64) x 256 KiB of a peer's bytes are held in memory.
            let (in_tx, in_rx) = tokio::sync::mpsc::channel(64);
            let node = Arc::new(xmpp::node::XmppNode::new(
                Arc::clone(&ledger),
                Arc::clone(&env),
                settings.clone(),
                out_tx,
                Arc::clone(&status),
            ));
            status.set(xmpp::connection::LinkState::Connecting);
            let (online, links) = tokio::sync::watch::channel(0);
            vec![
                tokio::spawn(xmpp::connection::run(
                    link.clone(),
                    Arc::clone(&status),
                    online,
                    in_tx,
                    out_rx,
                    node.sender_limits(),
                    stop.clone(),
                )),
                tokio::spawn(Arc::clone(&node).run_link_resets(links.clone(), stop.clone())),
                tokio::spawn(Arc::clone(&node).run_rtbl(links, stop.clone())),
                tokio::spawn(Arc::clone(&node).run_incoming(in_rx)),
                tokio::spawn(node.run_outbox(stop)),
            ]
        };
        link_status.set(xmpp::connection::LinkState::Standby);
        tasks.push(tokio::spawn(replica::hold_link(
            store.clone(),
            Arc::clone(&link_status),
            Arc::clone(&holds_link),
            timings,
            start_link,
            stop_rx.clone(),
        )));
    }
    if let Some(section) = &config.dnsbl {
        let settings = section.settings(domain.as_str()).map_err(ServerError::Config)?;
        let (udp, tcp) = dnsbl::bind(settings.listen).await?;
        tracing::info!(address = %settings.listen, zone = %settings.zone, "answering the DNSBL zone");
        let (ledger, env, stop) = (Arc::clone(&ledger), Arc::clone(&env), stop_rx.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(error) = dnsbl::run(settings, ledger, env, udp, tcp, stop).await {
                tracing::error!(%error, "the DNSBL zone stopped");
            }
        }));
    }
    if let Some(path) = config_path {
        tasks.push(tokio::spawn(reload_on_hangup(
            path,
            config.clone(),
            state.clone(),
            component_secret,
            stop_rx.clone(),
        )));
    }
    let address = listener.local_addr().map_err(ServerError::Http)?;
    tracing::info!(%address, key_id = %key.key.key_id(), log_size = ledger.log_size(), "listening for HTTP");
    let app = ostracon_web::router(state);
    let mut limits = config.http.limits();
    // Every connection is a descriptor; the database, the XMPP link and logs need some too.
    if let Some(open_files) = open_file_limit() {
        let room = usize::try_from(open_files.saturating_sub(256)).unwrap_or(usize::MAX).max(16);
        if limits.max_connections > room {
            tracing::warn!(
                configured = limits.max_connections,
                open_files,
                using = room,
                "max_connections is above what the open-file limit allows; raise LimitNOFILE (ulimit -n) to use it"
            );
            limits.max_connections = room;
        }
    }
    let result = ostracon_web::serve::serve(listener, app, limits, shutdown).await.map_err(ServerError::Http);
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    store.close().await;
    tracing::info!("stopped");
    result
}

/// The running node's key rotation for `POST /v1/key/rotate`: one at a time, so two
/// operators cannot interleave file writes.
fn key_rotation(
    ledger: Arc<Ledger>,
    data_dir: PathBuf,
    component: Option<BareJid>,
    env: Arc<dyn Environment>,
    replica: Option<String>,
) -> ostracon_web::KeyRotation {
    let one_at_a_time = Arc::new(tokio::sync::Mutex::new(()));
    Arc::new(move || {
        let (ledger, data_dir, component, env, one_at_a_time, replica) = (
            Arc::clone(&ledger),
            data_dir.clone(),
            component.clone(),
            Arc::clone(&env),
            Arc::clone(&one_at_a_time),
            replica.clone(),
        );
        Box::pin(async move {
            let _one = one_at_a_time.lock().await;
            let rotated =
                rotation::rotate(&ledger, &data_dir, component.as_ref(), env.as_ref(), replica.as_deref()).await;
            match &rotated {
                Ok(done) => {
                    tracing::info!(old = %done.old, new = %done.new, buddies = done.announced_to.len(), "signing key rotated")
                }
                Err(error) => tracing::warn!(%error, "key rotation refused"),
            }
            rotated.map_err(|error| error.to_string())
        })
    })
}

/// Re-reads the configuration on every SIGHUP until told to stop.
async fn reload_on_hangup(
    path: PathBuf,
    mut running: Config,
    state: AppState,
    secret: Option<xmpp::connection::ComponentSecret>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reloading needs a restart");
        return;
    };
    loop {
        tokio::select! {
            _ = hangups.recv() => {}
            _ = stop.changed() => return,
        }
        match reload::reload(&path, &mut running, &state, secret.as_ref()) {
            Ok(done) => {
                tracing::info!(path = %path.display(), applied = ?done.applied, "configuration reloaded");
                for setting in done.need_restart {
                    tracing::warn!(setting, "changed in the configuration file; takes effect at the next restart");
                }
            }
            Err(why) => {
                tracing::warn!(path = %path.display(), %why, "configuration not reloaded; running on unchanged")
            }
        }
    }
}

/// The process's soft limit on open files (Linux), read from `/proc/self/limits`.
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()
}

/// Applies expiry, prunes the change feed and the outbox's history, and keeps reputation
/// current (unanswered requests, decay, candidates past their window) on a timer until told
/// to stop.
async fn maintain(ledger: Arc<Ledger>, env: Arc<dyn Environment>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        let now = env.now();
        match ledger.expire(now).await {
            Ok(0) => {}
            Ok(expired) => tracing::info!(expired, "entries expired"),
            Err(error) => tracing::warn!(%error, "expiry failed; will retry"),
        }
        if let Err(error) = ledger.prune_changes(now).await {
            tracing::warn!(%error, "pruning the change feed failed; will retry");
        }
        match ledger.prune_outbox(now).await {
            Ok(0) => {}
            Ok(pruned) => tracing::debug!(pruned, "finished outbox rows pruned"),
            Err(error) => tracing::warn!(%error, "pruning the outbox failed; will retry"),
        }
        match ledger.maintain_reputation(now).await {
            Ok(0) => {}
            Ok(refreshed) => tracing::debug!(refreshed, "reputation scores refreshed"),
            Err(error) => tracing::warn!(%error, "reputation maintenance failed; will retry"),
        }
        tokio::select! {
            _ = tokio::time::sleep(MAINTENANCE_INTERVAL) => {}
            _ = stop.changed() => return,
        }
    }
}
