//! Running as one of several replicas of a node on one PostgreSQL database: following what
//! the others commit, reporting where this replica stands, and holding the node's one XMPP
//! link when no other replica does.
//!
//! On SQLite there is one process ([`hold_sqlite`] refuses a second), nothing to follow, and
//! the link is this process's at once.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ostracon_protocol::time::Timestamp;
use ostracon_store::Store;
use ostracon_store::clock::Environment;
use ostracon_store::db::CommitListener;
use ostracon_store::ledger::Ledger;
use ostracon_store::replicas::ReplicaReport;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::ServerError;
use crate::xmpp::connection::{LinkState, LinkStatus};

/// The timings of following and of the link's election; tests shorten them.
#[derive(Clone, Copy, Debug)]
pub struct ReplicaTimings {
    /// How often a replica reads the log even without a notification (one lost while the
    /// listener reconnected), and reports where it stands.
    pub poll: Duration,
    /// How often a replica without the link tries to take it, and the holder checks it
    /// still has it.
    pub link_check: Duration,
    /// The shortest time between two announcements of this replica's commits (a burst of
    /// commits is announced once).
    pub announce_every: Duration,
}

impl Default for ReplicaTimings {
    fn default() -> Self {
        Self {
            poll: Duration::from_secs(1),
            link_check: Duration::from_secs(1),
            announce_every: Duration::from_millis(10),
        }
    }
}

/// How many link checks' time the lock's session may take to answer before the link stops.
const LINK_CHECK_PATIENCE: u32 = 3;

/// Replicas that reported within this many seconds count as running (they report every
/// second).
pub const RUNNING_WITHIN_SECS: i64 = 10;

/// This replica's name when `[database] replica` does not give one: the host name and the
/// HTTP port, stable across restarts.
pub fn default_name(http_port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    format!("{}:{http_port}", if host.is_empty() { "localhost" } else { host })
}

/// Refuses a second process on one SQLite database: its lock file beside the database is
/// held for as long as the returned file is open. `None` for PostgreSQL.
pub fn hold_sqlite(database_url: &str) -> Result<Option<std::fs::File>, ServerError> {
    let Some(database) = ostracon_store::db::sqlite_file(database_url) else {
        return Ok(None);
    };
    let mut lock = database.clone().into_os_string();
    lock.push(".lock");
    let lock = Path::new(&lock).to_path_buf();
    if let Some(parent) = lock.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| ServerError::Io { path: parent.to_path_buf(), source })?;
    }
    match crate::keyfile::try_lock(&lock)? {
        Some(file) => Ok(Some(file)),
        None => Err(ServerError::DatabaseInUse { database, lock }),
    }
}

/// Follows the other replicas' commits (woken by their notifications, or by the poll) and
/// reports this replica's position until told to stop. PostgreSQL only.
pub async fn follow(
    ledger: Arc<Ledger>,
    name: String,
    holds_link: Arc<AtomicBool>,
    env: Arc<dyn Environment>,
    timings: ReplicaTimings,
    mut stop: watch::Receiver<bool>,
) {
    let store = ledger.store().clone();
    let started_at = env.now();
    let mut listener = match store.commit_listener().await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for other replicas' commits; following by polling");
            None
        }
    };
    let mut reported_at: Option<tokio::time::Instant> = None;
    let mut foreign = true;
    loop {
        if foreign && let Err(error) = ledger.catch_up().await {
            tracing::warn!(%error, "following the other replicas failed; will retry");
        }
        // Once per poll, not per commit: a report is a write, and commits come by hundreds.
        if reported_at.is_none_or(|at| at.elapsed() >= timings.poll) {
            report(&store, &ledger, &name, holds_link.load(Ordering::Acquire), started_at, env.now()).await;
            reported_at = Some(tokio::time::Instant::now());
        }
        foreign = tokio::select! {
            seen = announced(listener.as_mut(), store.instance(), timings.poll) => seen,
            () = tokio::time::sleep(timings.poll) => true,
            _ = stop.changed() => return,
        };
    }
}

/// Waits for the next announcements and says whether one came from another replica (this
/// replica's own commits moved its memory already). One catch-up reads whatever the
/// announcements already here name. Without a listener it never returns (the poll follows).
async fn announced(listener: Option<&mut CommitListener>, own: &str, pause_after_error: Duration) -> bool {
    let Some(listener) = listener else { return std::future::pending().await };
    match listener.recv().await {
        Ok(first) => {
            let mut foreign = first.payload() != own;
            while let Some(next) = listener.next_buffered() {
                foreign |= next.payload() != own;
            }
            foreign
        }
        Err(error) => {
            // It reconnects on the next call; the poll covers what it missed.
            tracing::debug!(%error, "the commit listener lost its connection");
            tokio::time::sleep(pause_after_error).await;
            true
        }
    }
}

async fn report(store: &Store, ledger: &Ledger, name: &str, holds_link: bool, started_at: Timestamp, now: Timestamp) {
    let report =
        ReplicaReport { name: name.to_owned(), log_size: ledger.log_size(), holds_link, started_at, seen_at: now };
    if let Err(error) = store.report_replica(&report).await {
        tracing::debug!(%error, "could not report this replica's position");
    }
}

/// Runs the XMPP link whenever this replica holds the link's lock: `start` starts the
/// link's tasks with a stop signal of their own, stopped when the lock's session is lost.
/// Replicas without it wait on standby and try again every `link_check`.
pub async fn hold_link(
    store: Store,
    status: Arc<LinkStatus>,
    holds_link: Arc<AtomicBool>,
    timings: ReplicaTimings,
    start: impl Fn(watch::Receiver<bool>) -> Vec<JoinHandle<()>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let hold = match store.try_hold_link().await {
            Ok(hold) => hold,
            Err(error) => {
                tracing::warn!(%error, "cannot ask the database who holds the XMPP link; will retry");
                None
            }
        };
        let Some(mut hold) = hold else {
            status.set(LinkState::Standby);
            tokio::select! {
                () = tokio::time::sleep(timings.link_check) => continue,
                _ = stop.changed() => return,
            }
        };
        tracing::info!("this replica holds the XMPP link");
        holds_link.store(true, Ordering::Release);
        let (link_stop, link_stopped) = watch::channel(false);
        let tasks = start(link_stopped);
        let stopping = loop {
            tokio::select! {
                () = tokio::time::sleep(timings.link_check) => {
                    // A half-open connection would not fail for many minutes; meanwhile the
                    // database may have ended the session and granted the lock elsewhere.
                    match tokio::time::timeout(timings.link_check * LINK_CHECK_PATIENCE, hold.check()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => {
                            tracing::warn!(%error, "lost the XMPP link's lock with the database session; stopping the link");
                            break false;
                        }
                        Err(_) => {
                            tracing::warn!("the XMPP link's lock session does not answer; stopping the link");
                            break false;
                        }
                    }
                }
                _ = stop.changed() => break true,
            }
        };
        let _ = link_stop.send(true);
        // Every link task is gone before the lock is: no two replicas ever run the link.
        for mut task in tasks {
            if tokio::time::timeout(Duration::from_secs(5), &mut task).await.is_err() {
                task.abort();
                let _ = task.await;
            }
        }
        holds_link.store(false, Ordering::Release);
        drop(hold);
        if stopping {
            return;
        }
        status.set(LinkState::Standby);
    }
}
