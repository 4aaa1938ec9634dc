//! The node's signing key while it runs: every signer (checkpoints, snapshots, the XMPP
//! side) reads it here, and a rotation switches it for all of them at once.

use ostracon_protocol::envelope::SignedEnvelope;
use ostracon_protocol::ids::BareJid;
use ostracon_protocol::keys::{NodeKey, PublishedKey};
use ostracon_protocol::log::record::AuditRecord;
use ostracon_protocol::time::Timestamp;
use sqlx::Row as _;

use super::Ledger;
use crate::model::OutboxJob;
use crate::{Result, StoreError};

/// The current key and every key the node publishes (retired ones first, the current last).
#[derive(Clone, Debug)]
pub(super) struct SigningKeys {
    current: NodeKey,
    published: Vec<PublishedKey>,
}

impl SigningKeys {
    pub(super) fn new(current: NodeKey) -> Self {
        // Until the caller says since when (`with_published_keys`): valid since the epoch.
        let published = Timestamp::from_unix(0).into_iter().map(|t| PublishedKey::new(current.public(), t)).collect();
        Self { current, published }
    }
}

/// What a rotation did.
#[derive(Clone, Debug)]
pub struct KeySwitch {
    /// The audit leaf that records it.
    pub log_index: u64,
    /// The buddies its announcement was queued for.
    pub announced_to: Vec<BareJid>,
}

impl Ledger {
    /// The key the node signs with now.
    pub fn signing_key(&self) -> NodeKey {
        self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner).current.clone()
    }

    /// The keys the node publishes (XEP keys answer, `/.well-known/ostracon`), the current last.
    pub fn published_keys(&self) -> Vec<PublishedKey> {
        self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner).published.clone()
    }

    /// The same ledger publishing `published` (retired keys and the current one, last).
    pub fn with_published_keys(self, published: Vec<PublishedKey>) -> Self {
        {
            let mut keys = self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            keys.published = published;
        }
        self
    }

    /// A buddy that an earlier rotation's announcement has not reached yet, if any.
    pub async fn rotation_pending(&self) -> Result<Option<String>> {
        let row =
            sqlx::query("SELECT peer FROM outbox WHERE kind = 'rotation' AND state = 'pending' ORDER BY id LIMIT 1")
                .fetch_optional(self.store.pool())
                .await?;
        row.map(|row| row.try_get("peer")).transpose().map_err(Into::into)
    }

    /// Switches from the key `old_kid` names to `new`, publishing `published` from now on: in
    /// one transaction, a `key-rotated` leaf carrying `proof` (the rotation claim the old key
    /// signed) and, if `announce`, that claim queued for every buddy; then, before the writer
    /// is released, every signer.
    ///
    /// Refused while an earlier announcement is still queued (a buddy that has not pinned the
    /// previous key would refuse this one), and when `old_kid` is no longer the current key
    /// (another rotation came first).
    pub async fn switch_key(
        &self,
        old_kid: &str,
        new: NodeKey,
        published: Vec<PublishedKey>,
        proof: SignedEnvelope,
        announce: bool,
        now: Timestamp,
    ) -> Result<KeySwitch> {
        let announcement =
            announce.then(|| OutboxJob::Rotation { old_kid: old_kid.to_owned(), links: vec![proof.clone()] });
        let _writer = self.writer.lock().await;
        let current = self.signing_key().key_id();
        if current.as_str() != old_kid {
            return Err(StoreError::Rejected(format!(
                "the node signs with key {current} now, not {old_kid}: another rotation came first"
            )));
        }
        if let Some(peer) = self.rotation_pending().await? {
            return Err(StoreError::Rejected(format!("the previous key rotation has not reached {peer} yet")));
        }
        let mut batch = self.begin(now).await?;
        let log_index = batch.leaf(&AuditRecord::KeyRotated {
            at: now,
            old: old_kid.to_owned(),
            new: new.key_id().to_string(),
            proof: Some(Box::new(proof.clone())),
        })?;
        let mut announced_to = Vec::new();
        if let Some(job) = &announcement {
            let buddies = sqlx::query("SELECT jid FROM peers WHERE state = 'buddy' ORDER BY jid")
                .fetch_all(&mut *batch.tx)
                .await?;
            for row in buddies {
                let jid: String = row.try_get("jid")?;
                batch.enqueue(&jid, job)?;
                announced_to.push(BareJid::parse(&jid)?);
            }
        }
        self.commit(batch).await?;
        self.install_keys(SigningKeys { current: new, published });
        Ok(KeySwitch { log_index, announced_to })
    }
}
