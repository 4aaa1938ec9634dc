//! `ServerError`, the daemon's one error type: configuration, key files, sockets, the XMPP
//! link and the IQs sent over it, and the CLI verbs.

use std::path::PathBuf;

use ostracon_store::StoreError;

use crate::config::Finding;

/// Errors from the daemon's own code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A key file exists but does not hold a key.
    #[error("{path}: {reason}")]
    BadKeyFile { path: PathBuf, reason: &'static str },
    /// The configuration does not parse.
    #[error("configuration: {0}")]
    Config(String),
    /// The configuration parses but is refused.
    #[error("configuration refused:\n{}", .0.iter().map(|f| format!("  {f}")).collect::<Vec<_>>().join("\n"))]
    Refused(Vec<Finding>),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A peer's data or our own did not make a valid protocol value.
    #[error(transparent)]
    Protocol(#[from] ostracon_protocol::Error),
    /// Another process (a running node) holds the data directory's lock.
    #[error("a running node holds {} ({what} needs it to itself): stop the node first (systemctl stop ostracon)", .lock.display())]
    DataDirInUse { lock: PathBuf, what: String },
    /// Another process serves the SQLite database (from another data directory).
    #[error(
        "another process serves the SQLite database {} (it holds {}): SQLite serves one process; run replicas of a node on PostgreSQL",
        .database.display(), .lock.display()
    )]
    DatabaseInUse { database: PathBuf, lock: PathBuf },
    /// The HTTP listener failed.
    #[error("HTTP server: {0}")]
    Http(std::io::Error),

    /// The DNSBL address could not be bound.
    #[error("cannot listen on {address} ([dnsbl] listen): {source}")]
    DnsBind { address: std::net::SocketAddr, source: std::io::Error },
    /// The DNSBL server stopped on its own.
    #[error("DNSBL server: {0}")]
    Dns(String),

    /// The HTTP address could not be bound.
    #[error("cannot listen on {address} ([http] listen): {source}")]
    Bind { address: std::net::SocketAddr, source: std::io::Error },
    /// The XMPP server's socket failed, or it sent XML that is not well-formed.
    #[error("XMPP stream: {0}")]
    Stream(std::io::Error),
    /// The XMPP server closed the stream (with its stream error condition, if it gave one).
    #[error("the XMPP server closed the stream{}", .condition.as_ref().map(|c| format!(" ({c})")).unwrap_or_default())]
    StreamClosed { condition: Option<String> },
    /// The XMPP server did not open a component stream as XEP-0114 says.
    #[error("the XMPP server did not open a component stream: {0}")]
    StreamHeader(&'static str),
    /// The XMPP server refused our component handshake (a wrong secret or component name).
    #[error("the XMPP server refused the component handshake ({condition})")]
    HandshakeRefused { condition: String },
    /// The link went down before an IQ was answered.
    #[error("the XMPP link closed before the answer")]
    LinkLost,
    /// An IQ got no answer in time.
    #[error("no answer within {secs} s")]
    NoAnswer { secs: u64 },
    /// A peer answered an IQ with an error.
    #[error("{condition}{}", .app.as_ref().map(|a| format!(" ({a})")).unwrap_or_default())]
    Answered { condition: String, app: Option<String> },
    /// The batch IQ a row went in failed as a whole (no answer, a refusal of the batch), so
    /// each of its rows failed with it.
    #[error("{cause}")]
    BatchFailed { cause: std::sync::Arc<Self> },
    /// A peer's answer does not say what it must.
    #[error("unusable answer: {0}")]
    BadAnswer(&'static str),
    /// Queued work refers to something that no longer exists.
    #[error("{what} is gone")]
    Gone { what: &'static str },
    /// A request to a node failed (CLI verbs).
    #[error("{0}")]
    Client(String),
    /// `ostracon verify` found a problem.
    #[error("verification failed: {0}")]
    Verify(String),
}
