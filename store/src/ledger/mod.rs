//! The ledger: the node's one writer and its in-memory state.
//!
//! Every decision (an incident accepted, an entry listed or removed, an allow entry, an
//! expiry) is one database transaction that writes the incident row, the entry rows and
//! their reasons, the change-feed rows, the audit leaves and the outbox rows together.
//! Only after the commit does the ledger update what it keeps in memory: the lookup
//! [`BlocklistIndex`] with each listed entry's row, the Merkle tree over the audit leaves,
//! the change feed's position, and the allow set. A crash between the two loses nothing:
//! memory is rebuilt from the database at start-up.
//!
//! **Invariant:** leaf `n` in the database is leaf `n` of the in-memory tree. Writers are
//! serialised by one async mutex, and on PostgreSQL, across replicas, by one advisory lock
//! after which a writer first catches up (`follow.rs`), so leaf indexes are assigned without
//! gaps or races.

mod allow;
mod appends;
pub mod brake;
pub mod decisions;
pub mod explained;
mod follow;
pub use follow::{CaughtUp, Position};
mod keys;
pub use keys::KeySwitch;
mod outbox;
pub use outbox::OUTBOX_HISTORY_SECS;
pub mod peers;
mod quorum;
pub mod rtbl;
mod standing;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use ostracon_protocol::envelope::SignedEnvelope;
use ostracon_protocol::ids::{BareJid, IncidentId, Offender};
use ostracon_protocol::incident::{Incident, Severity, Status};
use ostracon_protocol::keys::NodeKey;
use ostracon_protocol::log::checkpoint::{Checkpoint, SignedCheckpoint};
use ostracon_protocol::log::merkle::{Hash, LeafHashes, MerkleTree, leaf_hash};
use ostracon_protocol::log::record::AuditRecord;
use ostracon_protocol::log::seal::LogLeaf;
use ostracon_protocol::time::Timestamp;
use sqlx::{Any, Row as _, Transaction};

use crate::db::Dialect;
use crate::facts::FactKind;
use crate::index::BlocklistIndex;
use crate::model::{
    ChangeOp, Decision, EntryRecord, EntrySource, IncidentOrigin, IncidentRecord, ListAction, Listed, OutboxJob, Verb,
    offender_from_row,
};
use crate::policy::ListingPolicy;
use crate::queries::{
    ENTRY_COLUMNS, INCIDENT_COLUMNS, entry_from_row, incident_from_row, max_change_seq, offender_kind,
};
use crate::reputation::{ReputationParams, independence_key, server_domain};
use crate::scope::PeerScope;
use crate::traits::IncidentStore as _;
use crate::{Result, Store, StoreError};

/// Weight of the operator's own reports, in thousandths.
pub const LOCAL_WEIGHT_MILLI: i64 = 1_000;

/// Offenders per multi-row statement: 10 columns x 500 rows stays under SQLite's 32,766 and
/// PostgreSQL's 65,535 bind parameters.
const LIST_CHUNK: usize = 500;

/// The log's tree keeps its levels from this one up in memory (2 hashes per 16 leaves, not 2
/// per leaf); a proof reads the few leaf hashes below it from the audit table.
const TREE_FLOOR: u32 = 4;

/// Most entries expired in one transaction (keeps transactions short under large expiries).
const EXPIRY_BATCH: u32 = 5_000;

/// How the ledger names and signs its log.
#[derive(Clone, Debug)]
pub struct LedgerConfig {
    /// The checkpoint origin line, e.g. `example.org/ostracon`.
    pub origin: String,
    /// The signed-note key name (the node's domain).
    pub key_name: String,
    /// Listing rules.
    pub policy: ListingPolicy,
    /// The reputation function's parameters, the listing quorum among them.
    pub reputation: ReputationParams,
    /// What a peer's report may list.
    pub scope: PeerScope,
}

/// An incident that arrived from another node.
#[derive(Clone, Copy, Debug)]
pub struct RemoteIncident<'a> {
    /// The incident (for signed ones, the verified claim).
    pub incident: &'a Incident,
    /// Report, request or response.
    pub verb: Verb,
    /// The peer that delivered it.
    pub from: &'a str,
    /// Peer (signed) or unsigned.
    pub origin: IncidentOrigin,
    /// The verified provenance chain.
    pub provenance: Option<&'a [SignedEnvelope]>,
    /// What the node decided.
    pub decision: Decision,
    /// Why, when not accepted.
    pub decision_reason: Option<&'a str>,
    /// Weight of each listing contribution, in thousandths.
    pub weight_milli: i64,
    /// For a response to a request we sent (within its deadline): the weight of what the
    /// responder is authoritative for, the JIDs on its own server and the IPs it names with
    /// them. It applies to the first answer to that request only; the rest, and every later
    /// answer, carry `weight_milli`.
    pub authority_milli: Option<i64>,
    /// Buddies to forward it to (queued in the same transaction).
    pub forward_to: &'a [String],
}

/// What the in-memory state holds.
struct Memory {
    /// Every listed entry with what snapshots publish of it and why it is listed.
    index: BlocklistIndex<explained::Indexed>,
    tree: MerkleTree,
    /// The change feed's last sequence number: where a snapshot of this state continues from.
    change_seq: i64,
    allow: allow::AllowList,
    /// Bumped by every commit that changed a published list (snapshot caches key on it).
    list_version: u64,
    /// Bumped by every commit that changed any entry's reasons, and by following: reasons
    /// read before it moved are not kept ([`Ledger::offer_reasons`]).
    reasons_epoch: u64,
}

/// The outcome of a write, for the caller's response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Audit leaves written, in order.
    pub leaves: Vec<u64>,
    /// Offenders that went on (or were updated on) the list.
    pub listed: Vec<Offender>,
    /// Offenders that left the list.
    pub delisted: Vec<Offender>,
    /// Offenders that were not listed, with the reason.
    pub refused: Vec<(Offender, String)>,
}

/// A change to apply to memory after commit.
enum MemoryOp {
    Index(Offender, Listed),
    Unindex(Offender),
    Allow(Offender),
    Disallow(Offender),
    /// The entry's reasons may have changed: the commit reads them again.
    Reasons(i64),
}

/// One open write transaction and what it will change in memory.
struct Batch {
    tx: Transaction<'static, Any>,
    next_leaf: u64,
    leaves: Vec<Hash>,
    ops: Vec<MemoryOp>,
    applied: Applied,
    now: Timestamp,
    list_changed: bool,
    outbox_queued: bool,
    peers_changed: bool,
    dialect: Dialect,
    /// Domains whose reputation facts changed: rescored before commit.
    touched: BTreeSet<String>,
    /// The node's own domain (no facts are kept about it).
    home: String,
    /// Fresh salts for sealed leaves.
    salts: SaltSource,
    /// Rows written at commit.
    appends: appends::Appends,
    /// What each peer's budget holds in this transaction.
    budgets: HashMap<String, brake::Spent>,
}

/// Where sealed leaves get their salts: 32 random bytes each, from the OS unless a test pins
/// them ([`Ledger::with_salts`]).
pub type SaltSource = Arc<dyn Fn() -> [u8; 32] + Send + Sync>;

/// A new listing contribution.
struct Listing<'a> {
    offender: &'a Offender,
    action: ListAction,
    expires: Option<Timestamp>,
    severity: Severity,
    source: EntrySource,
    reason: Option<(&'a IncidentId, &'a BareJid, i64)>,
}

impl Batch {
    /// Appends an audit leaf and returns its index; a record that is not a public fact goes
    /// in sealed, and its opening beside it.
    fn leaf(&mut self, record: &AuditRecord) -> Result<u64> {
        let (bytes, opening) = LogLeaf::bytes_for(record, (self.salts)())?;
        let index = self.next_leaf;
        if let Some(opening) = opening {
            let record = opening.record.to_leaf()?;
            self.appends.openings.push(appends::OpeningRow {
                index: leaf_index(index)?,
                salt: opening.salt.to_vec(),
                record,
            });
        }
        self.keep_leaf(bytes)
    }

    /// Keeps a leaf's bytes for the commit and returns its index.
    fn keep_leaf(&mut self, bytes: Vec<u8>) -> Result<u64> {
        let index = self.next_leaf;
        let hash = leaf_hash(&bytes);
        self.appends.leaves.push(appends::LeafRow { index: leaf_index(index)?, bytes, hash: hash.to_vec() });
        self.leaves.push(hash);
        self.applied.leaves.push(index);
        self.next_leaf += 1;
        Ok(index)
    }

