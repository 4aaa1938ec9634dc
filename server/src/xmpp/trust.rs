//! Who we know on the XMPP network: the peer table as the node reads it (cached until a
//! ledger commit changes a peer), the keys pinned for buddies with their validity, the
//! verification policy for what they sign, and the key rotations buddies announce.

use std::collections::BTreeMap;
use std::sync::Arc;

use minidom::Element;
use ostracon_protocol::envelope::{SignedEnvelope, VerifyPolicy};
use ostracon_protocol::error::Excerpt;
use ostracon_protocol::ids::{BareJid, KeyId};
use ostracon_protocol::keys::{KeyResolver, PublicKey, PublishedKey};
use ostracon_protocol::xml::errors::StanzaError;
use ostracon_protocol::xml::keys::rotation_from_element;
use ostracon_store::model::{PeerRecord, PeerState, Trust};
use ostracon_store::traits::PeerStore as _;

use super::delivery::GIVE_UP_AFTER_SECS as ROTATION_MAX_AGE_SECS;
use super::node::{WINDOW_SECS, XmppNode, service_unavailable};

/// The keys pinned for buddies, with their validity.
#[derive(Debug, Default)]
pub(super) struct BuddyKeys(BTreeMap<(BareJid, KeyId), PublishedKey>);

impl KeyResolver for BuddyKeys {
    fn resolve(&self, signer: &BareJid, kid: &KeyId) -> Option<PublicKey> {
        self.0.get(&(signer.clone(), kid.clone())).map(|k| k.key)
    }
}

impl BuddyKeys {
    /// Refuses links signed by a key outside its validity (a retired key signing after its
    /// rotation), allowing the clock skew the timestamp window allows.
    pub(super) fn check_validity(&self, links: &[SignedEnvelope]) -> Result<(), StanzaError> {
        for link in links {
            let Some(key) = self.0.get(&(link.signer.clone(), link.kid.clone())) else { continue };
            let skewed_from = key.valid_from.plus_secs(-WINDOW_SECS);
            if link.ts < skewed_from || key.valid_until.is_some_and(|until| link.ts >= until) {
                return Err(invalid_key(link, &format!("not valid at {}", link.ts)));
            }
        }
        Ok(())
    }

    /// Refuses a rotation unless its signer's key is the current one (not retired): a
    /// retired key, even one stolen later, can never announce a successor.
    fn check_current(&self, links: &[SignedEnvelope]) -> Result<(), StanzaError> {
        for link in links {
            let current = self.0.get(&(link.signer.clone(), link.kid.clone())).is_some_and(|k| k.valid_until.is_none());
            if !current {
                return Err(invalid_key(link, "retired or unknown; only the current key may rotate"));
            }
        }
        Ok(())
    }
}

fn invalid_key(link: &SignedEnvelope, why: &str) -> StanzaError {
    let error = ostracon_protocol::Error::UnknownKey {
        signer: Excerpt::new(&link.signer.to_string()),
        kid: Excerpt::new(&format!("{} ({why})", link.kid)),
    };
    StanzaError::from_error(&error)
}

/// The peer table as the node reads it on every stanza, built once per change.
#[derive(Debug, Default)]
pub(super) struct Peers {
    by_jid: BTreeMap<BareJid, PeerRecord>,
    keys: BuddyKeys,
}

impl Peers {
    fn build(peers: Vec<PeerRecord>) -> Self {
        let mut keys = BTreeMap::new();
        for peer in peers.iter().filter(|p| p.state == PeerState::Buddy) {
            for key in &peer.keys {
                keys.insert((peer.jid.clone(), key.kid.clone()), key.clone());
            }
        }
        Self { by_jid: peers.into_iter().map(|p| (p.jid.clone(), p)).collect(), keys: BuddyKeys(keys) }
    }

    /// The peer, if it is a buddy.
    pub(super) fn buddy(&self, jid: &BareJid) -> Option<&PeerRecord> {
        self.by_jid.get(jid).filter(|p| p.state == PeerState::Buddy)
    }

    /// Where the relation with `jid` stands, if we know it.
    pub(super) fn state(&self, jid: &BareJid) -> Option<PeerState> {
        self.by_jid.get(jid).map(|p| p.state)
    }

    /// Requests waiting for our operator: in total, and from `jid`'s server domain.
    pub(super) fn pending(&self, jid: &BareJid) -> (usize, usize) {
        let server = ostracon_store::reputation::server_domain(jid.domain().as_str());
        let server = ostracon_protocol::ids::Domain::parse(server).ok();
        let pending = self.by_jid.values().filter(|p| p.state == PeerState::Pending);
        pending.fold((0, 0), |(total, here), p| {
            let same = server.as_ref().is_some_and(|server| p.jid.domain().is_within(server));
            (total + 1, here + usize::from(same))
        })
    }

    /// Whether `jid` is on the server of one of our buddies (its MUC host, say), by
    /// registrable domain.
    pub(super) fn is_buddy_server(&self, jid: &BareJid) -> bool {
        let server = ostracon_store::reputation::server_domain(jid.domain().as_str());
        self.by_jid.values().any(|p| {
            p.state == PeerState::Buddy && ostracon_store::reputation::server_domain(p.jid.domain().as_str()) == server
        })
    }

