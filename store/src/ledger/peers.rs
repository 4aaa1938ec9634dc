//! The XEP-0267 buddy handshake as ledger operations: each step is one transaction that
//! writes the peer row, the outbox rows the step implies, and a `peer-changed` audit leaf.
//!
//! The operator's steps (`request_buddy`, `approve_buddy`, `set_trust`, `revoke_buddy`) and the
//! peer's (`peer_subscribed`, `peer_accepted`, `peer_ended`, `keys_fetched`, `keys_rotated`)
//! run under the writer lock and read the state inside their transaction, so two steps racing
//! each other cannot undo one another.
//!
//! **Invariant:** nothing is approved without the operator, or explicit auto-approve; a revoked
//! peer stays revoked until the operator asks again; strangers' requests are capped in total
//! and per domain.

use ostracon_protocol::ids::{BareJid, KeyId};
use ostracon_protocol::keys::PublishedKey;
use ostracon_protocol::limits::MAX_PUBLISHED_KEYS;
use ostracon_protocol::log::record::AuditRecord;
use ostracon_protocol::time::Timestamp;
use ostracon_protocol::xml::buddies::BuddyPresence;
use sqlx::Row as _;

use super::{Batch, Ledger};
use crate::model::{OutboxJob, PeerRecord, PeerState, Trust};
use crate::queries::peer_from_row;
use crate::reputation::server_domain;
use crate::{Result, StoreError};

/// Who moved a relation, as the audit leaf names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    /// Our operator.
    Operator,
    /// The peer, by presence or by its answers.
    Peer,
    /// Our `auto_approve` setting.
    AutoApprove,
}

impl Actor {
    fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::Peer => "peer",
            Self::AutoApprove => "auto-approve",
        }
    }
}

/// Caps on buddy requests from peers our operator did not ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StrangerLimits {
    /// Requests waiting for our operator, in total.
    pub max_pending: u32,
    /// Requests waiting for our operator from one server domain (its components share it).
    pub max_pending_per_domain: u32,
    /// Automatically approve requests (the `auto_approve` setting).
    pub auto_approve: bool,
}

impl Default for StrangerLimits {
    fn default() -> Self {
        Self { max_pending: 100, max_pending_per_domain: 3, auto_approve: false }
    }
}

/// What a peer's `subscribe` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subscribe {
    /// A new request: it waits for our operator, and its keys are being fetched.
    Recorded,
    /// We asked it first, or it is our buddy: our `subscribed` answer is queued.
    Answered,
    /// It already waits for our operator.
    AlreadyPending,
    /// The relation was revoked; it stays so until our operator asks again.
    Revoked,
    /// Too many requests wait (in total or from its domain): not recorded.
    OverCap,
}

impl Batch {
    /// Our buddies' server domains (a buddy's component speaks for its server).
    pub(super) async fn buddy_domains(&mut self) -> Result<Vec<ostracon_protocol::ids::Domain>> {
        let rows = sqlx::query("SELECT domain FROM peers WHERE state = 'buddy'").fetch_all(&mut *self.tx).await?;
        rows.iter()
            .map(|row| {
                let domain: String = row.try_get("domain")?;
                ostracon_protocol::ids::Domain::parse(server_domain(&domain)).map_err(StoreError::from)
            })
            .collect()
    }

    async fn peer(&mut self, jid: &BareJid) -> Result<Option<PeerRecord>> {
        let row = sqlx::query("SELECT * FROM peers WHERE jid = $1")
            .bind(jid.to_string())
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(peer_from_row).transpose()
    }

