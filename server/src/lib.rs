//! The Ostracon daemon: configuration, the node's signing key, and the wiring that runs the
//! HTTP service (and, as the node grows, the XMPP component, outbox and reputation engine).
//!
//! `main.rs` only parses the command line; everything runnable lives here so tests can start a
//! node in process on a port of their choosing.

pub mod keyfile;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use ostracon_protocol::keys::PublishedKey;
use ostracon_protocol::time::Timestamp;
use ostracon_web::{AppState, NodeInfo};
use tokio::net::TcpListener;

/// Errors from the daemon's own code (configuration, key files, sockets).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A key file exists but does not hold a key.
    #[error("{path}: {reason}")]
    BadKeyFile { path: PathBuf, reason: &'static str },
    /// The HTTP listener failed.
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
}

/// What `serve` needs, resolved from flags and defaults.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Where the node keeps its key (and, later, its database).
    pub data_dir: PathBuf,
    /// The operator's XMPP domain.
    pub domain: String,
    /// HTTP listen address.
    pub http: SocketAddr,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("ostracon-data"),
            domain: "localhost".to_owned(),
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}

/// Runs the node until `shutdown` resolves. `now` is when the node's key becomes valid if it
/// is created now.
pub async fn serve(
    options: ServeOptions,
    now: Timestamp,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let key = keyfile::load_or_create(&options.data_dir, now)?;
    let node = NodeInfo {
        domain: options.domain.clone(),
        component: None,
        keys: vec![PublishedKey::new(key.key.public(), key.valid_from)],
    };
    let listener = TcpListener::bind(options.http).await.map_err(ServerError::Http)?;
    let address = listener.local_addr().map_err(ServerError::Http)?;
    tracing::info!(%address, key_id = %key.key.key_id(), "listening for HTTP");
    axum::serve(listener, ostracon_web::router(AppState::new(node)))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServerError::Http)
}