    /// Writes the rows kept for the commit now: before a statement that reads their tables.
    async fn flush_appends(&mut self) -> Result<()> {
        self.appends.flush(&mut self.tx, self.dialect, self.now.unix()).await
    }

    fn change(
        &mut self,
        op: ChangeOp,
        offender: &Offender,
        action: Option<ListAction>,
        expires: Option<Timestamp>,
        log_index: u64,
    ) -> Result<()> {
        self.appends.changes.push(appends::ChangeRow {
            kind: offender_kind(offender),
            value: offender.to_string(),
            op: op.as_str(),
            action: action.map(ListAction::as_str),
            expires_at: expires.map(Timestamp::unix),
            log_index: leaf_index(log_index)?,
        });
        self.list_changed = true;
        Ok(())
    }

    async fn entry(&mut self, offender: &Offender) -> Result<Option<EntryRecord>> {
        let sql = format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE kind = $1 AND value = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(offender_kind(offender))
            .bind(offender.to_string())
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(entry_from_row).transpose()
    }

    /// Which of `ids` are stored, read inside this transaction.
    async fn stored_ids<'i>(&mut self, ids: impl Iterator<Item = &'i IncidentId>) -> Result<BTreeSet<String>> {
        let ids: Vec<String> = ids.map(IncidentId::to_string).collect();
        let mut stored = BTreeSet::new();
        for chunk in ids.chunks(1_000) {
            let mut sql = "SELECT id FROM incidents WHERE id IN ".to_owned();
            push_placeholders(&mut sql, self.dialect, 1, chunk.len(), 1);
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(id.as_str());
            }
            for row in query.fetch_all(&mut *self.tx).await? {
                stored.insert(row.try_get("id")?);
            }
        }
        Ok(stored)
    }

    /// The incident stored under `id`, read inside this transaction.
    async fn stored_incident(&mut self, id: &IncidentId) -> Result<Option<IncidentRecord>> {
        let sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.to_string()).fetch_optional(&mut *self.tx).await?;
        row.as_ref().map(incident_from_row).transpose()
    }

    /// Lists offenders (or strengthens their listings), one contribution each.
    ///
    /// Works in chunks with multi-row statements: one read of the existing entries, one of the
    /// evidence held, one insert for new entries and one for reasons; leaves and change rows
    /// are kept for the commit. Per-offender round trips would cap bulk ingest at a few
    /// thousand offenders per second.
    async fn list_many(&mut self, listings: &[Listing<'_>], config: &LedgerConfig) -> Result<()> {
        let mut seen = BTreeSet::new();
        let unique: Vec<&Listing<'_>> = listings.iter().filter(|l| seen.insert(l.offender.clone())).collect();
        for chunk in unique.chunks(LIST_CHUNK) {
            self.list_chunk(chunk, config).await?;
        }
        Ok(())
    }

    async fn list_chunk(&mut self, chunk: &[&Listing<'_>], config: &LedgerConfig) -> Result<()> {
        let policy = &config.policy;
        // 1. What is already there.
        let mut existing: HashMap<Offender, EntryRecord> = HashMap::new();
        {
            let mut sql = format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE (kind, value) IN (VALUES ");
            push_placeholders(&mut sql, self.dialect, chunk.len(), 2, 1);
            sql.push(')');
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for listing in chunk {
                query = query.bind(offender_kind(listing.offender)).bind(listing.offender.to_string());
            }
            for row in query.fetch_all(&mut *self.tx).await? {
                let entry = entry_from_row(&row)?;
                existing.insert(entry.offender.clone(), entry);
            }
        }

        // 1b. The evidence already held, and the quorum for contributions that cannot list alone.
        let held = self.evidence(chunk, &existing, config).await?;
        let kept = self.apply_quorum(chunk, &existing, &held, config).await?;
        if kept.is_empty() {
            return Ok(());
        }
        let chunk: &[&Listing<'_>] = &kept;

        // 2. Decide each listing and write its leaf.
        struct Planned {
            offender: Offender,
            action: ListAction,
            expires: Option<Timestamp>,
            changed: bool,
            listing_number: u32,
            source: EntrySource,
            log_index: u64,
            existing: Option<(i64, bool)>,
            first_seen: Timestamp,
            reason: Option<(IncidentId, BareJid, i64)>,
        }
        let mut planned = Vec::with_capacity(chunk.len());
        for listing in chunk {
            let entry = existing.get(listing.offender);
            let active = entry.is_some_and(|e| e.active);
            let listing_number = match entry {
                Some(e) if e.active => e.listings.max(1),
                Some(e) => e.listings.saturating_add(1),
                None => 1,
            };
            let expires = match listing.source {
                EntrySource::Incidents => {
                    Some(policy.expiry(self.now, listing.expires, listing.severity, listing_number))
                }
                EntrySource::Operator | EntrySource::Reputation => listing.expires,
            };
            let (action, expires, changed) = match entry {
                Some(e) if e.active => {
                    // Another contribution to a live entry: keep the stronger action and the later expiry.
                    let action = e.action.min(listing.action);
                    let expires = match (e.expires_at, expires) {
                        (None, _) | (_, None) => None,
                        (Some(a), Some(b)) => Some(a.max(b)),
                    };
                    (action, expires, action != e.action || expires != e.expires_at)
                }
                _ => (listing.action, expires, true),
            };
            let source = match entry {
                Some(e) if active && e.source == EntrySource::Operator => EntrySource::Operator,
                _ => listing.source,
            };
            let record = AuditRecord::EntryAdded {
                at: self.now,
                offender: listing.offender.clone(),
                action: action.as_str().to_owned(),
                expires,
                reasons: listing.reason.iter().map(|(id, _, _)| (*id).clone()).collect(),
                source: listing.source.as_str().to_owned(),
            };
            let log_index = self.keep_leaf(record.to_leaf()?)?;
            planned.push(Planned {
                offender: listing.offender.clone(),
                action,
                expires,
                changed,
                listing_number,
                source,
                log_index,
                existing: entry.map(|e| (e.id, e.active)),
                first_seen: entry.map_or(self.now, |e| e.first_seen),
                reason: listing.reason.map(|(id, reporter, weight)| (id.clone(), reporter.clone(), weight)),
            });
        }

        // 3. New entries in one statement; relistings and updates row by row (they are rare).
        let mut ids: HashMap<Offender, i64> = HashMap::new();
        let new: Vec<&Planned> = planned.iter().filter(|p| p.existing.is_none()).collect();
        if !new.is_empty() {
            let mut sql =
                "INSERT INTO entries (kind, value, action, source, first_seen, updated_at, expires_at, listings, \
                           active, log_index) VALUES "
                    .to_owned();
            push_placeholders(&mut sql, self.dialect, new.len(), 10, 1);
            sql.push_str(" RETURNING id, kind, value");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for p in &new {
                query = query
                    .bind(offender_kind(&p.offender))
                    .bind(p.offender.to_string())
                    .bind(p.action.as_str())
                    .bind(p.source.as_str())
                    .bind(self.now.unix())
                    .bind(self.now.unix())
                    .bind(p.expires.map(Timestamp::unix))
                    .bind(1i64)
                    .bind(1i64)
                    .bind(leaf_index(p.log_index)?);
            }
            for row in query.fetch_all(&mut *self.tx).await? {
                let offender =
                    offender_from_row(&row.try_get::<String, _>("kind")?, &row.try_get::<String, _>("value")?)?;
                ids.insert(offender, row.try_get("id")?);
            }
        }
        for p in planned.iter().filter(|p| p.existing.is_some()) {
            let Some((id, active)) = p.existing else { continue };
            if !active {
                // A relisting starts a new set of reasons.
                sqlx::query("DELETE FROM entry_reasons WHERE entry_id = $1").bind(id).execute(&mut *self.tx).await?;
            }
            sqlx::query(
                "UPDATE entries SET action = $1, source = $2, updated_at = $3, expires_at = $4, listings = $5, \
                 active = 1, log_index = $6 WHERE id = $7",
            )
            .bind(p.action.as_str())
            .bind(p.source.as_str())
            .bind(self.now.unix())
            .bind(p.expires.map(Timestamp::unix))
            .bind(i64::from(p.listing_number))
            .bind(leaf_index(p.log_index)?)
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
            ids.insert(p.offender.clone(), id);
        }

        // 4. Reasons and change rows.
        let with_reason: Vec<&Planned> = planned.iter().filter(|p| p.reason.is_some()).collect();
        if !with_reason.is_empty() {
            let mut sql = "INSERT INTO entry_reasons (entry_id, incident_id, reporter, weight_milli, added_at) VALUES "
                .to_owned();
            push_placeholders(&mut sql, self.dialect, with_reason.len(), 5, 1);
            sql.push_str(" ON CONFLICT (entry_id, incident_id) DO NOTHING");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for p in &with_reason {
                let (incident, reporter, weight) =
                    p.reason.as_ref().ok_or_else(|| StoreError::Corrupt("reason".into()))?;
                let id =
                    *ids.get(&p.offender).ok_or_else(|| StoreError::Corrupt(format!("no id for {}", p.offender)))?;
                query = query
                    .bind(id)
                    .bind(incident.to_string())
                    .bind(reporter.to_string())
                    .bind(*weight)
                    .bind(self.now.unix());
            }
            query.execute(&mut *self.tx).await?;
        }
        for p in planned.iter().filter(|p| p.changed) {
            self.change(ChangeOp::Add, &p.offender, Some(p.action), p.expires, p.log_index)?;
        }
        self.ops.extend(ids.values().map(|id| MemoryOp::Reasons(*id)));
        for p in planned {
            let id = *ids.get(&p.offender).ok_or_else(|| StoreError::Corrupt(format!("no id for {}", p.offender)))?;
            let row = Listed::new(id, p.action, p.source, p.first_seen, p.expires, p.listing_number, p.log_index);
            self.ops.push(MemoryOp::Index(p.offender.clone(), row));
            self.applied.listed.push(p.offender);
        }
        self.after_listing(chunk, &ids, &held, config).await
    }

    /// Takes an entry off the list.
    async fn delist(&mut self, entry: &EntryRecord, why: &str) -> Result<()> {
        let log_index = self.leaf(&AuditRecord::EntryRemoved {
            at: self.now,
            offender: entry.offender.clone(),
            why: why.to_owned(),
        })?;
        sqlx::query("UPDATE entries SET active = 0, updated_at = $1, log_index = $2 WHERE id = $3")
            .bind(self.now.unix())
            .bind(log_index as i64)
            .bind(entry.id)
            .execute(&mut *self.tx)
            .await?;
        self.change(ChangeOp::Remove, &entry.offender, None, None, log_index)?;
        // Its row goes, and its reasons with it.
        self.ops.push(MemoryOp::Unindex(entry.offender.clone()));
        self.applied.delisted.push(entry.offender.clone());
        Ok(())
    }
}

/// The node's writer and in-memory state.
pub struct Ledger {
    store: Store,
    keys: RwLock<keys::SigningKeys>,
    config: LedgerConfig,
    writer: tokio::sync::Mutex<()>,
    memory: RwLock<Memory>,
    checkpoint: Mutex<Option<SignedCheckpoint>>,
    /// Woken after every commit that queued outbox rows, so delivery starts at once.
    outbox_queued: tokio::sync::Notify,
    /// Woken after every commit that appended to the log, to tell other replicas.
    committed: tokio::sync::Notify,
    /// The list version after every commit that changed a list, for pushing changes.
    list_changed: tokio::sync::watch::Sender<u64>,
    /// Bumped by every commit that changed a peer, so readers can cache the peer table.
    peers_version: std::sync::atomic::AtomicU64,
    salts: SaltSource,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("origin", &self.config.origin).finish_non_exhaustive()
    }
}

impl Ledger {
    /// Loads the in-memory state from the store.
    pub async fn open(store: Store, key: NodeKey, config: LedgerConfig) -> Result<Self> {
        // One snapshot: another replica may commit while this one starts, and memory must be
        // one state of the database (a change seen in the feed's position but not in the
        // index would never be applied).
        let mut snapshot = store.begin_snapshot().await?;
        let mut tree = MerkleTree::with_floor(TREE_FLOOR);
        follow::each_leaf_from(&mut *snapshot, 0, |hash| {
            tree.push(hash);
        })
        .await?;
        let mut index = BlocklistIndex::new();
        explained::read_rows(&mut *snapshot, |offender, row| {
            index.insert(&offender, row);
        })
        .await?;
        let change_seq = max_change_seq(&mut *snapshot).await?;
        let allow = follow::allow_set(&mut snapshot).await?;
        snapshot.commit().await?;
        Ok(Self {
            store,
            keys: RwLock::new(keys::SigningKeys::new(key)),
            config,
            writer: tokio::sync::Mutex::new(()),
            memory: RwLock::new(Memory { index, tree, change_seq, allow, list_version: 0, reasons_epoch: 0 }),
            checkpoint: Mutex::new(None),
            outbox_queued: tokio::sync::Notify::new(),
            committed: tokio::sync::Notify::new(),
            list_changed: tokio::sync::watch::Sender::new(0),
            peers_version: std::sync::atomic::AtomicU64::new(0),
            salts: Arc::new(rand::random),
        })
    }

    /// Reads every listed entry's reasons into memory, a chunk of entries at a time: the node
    /// serves while this runs (a lookup of an entry whose reasons are not in yet reads them
    /// itself). A chunk that a commit overtook (the epoch moved while it was read) is read
    /// again, up to three times, and then left to lookups. Returns how many entries got
    /// their reasons.
    pub async fn load_reasons(&self) -> Result<usize> {
        let last: i64 = sqlx::query("SELECT COALESCE(MAX(id), 0) AS id FROM entries")
            .fetch_one(self.store.pool())
            .await?
            .try_get("id")?;
        let mut sharing = explained::Sharing::default();
        let mut loaded = 0;
        let mut after = 0;
        while after < last {
            for _ in 0..3 {
                let epoch = self.reasons_epoch();
                let read = explained::read_reasons(self.store.pool(), after, &mut sharing).await?;
                let mut memory = self.memory.write().unwrap_or_else(std::sync::PoisonError::into_inner);
                if memory.reasons_epoch != epoch {
                    continue;
                }
                for (offender, id, reasons) in read {
                    if let Some(row) = memory.index.row_mut(&offender)
                        && row.listed.id == id
                        && row.reasons.is_none()
                        && reasons.is_some()
                    {
                        row.reasons = reasons;
                        loaded += 1;
                    }
                }
                break;
            }
            after += explained::LOAD_CHUNK;
        }
        Ok(loaded)
    }

    /// The same ledger drawing its sealing salts from `salts` (tests pin them).
    pub fn with_salts(mut self, salts: SaltSource) -> Self {
        self.salts = salts;
        self
    }

    /// Erases the opening of sealed leaf `index` (a takedown, an erasure request), with an
    /// `opening-erased` leaf saying so. The sealed leaf, the tree and every proof stay as they
    /// were; nobody, the operator included, can learn what the leaf said any more.
    pub async fn erase_opening(&self, index: u64, now: Timestamp) -> Result<Applied> {
        let _writer = self.writer.lock().await;
        let mut batch = self.begin(now).await?;
        let erased = sqlx::query("DELETE FROM log_openings WHERE idx = $1")
            .bind(leaf_index(index)?)
            .execute(&mut *batch.tx)
            .await?
            .rows_affected();
        if erased == 0 {
            return Err(StoreError::NotFound { what: format!("an opening for log leaf {index}") });
        }
        batch.leaf(&AuditRecord::OpeningErased { at: now, index })?;
        self.commit(batch).await
    }

    /// Changes with every commit that changed a peer (a cache of the peer table is current
    /// while this stays the same).
    pub fn peers_version(&self) -> u64 {
        self.peers_version.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Where memory's reasons stand: pass it to [`Ledger::offer_reasons`] with reasons read
    /// from the database after it.
    pub fn reasons_epoch(&self) -> u64 {
        self.read_memory().reasons_epoch
    }

    /// Keeps `reasons`, read from the database for an entry whose reasons memory had
    /// forgotten (after a bulk commit, or a replica's following), unless memory moved since
    /// `epoch` or the offender is no longer listed as entry `entry_id`.
    pub fn offer_reasons(&self, offender: &Offender, entry_id: i64, epoch: u64, reasons: &Arc<explained::Reasons>) {
        let mut memory = self.memory.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if memory.reasons_epoch != epoch {
            return;
        }
        if let Some(row) = memory.index.row_mut(offender)
            && row.listed.id == entry_id
            && row.listed.source == EntrySource::Incidents
        {
            row.reasons = Some(Arc::clone(reasons));
        }
    }

    /// The store, for reads.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Switches every signer to `keys`. The checkpoint cache's lock is held across the switch,
    /// so a checkpoint signed by the old key can never be cached after it; snapshot caches
    /// key on the list version, which moves.
    fn install_keys(&self, keys: keys::SigningKeys) {
        let mut cache = self.checkpoint.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
        *cache = None;
        drop(cache);
        self.memory.write().unwrap_or_else(std::sync::PoisonError::into_inner).list_version += 1;
    }

    /// The configuration.
    pub fn config(&self) -> &LedgerConfig {
        &self.config
    }

    fn read_memory(&self) -> std::sync::RwLockReadGuard<'_, Memory> {
        // A panic while holding the lock cannot leave memory half-updated in a way reads care
        // about (updates are applied op by op), so a poisoned lock is still readable.
        self.memory.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn begin(&self, now: Timestamp) -> Result<Batch> {
        let (mut tx, database_log_size) = self.store.begin_log_write().await?;
        if database_log_size.is_some_and(|size| size != self.log_size()) {
            // Other replicas of this node committed since memory last moved; the advisory
            // lock keeps anyone from committing until we do.
            self.catch_up_in(&mut tx).await?;
        }
        let next_leaf = self.read_memory().tree.len();
        Ok(Batch {
            tx,
            next_leaf,
            leaves: Vec::new(),
            ops: Vec::new(),
            applied: Applied::default(),
            now,
            list_changed: false,
            outbox_queued: false,
            peers_changed: false,
            dialect: self.store.dialect(),
            touched: BTreeSet::new(),
            home: self.config.key_name.clone(),
            salts: Arc::clone(&self.salts),
            appends: appends::Appends::default(),
            budgets: HashMap::new(),
        })
    }

    async fn commit(&self, mut batch: Batch) -> Result<Applied> {
        if !batch.touched.is_empty() {
            self.rescore_touched(&mut batch).await?;
        }
        batch.flush_budgets().await?;
        batch.flush_appends().await?;
        let Batch { mut tx, leaves, ops, applied, list_changed, outbox_queued, peers_changed, .. } = batch;
        // Writers are serialised, so the feed's last row now is this commit's last.
        let change_seq = if list_changed { Some(max_change_seq(&mut *tx).await?) } else { None };
        let changed_reasons: Vec<i64> =
            ops.iter().filter_map(|op| if let MemoryOp::Reasons(id) = op { Some(*id) } else { None }).collect();
        // What the commit listed it knows already; later ops on the same offender win.
        let known: explained::Known = ops
            .iter()
            .filter_map(|op| match op {
                MemoryOp::Index(offender, listed) => Some((listed.id, (offender.clone(), listed.source))),
                _ => None,
            })
            .collect();
        let reasons = explained::reread(&mut tx, changed_reasons, known).await?;
        tx.commit().await?;
        if !leaves.is_empty() && self.store.dialect() == Dialect::Postgres {
            // The other replicas are told off the writer's path (a NOTIFY in the transaction
            // made every commit a quarter slower); a burst of commits is one announcement.
            self.committed.notify_one();
        }
        if peers_changed {
            self.peers_version.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
        if outbox_queued {
            self.outbox_queued.notify_waiters();
        }
        let mut memory = self.memory.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        for hash in leaves {
            memory.tree.push(hash);
        }
        if let Some(seq) = change_seq {
            memory.change_seq = seq;
            memory.list_version += 1;
        }
        for op in ops {
            match op {
                MemoryOp::Reasons(_) => {}
                MemoryOp::Index(offender, listed) => {
                    // Every listing also asked for its reasons: the commit's reading fills them below.
                    memory.index.insert(&offender, explained::Indexed { listed, reasons: None });
                }
                MemoryOp::Unindex(offender) => {
                    memory.index.remove(&offender);
                }
                MemoryOp::Allow(offender) => {
                    memory.allow.insert(offender);
                }
                MemoryOp::Disallow(offender) => memory.allow.remove(&offender),
            }
        }
        if let Some(reasons) = reasons {
            memory.reasons_epoch += 1;
            for (offender, id, read) in reasons {
                if let Some(row) = memory.index.row_mut(&offender)
                    && row.listed.id == id
                {
                    row.reasons = read;
                }
            }
        }
        if list_changed {
            self.list_changed.send_replace(memory.list_version);
        }
        Ok(applied)
    }

    /// Stores an incident the operator submitted and applies it to the lists, in one transaction.
    pub async fn submit_local(&self, incident: &Incident, share: bool, now: Timestamp) -> Result<Applied> {
        incident.validate()?;
        let _writer = self.writer.lock().await;
        if self.store.incident(&incident.id).await?.is_some() {
            return Err(StoreError::Conflict { what: format!("incident {}", incident.id) });
        }
        let mut batch = self.begin(now).await?;
        let log_index = batch.leaf(&accepted_record(incident, IncidentOrigin::Local, now))?;
        let row = IncidentRow {
            verb: Verb::Report,
            counterpart: None,
            origin: IncidentOrigin::Local,
            provenance: None,
            share,
            decision: Decision::Accepted,
            decision_reason: None,
            log_index,
        };
        insert_incidents(&mut batch, &[(incident, row)]).await?;
        if share {
            // One delivery per buddy we share with, in the same transaction as the incident.
            batch.queue_for_buddies(&incident.id, None).await?;
        }
        self.apply_incident(&mut batch, incident, LOCAL_WEIGHT_MILLI, None, None).await?;
        self.commit(batch).await
    }

    /// Applies an accepted incident: its reputation facts and its listings. A peer's incident
    /// (`from_peer`) lists only what is in a peer's scope (`scope.rs`); the rest is refused
    /// with a leaf and waits for the operator.
    async fn apply_incident(
        &self,
        batch: &mut Batch,
        incident: &Incident,
        weight_milli: i64,
        authority_milli: Option<i64>,
        from: Option<&str>,
    ) -> Result<()> {
        let listings = self.plan_listings(batch, incident, weight_milli, authority_milli, from).await?;
        batch.list_many(&listings, &self.config).await
    }

    /// What applying an incident asks to list: its facts are recorded, and what the operator's
    /// allow entries, the peer's scope or its budget refuse gets a leaf instead.
    async fn plan_listings<'i>(
        &self,
        batch: &mut Batch,
        incident: &'i Incident,
        weight_milli: i64,
        authority_milli: Option<i64>,
        from: Option<&str>,
    ) -> Result<Vec<Listing<'i>>> {
        let from_peer = from.is_some();
        // What the incident says about the servers of its offenders, with the reporter's
        // weight (IPs are counted through the JIDs and domains reported with them). A server
        // reporting its own users is acting on abuse, not suffering from it: no fact.
        if weight_milli > 0 {
            let issuer_server = server_domain(incident.id.issuer().as_str());
            let subjects: BTreeSet<&str> = incident
                .offenders
                .iter()
                .filter_map(|offender| match offender {
                    Offender::Jid(jid) => Some(jid.domain().as_str()),
                    Offender::Domain(domain) => Some(domain.as_str()),
                    Offender::Ip(_) | Offender::Cidr(_) => None,
                })
                .filter(|subject| *subject != issuer_server && !subject.ends_with(&format!(".{issuer_server}")))
                .collect();
            let reference = incident.id.to_string();
            let reporter = independence_key(incident.id.issuer().as_str(), &self.config.reputation);
            // The operator's own reports are not bounded: the bound is against peers.
            let window = if from_peer { self.config.reputation.incident_fact_window_secs } else { 0 };
            for subject in subjects {
                batch.incident_fact(subject, &reporter, incident.severity, weight_milli, &reference, window).await?;
            }
        }
        let action = ListingPolicy::action_for(incident.action);
        let buddies = if from_peer && incident.offenders.iter().any(|o| matches!(o, Offender::Domain(_))) {
            batch.buddy_domains().await?
        } else {
            Vec::new()
        };
        let authoritative = authority_milli.map(|weight| (Authority::of(incident), weight));
        let mut listings = Vec::with_capacity(incident.offenders.len());
        for offender in &incident.offenders {
            let refused = if self.is_allowed(offender) {
                Some("allowed by the operator".to_owned())
            } else if from_peer {
                self.config.scope.refusal(offender, &buddies)
            } else {
                None
            };
            if let Some(why) = refused {
                let by_scope = from_peer && !self.is_allowed(offender);
                if by_scope && matches!(offender, Offender::Jid(_) | Offender::Domain(_)) {
                    // An accusation against a name we protect still tells us about the
                    // accuser: kept as a candidate of no weight, so our operator's allow
                    // entry for that user contradicts the report (spec/reputation.md).
                    batch.weightless_candidate(offender, incident, action).await?;
                }
                let record = AuditRecord::ListingRefused {
                    at: batch.now,
                    offender: offender.clone(),
                    incident: incident.id.clone(),
                    why: why.clone(),
                };
                batch.leaf(&record)?;
                batch.applied.refused.push((offender.clone(), why));
                continue;
            }
            listings.push(Listing {
                offender,
                action,
                expires: incident.expires,
                severity: incident.severity,
                source: EntrySource::Incidents,
                reason: Some((
                    &incident.id,
                    &incident.reporter,
                    match &authoritative {
                        Some((authority, weight)) if authority.covers(offender) => *weight,
                        _ => weight_milli,
                    },
                )),
            });
        }
        // The brake: what exceeds the peer's hourly budget waits for the operator.
        if let Some(peer) = from
            && !listings.is_empty()
        {
            let budget = self.config.scope.hourly_budget;
            let granted = batch.take_budget(peer, listings.len(), budget).await?;
            for listing in listings.drain(granted..).collect::<Vec<_>>() {
                let weight = listing.reason.map_or(0, |(_, _, weight)| weight);
                let (why, _) = batch.hold(peer, &incident.id, Some((listing.offender, weight)), budget).await?;
                let record = AuditRecord::ListingRefused {
                    at: batch.now,
                    offender: listing.offender.clone(),
                    incident: incident.id.clone(),
                    why: why.clone(),
                };
                batch.leaf(&record)?;
                batch.applied.refused.push((listing.offender.clone(), why));
            }
        }
        Ok(listings)
    }

    /// Withdraws a local incident: its contributions leave every entry, and entries left with no
    /// reason leave the list.
    pub async fn retract(&self, id: &IncidentId, now: Timestamp) -> Result<Applied> {
        let _writer = self.writer.lock().await;
        let record =
            self.store.incident(id).await?.ok_or_else(|| StoreError::NotFound { what: format!("incident {id}") })?;
        if record.origin != IncidentOrigin::Local {
            return Err(StoreError::Rejected(format!(
                "incident {id} was issued by {}; only its issuer can retract it",
                id.issuer()
            )));
        }
        if record.incident.status == Status::Retracted {
            return Err(StoreError::Rejected(format!("incident {id} is already retracted")));
        }
        let mut batch = self.begin(now).await?;
        retract_in(&mut batch, record.incident, &self.config).await?;
        if record.share {
            // The retraction reaches the buddies the incident went to, as a signed report with
            // status `retracted`, queued in the same transaction.
            batch.queue_for_buddies(id, None).await?;
        }
        self.commit(batch).await
    }

    /// Removes entries whose expiry is at or before `now`. Returns how many left the list.
    pub async fn expire(&self, now: Timestamp) -> Result<usize> {
        let mut total = 0;
        loop {
            let _writer = self.writer.lock().await;
            let mut batch = self.begin(now).await?;
            let sql = format!(
                "SELECT {ENTRY_COLUMNS} FROM entries WHERE active = 1 AND expires_at IS NOT NULL AND expires_at <= $1 \
                 ORDER BY expires_at, id LIMIT $2"
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(now.unix())
                .bind(i64::from(EXPIRY_BATCH))
                .fetch_all(&mut *batch.tx)
                .await?;
            if rows.is_empty() {
                return Ok(total);
            }
            for row in &rows {
                batch.delist(&entry_from_row(row)?, "expired").await?;
            }
            total += rows.len();
            self.commit(batch).await?;
        }
    }

    /// Drops change-feed rows older than the tombstone horizon; cursors before them get 410.
    pub async fn prune_changes(&self, now: Timestamp) -> Result<u64> {
        let _writer = self.writer.lock().await;
        let cutoff = now.plus_secs(-self.config.policy.tombstone_horizon_secs).unix();
        let mut tx = self.store.begin_write().await?;
        let through: i64 = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS s FROM list_changes WHERE at < $1")
            .bind(cutoff)
            .fetch_one(&mut *tx)
            .await?
            .try_get("s")?;
        if through == 0 {
            return Ok(0);
        }
        let deleted = sqlx::query("DELETE FROM list_changes WHERE seq <= $1").bind(through).execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('changes_pruned_through', $1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(through.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(deleted.rows_affected())
    }

    /// The operator lists an offender directly (a deny entry), with no incident behind it.
    pub async fn deny(
        &self,
        offender: &Offender,
        action: ListAction,
        expires: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Applied> {
        let _writer = self.writer.lock().await;
        if let Some(allowed) = self.allowed_by(offender) {
            return Err(StoreError::Rejected(format!(
                "{offender} is covered by the allow entry {allowed}; remove that entry first"
            )));
        }
        if expires.is_some_and(|at| at <= now) {
            return Err(StoreError::Rejected("expiry must be in the future".to_owned()));
        }
        let mut batch = self.begin(now).await?;
        let listing = Listing {
            offender,
            action,
            expires,
            severity: Severity::High,
            source: EntrySource::Operator,
            reason: None,
        };
        batch.list_many(&[listing], &self.config).await?;
        self.commit(batch).await
    }

    /// The operator takes an offender off the list, whatever put it there.
    pub async fn undeny(&self, offender: &Offender, now: Timestamp) -> Result<Applied> {
        let _writer = self.writer.lock().await;
        let mut batch = self.begin(now).await?;
        match batch.entry(offender).await? {
            Some(entry) if entry.active => batch.delist(&entry, "operator").await?,
            _ => return Err(StoreError::NotFound { what: format!("listed entry {offender}") }),
        }
        self.commit(batch).await
    }

    /// Stores an incident received from a peer (verified) or an unsigned sender, with the
    /// decision taken about it; an accepted report or response is applied to the lists with
    /// its weight. Requests are never applied: they wait for the operator.
    ///
    /// Returns `Ok(None)` when the incident id is already stored: deliveries are retried, so
    /// a duplicate is expected and answered as a success.
    pub async fn record_remote(&self, remote: RemoteIncident<'_>, now: Timestamp) -> Result<Option<Applied>> {
        let (applied, recorded) = self.record_remote_many(&[remote], now).await?;
        Ok(recorded.first().copied().unwrap_or(false).then_some(applied))
    }

    /// Records several received incidents in one transaction (group commit): the receiver
    /// collects what arrives within a few milliseconds, so a burst of reports costs one commit
    /// instead of one each. Returns what changed, and per input whether it was recorded
    /// (`false`: a duplicate). If any write fails, none is recorded and all may be retried.
    pub async fn record_remote_many(
        &self,
        remotes: &[RemoteIncident<'_>],
        now: Timestamp,
    ) -> Result<(Applied, Vec<bool>)> {
        for remote in remotes {
            remote.incident.validate()?;
        }
        let _writer = self.writer.lock().await;
        let mut batch = self.begin(now).await?;
        let stored = batch.stored_ids(remotes.iter().map(|remote| &remote.incident.id)).await?;
        // Reports new to us, in runs of consecutive ones, are stored together; anything else
        // (a duplicate, a retraction, an answer, an id seen earlier in this group) is handled
        // alone, in its place, once the run before it is written.
        let mut seen = BTreeSet::new();
        let mut recorded = vec![false; remotes.len()];
        let mut run: Vec<RemoteIncident<'_>> = Vec::new();
        for (n, remote) in remotes.iter().enumerate() {
            let id = remote.incident.id.to_string();
            // Every id counts as seen, an answer's too: a report under the id of an answer
            // earlier in the group is then a duplicate, not a second insert that would fail
            // the whole group (every peer's reports in it).
            let first_in_group = seen.insert(id.clone());
            let fresh = first_in_group && remote.verb != Verb::Response && !stored.contains(&id);
            if fresh {
                run.push(*remote);
                recorded[n] = true;
                continue;
            }
            self.record_fresh(&mut batch, std::mem::take(&mut run)).await?;
            recorded[n] = self.record_in(&mut batch, *remote).await?;
        }
        self.record_fresh(&mut batch, run).await?;
        let applied = self.commit(batch).await?;
        Ok((applied, recorded))
    }

    /// Records reports none of which is stored yet, as [`Self::record_in`] would one by one,
    /// with a few statements for the whole run: one insert of the incidents, and their
    /// listings together (in rounds of distinct offenders, so each incident still adds its own
    /// reason to an offender several of them name).
    async fn record_fresh(&self, batch: &mut Batch, run: Vec<RemoteIncident<'_>>) -> Result<()> {
        if run.is_empty() {
            return Ok(());
        }
        let mut rows = Vec::with_capacity(run.len());
        for remote in &run {
            let log_index = batch.leaf(&decision_record(remote, batch.now))?;
            rows.push((remote.incident, remote.row(log_index)));
        }
        insert_incidents(batch, &rows).await?;
        let mut listings = Vec::new();
        for remote in &run {
            let incident = remote.incident;
            if remote.decision == Decision::Accepted
                && remote.verb != Verb::Request
                && incident.status != Status::Retracted
            {
                // Only a first answer carries authority, and answers are never in a run.
                listings
                    .extend(self.plan_listings(batch, incident, remote.weight_milli, None, Some(remote.from)).await?);
            }
            for peer in remote.forward_to {
                batch.enqueue(peer, &OutboxJob::Forward { incident: incident.id.clone() })?;
            }
        }
        // Each incident names an offender once; incidents naming the same one go in turn.
        let mut named = BTreeSet::new();
        listings.retain(|listing| named.insert((listing.offender, listing.reason.map(|(id, _, _)| id))));
        while !listings.is_empty() {
            let mut round = BTreeSet::new();
            let (now, later): (Vec<_>, Vec<_>) = listings.into_iter().partition(|l| round.insert(l.offender));
            batch.list_many(&now, &self.config).await?;
            listings = later;
        }
        Ok(())
    }

    async fn record_in(&self, batch: &mut Batch, remote: RemoteIncident<'_>) -> Result<bool> {
        let RemoteIncident {
            incident,
            verb,
            from,
            origin,
            provenance,
            decision,
            decision_reason,
            weight_milli,
            authority_milli,
            forward_to,
        } = remote;
        let now = batch.now;
        let stored = batch.stored_incident(&incident.id).await?;
        // A verified report supersedes an unsigned copy that still waits for the operator: an
        // unsigned sender can never squat an id its signed issuer then cannot use.
        let superseded = stored.as_ref().is_some_and(|stored| {
            stored.origin == IncidentOrigin::Unsigned
                && origin == IncidentOrigin::Peer
                && stored.decision == Decision::Pending
        });
        if superseded {
            sqlx::query("DELETE FROM incidents WHERE id = $1")
                .bind(incident.id.to_string())
                .execute(&mut *batch.tx)
                .await?;
        }
        if let Some(stored) = stored.filter(|_| !superseded) {
            // A signed retraction from the issuer undoes what its report did; anything else
            // about a stored id is a duplicate delivery.
            let retraction = incident.status == Status::Retracted
                && stored.incident.status != Status::Retracted
                && origin == IncidentOrigin::Peer
                && stored.origin == IncidentOrigin::Peer;
            // A victim both shares its report and asks us, as the offender's home server, to
            // act on it: the same id arrives as a report and then as a request. The request
            // still needs our operator, so the stored report becomes a pending request (what
            // the report listed stays).
            let request_for_report = verb == Verb::Request
                && stored.verb == Verb::Report
                && stored.decision != Decision::Pending
                && origin == IncidentOrigin::Peer
                && stored.origin == IncidentOrigin::Peer;
            if request_for_report {
                sqlx::query(
                    "UPDATE incidents SET verb = 'request', decision = 'pending', decision_reason = $1, updated_at = $2 \
                     WHERE id = $3",
                )
                .bind(decision_reason.unwrap_or("request: waits for the operator to confirm and answer"))
                .bind(now.unix())
                .bind(incident.id.to_string())
                .execute(&mut *batch.tx)
                .await?;
                return Ok(true);
            }
            // The other order: the request came first and waits for our operator; the shared
            // report is still a buddy's report, applied with its weight (once).
            let report_for_request = verb == Verb::Report
                && stored.verb == Verb::Request
                && decision == Decision::Accepted
                && origin == IncidentOrigin::Peer
                && stored.origin == IncidentOrigin::Peer
                && incident.status != Status::Retracted;
            if report_for_request {
                let applied = sqlx::query(
                    "SELECT 1 AS one FROM entry_reasons WHERE incident_id = $1 \
                     UNION ALL SELECT 1 AS one FROM candidate_reasons WHERE incident_id = $1 LIMIT 1",
                )
                .bind(incident.id.to_string())
                .fetch_optional(&mut *batch.tx)
                .await?
                .is_some();
                if applied {
                    return Ok(false);
                }
                batch.leaf(&accepted_record(incident, origin, now))?;
                self.apply_incident(batch, incident, weight_milli, None, Some(from)).await?;
                return Ok(true);
            }
            if !retraction {
                return Ok(false);
            }
            // The brake counts what a retraction would delist; over budget, it waits whole.
            let reasons: i64 = sqlx::query("SELECT COUNT(*) AS n FROM entry_reasons WHERE incident_id = $1")
                .bind(incident.id.to_string())
                .fetch_one(&mut *batch.tx)
                .await?
                .try_get("n")?;
            let wanted = usize::try_from(reasons).unwrap_or(usize::MAX);
            let budget = self.config.scope.hourly_budget;
            if wanted > 0 && batch.take_budget(from, wanted, budget).await? < wanted {
                let (why, _) = batch.hold(from, &incident.id, None, budget).await?;
                let record = AuditRecord::IncidentIgnored {
                    at: now,
                    id: incident.id.clone(),
                    reporter: incident.reporter.to_string(),
                    why: format!("retraction {why}"),
                };
                batch.leaf(&record)?;
                return Ok(true);
            }
            retract_in(batch, stored.incident, &self.config).await?;
            // The retraction travels the paths its report took: its signed chain replaces the
            // report's, and goes to the buddies we forward to.
            if let Some(links) = provenance {
                let links = serde_json::to_string(links).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                sqlx::query("UPDATE incidents SET provenance = $1 WHERE id = $2")
                    .bind(links)
                    .bind(incident.id.to_string())
                    .execute(&mut *batch.tx)
                    .await?;
            }
            for peer in forward_to {
                batch.enqueue(peer, &OutboxJob::Forward { incident: incident.id.clone() })?;
            }
            return Ok(true);
        }
        let log_index = batch.leaf(&decision_record(&remote, now))?;
        let row = remote.row(log_index);
        insert_incidents(batch, &[(incident, row)]).await?;
        // The first answer to our request carries the weight of the server we asked about
        // its own users; another answer to the same request is only the peer's report.
        let request = incident.related.as_ref().unwrap_or(&incident.id).to_string();
        let first_answer = verb == Verb::Response && !batch.answered(&request).await?;
        let authority_milli = authority_milli.filter(|_| first_answer);
        if decision == Decision::Accepted && verb != Verb::Request && incident.status != Status::Retracted {
            self.apply_incident(batch, incident, weight_milli, authority_milli, Some(from)).await?;
        }
        if decision == Decision::Accepted && first_answer && batch.is_remote(incident.id.issuer().as_str()) {
            // The peer answered our request: the answer counts for its server.
            let server = server_domain(incident.id.issuer().as_str()).to_owned();
            // A late answer is still an answer: it replaces the request's "ignored" fact.
            sqlx::query("DELETE FROM reputation_facts WHERE reference = $1 AND kind = 'request-ignored'")
                .bind(&request)
                .execute(&mut *batch.tx)
                .await?;
            batch.fact(&server, FactKind::RequestAnswered, None, 0, &request).await?;
        }
        for peer in forward_to {
            batch.enqueue(peer, &OutboxJob::Forward { incident: incident.id.clone() })?;
        }
        Ok(true)
    }

    /// The operator accepts an incident that was waiting (an unsigned report or a user's
    /// report): it is applied to the lists now, with the operator's weight.
    pub async fn accept_pending(&self, id: &IncidentId, now: Timestamp) -> Result<Applied> {
        let _writer = self.writer.lock().await;
        let record =
            self.store.incident(id).await?.ok_or_else(|| StoreError::NotFound { what: format!("incident {id}") })?;
        if record.decision != Decision::Pending {
            return Err(StoreError::Rejected(format!(
                "incident {id} is {}, not waiting for the operator",
                record.decision
            )));
        }
        if record.verb == Verb::Request {
            return Err(StoreError::Rejected(format!("{id} is a request; answer it with respond")));
        }
        let incident = record.incident;
        let mut batch = self.begin(now).await?;
        batch.leaf(&accepted_record(&incident, record.origin, now))?;
        sqlx::query("UPDATE incidents SET decision = 'accepted', decision_reason = $1, updated_at = $2 WHERE id = $3")
            .bind("accepted by the operator")
            .bind(now.unix())
            .bind(id.to_string())
            .execute(&mut *batch.tx)
            .await?;
        self.apply_incident(&mut batch, &incident, LOCAL_WEIGHT_MILLI, None, None).await?;
        self.commit(batch).await
    }

    /// Answers a peer's request (XEP-0268): lists `response`'s offenders under this node's own
    /// signature, marks the request answered, and queues the signed response to the requester,
    /// all in one transaction. `response.related` must name the request.
    ///
    /// This is the seed flow: the home server knows the flooder's IPs; once it answers, every
    /// node that consumes its list has them under its signature.
    pub async fn respond(&self, request_id: &IncidentId, response: &Incident, now: Timestamp) -> Result<Applied> {
        response.validate()?;
        if response.related.as_ref() != Some(request_id) {
            return Err(StoreError::Rejected("a response must name the request it answers".to_owned()));
        }
        let _writer = self.writer.lock().await;
        let request = self
            .store
            .incident(request_id)
            .await?
            .ok_or_else(|| StoreError::NotFound { what: format!("request {request_id}") })?;
        if request.verb != Verb::Request {
            return Err(StoreError::Rejected(format!("{request_id} is a {}, not a request", request.verb)));
        }
        if request.decision != Decision::Pending {
            return Err(StoreError::Rejected(format!("request {request_id} was already answered")));
        }
        let requester =
            request.counterpart.clone().ok_or_else(|| StoreError::Corrupt("request without sender".to_owned()))?;
        if self.store.incident(&response.id).await?.is_some() {
            return Err(StoreError::Conflict { what: format!("incident {}", response.id) });
        }
        let mut batch = self.begin(now).await?;
        let log_index = batch.leaf(&accepted_record(response, IncidentOrigin::Local, now))?;
        let row = IncidentRow {
            verb: Verb::Response,
            counterpart: Some(&requester),
            origin: IncidentOrigin::Local,
            provenance: None,
            share: true,
            decision: Decision::Accepted,
            decision_reason: None,
            log_index,
        };
        insert_incidents(&mut batch, &[(response, row)]).await?;
        self.apply_incident(&mut batch, response, LOCAL_WEIGHT_MILLI, None, None).await?;
        sqlx::query("UPDATE incidents SET decision = 'accepted', decision_reason = $1, updated_at = $2 WHERE id = $3")
            .bind(format!("answered by {}", response.id))
            .bind(now.unix())
            .bind(request_id.to_string())
            .execute(&mut *batch.tx)
            .await?;
        batch.enqueue(&requester, &OutboxJob::Response { incident: response.id.clone() })?;
        // Our other buddies get the answer as our report: what we listed under our signature
        // (the IPs only we knew) reaches every list that trusts us, not only the requester's.
        batch.queue_for_buddies(&response.id, Some(&requester)).await?;
        self.commit(batch).await
    }

    /// Runs `f` on the lookup index (read lock held only for the call).
    pub fn with_index<T>(&self, f: impl FnOnce(&BlocklistIndex<explained::Indexed>) -> T) -> T {
        f(&self.read_memory().index)
    }

    /// The listed entries of `kinds` that `keep` accepts, with the log's size and the change
    /// feed's position, from one read lock: every commit moves the three together.
    pub(crate) fn listed(&self, kinds: &[&str], keep: impl Fn(&Listed) -> bool) -> crate::snapshot::ListedAt {
        let memory = self.read_memory();
        let mut rows = Vec::new();
        for kind in kinds {
            memory.index.for_each_of_kind(kind, |offender, row| {
                if keep(&row.listed) {
                    rows.push((offender, row.listed));
                }
            });
        }
        crate::snapshot::ListedAt { rows, tree_size: memory.tree.len(), change_seq: memory.change_seq }
    }

    /// Changes after every commit that changed a list (its change-feed rows are readable
    /// by then), so a publisher waits on it instead of polling.
    pub fn watch_lists(&self) -> tokio::sync::watch::Receiver<u64> {
        self.list_changed.subscribe()
    }

    /// A number that changes whenever a published list changes.
    pub fn list_version(&self) -> u64 {
        self.read_memory().list_version
    }

    /// Current number of audit leaves.
    pub fn log_size(&self) -> u64 {
        self.read_memory().tree.len()
    }

    /// A signed checkpoint at the current size (cached until the log grows).
    pub fn checkpoint(&self) -> Result<SignedCheckpoint> {
        let (size, root) = {
            let memory = self.read_memory();
            (memory.tree.len(), memory.tree.root())
        };
        self.checkpoint_at(size, root)
    }

    fn checkpoint_at(&self, size: u64, root: Hash) -> Result<SignedCheckpoint> {
        // The cache's lock is held while signing: a key switch (`install_keys`) waits for it,
        // so what is cached is always signed by the current key.
        let mut cache = self.checkpoint.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(signed) = cache.as_ref()
            && signed.checkpoint().size == size
        {
            return Ok(signed.clone());
        }
        let signed = Checkpoint::new(self.config.origin.clone(), size, root)
            .sign(&self.config.key_name, self.signing_key().signing_key())?;
        if cache.as_ref().is_none_or(|cached| cached.checkpoint().size < size) {
            *cache = Some(signed.clone());
        }
        Ok(signed)
    }

    /// A signed checkpoint at an earlier `size` (for snapshots that reflect that size, read
    /// from memory, which holds every committed leaf).
    pub async fn checkpoint_for_size(&self, size: u64) -> Result<SignedCheckpoint> {
        let root = self.with_leaves(|tree, leaves| tree.root_at_with(size, leaves)).await?;
        self.checkpoint_at(size, root)
    }

    /// Inclusion proof for leaf `index` in the tree of `size` leaves.
    pub async fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>> {
        self.with_leaves(|tree, leaves| tree.inclusion_proof_with(index, size, leaves)).await
    }

    /// Consistency proof between two sizes.
    pub async fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>> {
        self.with_leaves(|tree, leaves| tree.consistency_proof_with(old, new, leaves)).await
    }

    /// Runs `operation` on the tree with the leaf hashes below its floor that it needs, read
    /// from the audit table: the tree only grows, so what it needs for sizes it holds does
    /// not change between the two reads.
    async fn with_leaves<T>(
        &self,
        operation: impl Fn(&MerkleTree, &dyn LeafHashes) -> ostracon_protocol::Result<T>,
    ) -> Result<T> {
        let needed = self.read_memory().tree.leaves_needed(&operation);
        let mut leaves = std::collections::BTreeMap::new();
        // Consecutive leaves in one range read each (a proof names a few blocks of them).
        let mut rest = needed.as_slice();
        while let Some(&first) = rest.first() {
            let run = rest.iter().zip(first..).take_while(|(index, expected)| **index == *expected).count();
            let rows = sqlx::query("SELECT idx, leaf_hash FROM audit_log WHERE idx >= $1 AND idx < $2")
                .bind(leaf_index(first)?)
                .bind(leaf_index(first + run as u64)?)
                .fetch_all(self.store.pool())
                .await?;
            for row in rows {
                let (index, hash) = follow::leaf_of(&row)?;
                leaves.insert(u64::try_from(index).map_err(|e| StoreError::Corrupt(e.to_string()))?, hash);
            }
            rest = rest.get(run..).unwrap_or_default();
        }
        Ok(operation(&self.read_memory().tree, &leaves)?)
    }

    /// Loads an incident's record (a convenience for callers holding only the ledger).
    pub async fn incident(&self, id: &IncidentId) -> Result<Option<IncidentRecord>> {
        self.store.incident(id).await
    }

    /// Checks the database answers.
    pub async fn ping(&self) -> Result<()> {
        self.store.ping().await
    }
}

/// Marks an incident retracted and takes its contributions off every entry, its candidates
/// and the reputation facts it gave; entries left without a quorum leave the list. A remote
/// issuer's retraction is itself a fact about it.
async fn retract_in(batch: &mut Batch, mut incident: Incident, config: &LedgerConfig) -> Result<()> {
    let id = incident.id.clone();
    let now = batch.now;
    let log_index = batch.leaf(&AuditRecord::IncidentRetracted { at: now, id: id.clone() })?;
    incident.status = Status::Retracted;
    let body = serde_json::to_string(&incident).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    sqlx::query("UPDATE incidents SET status = $1, body = $2, updated_at = $3, log_index = $4 WHERE id = $5")
        .bind(Status::Retracted.as_str())
        .bind(body)
        .bind(now.unix())
        .bind(log_index as i64)
        .bind(id.to_string())
        .execute(&mut *batch.tx)
        .await?;
    let entry_ids: Vec<i64> =
        sqlx::query("SELECT entry_id FROM entry_reasons WHERE incident_id = $1 ORDER BY entry_id")
            .bind(id.to_string())
            .fetch_all(&mut *batch.tx)
            .await?
            .iter()
            .map(|row| row.try_get("entry_id"))
            .collect::<std::result::Result<_, _>>()?;
    batch.ops.extend(entry_ids.iter().map(|id| MemoryOp::Reasons(*id)));
    // What the brake held of it goes too: a retracted report lists nothing.
    sqlx::query("DELETE FROM held_changes WHERE incident_id = $1 AND change = 'list'")
        .bind(id.to_string())
        .execute(&mut *batch.tx)
        .await?;
    for table in ["entry_reasons", "candidate_reasons"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE incident_id = $1")))
            .bind(id.to_string())
            .execute(&mut *batch.tx)
            .await?;
    }
    batch.forget_facts(&id.to_string()).await?;
    let issuer = id.issuer().to_string();
    if batch.is_remote(&issuer) {
        batch.fact(server_domain(&issuer), FactKind::Retracted, None, 0, &id.to_string()).await?;
    }
    batch.requorum(&entry_ids, "retracted", config).await
}

/// Appends `rows` groups of `columns` placeholders, numbered from `first`: `($1, $2), ($3, $4)`
/// for PostgreSQL, `(?, ?), (?, ?)` for SQLite.
///
/// SQLite gets anonymous `?`: the driver resolves each numbered parameter by name, a linear
/// scan per parameter, which made a 5,000-parameter statement spend most of its time there.
fn push_placeholders(sql: &mut String, dialect: Dialect, rows: usize, columns: usize, first: usize) {
    use std::fmt::Write as _;
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            match dialect {
                Dialect::Sqlite => sql.push('?'),
                Dialect::Postgres => {
                    let _ = write!(sql, "${}", first + row * columns + column);
                }
            }
        }
        sql.push(')');
    }
}

/// A leaf index as stored (BIGINT).
fn leaf_index(index: u64) -> Result<i64> {
    i64::try_from(index).map_err(|_| StoreError::Rejected("audit log is full".to_owned()))
}

/// The columns of a new incident row besides the incident itself.
#[derive(Clone, Copy)]
struct IncidentRow<'a> {
    verb: Verb,
    counterpart: Option<&'a str>,
    origin: IncidentOrigin,
    provenance: Option<&'a [SignedEnvelope]>,
    share: bool,
    decision: Decision,
    decision_reason: Option<&'a str>,
    log_index: u64,
}

/// Inserts new incidents, several to a statement.
async fn insert_incidents(batch: &mut Batch, rows: &[(&Incident, IncidentRow<'_>)]) -> Result<()> {
    const COLUMNS: usize = 17;
    for chunk in rows.chunks(appends::MAX_PARAMETERS / COLUMNS) {
        let mut sql = "INSERT INTO incidents (id, issuer, reporter, origin, status, category, severity, body, \
                       provenance, share, decision, decision_reason, received_at, updated_at, log_index, verb, \
                       counterpart) VALUES "
            .to_owned();
        push_placeholders(&mut sql, batch.dialect, chunk.len(), COLUMNS, 1);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (incident, row) in chunk {
            let body = serde_json::to_string(incident).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let IncidentRow { verb, counterpart, origin, provenance, share, decision, decision_reason, log_index } =
                *row;
            let provenance =
                provenance.map(serde_json::to_string).transpose().map_err(|e| StoreError::Corrupt(e.to_string()))?;
            query = query
                .bind(incident.id.to_string())
                .bind(incident.id.issuer().to_string())
                .bind(incident.reporter.to_string())
                .bind(origin.as_str())
                .bind(incident.status.as_str())
                .bind(incident.category.as_str())
                .bind(incident.severity.as_str())
                .bind(body)
                .bind(provenance)
                .bind(i64::from(share))
                .bind(decision.as_str())
                .bind(decision_reason.map(str::to_owned))
                .bind(batch.now.unix())
                .bind(batch.now.unix())
                .bind(leaf_index(log_index)?)
                .bind(verb.as_str())
                .bind(counterpart.map(str::to_owned));
        }
        query.execute(&mut *batch.tx).await.map_err(|error| match StoreError::from(error) {
            StoreError::Conflict { .. } => {
                let ids: Vec<String> = chunk.iter().map(|(incident, _)| incident.id.to_string()).collect();
                StoreError::Conflict { what: format!("incident {}", ids.join(", ")) }
            }
            other => other,
        })?;
    }
    Ok(())
}

/// The leaf that records an incident accepted from `origin`.
fn accepted_record(incident: &Incident, origin: IncidentOrigin, at: Timestamp) -> AuditRecord {
    AuditRecord::IncidentAccepted {
        at,
        id: incident.id.clone(),
        reporter: incident.reporter.to_string(),
        origin: origin.as_str().to_owned(),
    }
}

/// The leaf that records what we decided about a received incident.
fn decision_record(remote: &RemoteIncident<'_>, at: Timestamp) -> AuditRecord {
    let incident = remote.incident;
    match remote.decision {
        Decision::Accepted => accepted_record(incident, remote.origin, at),
        Decision::Ignored | Decision::Pending => AuditRecord::IncidentIgnored {
            at,
            id: incident.id.clone(),
            reporter: incident.reporter.to_string(),
            why: remote.decision_reason.unwrap_or(remote.decision.as_str()).to_owned(),
        },
    }
}

impl<'a> RemoteIncident<'a> {
    /// Its incident row, recorded by the leaf at `log_index`.
    fn row(&self, log_index: u64) -> IncidentRow<'a> {
        IncidentRow {
            verb: self.verb,
            counterpart: Some(self.from),
            origin: self.origin,
            provenance: self.provenance,
            share: false,
            decision: self.decision,
            decision_reason: self.decision_reason,
            log_index,
        }
    }
}

/// What a responder is authoritative for: the users of its own server, and the addresses it
/// names together with them (it knows which IPs its users came from; nobody else does).
struct Authority {
    server: ostracon_protocol::ids::Domain,
    names_its_users: bool,
}

impl Authority {
    fn of(incident: &Incident) -> Self {
        let issuer = incident.id.issuer();
        let server =
            ostracon_protocol::ids::Domain::parse(server_domain(issuer.as_str())).unwrap_or_else(|_| issuer.clone());
        let names_its_users = incident.offenders.iter().any(|offender| Self::its_user(&server, offender));
        Self { server, names_its_users }
    }

    fn its_user(server: &ostracon_protocol::ids::Domain, offender: &Offender) -> bool {
        matches!(offender, Offender::Jid(jid) if jid.domain().is_within(server))
    }

    fn covers(&self, offender: &Offender) -> bool {
        match offender {
            Offender::Jid(_) => Self::its_user(&self.server, offender),
            Offender::Ip(_) | Offender::Cidr(_) => self.names_its_users,
            Offender::Domain(_) => false,
        }
    }
}
