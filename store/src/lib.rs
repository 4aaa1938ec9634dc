//! Ostracon's persistence and node state.
//!
//! - [`clock`]: time and randomness as parameters ([`clock::Environment`]);
//! - [`db`]: the one store ([`Store`]) over SQLite (embedded default, a WAL file) or PostgreSQL,
//!   chosen by URL, with a migration folder per dialect;
//! - [`model`]: the records the store keeps;
//! - [`traits`]: the narrow read interfaces (incidents, blocklist, audit log, outbox, tokens, peers);
//! - [`ledger`]: the single writer that turns decisions into one transaction each (incident,
//!   list entries, change feed, audit leaves, outbox rows) and keeps the in-memory state in step;
//! - [`index`]: the in-memory lookup index that answers public lookups without the database;
//! - [`policy`]: listing rules (TTLs, repeat-offender escalation);
//! - [`reputation`]: the reputation function, reporter weights and the listing quorum (pure);
//! - [`dry_run`]: what a different listing threshold would change;
//! - [`facts`]: reputation facts and scores as stored, and their reads;
//! - [`history`]: decisions and list sizes day by day, for the dashboard's plots;
//! - [`snapshot`]: published list bodies in every format;
//! - `testing` (feature `testing`, test builds only): throwaway stores on both backends.
//!
//! **Architecture invariant:** writes that belong together share one transaction, and the
//! in-memory index and Merkle tree change only after that transaction commits.

pub mod clock;
pub mod db;
pub mod dry_run;
pub mod facts;
pub mod history;
pub mod index;
pub mod ledger;
pub mod model;
pub mod policy;
mod queries;
pub mod ratelimit;
pub mod replicas;
pub mod reputation;
pub mod scope;
pub mod snapshot;
#[cfg(feature = "testing")]
pub mod testing;
pub mod traits;

pub use db::{Dialect, Store};

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed or is unreachable; callers answer 503, never an empty list.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// Migrations could not be applied.
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The requested record does not exist.
    #[error("{what} not found")]
    NotFound { what: String },
    /// The record exists already (e.g. an incident id submitted twice).
    #[error("{what} already exists")]
    Conflict { what: String },
    /// The request contradicts the state (e.g. retracting a retracted incident).
    #[error("{0}")]
    Rejected(String),
    /// A buddy request cannot be approved before the peer's keys were fetched.
    #[error("{peer}'s keys have not been fetched yet; check that it is reachable and retry")]
    KeysNotFetched { peer: String },
    /// A stored value failed protocol validation: a corrupted or foreign row.
    #[error("stored value is invalid: {0}")]
    Corrupt(String),
    /// A value failed protocol validation.
    #[error(transparent)]
    Protocol(#[from] ostracon_protocol::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict { what: "record".to_owned() },
            _ => Self::Unavailable(error),
        }
    }
}

/// Result alias for the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
