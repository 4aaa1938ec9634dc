//! The ledger: the node's one writer and its in-memory state.
//!
//! Every decision (an incident accepted, an entry listed or removed, an allow entry, an
//! expiry) is one database transaction that writes the incident row, the entry rows and
//! their reasons, the change-feed rows, the audit leaves and the outbox rows together.
//! Only after the commit does the ledger update what it keeps in memory: the lookup
//! [`BlocklistIndex`], the Merkle tree over the audit leaves, and the allow set. A crash
//! between the two loses nothing: memory is rebuilt from the database at start-up.
//!
//! **Invariant:** leaf `n` in the database is leaf `n` of the in-memory tree. Writers are
//! serialised by one async mutex, so leaf indexes are assigned without gaps or races.

use std::collections::BTreeSet;
use std::sync::{Mutex, RwLock};

use ostracon_protocol::ids::{BareJid, IncidentId, Offender};
use ostracon_protocol::incident::{Incident, Severity, Status};
use ostracon_protocol::keys::NodeKey;
use ostracon_protocol::log::checkpoint::{Checkpoint, SignedCheckpoint};
use ostracon_protocol::log::merkle::{Hash, MerkleTree, leaf_hash};
use ostracon_protocol::log::record::AuditRecord;
use ostracon_protocol::time::Timestamp;
use sqlx::{Any, Row as _, Transaction};

use crate::index::BlocklistIndex;
use crate::model::{ChangeOp, Decision, EntryRecord, EntrySource, IncidentOrigin, IncidentRecord, ListAction};
use crate::policy::ListingPolicy;
use crate::queries::{ENTRY_COLUMNS, entry_from_row, offender_kind};
use crate::traits::{AuditLogStore as _, BlocklistStore as _, IncidentStore as _};
use crate::{Result, Store, StoreError};

/// Weight of the operator's own reports, in thousandths.
pub const LOCAL_WEIGHT_MILLI: i64 = 1_000;

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
}

