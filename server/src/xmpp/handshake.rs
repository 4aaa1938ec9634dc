//! The XEP-0267 buddy handshake on the XMPP side: presence from peers, and the key fetch
//! that completes a relation. Every step is one ledger operation
//! (`store/src/ledger/peers.rs`), so the peer row, the outbox rows it implies and its audit
//! leaf commit together.
//!
//! Strangers pay before they cost anything: a `subscribe` passes the per-domain rate first,
//! then the ledger's caps on waiting requests (in total and per domain).

use std::time::Instant;

use minidom::Element;
use ostracon_protocol::xml::buddies::{BuddyPresence, DISCO_INFO_NS, DiscoInfo};
use ostracon_protocol::xml::keys::{keys_from_element, keys_query};
use ostracon_protocol::xml::xep0268::INCIDENT_NS;
use ostracon_store::ledger::peers::Subscribe;
use ostracon_store::model::{OutboxItem, PeerState};

use super::connection::Counter;
use super::limits::Traffic;
use super::node::XmppNode;
use crate::error::ServerError;

impl XmppNode {
    /// A presence stanza: buddy traffic (subscription types between domain JIDs, to us) moves
    /// the relation; any other presence is not ours to act on.
    pub(super) async fn handle_presence(&self, element: &Element) {
        let Ok(Some((kind, from, to))) = BuddyPresence::from_stanza(element) else { return };
        if to != self.settings.jid || !from.is_domain() {
            return;
        }
        let now = self.env.now();
        let result = match kind {
            BuddyPresence::Subscribe => {
                if !self.limits.admit(&from, Traffic::Subscribe, Instant::now()) {
                    self.status.add(Counter::RateLimited, 1);
                    tracing::info!(peer = %from, "buddy request over its domain's rate; ignored");
                    return;
                }
                // Answered from the cached peer table when it can be: a storm of requests over
                // the caps then costs no transaction (the ledger checks again under its lock).
                if let Ok(peers) = self.peers().await {
                    let (total, here) = peers.pending(&from);
                    let limits = &self.settings.strangers;
                    let known = peers.state(&from).is_some();
                    if !known
                        && (total >= limits.max_pending as usize || here >= limits.max_pending_per_domain as usize)
                    {
                        self.status.add(Counter::StanzasDropped, 1);
                        tracing::warn!(peer = %from, "buddy request over the cap on waiting requests; ignored");
                        return;
                    }
                    if matches!(peers.state(&from), Some(PeerState::Pending | PeerState::Revoked)) {
                        return;
                    }
                }
                self.ledger.peer_subscribed(&from, &self.settings.strangers, now).await.map(|outcome| match outcome {
                    Subscribe::Recorded if self.settings.strangers.auto_approve => {
                        tracing::warn!(peer = %from, "buddy request; auto-approving once its keys arrive (auto_approve is on)");
                    }
                    Subscribe::Recorded => tracing::info!(peer = %from, "buddy request received; waiting for the operator"),
                    Subscribe::Revoked => tracing::info!(peer = %from, "buddy request from a revoked peer; ignored"),
                    Subscribe::OverCap => {
                        self.status.add(Counter::StanzasDropped, 1);
                        tracing::warn!(peer = %from, "buddy request over the cap on waiting requests; ignored");
                    }
                    Subscribe::Answered | Subscribe::AlreadyPending => {}
                })
            }
            BuddyPresence::Subscribed => self.ledger.peer_accepted(&from, now).await.map(drop),
            BuddyPresence::Unsubscribe | BuddyPresence::Unsubscribed => {
                self.ledger.peer_ended(&from, now).await.map(|ended| {
                    if ended {
                        tracing::info!(peer = %from, "buddy relation ended by the peer");
                    }
                })
            }
        };
        if let Err(error) = result {
            tracing::warn!(%error, peer = %from, "could not record a buddy presence");
        }
    }

    /// Fetches a peer's keys and hands them to the ledger, which pins them or shows them to
    /// the operator depending on where the relation stands when they arrive.
    /// Asks a peer our operator added for its disco#info: it must be an incident node (it
    /// lists `urn:xmpp:incident:2`), else the error says what answered instead.
    pub(super) async fn probe(&self, item: &OutboxItem, timeout: std::time::Duration) -> Result<(), ServerError> {
        let query = Element::bare("query", DISCO_INFO_NS);
        let answer = self.request(&item.peer, "get", query, timeout).await?;
        let features = answer
            .children()
            .next()
            .map(DiscoInfo::features_of)
            .transpose()?
            .ok_or(ServerError::BadAnswer("an empty disco#info answer"))?;
        if !features.iter().any(|f| f == INCIDENT_NS) {
            return Err(ServerError::BadAnswer(
                "it answers, but is not an incident node (no urn:xmpp:incident:2 in its disco#info): \
                 give the peer's component JID, such as incidents.example.org",
            ));
        }
        tracing::info!(peer = %item.peer, "the peer answers as an incident node");
        Ok(())
    }

    pub(super) async fn fetch_keys(
        &self,
        item: &OutboxItem,
        approve: bool,
        timeout: std::time::Duration,
    ) -> Result<(), ServerError> {
        let answer = self.request(&item.peer, "get", keys_query(), timeout).await?;
        let keys_element = answer.children().next().ok_or(ServerError::BadAnswer("empty keys answer"))?;
        let keys = keys_from_element(keys_element)?;
        if keys.is_empty() {
            return Err(ServerError::BadAnswer("the peer published no keys"));
        }
        match self.ledger.keys_fetched(&item.peer, keys, approve, self.env.now()).await? {
            Some(peer) => {
                tracing::info!(peer = %peer.jid, state = %peer.state, keys = peer.keys.len(), "peer keys fetched");
            }
            None => tracing::info!(peer = %item.peer, "relation changed while its keys were fetched; left as it is"),
        }
        Ok(())
    }
}