    /// Writes the peer row and its audit leaf.
    async fn put_peer(&mut self, peer: &PeerRecord, by: Actor) -> Result<()> {
        let keys = serde_json::to_string(&peer.keys).map_err(|e| StoreError::Corrupt(format!("peer keys: {e}")))?;
        sqlx::query(
            "INSERT INTO peers (jid, domain, state, trust, keys, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (jid) DO UPDATE SET state = excluded.state, trust = excluded.trust, keys = excluded.keys, \
             updated_at = excluded.updated_at",
        )
        .bind(peer.jid.to_string())
        .bind(peer.jid.domain().to_string())
        .bind(peer.state.as_str())
        .bind(peer.trust.as_str())
        .bind(keys)
        .bind(peer.created_at.unix())
        .bind(peer.updated_at.unix())
        .execute(&mut *self.tx)
        .await?;
        self.peers_changed = true;
        self.leaf(&AuditRecord::PeerChanged {
            at: self.now,
            peer: peer.jid.clone(),
            state: peer.state.as_str().to_owned(),
            trust: peer.trust.as_str().to_owned(),
            keys: peer.keys.iter().map(|k| k.key.fingerprint()).collect(),
            by: by.as_str().to_owned(),
        })?;
        Ok(())
    }

    async fn presence(&mut self, peer: &BareJid, presence: BuddyPresence) -> Result<()> {
        self.enqueue(&peer.to_string(), &OutboxJob::Presence { presence })
    }