    /// The buddies' pinned keys.
    pub(super) fn keys(&self) -> &BuddyKeys {
        &self.keys
    }

    /// Buddies a report should be forwarded to: trusted, and not already in its chain.
    pub(super) fn forward_targets(&self, links: &[SignedEnvelope]) -> Vec<String> {
        self.by_jid
            .values()
            .filter(|p| p.state == PeerState::Buddy && p.trust != Trust::Observe)
            .filter(|p| !links.iter().any(|link| link.signer == p.jid))
            .map(|p| p.jid.to_string())
            .collect()
    }
}

impl XmppNode {
    /// The peer table, read again only when a commit changed a peer since the last read.
    pub(super) async fn peers(&self) -> Result<Arc<Peers>, StanzaError> {
        let version = self.ledger.peers_version();
        if let Some((cached, peers)) = self.peers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref()
            && *cached == version
        {
            return Ok(Arc::clone(peers));
        }
        let rows = self.ledger.store().peers().await.map_err(|error| {
            tracing::warn!(%error, "reading the peer table failed");
            service_unavailable()
        })?;
        let peers = Arc::new(Peers::build(rows));
        *self.peers.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((version, Arc::clone(&peers)));
        Ok(peers)
    }

    /// The peer for a sender, if it is a buddy.
    pub(super) async fn buddy(&self, jid: &BareJid) -> Result<Option<PeerRecord>, StanzaError> {
        Ok(self.peers().await?.buddy(jid).cloned())
    }

    /// A buddy announces a new key, signed by its current pinned key: pin the new one and
    /// retire the old one from the new key's start.
    ///
    /// The announcement waits in the sender's outbox while we are unreachable, so its
    /// timestamp may be as old as the sender's delivery horizon, never in the future beyond
    /// the window; the new key's start must be the signing time (no backdating into a retired
    /// key's validity). The replay cache refuses a copy of a fresh announcement, and the
    /// ledger applies a rotation once: a retired key never rotates again.
    pub(super) async fn handle_rotation(
        &self,
        from: &BareJid,
        child: &Element,
    ) -> Result<Option<Element>, StanzaError> {
        let peers = self.peers().await?;
        let peer = peers.buddy(from).ok_or_else(StanzaError::not_buddy)?;
        let claim = rotation_from_element(child).map_err(|e| StanzaError::from_error(&e))?;
        peers.keys().check_current(claim.links())?;
        let now = self.env.now();
        let policy = VerifyPolicy { now, window_secs: WINDOW_SECS, max_links: 1 };
        let verified = claim.verify_stored(peers.keys(), &policy).map_err(|e| StanzaError::from_error(&e))?;
        if verified.origin() != &peer.jid {
            let error = ostracon_protocol::Error::SignerMismatch {
                signer: Excerpt::new(&verified.origin().to_string()),
                claimed: Excerpt::new(&from.to_string()),
            };
            return Err(StanzaError::from_error(&error));
        }
        let rotation = verified.value().clone();
        // A rotation is one link (max_links), and a chain is never empty.
        let link = verified.links()[0].clone();
        let too_new = link.ts.unix() > now.unix() + WINDOW_SECS;
        let too_old = link.ts.unix() < now.unix() - ROTATION_MAX_AGE_SECS;
        let backdated = rotation.new_key.valid_from.abs_diff_secs(link.ts) > WINDOW_SECS.unsigned_abs();
        if too_new || too_old || backdated {
            let error = ostracon_protocol::Error::TimestampOutsideWindow {
                ts: link.ts.to_string(),
                now: now.to_string(),
                window_secs: WINDOW_SECS,
            };
            return Err(StanzaError::from_error(&error));
        }
        let fresh = {
            let mut replay = self.replay.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            ostracon_protocol::envelope::ReplayGuard::check_and_remember(
                &mut *replay,
                &link.signer,
                &link.nonce,
                link.ts,
            )
        };
        let already = peer.keys.iter().any(|k| k.kid == rotation.new_key.kid && k.valid_until.is_none());
        if !fresh && !already {
            let error = ostracon_protocol::Error::Replay {
                signer: Excerpt::new(&link.signer.to_string()),
                nonce: Excerpt::new(link.nonce.as_str()),
            };
            return Err(StanzaError::from_error(&error));
        }
        let applied =
            self.ledger.keys_rotated(&peer.jid, &rotation.old_kid, rotation.new_key.clone(), now).await.map_err(
                |error| match error {
                    ostracon_store::StoreError::Rejected(_) => invalid_key(&link, "retired; a rotation applies once"),
                    _ => service_unavailable(),
                },
            )?;
        if applied {
            tracing::info!(peer = %peer.jid, old = %rotation.old_kid, new = %rotation.new_key.kid, "peer rotated its key");
        }
        Ok(None)
    }

    /// The verification policy for claims a peer delivers.
    pub(super) fn verify_policy(&self, now: ostracon_protocol::time::Timestamp) -> VerifyPolicy {
        VerifyPolicy { now, window_secs: WINDOW_SECS, max_links: usize::from(self.settings.forward_hops) + 1 }
    }
}
