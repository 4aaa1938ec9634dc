//! Ostracon's persistence: incidents, peers, blocklist entries, the audit log, the outbox and
//! operator tokens, on SQLite (the embedded default) or PostgreSQL behind one store.
//!
//! **Architecture invariant:** writes that belong together (an incident, its list changes,
//! its audit leaves, its outbox rows) share one transaction. The store accepts only
//! verified protocol values.
//!
//! The sqlx-backed implementation arrives with the node-core work; today this crate holds
//! the error type the layers above will share.

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A value from the store failed protocol validation (a corrupted or foreign row).
    #[error("stored value is invalid: {0}")]
    Invalid(#[from] ostracon_protocol::Error),
}