/// What the in-memory state holds.
struct Memory {
    index: BlocklistIndex,
    tree: MerkleTree,
    allow: BTreeSet<Offender>,
    /// Bumped by every commit that changed a published list (snapshot caches key on it).
    list_version: u64,
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
    Index(Offender, i64),
    Unindex(Offender),
    Allow(Offender),
    Disallow(Offender),
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
}

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
    /// Appends an audit leaf and returns its index.
    async fn leaf(&mut self, record: &AuditRecord) -> Result<u64> {
        let bytes = record.to_leaf()?;
        let index = self.next_leaf;
        sqlx::query("INSERT INTO audit_log (idx, leaf, leaf_hash, at) VALUES ($1, $2, $3, $4)")
            .bind(i64::try_from(index).map_err(|_| StoreError::Rejected("audit log is full".to_owned()))?)
            .bind(bytes.clone())
            .bind(leaf_hash(&bytes).to_vec())
            .bind(self.now.unix())
            .execute(&mut *self.tx)
            .await?;
        self.leaves.push(leaf_hash(&bytes));
        self.applied.leaves.push(index);
        self.next_leaf += 1;
        Ok(index)
    }

    async fn change(
        &mut self,
        op: ChangeOp,
        offender: &Offender,
        action: Option<ListAction>,
        expires: Option<Timestamp>,
        log_index: u64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO list_changes (kind, value, op, action, expires_at, at, log_index) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(offender_kind(offender))
        .bind(offender.to_string())
        .bind(op.as_str())
        .bind(action.map(|a| a.as_str().to_owned()))
        .bind(expires.map(Timestamp::unix))
        .bind(self.now.unix())
        .bind(log_index as i64)
        .execute(&mut *self.tx)
        .await?;
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

    /// Lists an offender (or strengthens its listing) for one contribution.
    async fn list(&mut self, listing: Listing<'_>, policy: &ListingPolicy) -> Result<()> {
        let offender = listing.offender;
        let existing = self.entry(offender).await?;
        let active = existing.as_ref().is_some_and(|e| e.active);
        let listing_number = match &existing {
            Some(entry) if entry.active => entry.listings.max(1),
            Some(entry) => entry.listings.saturating_add(1),
            None => 1,
        };
        let expires = match listing.source {
            EntrySource::Incidents => Some(policy.expiry(self.now, listing.expires, listing.severity, listing_number)),
            EntrySource::Operator => listing.expires,
        };
        let (action, expires, changed) = match &existing {
            Some(entry) if entry.active => {
                // Another contribution to a live entry: keep the stronger action and the later expiry.
                let action = entry.action.min(listing.action);
                let expires = match (entry.expires_at, expires) {
                    (None, _) | (_, None) => None,
                    (Some(a), Some(b)) => Some(a.max(b)),
                };
                (action, expires, action != entry.action || expires != entry.expires_at)
            }
            _ => (listing.action, expires, true),
        };

        let mut reasons: Vec<IncidentId> = Vec::new();
        if let Some((id, _, _)) = listing.reason {
            reasons.push(id.clone());
        }
        let log_index = self
            .leaf(&AuditRecord::EntryAdded {
                at: self.now,
                offender: offender.clone(),
                action: action.as_str().to_owned(),
                expires,
                reasons,
                source: listing.source.as_str().to_owned(),
            })
            .await?;

        let entry_id: i64 = match &existing {
            None => {
                let row = sqlx::query(
                    "INSERT INTO entries (kind, value, action, source, first_seen, updated_at, expires_at, listings, \
                     active, log_index) VALUES ($1, $2, $3, $4, $5, $5, $6, 1, 1, $7) RETURNING id",
                )
                .bind(offender_kind(offender))
                .bind(offender.to_string())
                .bind(action.as_str())
                .bind(listing.source.as_str())
                .bind(self.now.unix())
                .bind(expires.map(Timestamp::unix))
                .bind(log_index as i64)
                .fetch_one(&mut *self.tx)
                .await?;
                row.try_get("id")?
            }
            Some(entry) => {
                if !active {
                    // A relisting starts a new set of reasons.
                    sqlx::query("DELETE FROM entry_reasons WHERE entry_id = $1")
                        .bind(entry.id)
                        .execute(&mut *self.tx)
                        .await?;
                }
                let source = if active && entry.source == EntrySource::Operator {
                    EntrySource::Operator
                } else {
                    listing.source
                };
                sqlx::query(
                    "UPDATE entries SET action = $1, source = $2, updated_at = $3, expires_at = $4, listings = $5, \
                     active = 1, log_index = $6 WHERE id = $7",
                )
                .bind(action.as_str())
                .bind(source.as_str())
                .bind(self.now.unix())
                .bind(expires.map(Timestamp::unix))
                .bind(i64::from(listing_number))
                .bind(log_index as i64)
                .bind(entry.id)
                .execute(&mut *self.tx)
                .await?;
                entry.id
            }
        };
        if let Some((incident, reporter, weight)) = listing.reason {
            sqlx::query(
                "INSERT INTO entry_reasons (entry_id, incident_id, reporter, weight_milli, added_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (entry_id, incident_id) DO NOTHING",
            )
            .bind(entry_id)
            .bind(incident.to_string())
            .bind(reporter.to_string())
            .bind(weight)
            .bind(self.now.unix())
            .execute(&mut *self.tx)
            .await?;
        }
        if changed {
            self.change(ChangeOp::Add, offender, Some(action), expires, log_index).await?;
        }
        if !active {
            self.ops.push(MemoryOp::Index(offender.clone(), entry_id));
        }
        self.applied.listed.push(offender.clone());
        Ok(())
    }

    /// Takes an entry off the list.
    async fn delist(&mut self, entry: &EntryRecord, why: &str) -> Result<()> {
        let log_index = self
            .leaf(&AuditRecord::EntryRemoved { at: self.now, offender: entry.offender.clone(), why: why.to_owned() })
            .await?;
        sqlx::query("UPDATE entries SET active = 0, updated_at = $1, log_index = $2 WHERE id = $3")
            .bind(self.now.unix())
            .bind(log_index as i64)
            .bind(entry.id)
            .execute(&mut *self.tx)
            .await?;
        self.change(ChangeOp::Remove, &entry.offender, None, None, log_index).await?;
        self.ops.push(MemoryOp::Unindex(entry.offender.clone()));
        self.applied.delisted.push(entry.offender.clone());
        Ok(())
    }
}

/// The node's writer and in-memory state.
pub struct Ledger {
    store: Store,
    key: NodeKey,
    config: LedgerConfig,
    writer: tokio::sync::Mutex<()>,
    memory: RwLock<Memory>,
    checkpoint: Mutex<Option<SignedCheckpoint>>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("origin", &self.config.origin).finish_non_exhaustive()
    }
}