    /// Requests waiting for our operator: in total, and from `domain`'s server.
    async fn pending_counts(&mut self, jid: &BareJid) -> Result<(i64, i64)> {
        let server = server_domain(jid.domain().as_str());
        let row = sqlx::query(
            "SELECT COUNT(*) AS total, \
             COALESCE(SUM(CASE WHEN domain = $1 OR domain LIKE $2 ESCAPE '\\' THEN 1 ELSE 0 END), 0) AS here \
             FROM peers WHERE state = 'pending'",
        )
        .bind(server)
        .bind(format!("%.{}", server.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")))
        .fetch_one(&mut *self.tx)
        .await?;
        Ok((row.try_get("total")?, row.try_get("here")?))
    }
}

fn new_peer(jid: &BareJid, state: PeerState, trust: Trust, now: Timestamp) -> PeerRecord {
    PeerRecord { jid: jid.clone(), state, trust, keys: Vec::new(), created_at: now, updated_at: now }
}

impl Ledger {
    /// The operator asks `jid` to be a buddy: `requested`, and a `subscribe` queued.
    pub async fn request_buddy(&self, jid: &BareJid, trust: Trust, now: Timestamp) -> Result<PeerRecord> {
        let _writer = self.writer.lock().await;
        let mut batch = self.begin(now).await?;
        let existing = batch.peer(jid).await?;
        match existing.as_ref().map(|p| p.state) {
            Some(PeerState::Buddy) => return Err(StoreError::Conflict { what: format!("buddy {jid}") }),
            Some(PeerState::Pending) => {
                return Err(StoreError::Rejected(format!(
                    "{jid} asked to be a buddy; approve it with POST /v1/peers/{jid}/approve"
                )));
            }
            _ => {}
        }
        let mut peer = new_peer(jid, PeerState::Requested, trust, now);
        peer.created_at = existing.map_or(now, |p| p.created_at);
        batch.put_peer(&peer, Actor::Operator).await?;
        batch.presence(jid, BuddyPresence::Subscribe).await?;
        batch.enqueue(&jid.to_string(), &OutboxJob::Probe)?;
        self.commit(batch).await?;
        Ok(peer)
    }

    /// The operator approves a request whose keys were fetched: `buddy`, and our `subscribed`
    /// and `subscribe` queued.
    pub async fn approve_buddy(&self, jid: &BareJid, trust: Trust, now: Timestamp) -> Result<PeerRecord> {
        let _writer = self.writer.lock().await;
        let mut batch = self.begin(now).await?;
        let mut peer = batch.peer(jid).await?.ok_or_else(|| StoreError::NotFound { what: format!("peer {jid}") })?;
        if peer.state != PeerState::Pending {
            return Err(StoreError::Rejected(format!("{jid} is {}, not waiting for approval", peer.state)));
        }
        if peer.keys.is_empty() {
            return Err(StoreError::KeysNotFetched { peer: jid.to_string() });
        }
        (peer.state, peer.trust, peer.updated_at) = (PeerState::Buddy, trust, now);
        batch.put_peer(&peer, Actor::Operator).await?;
        batch.presence(jid, BuddyPresence::Subscribed).await?;
        batch.presence(jid, BuddyPresence::Subscribe).await?;
        self.commit(batch).await?;
        Ok(peer)
    }

    /// The operator sets how far we act on a peer's reports, re-weighing what its reports
    /// already contributed (spec/reputation.md, Reporter weight).
    pub async fn set_trust(&self, jid: &BareJid, trust: Trust, now: Timestamp) -> Result<PeerRecord> {
        let _writer = self.writer.lock().await;
        let mut batch = self.begin(now).await?;
        let mut peer = batch.peer(jid).await?.ok_or_else(|| StoreError::NotFound { what: format!("peer {jid}") })?;
        // What its waiting and live contributions weigh changes with it, in this transaction.
        let params = &self.config.reputation;
        let server = server_domain(jid.domain().as_str());
        let weight = |trust| crate::reputation::peer_weight(trust, server, 0, params);
        let (old, new) = (weight(peer.trust), weight(trust));
        (peer.trust, peer.updated_at) = (trust, now);
        batch.put_peer(&peer, Actor::Operator).await?;
        batch.reweigh(jid, (old, new), &self.config).await?;
        self.commit(batch).await?;
        Ok(peer)
    }

    /// The operator ends a relation: `revoked`, everything still queued for it cancelled, and
    /// our `unsubscribe` and `unsubscribed` queued.
    pub async fn revoke_buddy(&self, jid: &BareJid, now: Timestamp) -> Result<PeerRecord> {
        let _writer = self.writer.lock().await;
        let mut batch = self.begin(now).await?;
        let mut peer = batch.peer(jid).await?.ok_or_else(|| StoreError::NotFound { what: format!("peer {jid}") })?;
        (peer.state, peer.updated_at) = (PeerState::Revoked, now);
        batch.put_peer(&peer, Actor::Operator).await?;
        batch.cancel_outbox(&jid.to_string()).await?;
        batch.presence(jid, BuddyPresence::Unsubscribe).await?;
        batch.presence(jid, BuddyPresence::Unsubscribed).await?;
        self.commit(batch).await?;
        Ok(peer)
    }

    /// A peer sent us `subscribe`.
    pub async fn peer_subscribed(&self, jid: &BareJid, limits: &StrangerLimits, now: Timestamp) -> Result<Subscribe> {
        let _writer = self.writer.lock().await;
        let mut batch = self.begin(now).await?;
        let outcome = match batch.peer(jid).await?.map(|p| p.state) {
            // We asked them, or are buddies: our operator already consented.
            Some(PeerState::Requested | PeerState::Buddy) => {
                batch.presence(jid, BuddyPresence::Subscribed).await?;
                Subscribe::Answered
            }
            Some(PeerState::Pending) => Subscribe::AlreadyPending,
            Some(PeerState::Revoked) => Subscribe::Revoked,
            None => {
                let (total, here) = batch.pending_counts(jid).await?;
                if total >= i64::from(limits.max_pending) || here >= i64::from(limits.max_pending_per_domain) {
                    return Ok(Subscribe::OverCap);
                }
                batch.put_peer(&new_peer(jid, PeerState::Pending, Trust::Observe, now), Actor::Peer).await?;
                // Fetch the keys now so the operator sees fingerprints before approving; with
                // auto-approve, the same fetch also approves (one row, so no race between two).
                batch.enqueue(&jid.to_string(), &OutboxJob::FetchKeys { approve: limits.auto_approve })?;
                Subscribe::Recorded
            }
        };
        self.commit(batch).await?;
        Ok(outcome)
    }

    /// A peer we asked sent `subscribed`: fetch its keys (they complete the relation).
    pub async fn peer_accepted(&self, jid: &BareJid, now: Timestamp) -> Result<bool> {
        let _writer = self.writer.lock().await;
        let mut batch = self.begin(now).await?;
        if batch.peer(jid).await?.is_none_or(|p| p.state != PeerState::Requested) {
            return Ok(false);
        }
        batch.enqueue(&jid.to_string(), &OutboxJob::FetchKeys { approve: false })?;
        self.commit(batch).await?;
        Ok(true)
    }

    /// A peer ended the relation (`unsubscribe` or `unsubscribed`): `revoked`, and what was
    /// queued for it cancelled.
    pub async fn peer_ended(&self, jid: &BareJid, now: Timestamp) -> Result<bool> {
        let _writer = self.writer.lock().await;
        let mut batch = self.begin(now).await?;
        let Some(mut peer) = batch.peer(jid).await?.filter(|p| p.state != PeerState::Revoked) else { return Ok(false) };
        (peer.state, peer.updated_at) = (PeerState::Revoked, now);
        batch.put_peer(&peer, Actor::Peer).await?;
        batch.cancel_outbox(&jid.to_string()).await?;
        self.commit(batch).await?;
        Ok(true)
    }

    /// A peer's keys arrived: pinned when we asked it (it becomes a buddy), shown to the
    /// operator when it asked us (and approved at once with `approve`, from auto-approve).
    /// Returns the peer as it now stands, or `None` when the relation moved on meanwhile.
    pub async fn keys_fetched(
        &self,
        jid: &BareJid,
        keys: Vec<PublishedKey>,
        approve: bool,
        now: Timestamp,
    ) -> Result<Option<PeerRecord>> {
        let _writer = self.writer.lock().await;
        let mut batch = self.begin(now).await?;
        let Some(mut peer) = batch.peer(jid).await? else { return Ok(None) };
        let by = match peer.state {
            PeerState::Requested => {
                (peer.keys, peer.state) = (keys, PeerState::Buddy);
                Actor::Peer
            }
            PeerState::Pending if approve => {
                // Automatic approval grants `observe` only: two cheap domains that ask would
                // otherwise make a quorum. Weight is the operator's to give (`peers trust`).
                (peer.keys, peer.state, peer.trust) = (keys, PeerState::Buddy, Trust::Observe);
                batch.presence(jid, BuddyPresence::Subscribed).await?;
                batch.presence(jid, BuddyPresence::Subscribe).await?;
                Actor::AutoApprove
            }
            PeerState::Pending => {
                peer.keys = keys;
                Actor::Peer
            }
            // An operator's approval or revocation landed during our IQ: it stands.
            PeerState::Buddy | PeerState::Revoked => return Ok(None),
        };
        peer.updated_at = now;
        batch.put_peer(&peer, by).await?;
        self.commit(batch).await?;
        Ok(Some(peer))
    }

    /// A buddy's verified rotation: `retire` ends the old key at the new key's start, and the
    /// new key is pinned. The caller verified the claim against the pinned keys.
    ///
    /// A rotation applies once, in the transaction that checks it: only the current key can
    /// be retired, so a replayed or retired-key rotation changes nothing. Returns `false` for
    /// a repeat of the rotation already applied (a retried delivery, answered as a success).
    pub async fn keys_rotated(
        &self,
        jid: &BareJid,
        retire: &KeyId,
        new_key: PublishedKey,
        now: Timestamp,
    ) -> Result<bool> {
        let _writer = self.writer.lock().await;
        let mut batch = self.begin(now).await?;
        let Some(mut peer) = batch.peer(jid).await?.filter(|p| p.state == PeerState::Buddy) else {
            return Err(StoreError::NotFound { what: format!("buddy {jid}") });
        };
        let Some(current) = peer.keys.iter_mut().find(|k| &k.kid == retire && k.valid_until.is_none()) else {
            let repeat = peer.keys.iter().any(|k| k.kid == new_key.kid && k.valid_until.is_none());
            return if repeat {
                Ok(false)
            } else {
                Err(StoreError::Rejected(format!("{retire} is not {jid}'s current key; only that key may rotate")))
            };
        };
        current.valid_until = Some(new_key.valid_from);
        if !peer.keys.iter().any(|k| k.kid == new_key.kid) {
            peer.keys.push(new_key);
        }
        // Bounded like a published key set: the oldest retired keys go first.
        while peer.keys.len() > MAX_PUBLISHED_KEYS {
            let Some(oldest) = peer
                .keys
                .iter()
                .enumerate()
                .filter(|(_, k)| k.valid_until.is_some())
                .min_by_key(|(_, k)| k.valid_from)
                .map(|(i, _)| i)
            else {
                break;
            };
            peer.keys.remove(oldest);
        }
        peer.updated_at = now;
        batch.put_peer(&peer, Actor::Peer).await?;
        self.commit(batch).await.map(|_| true)
    }
}
