//! The store's narrow read interfaces, one per concern, all implemented by [`crate::Store`].
//!
//! Writes are not here: they go through [`crate::ledger::Ledger`], which groups the rows that
//! belong together into one transaction.

use ostracon_protocol::ids::{IncidentId, Offender};
use ostracon_protocol::time::Timestamp;

use crate::Result;
use crate::model::{
    AllowEntry, Decision, EntryReason, EntryRecord, IncidentOrigin, IncidentRecord, ListChange, ListKind, OutboxItem,
    PeerRecord, Scope, TokenRecord, Verb,
};

/// Filters for listing incidents. Results come newest first; `before` is a paging cursor (a `seq`).
#[derive(Clone, Debug, Default)]
pub struct IncidentFilter {
    /// Only this status (`new`, `updated`, `resolved`, `retracted`).
    pub status: Option<String>,
    /// Only this category.
    pub category: Option<String>,
    /// Only this reporter.
    pub reporter: Option<String>,
    /// Only this origin.
    pub origin: Option<IncidentOrigin>,
    /// Only this decision.
    pub decision: Option<Decision>,
    /// Only this verb.
    pub verb: Option<Verb>,
    /// Only incidents with `seq` below this.
    pub before: Option<i64>,
    /// At most this many (capped at 500).
    pub limit: u32,
}

/// Incidents.
pub trait IncidentStore {
    /// One incident by id.
    fn incident(&self, id: &IncidentId) -> impl Future<Output = Result<Option<IncidentRecord>>> + Send;
    /// Incidents matching `filter`, newest first.
    fn incidents(&self, filter: &IncidentFilter) -> impl Future<Output = Result<Vec<IncidentRecord>>> + Send;
}

/// Published list entries and their change feed.
pub trait BlocklistStore {
    /// Entries by id (any order).
    fn entries_by_id(&self, ids: &[i64]) -> impl Future<Output = Result<Vec<EntryRecord>>> + Send;
    /// The entry for an offender, active or not.
    fn entry(&self, offender: &Offender) -> impl Future<Output = Result<Option<EntryRecord>>> + Send;
    /// The incidents behind an entry.
    fn entry_reasons(&self, entry_id: i64) -> impl Future<Output = Result<Vec<EntryReason>>> + Send;

    /// Contributions waiting for a listing quorum for `offender` (spec/reputation.md).
    fn candidate_reasons(&self, offender: &Offender) -> impl Future<Output = Result<Vec<EntryReason>>> + Send;
    /// Active entries the operator listed directly.
    fn operator_entries(&self) -> impl Future<Output = Result<Vec<EntryRecord>>> + Send;
    /// Every active entry, for loading the in-memory index.
    fn active_entries(&self) -> impl Future<Output = Result<Vec<EntryRecord>>> + Send;
    /// Changes after `since`, oldest first, optionally one list only.
    fn changes_since(
        &self,
        since: i64,
        list: Option<ListKind>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<ListChange>>> + Send;
    /// The last change's `seq` (0 when there is none).
    fn last_change_seq(&self) -> impl Future<Output = Result<i64>> + Send;
    /// Changes up to this `seq` were pruned; older cursors must take a new snapshot.
    fn pruned_through(&self) -> impl Future<Output = Result<i64>> + Send;
    /// Both ends of the retained feed, `(pruned_through, last_change_seq)`, in one read (a
    /// consumer polling the feed asks for both every time).
    fn change_feed_bounds(&self) -> impl Future<Output = Result<(i64, i64)>> + Send;
    /// Every allow entry.
    fn allow_entries(&self) -> impl Future<Output = Result<Vec<AllowEntry>>> + Send;
}

/// The audit log's leaves.
pub trait AuditLogStore {
    /// Number of leaves.
    fn leaf_count(&self) -> impl Future<Output = Result<u64>> + Send;

    /// Leaves `start..end` as `(index, bytes, time)`.
    fn leaves(&self, start: u64, end: u64) -> impl Future<Output = Result<Vec<(u64, Vec<u8>, Timestamp)>>> + Send;

    /// The openings still kept for sealed leaves among `start..end`, by index.
    fn openings(
        &self,
        start: u64,
        end: u64,
    ) -> impl Future<Output = Result<Vec<(u64, ostracon_protocol::log::seal::Opening)>>> + Send;
}

/// The durable outbox.
pub trait OutboxStore {
    /// Peers with items due for delivery at `now`.
    fn peers_with_due_work(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<ostracon_protocol::ids::BareJid>>> + Send;
    /// One peer's items due at `now`: never attempted first, then retries, oldest first.
    fn due_for(
        &self,
        peer: &ostracon_protocol::ids::BareJid,
        now: Timestamp,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<OutboxItem>>> + Send;
    /// Items for a peer in any state, newest first.
    fn outbox_for(&self, peer: &str, limit: u32) -> impl Future<Output = Result<Vec<OutboxItem>>> + Send;
}

/// Operator tokens (hashes only).
pub trait TokenStore {
    /// Stores a new token's hash.
    fn create_token(
        &self,
        name: &str,
        scope: Scope,
        hash: &[u8; 32],
        now: Timestamp,
    ) -> impl Future<Output = Result<TokenRecord>> + Send;
    /// Creates or replaces the token called `name` (used for the admin token fixed by the
    /// environment): the old hash stops working at once.
    fn put_token(
        &self,
        name: &str,
        scope: Scope,
        hash: &[u8; 32],
        now: Timestamp,
    ) -> impl Future<Output = Result<TokenRecord>> + Send;
    /// The unrevoked token with this hash and the stored hash bytes (compared in constant time by the caller).
    fn token_by_hash(&self, hash: &[u8; 32]) -> impl Future<Output = Result<Option<(TokenRecord, Vec<u8>)>>> + Send;
    /// Every token.
    fn tokens(&self) -> impl Future<Output = Result<Vec<TokenRecord>>> + Send;
    /// Revokes a token by name; false if there was none.
    fn revoke_token(&self, name: &str, now: Timestamp) -> impl Future<Output = Result<bool>> + Send;
}

/// Peer nodes and their pinned keys.
pub trait PeerStore {
    /// One peer.
    fn peer(&self, jid: &ostracon_protocol::ids::BareJid) -> impl Future<Output = Result<Option<PeerRecord>>> + Send;
    /// Every peer.
    fn peers(&self) -> impl Future<Output = Result<Vec<PeerRecord>>> + Send;
    /// Records a peer's XEP-0275 answer about a subject (replacing its earlier one).
    fn put_peer_score(
        &self,
        peer: &str,
        subject: &str,
        num: i64,
        at: Timestamp,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Every peer's latest answer about a subject, as `(peer, num, received_at)`.
    fn peer_scores(&self, subject: &str) -> impl Future<Output = Result<Vec<(String, i64, Timestamp)>>> + Send;
}