impl Ledger {
    /// Loads the in-memory state from the store.
    pub async fn open(store: Store, key: NodeKey, config: LedgerConfig) -> Result<Self> {
        let tree = MerkleTree::from_leaf_hashes(store.leaf_hashes().await?);
        let mut index = BlocklistIndex::new();
        for entry in store.active_entries().await? {
            index.insert(&entry.offender, entry.id);
        }
        let allow = store.allow_entries().await?.into_iter().map(|a| a.offender).collect();
        Ok(Self {
            store,
            key,
            config,
            writer: tokio::sync::Mutex::new(()),
            memory: RwLock::new(Memory { index, tree, allow, list_version: 0 }),
            checkpoint: Mutex::new(None),
        })
    }

    /// The store, for reads.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The signing key.
    pub fn key(&self) -> &NodeKey {
        &self.key
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
        let tx = self.store.pool().begin().await?;
        let next_leaf = self.read_memory().tree.len();
        Ok(Batch {
            tx,
            next_leaf,
            leaves: Vec::new(),
            ops: Vec::new(),
            applied: Applied::default(),
            now,
            list_changed: false,
        })
    }

    async fn commit(&self, batch: Batch) -> Result<Applied> {
        let Batch { tx, leaves, ops, applied, list_changed, .. } = batch;
        tx.commit().await?;
        let mut memory = self.memory.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        for hash in leaves {
            memory.tree.push(hash);
        }
        if list_changed {
            memory.list_version += 1;
        }
        for op in ops {
            match op {
                MemoryOp::Index(offender, id) => memory.index.insert(&offender, id),
                MemoryOp::Unindex(offender) => {
                    memory.index.remove(&offender);
                }
                MemoryOp::Allow(offender) => {
                    memory.allow.insert(offender);
                }
                MemoryOp::Disallow(offender) => {
                    memory.allow.remove(&offender);
                }
            }
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
        let log_index = batch
            .leaf(&AuditRecord::IncidentAccepted {
                at: now,
                id: incident.id.clone(),
                reporter: incident.reporter.to_string(),
                origin: IncidentOrigin::Local.as_str().to_owned(),
            })
            .await?;
        insert_incident(&mut batch, incident, IncidentOrigin::Local, share, Decision::Accepted, None, log_index)
            .await?;
        let action = ListingPolicy::action_for(incident.action);
        for offender in &incident.offenders {
            if self.is_allowed(offender) {
                batch
                    .leaf(&AuditRecord::ListingRefused {
                        at: now,
                        offender: offender.clone(),
                        incident: incident.id.clone(),
                        why: "allowed by the operator".to_owned(),
                    })
                    .await?;
                batch.applied.refused.push((offender.clone(), "allowed by the operator".to_owned()));
                continue;
            }
            let listing = Listing {
                offender,
                action,
                expires: incident.expires,
                severity: incident.severity,
                source: EntrySource::Incidents,
                reason: Some((&incident.id, &incident.reporter, LOCAL_WEIGHT_MILLI)),
            };
            batch.list(listing, &self.config.policy).await?;
        }
        self.commit(batch).await
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
        let log_index = batch.leaf(&AuditRecord::IncidentRetracted { at: now, id: id.clone() }).await?;
        let mut incident = record.incident;
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
        sqlx::query("DELETE FROM entry_reasons WHERE incident_id = $1")
            .bind(id.to_string())
            .execute(&mut *batch.tx)
            .await?;
        for entry_id in entry_ids {
            let remaining: i64 = sqlx::query("SELECT COUNT(*) AS n FROM entry_reasons WHERE entry_id = $1")
                .bind(entry_id)
                .fetch_one(&mut *batch.tx)
                .await?
                .try_get("n")?;
            let sql = format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE id = $1");
            let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(entry_id).fetch_one(&mut *batch.tx).await?;
            let entry = entry_from_row(&row)?;
            if remaining == 0 && entry.active && entry.source == EntrySource::Incidents {
                batch.delist(&entry, "retracted").await?;
            }
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
        let mut tx = self.store.pool().begin().await?;
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

    /// The operator allows an offender: it leaves the list now and is never listed while allowed.
    pub async fn allow(&self, offender: &Offender, note: &str, now: Timestamp) -> Result<Applied> {
        let _writer = self.writer.lock().await;
        if self.is_allowed(offender) {
            return Err(StoreError::Conflict { what: format!("allow entry {offender}") });
        }
        let mut batch = self.begin(now).await?;
        let log_index =
            batch.leaf(&AuditRecord::AllowAdded { at: now, offender: offender.clone(), note: note.to_owned() }).await?;
        sqlx::query("INSERT INTO allow_entries (kind, value, note, created_at, log_index) VALUES ($1, $2, $3, $4, $5)")
            .bind(offender_kind(offender))
            .bind(offender.to_string())
            .bind(note)
            .bind(now.unix())
            .bind(log_index as i64)
            .execute(&mut *batch.tx)
            .await?;
        if let Some(entry) = batch.entry(offender).await?
            && entry.active
        {
            batch.delist(&entry, "allowed").await?;
        }
        batch.ops.push(MemoryOp::Allow(offender.clone()));
        self.commit(batch).await
    }

    /// Removes an allow entry.
    pub async fn disallow(&self, offender: &Offender, now: Timestamp) -> Result<Applied> {
        let _writer = self.writer.lock().await;
        if !self.is_allowed(offender) {
            return Err(StoreError::NotFound { what: format!("allow entry {offender}") });
        }
        let mut batch = self.begin(now).await?;
        batch.leaf(&AuditRecord::AllowRemoved { at: now, offender: offender.clone() }).await?;
        sqlx::query("DELETE FROM allow_entries WHERE kind = $1 AND value = $2")
            .bind(offender_kind(offender))
            .bind(offender.to_string())
            .execute(&mut *batch.tx)
            .await?;
        batch.ops.push(MemoryOp::Disallow(offender.clone()));
        self.commit(batch).await
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
        if self.is_allowed(offender) {
            return Err(StoreError::Rejected(format!("{offender} is on the allow list; remove the allow entry first")));
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
        batch.list(listing, &self.config.policy).await?;
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

    /// True if the operator allowed this offender.
    pub fn is_allowed(&self, offender: &Offender) -> bool {
        self.read_memory().allow.contains(offender)
    }

    /// Runs `f` on the lookup index (read lock held only for the call).
    pub fn with_index<T>(&self, f: impl FnOnce(&BlocklistIndex) -> T) -> T {
        f(&self.read_memory().index)
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
        let mut cache = self.checkpoint.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(signed) = cache.as_ref()
            && signed.checkpoint().size == size
        {
            return Ok(signed.clone());
        }
        let signed = Checkpoint::new(self.config.origin.clone(), size, root)
            .sign(&self.config.key_name, self.key.signing_key())?;
        if cache.as_ref().is_none_or(|cached| cached.checkpoint().size < size) {
            *cache = Some(signed.clone());
        }
        Ok(signed)
    }

    /// A signed checkpoint at an earlier `size` (for snapshots that reflect that size).
    ///
    /// Waits for the writer, which guarantees every committed leaf is in the in-memory tree.
    pub async fn checkpoint_for_size(&self, size: u64) -> Result<SignedCheckpoint> {
        let root = {
            let _writer = self.writer.lock().await;
            self.read_memory().tree.root_at(size)?
        };
        self.checkpoint_at(size, root)
    }

    /// Inclusion proof for leaf `index` in the tree of `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>> {
        Ok(self.read_memory().tree.inclusion_proof(index, size)?)
    }

    /// Consistency proof between two sizes.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>> {
        Ok(self.read_memory().tree.consistency_proof(old, new)?)
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

async fn insert_incident(
    batch: &mut Batch,
    incident: &Incident,
    origin: IncidentOrigin,
    share: bool,
    decision: Decision,
    decision_reason: Option<&str>,
    log_index: u64,
) -> Result<()> {
    let body = serde_json::to_string(incident).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    sqlx::query(
        "INSERT INTO incidents (id, issuer, reporter, origin, status, category, severity, body, provenance, share, \
         decision, decision_reason, received_at, updated_at, log_index) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9, $10, $11, $12, $12, $13)",
    )
    .bind(incident.id.to_string())
    .bind(incident.id.issuer().to_string())
    .bind(incident.reporter.to_string())
    .bind(origin.as_str())
    .bind(incident.status.as_str())
    .bind(incident.category.as_str())
    .bind(incident.severity.as_str())
    .bind(body)
    .bind(i64::from(share))
    .bind(decision.as_str())
    .bind(decision_reason.map(str::to_owned))
    .bind(batch.now.unix())
    .bind(log_index as i64)
    .execute(&mut *batch.tx)
    .await
    .map_err(|error| match StoreError::from(error) {
        StoreError::Conflict { .. } => StoreError::Conflict { what: format!("incident {}", incident.id) },
        other => other,
    })?;
    Ok(())
}
