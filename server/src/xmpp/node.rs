//! What the component does: answers disco, key, XEP-0268 and XEP-0275 queries, runs the
//! XEP-0267 buddy handshake, and delivers the outbox.
//!
//! **Invariant:** a report's content is used only after `Unverified::verify` succeeded with
//! the keys pinned for buddies, the last signer is the peer that delivered it, and the peer's
//! trust allows it; everything else is refused with a defined error condition.
//!
//! Every stanza the node sends is built here as a `minidom::Element` in the stream's
//! namespace and handed to the connection task through a channel.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use minidom::Element;
use ostracon_protocol::envelope::{self, Nonce, VerifyPolicy};
use ostracon_protocol::ids::{BareJid, Domain, KeyId, Offender};
use ostracon_protocol::incident::{ReportClaim, RequestClaim, ResponseClaim};
use ostracon_protocol::keys::{KeyResolver, KeyRotation, NodeKey, PublicKey, PublishedKey};
use ostracon_protocol::xml::buddies::{BuddyPresence, DISCO_INFO_NS, DiscoInfo};
use ostracon_protocol::xml::check_bounds;
use ostracon_protocol::xml::errors::StanzaError;
use ostracon_protocol::xml::keys::{
    KEYS_NS, keys_from_element, keys_query, keys_to_element, rotation_from_element, rotation_to_element,
};
use ostracon_protocol::xml::reporting::ForwardedReport;
use ostracon_protocol::xml::reputation::{REPUTATION_NS, Score};
use ostracon_protocol::xml::xep0268::{INCIDENT_NS, IncidentPayload};
use ostracon_store::clock::Environment;
use ostracon_store::ledger::{self, Ledger};
use ostracon_store::model::{Decision, IncidentOrigin, ListAction, OutboxItem, PeerRecord, PeerState, Trust, Verb};
use ostracon_store::reputation::{self, ReputationParams};
use ostracon_store::traits::{BlocklistStore as _, IncidentStore as _, OutboxStore as _, PeerStore as _};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use super::group_commit::{GroupCommit, Outcome, Received};
use super::replay::ReplayCache;

/// The stream's stanza namespace (`jabber:component:accept`).
const STANZA_NS: &str = xmpp_parsers::ns::DEFAULT_NS;
/// XEP-0199.
const PING_NS: &str = "urn:xmpp:ping";
/// How long to wait for an IQ answer.
const IQ_TIMEOUT: Duration = Duration::from_secs(30);
/// An outbox item still undelivered this long after it was queued is marked failed: a buddy
/// down for two weeks gets a fresh start (it can inquire) rather than a backlog.
const GIVE_UP_AFTER_SECS: i64 = 14 * 86_400;
/// Longest wait between two delivery attempts.
const MAX_RETRY_SECS: u64 = 3_600;
/// Reports accepted per peer per second, and the burst.
const PEER_RATE: f64 = 20.0;
const PEER_BURST: f64 = 100.0;
/// Incoming stanzas handled at once.
const MAX_IN_FLIGHT: usize = 64;
/// Outbox rows read per pass.
const OUTBOX_BATCH: u32 = 100;
/// How old a stored standing may be and still be used as it is. Every fact rescores its
/// domain in the fact's own transaction, so a stored score is never behind the facts; what
/// it can miss is what is not a fact (a buddy's new XEP-0275 opinion, the relation's age),
/// and that may lag by this long. Older rows are recomputed from the facts.
const STANDING_TTL_SECS: i64 = 60;
/// Signature timestamp window (seconds).
const WINDOW_SECS: i64 = 300;

/// Settings of the component's behaviour.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    /// Our component JID.
    pub jid: BareJid,
    /// The operator's XMPP domain: its server relays users' XEP-0377 reports to us.
    pub server_domain: Domain,
    /// XEP-0157 abuse addresses for disco.
    pub abuse_addresses: Vec<String>,
    /// How many forwards a report may take (0: we neither forward nor accept forwarded reports).
    pub forward_hops: u8,
    /// Approve incoming buddy requests without the operator (off unless configured).
    pub auto_approve: bool,
    /// Human name in disco.
    pub name: String,
    /// Reputation parameters: a buddy's score sets the weight of its reports, and below
    /// `ignore_below` they are stored as ignored.
    pub reputation: ReputationParams,
}

/// A buddy's standing as a reporter when its report arrives (spec/reputation.md).
#[derive(Clone, Copy, Debug)]
struct Standing {
    /// Its domain's score from the facts we hold.
    score: i64,
    /// The weight its accepted reports get, in thousandths (0: ignored).
    weight_milli: i64,
}

/// The component's logic.
pub struct XmppNode {
    ledger: Arc<Ledger>,
    /// Stores received incidents, several per transaction under a burst.
    committer: GroupCommit,
    env: Arc<dyn Environment>,
    key: NodeKey,
    published: Vec<PublishedKey>,
    settings: NodeSettings,
    out: mpsc::Sender<Element>,
    pending: Mutex<HashMap<String, oneshot::Sender<Element>>>,
    replay: Mutex<ReplayCache>,
    peer_buckets: Mutex<HashMap<String, (f64, Instant)>>,
    next_id: AtomicU64,
}

/// The keys pinned for buddies, with their validity.
struct BuddyKeys(BTreeMap<(BareJid, KeyId), PublishedKey>);

impl KeyResolver for BuddyKeys {
    fn resolve(&self, signer: &BareJid, kid: &KeyId) -> Option<PublicKey> {
        self.0.get(&(signer.clone(), kid.clone())).map(|k| k.key)
    }
}

impl BuddyKeys {
    /// Refuses links signed by a key outside its validity (a retired key signing after its
    /// rotation), allowing the clock skew the timestamp window allows.
    ///
    /// `end_inclusive` accepts a signature made at the very end of the key's validity: a
    /// rotation claim is signed by the old key at the instant it retires it.
    fn check_validity(&self, links: &[envelope::SignedEnvelope], end_inclusive: bool) -> Result<(), StanzaError> {
        for link in links {
            let Some(key) = self.0.get(&(link.signer.clone(), link.kid.clone())) else { continue };
            let skewed_from = key.valid_from.plus_secs(-WINDOW_SECS);
            let after_end =
                key.valid_until.is_some_and(|until| if end_inclusive { link.ts > until } else { link.ts >= until });
            if link.ts < skewed_from || after_end {
                let error = ostracon_protocol::Error::UnknownKey {
                    signer: ostracon_protocol::error::Excerpt::new(&link.signer.to_string()),
                    kid: ostracon_protocol::error::Excerpt::new(&format!("{} (not valid at {})", link.kid, link.ts)),
                };
                return Err(StanzaError::from_error(&error));
            }
        }
        Ok(())
    }
}

fn attr(element: &Element, name: &str) -> Option<String> {
    element.attr(name).map(str::to_owned)
}

fn set(element: &mut Element, name: &'static str, value: &str) {
    element.set_attr(
        minidom::rxml::Namespace::NONE,
        minidom::rxml::NcName::try_from(name).expect("static attribute names are valid"),
        value.to_owned(),
    );
}

fn stanza(name: &str, attrs: &[(&'static str, &str)]) -> Element {
    let mut element = Element::bare(name, STANZA_NS);
    for (key, value) in attrs {
        set(&mut element, key, value);
    }
    element
}

impl XmppNode {
    /// Builds the node; stanzas it sends go to `out`. Starts the group-commit task for
    /// received incidents, which ends with the node.
    pub fn new(
        ledger: Arc<Ledger>,
        env: Arc<dyn Environment>,
        key: NodeKey,
        published: Vec<PublishedKey>,
        settings: NodeSettings,
        out: mpsc::Sender<Element>,
    ) -> Self {
        Self {
            committer: GroupCommit::start(Arc::clone(&ledger)),
            ledger,
            env,
            key,
            published,
            settings,
            out,
            pending: Mutex::new(HashMap::new()),
            replay: Mutex::new(ReplayCache::new(WINDOW_SECS, 200_000)),
            peer_buckets: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }

    fn jid(&self) -> String {
        self.settings.jid.to_string()
    }

    async fn send(&self, element: Element) {
        if self.out.send(element).await.is_err() {
            tracing::warn!("XMPP link task is gone; stanza dropped");
        }
    }

    fn iq_result(&self, to: &str, id: &str, payload: Option<Element>) -> Element {
        let mut iq = stanza("iq", &[("type", "result"), ("from", &self.jid()), ("to", to), ("id", id)]);
        if let Some(payload) = payload {
            iq.append_child(payload);
        }
        iq
    }

    fn iq_error(&self, to: &str, id: &str, error: &StanzaError) -> Element {
        let mut iq = stanza("iq", &[("type", "error"), ("from", &self.jid()), ("to", to), ("id", id)]);
        iq.append_child(error.to_element(STANZA_NS));
        iq
    }

    fn service_unavailable() -> StanzaError {
        StanzaError { error_type: "cancel", condition: "service-unavailable", app_condition: None, text: String::new() }
    }

    /// Sends an IQ and waits for its answer (the whole `<iq/>` element).
    pub async fn request(&self, to: &str, iq_type: &str, payload: Element) -> Result<Element, String> {
        let id = format!("ost-{}", self.next_id.fetch_add(1, Ordering::SeqCst));
        let mut iq = stanza("iq", &[("type", iq_type), ("from", &self.jid()), ("to", to), ("id", &id)]);
        iq.append_child(payload);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id.clone(), tx);
        self.send(iq).await;
        let answer = tokio::time::timeout(IQ_TIMEOUT, rx).await;
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&id);
        match answer {
            Ok(Ok(element)) if element.attr("type") == Some("result") => Ok(element),
            Ok(Ok(element)) => {
                let (defined, app) = element
                    .children()
                    .find(|c| c.name() == "error")
                    .map(StanzaError::conditions_of)
                    .unwrap_or((None, None));
                Err(format!("{} ({})", defined.unwrap_or_else(|| "error".to_owned()), app.unwrap_or_default()))
            }
            Ok(Err(_)) => Err("the link closed before the answer".to_owned()),
            Err(_) => Err(format!("no answer within {} s", IQ_TIMEOUT.as_secs())),
        }
    }

    /// Handles every incoming stanza until `incoming` closes, a bounded number at a time.
    pub async fn run_incoming(self: Arc<Self>, mut incoming: mpsc::Receiver<Element>) {
        let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        while let Some(element) = incoming.recv().await {
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { return };
            let node = Arc::clone(&self);
            tokio::spawn(async move {
                node.handle(element).await;
                drop(permit);
            });
        }
    }

    /// Handles one stanza.
    pub async fn handle(&self, element: Element) {
        match element.name() {
            "iq" => self.handle_iq(element).await,
            "presence" => self.handle_presence(&element).await,
            "message" => self.handle_message(&element).await,
            _ => {}
        }
    }

    async fn handle_iq(&self, iq: Element) {
        let from = attr(&iq, "from").unwrap_or_default();
        let id = attr(&iq, "id").unwrap_or_default();
        let iq_type = attr(&iq, "type").unwrap_or_default();
        if iq_type == "result" || iq_type == "error" {
            let waiter = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&id);
            if let Some(waiter) = waiter {
                let _ = waiter.send(iq);
            }
            return;
        }
        if iq_type != "get" && iq_type != "set" {
            return;
        }
        let Some(child) = iq.children().next() else {
            let error =
                StanzaError::from_error(&ostracon_protocol::Error::Missing { element: "iq", what: "a child element" });
            return self.send(self.iq_error(&from, &id, &error)).await;
        };
        if let Err(error) = check_bounds(child) {
            return self.send(self.iq_error(&from, &id, &StanzaError::from_error(&error))).await;
        }
        let answer = match (child.name(), child.ns().as_str(), iq_type.as_str()) {
            ("query", DISCO_INFO_NS, "get") => {
                let info = DiscoInfo {
                    name: self.settings.name.clone(),
                    abuse_addresses: self.settings.abuse_addresses.clone(),
                    report_addresses: vec![format!("xmpp:{}", self.jid())],
                };
                Ok(Some(info.to_element()))
            }
            ("ping", PING_NS, "get") => Ok(None),
            ("keys", KEYS_NS, "get") => Ok(Some(keys_to_element(&self.published))),
            ("rotation", KEYS_NS, "set") => self.handle_rotation(&from, child).await,
            (_, INCIDENT_NS, _) => self.handle_incident(&from, &iq_type, child).await,
            ("score", REPUTATION_NS, "get") => match self.buddy(&from).await {
                Some(_) => self.score(child).await,
                None => Err(StanzaError::not_buddy()),
            },
            _ => Err(Self::service_unavailable()),
        };
        let reply = match answer {
            Ok(payload) => self.iq_result(&from, &id, payload),
            Err(error) => self.iq_error(&from, &id, &error),
        };
        self.send(reply).await;
    }

    /// Our XEP-0275 answer about a subject: for a domain, the lower of its reputation score
    /// (spec/reputation.md) and what our lists say; for a JID, what our lists say. A listed
    /// subject scores -100 (block), -50 (quarantine) or -20 (observe); a subject we know
    /// nothing about has no score (`item-not-found`).
    async fn score(&self, query: &Element) -> Result<Option<Element>, StanzaError> {
        let score = Score::from_element(query).map_err(|e| StanzaError::from_error(&e))?;
        let subject = Offender::from_jid(score.jid.clone());
        let matches = self.ledger.with_index(|index| match &subject {
            Offender::Jid(jid) => index.lookup_jid(jid),
            Offender::Domain(domain) => index.lookup_domain(domain),
            _ => Vec::new(),
        });
        let ids: Vec<i64> = matches.iter().map(|(_, id)| *id).collect();
        let entries = self.ledger.store().entries_by_id(&ids).await.map_err(|_| Self::service_unavailable())?;
        let strongest = entries.iter().filter(|e| e.active).map(|e| e.action).min();
        let listed = strongest.map(|action| match action {
            ListAction::Block => -100,
            ListAction::Quarantine => -50,
            ListAction::Observe => -20,
        });
        let computed = match &subject {
            Offender::Domain(domain) => {
                let params = &self.settings.reputation;
                let known = self
                    .ledger
                    .store()
                    .reputation_subject(domain, params)
                    .await
                    .map_err(|_| Self::service_unavailable())?;
                let nothing_known = known.facts.is_empty() && known.operator_override.is_none();
                (!nothing_known).then(|| reputation::score(&known, params, self.env.now()).score)
            }
            _ => None,
        };
        let num = match (listed, computed) {
            (Some(a), Some(b)) => a.min(b),
            (Some(n), None) | (None, Some(n)) => n,
            (None, None) => return Err(StanzaError::no_score()),
        };
        let answer = Score::answer(score.jid, num).map_err(|e| StanzaError::from_error(&e))?;
        Ok(Some(answer.to_element()))
    }

    /// The peer for a sender, if it is a buddy.
    async fn buddy(&self, from: &str) -> Option<PeerRecord> {
        let jid = BareJid::parse(from).ok()?;
        match self.ledger.store().peer(&jid).await {
            Ok(Some(peer)) if peer.state == PeerState::Buddy => Some(peer),
            _ => None,
        }
    }

    fn allow_peer(&self, peer: &str) -> bool {
        let now = Instant::now();
        let mut buckets = self.peer_buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() > 10_000 {
            buckets.clear();
        }
        let (tokens, updated) = buckets.entry(peer.to_owned()).or_insert((PEER_BURST, now));
        *tokens = (*tokens + now.duration_since(*updated).as_secs_f64() * PEER_RATE).min(PEER_BURST);
        *updated = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    async fn handle_incident(
        &self,
        from: &str,
        iq_type: &str,
        child: &Element,
    ) -> Result<Option<Element>, StanzaError> {
        let payload = IncidentPayload::from_element(child).map_err(|e| StanzaError::from_error(&e))?;
        if payload.iq_type() != iq_type {
            let error = ostracon_protocol::Error::InvalidValue {
                field: "iq type",
                value: ostracon_protocol::error::Excerpt::new(iq_type),
            };
            return Err(StanzaError::from_error(&error));
        }
        let peer = self.buddy(from).await.ok_or_else(StanzaError::not_buddy)?;
        if !self.allow_peer(from) {
            return Err(StanzaError::rate_limited());
        }
        let now = self.env.now();
        let from_jid = peer.jid.clone();
        let standing = if matches!(payload, IncidentPayload::Inquiry { .. }) || peer.trust == Trust::Observe {
            Standing { score: 0, weight_milli: 0 }
        } else {
            self.reporter_standing(&peer, now).await?
        };
        let low_reputation = format!(
            "the peer's reputation {} gives its reports no weight (ignore_below {})",
            standing.score, self.settings.reputation.ignore_below
        );
        let accept = |trust: Trust| match trust {
            Trust::Observe => (Decision::Ignored, Some("the peer is observe-only")),
            Trust::Accept | Trust::AutoApply if standing.weight_milli == 0 => {
                (Decision::Ignored, Some(low_reputation.as_str()))
            }
            Trust::Accept | Trust::AutoApply => (Decision::Accepted, None),
        };
        match payload {
            IncidentPayload::Inquiry { id } => {
                // Answer now, send the report later (XEP-0268): only for our own incidents.
                let record = self.ledger.store().incident(&id).await.map_err(|_| Self::service_unavailable())?;
                match record {
                    Some(record) if record.origin == IncidentOrigin::Local && record.verb == Verb::Report => {
                        self.ledger
                            .enqueue(from, ledger::OUTBOX_REPORT, &id.to_string(), "", now)
                            .await
                            .map_err(|_| Self::service_unavailable())?;
                        Ok(None)
                    }
                    _ => Err(StanzaError::unknown_incident()),
                }
            }
            IncidentPayload::Report { signed: Some(chain), .. } => {
                let claim = self.verify_from(chain, &from_jid, now).await?;
                let (links, ReportClaim(claim)) = (claim.links().to_vec(), claim.into_parts().0);
                let (mut decision, mut reason) = accept(peer.trust);
                // A forwarded report counts only if we also trust the node that first issued it.
                if links.len() > 1 && decision == Decision::Accepted {
                    let origin = self.buddy(&links[0].signer.to_string()).await;
                    if origin.is_none_or(|o| o.trust == Trust::Observe) {
                        (decision, reason) = (Decision::Ignored, Some("forwarded from an issuer we do not trust"));
                    }
                }
                let forward_to =
                    if decision == Decision::Accepted && links.len() <= usize::from(self.settings.forward_hops) {
                        self.forward_targets(&links).await
                    } else {
                        Vec::new()
                    };
                let provenance = Some(links.as_slice());
                self.store_remote(
                    &claim,
                    Verb::Report,
                    from,
                    IncidentOrigin::Peer,
                    provenance,
                    (decision, reason),
                    standing.weight_milli,
                    &forward_to,
                    now,
                )
                .await
            }
            IncidentPayload::Response { signed: Some(chain), .. } => {
                let claim = self.verify_from(chain, &from_jid, now).await?;
                let (links, ResponseClaim(claim)) = (claim.links().to_vec(), claim.into_parts().0);
                let (decision, reason) = accept(peer.trust);
                // An answer to a request our operator sent this peer carries our operator's
                // weight (unless the peer is ignored): we asked that server about its own
                // users, and it answered under its signature (spec/reputation.md).
                let asked = match &claim.related {
                    Some(request) => self
                        .ledger
                        .store()
                        .sent_request(from, request)
                        .await
                        .map_err(|_| Self::service_unavailable())?,
                    None => false,
                };
                let weight_milli =
                    if asked && standing.weight_milli > 0 { ledger::LOCAL_WEIGHT_MILLI } else { standing.weight_milli };
                self.store_remote(
                    &claim,
                    Verb::Response,
                    from,
                    IncidentOrigin::Peer,
                    Some(&links),
                    (decision, reason),
                    weight_milli,
                    &[],
                    now,
                )
                .await
            }
            IncidentPayload::Request { signed: Some(chain), .. } => {
                let claim = self.verify_from(chain, &from_jid, now).await?;
                let (links, RequestClaim(claim)) = (claim.links().to_vec(), claim.into_parts().0);
                let reason = Some("request: waits for the operator to confirm and answer");
                self.store_remote(
                    &claim,
                    Verb::Request,
                    from,
                    IncidentOrigin::Peer,
                    Some(&links),
                    (Decision::Pending, reason),
                    0,
                    &[],
                    now,
                )
                .await
            }
            IncidentPayload::Report { incident, signed: None }
            | IncidentPayload::Request { incident, signed: None }
            | IncidentPayload::Response { incident, signed: None } => {
                // Plain XEP-0268 (as Metronome sends): kept for the operator, never treated as signed.
                if !from_jid.domain().is_within(incident.id.issuer()) {
                    let error = ostracon_protocol::Error::SignerMismatch {
                        signer: ostracon_protocol::error::Excerpt::new(from),
                        claimed: ostracon_protocol::error::Excerpt::new(&incident.id.to_string()),
                    };
                    return Err(StanzaError::from_error(&error));
                }
                let reason = Some("unsigned: waits for the operator");
                self.store_remote(
                    &incident,
                    verb_of(child),
                    from,
                    IncidentOrigin::Unsigned,
                    None,
                    (Decision::Pending, reason),
                    0,
                    &[],
                    now,
                )
                .await
            }
        }
    }

    /// A buddy's standing as a reporter: its server domain's reporter score (the stored one,
    /// one indexed row, when it is recent; else computed from the facts we hold), and the
    /// weight that gives its reports (spec/reputation.md, Reporter weight).
    async fn reporter_standing(
        &self,
        peer: &PeerRecord,
        now: ostracon_protocol::time::Timestamp,
    ) -> Result<Standing, StanzaError> {
        let params = &self.settings.reputation;
        // A component speaks for its server: the server's score is the peer's standing.
        let server = Domain::parse(reputation::server_domain(peer.jid.domain().as_str()))
            .map_err(|_| Self::service_unavailable())?;
        let unavailable = |error: ostracon_store::StoreError| {
            tracing::warn!(%error, "reading a peer's reputation failed");
            Self::service_unavailable()
        };
        let stored = self.ledger.store().stored_reporter_score(&server).await.map_err(unavailable)?;
        let score = match stored {
            Some((score, at)) if (0..STANDING_TTL_SECS).contains(&(now.unix() - at.unix())) => score,
            _ => {
                let subject = self.ledger.store().reputation_subject(&server, params).await.map_err(unavailable)?;
                reputation::reporter_score(&subject, params, now).score
            }
        };
        Ok(Standing { score, weight_milli: reputation::peer_weight(peer.trust, server.as_str(), score, params) })
    }

    /// Verifies a signed claim from `from`: signatures with the buddies' pinned keys, the
    /// window, replay, and that `from` signed last.
    async fn verify_from<T: envelope::Claim>(
        &self,
        chain: envelope::Unverified<T>,
        from: &BareJid,
        now: ostracon_protocol::time::Timestamp,
    ) -> Result<envelope::Verified<T>, StanzaError> {
        let keys = self.buddy_keys().await.map_err(|_| Self::service_unavailable())?;
        keys.check_validity(chain.links(), false)?;
        let policy =
            VerifyPolicy { now, window_secs: WINDOW_SECS, max_links: usize::from(self.settings.forward_hops) + 1 };
        let verified = {
            let mut replay = self.replay.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            chain.verify(&keys, &mut *replay, &policy)
        }
        .map_err(|error| {
            tracing::info!(peer = %from, %error, "refused a signed claim");
            StanzaError::from_error(&error)
        })?;
        if verified.last_signer() != from {
            let error = ostracon_protocol::Error::SignerMismatch {
                signer: ostracon_protocol::error::Excerpt::new(&verified.last_signer().to_string()),
                claimed: ostracon_protocol::error::Excerpt::new(&from.to_string()),
            };
            return Err(StanzaError::from_error(&error));
        }
        Ok(verified)
    }

    /// Records a received incident with our decision, queueing any forwards with it.
    #[allow(clippy::too_many_arguments)]
    async fn store_remote(
        &self,
        incident: &ostracon_protocol::incident::Incident,
        verb: Verb,
        from: &str,
        origin: IncidentOrigin,
        provenance: Option<&[envelope::SignedEnvelope]>,
        (decision, decision_reason): (Decision, Option<&str>),
        weight_milli: i64,
        forward_to: &[String],
        now: ostracon_protocol::time::Timestamp,
    ) -> Result<Option<Element>, StanzaError> {
        let weight_milli = if decision == Decision::Accepted {
            reputation::contribution_weight(weight_milli, incident.category.as_str(), &self.settings.reputation)
        } else {
            0
        };
        let received = Received {
            incident: incident.clone(),
            verb,
            from: from.to_owned(),
            origin,
            provenance: provenance.map(<[_]>::to_vec),
            decision,
            decision_reason: decision_reason.map(str::to_owned),
            weight_milli,
            forward_to: forward_to.to_vec(),
            now,
        };
        match self.committer.record(received).await {
            Outcome::Recorded => {}
            Outcome::Duplicate => {
                tracing::debug!(peer = %from, incident = %incident.id, "repeated delivery");
                return Ok(None);
            }
            Outcome::Failed => return Err(Self::service_unavailable()),
        }
        tracing::info!(peer = %from, incident = %incident.id, %verb, ?decision, forwards = forward_to.len(), "incident received");
        Ok(None)
    }

    /// Takes a user's XEP-0377 report relayed in the mod_report_forward shape: from our own
    /// server, or from a buddy when the user allowed forwarding to the offender's server
    /// (`report-origin`, and we are that server) or to third parties. It becomes an incident
    /// waiting for the operator; nothing is listed until they accept it.
    async fn handle_message(&self, element: &Element) {
        let report = match ForwardedReport::from_message(element) {
            Ok(Some(report)) => report,
            Ok(None) => return,
            Err(error) => {
                tracing::info!(%error, "ignored a malformed relayed report");
                return;
            }
        };
        let from_own_server =
            report.relayed_by.is_domain() && report.relayed_by.domain() == &self.settings.server_domain;
        let about_our_users = report.reported.domain().is_within(&self.settings.server_domain);
        let from_buddy = self.buddy(&report.relayed_by.to_string()).await.is_some();
        let opted_in = (report.report.report_origin && about_our_users) || report.report.third_party;
        if !(from_own_server || (from_buddy && opted_in)) {
            tracing::info!(from = %report.relayed_by, "ignored a relayed report from a server that may not send us one");
            return;
        }
        let now = self.env.now();
        let description: String =
            report.report.texts.join("\n").chars().take(ostracon_protocol::limits::MAX_DESCRIPTION_CHARS).collect();
        let evidence = report
            .message_body
            .iter()
            .map(|body| {
                ostracon_protocol::incident::Evidence::Sample(
                    body.chars().take(ostracon_protocol::limits::MAX_SAMPLE_CHARS).collect(),
                )
            })
            .collect();
        let incident = ostracon_protocol::incident::Incident {
            id: ostracon_protocol::ids::IncidentId::new(self.settings.jid.domain().clone(), self.env.uuid()),
            reporter: report.relayed_by.clone(),
            status: ostracon_protocol::incident::Status::New,
            category: report.report.category,
            severity: ostracon_protocol::incident::Severity::Low,
            offenders: vec![Offender::from_jid(report.reported.clone())],
            start: report.message_sent.unwrap_or(now).min(now),
            end: None,
            reported: now,
            description,
            evidence,
            action: None,
            expires: None,
            related: None,
            history: Vec::new(),
        };
        if let Err(error) = incident.validate() {
            tracing::info!(%error, "ignored a relayed report that does not make a valid incident");
            return;
        }
        let from = report.relayed_by.to_string();
        let reason = Some("user report: waits for the operator");
        let _ = self
            .store_remote(
                &incident,
                Verb::Report,
                &from,
                IncidentOrigin::UserReport,
                None,
                (Decision::Pending, reason),
                0,
                &[],
                now,
            )
            .await;
    }

    /// Buddies a report should be forwarded to: trusted, and not already in its chain.
    async fn forward_targets(&self, links: &[envelope::SignedEnvelope]) -> Vec<String> {
        let peers = self.ledger.store().peers().await.unwrap_or_default();
        peers
            .into_iter()
            .filter(|p| p.state == PeerState::Buddy && p.trust != Trust::Observe)
            .filter(|p| !links.iter().any(|link| link.signer == p.jid))
            .map(|p| p.jid.to_string())
            .collect()
    }

    async fn buddy_keys(&self) -> ostracon_store::Result<BuddyKeys> {
        let mut keys = BTreeMap::new();
        for peer in self.ledger.store().peers().await? {
            if peer.state != PeerState::Buddy {
                continue;
            }
            for key in &peer.keys {
                keys.insert((peer.jid.clone(), key.kid.clone()), key.clone());
            }
        }
        Ok(BuddyKeys(keys))
    }

    async fn handle_presence(&self, element: &Element) {
        let Ok(Some((kind, from, to))) = BuddyPresence::from_stanza(element) else { return };
        if to != self.settings.jid || !from.is_domain() {
            return;
        }
        let now = self.env.now();
        let store = self.ledger.store();
        let existing = store.peer(&from).await.ok().flatten();
        let mut peer = existing.clone().unwrap_or(PeerRecord {
            jid: from.clone(),
            state: PeerState::Pending,
            trust: Trust::Observe,
            keys: Vec::new(),
            created_at: now,
            updated_at: now,
        });
        peer.updated_at = now;
        let jid = from.to_string();
        let result = match kind {
            BuddyPresence::Subscribe => match existing.map(|p| p.state) {
                // We asked them, or are buddies: our operator already consented.
                Some(PeerState::Requested | PeerState::Buddy) => {
                    self.ledger.enqueue(&jid, ledger::OUTBOX_PRESENCE, "", "subscribed", now).await
                }
                Some(PeerState::Pending) => Ok(()),
                _ => {
                    peer.state = PeerState::Pending;
                    peer.keys.clear();
                    tracing::info!(peer = %jid, "buddy request received; waiting for the operator");
                    let stored = store.put_peer(&peer).await;
                    // Fetch the keys now so the operator sees fingerprints before approving; with
                    // auto-approve, the same fetch also approves (one row, so no race between two).
                    let then = if self.settings.auto_approve {
                        tracing::warn!(peer = %jid, "auto-approving a buddy request (auto_approve is on)");
                        "approve"
                    } else {
                        ""
                    };
                    let queued = self.ledger.enqueue(&jid, ledger::OUTBOX_FETCH_KEYS, "", then, now).await;
                    stored.and(queued)
                }
            },
            BuddyPresence::Subscribed => match peer.state {
                PeerState::Requested => self.ledger.enqueue(&jid, ledger::OUTBOX_FETCH_KEYS, "", "", now).await,
                _ => Ok(()),
            },
            BuddyPresence::Unsubscribe | BuddyPresence::Unsubscribed => {
                if existing.is_some() && peer.state != PeerState::Revoked {
                    peer.state = PeerState::Revoked;
                    tracing::info!(peer = %jid, "buddy relation ended by the peer");
                    store.put_peer(&peer).await
                } else {
                    Ok(())
                }
            }
        };
        if let Err(error) = result {
            tracing::warn!(%error, peer = %jid, "could not record a buddy presence");
        }
    }

    /// Fails every IQ still waiting for an answer, so its sender retries at once (called when
    /// the link comes back: answers to stanzas sent before may have been lost with it).
    pub async fn run_link_resets(self: Arc<Self>, online: Arc<tokio::sync::Notify>, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                () = online.notified() => {
                    let waiting: Vec<_> =
                        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).drain().collect();
                    if !waiting.is_empty() {
                        tracing::info!(requests = waiting.len(), "link re-established; retrying unanswered requests");
                    }
                }
                _ = stop.changed() => return,
            }
        }
    }

    /// Delivers due outbox items until `stop` turns true.
    pub async fn run_outbox(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let in_flight: Arc<Mutex<std::collections::BTreeSet<i64>>> = Arc::default();
        let permits = Arc::new(Semaphore::new(16));
        loop {
            // Registered before reading, so a row queued while we read is not missed.
            let queued = self.ledger.outbox_queued();
            let now = self.env.now();
            let mut more = false;
            match self.ledger.store().due(now, OUTBOX_BATCH).await {
                Ok(items) => {
                    // A full batch of which some were new: more may be due behind it, so read
                    // again at once instead of waiting (a burst of thousands of deliveries
                    // otherwise waited half a second per hundred). At most 16 of a batch are
                    // in flight when the loop ends, so a full batch always has new rows.
                    let full = items.len() == OUTBOX_BATCH as usize;
                    for item in items {
                        if !in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(item.id) {
                            continue;
                        }
                        more |= full;
                        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { return };
                        let (node, in_flight) = (Arc::clone(&self), Arc::clone(&in_flight));
                        tokio::spawn(async move {
                            node.deliver(&item).await;
                            in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&item.id);
                            drop(permit);
                        });
                    }
                }
                Err(error) => tracing::warn!(%error, "reading the outbox failed"),
            }
            if more {
                continue;
            }
            // Retries come due with time; new rows wake us at once.
            tokio::select! {
                _ = queued => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = stop.changed() => return,
            }
        }
    }

    async fn deliver(&self, item: &OutboxItem) {
        // Path patterns (`ledger::…`) are always constants, never a catch-all binding.
        let outcome = match item.kind.as_str() {
            ledger::OUTBOX_PRESENCE => self.deliver_presence(item).await,
            ledger::OUTBOX_FETCH_KEYS => self.fetch_keys(item).await,
            ledger::OUTBOX_REPORT => self.deliver_signed(item, Verb::Report).await,
            ledger::OUTBOX_REQUEST => self.deliver_signed(item, Verb::Request).await,
            ledger::OUTBOX_RESPONSE => self.deliver_signed(item, Verb::Response).await,
            ledger::OUTBOX_INQUIRY => self.deliver_inquiry(item).await,
            ledger::OUTBOX_FORWARD => self.deliver_forward(item).await,
            ledger::OUTBOX_SCORE_QUERY => self.ask_score(item).await,
            ledger::OUTBOX_ROTATION => self.announce_rotation(item).await,
            other => Err(format!("unknown outbox kind {other:?}")),
        };
        let now = self.env.now();
        let result = match outcome {
            Ok(()) => self.ledger.outbox_delivered(item.id, now).await,
            Err(error) => {
                let attempts = item.attempts.saturating_add(1);
                let expired = now.unix() - item.created_at.unix() > GIVE_UP_AFTER_SECS;
                let next = (!expired).then(|| now.plus_secs(retry_delay_secs(attempts, rand::random::<f64>())));
                tracing::info!(peer = %item.peer, kind = %item.kind, attempts, %error, "outbox delivery failed");
                self.ledger.outbox_failed(item.id, &error, next).await
            }
        };
        if let Err(error) = result {
            tracing::warn!(%error, "updating the outbox failed");
        }
    }

    async fn deliver_presence(&self, item: &OutboxItem) -> Result<(), String> {
        let kind =
            BuddyPresence::from_type(&item.payload).ok_or_else(|| format!("bad presence type {:?}", item.payload))?;
        let to = BareJid::parse(&item.peer).map_err(|e| e.to_string())?;
        self.send(kind.to_stanza(&self.settings.jid, &to, STANZA_NS)).await;
        Ok(())
    }

    async fn fetch_keys(&self, item: &OutboxItem) -> Result<(), String> {
        let answer = self.request(&item.peer, "get", keys_query()).await?;
        let keys_element = answer.children().next().ok_or("empty keys answer")?;
        let keys = keys_from_element(keys_element).map_err(|e| e.to_string())?;
        if keys.is_empty() {
            return Err("the peer published no keys".to_owned());
        }
        let jid = BareJid::parse(&item.peer).map_err(|e| e.to_string())?;
        let store = self.ledger.store();
        let mut peer = store.peer(&jid).await.map_err(|e| e.to_string())?.ok_or("unknown peer")?;
        peer.updated_at = self.env.now();
        let read_state = peer.state;
        match peer.state {
            // We asked them and they agreed: pin and become buddies.
            PeerState::Requested => {
                peer.keys = keys;
                peer.state = PeerState::Buddy;
            }
            // They asked us: show the keys; pin on approval (or now, with auto-approve).
            PeerState::Pending => {
                peer.keys = keys;
                if item.payload == "approve" {
                    peer.state = PeerState::Buddy;
                    peer.trust = Trust::Accept;
                    let now = self.env.now();
                    let _ = self.ledger.enqueue(&item.peer, ledger::OUTBOX_PRESENCE, "", "subscribed", now).await;
                    let _ = self.ledger.enqueue(&item.peer, ledger::OUTBOX_PRESENCE, "", "subscribe", now).await;
                }
            }
            PeerState::Buddy | PeerState::Revoked => return Ok(()),
        }
        tracing::info!(peer = %jid, state = %peer.state, keys = peer.keys.len(), "peer keys fetched");
        // Only if nothing moved the relation meanwhile: an operator's approval (or a second
        // fetch) that landed during our IQ must not be overwritten with the state we read.
        // The harness found this at 50 nodes: a late fetch put an approved buddy back to
        // `pending`, and the pair stopped exchanging reports in both directions.
        if !store.update_peer_if(&peer, read_state).await.map_err(|e| e.to_string())? {
            tracing::info!(peer = %jid, "relation changed while its keys were fetched; left as it is");
        }
        Ok(())
    }

    /// Signs a stored incident as a report, request or response and sends it. Signed at
    /// delivery time, so a delivery delayed by an outage still has a fresh timestamp.
    async fn deliver_signed(&self, item: &OutboxItem, verb: Verb) -> Result<(), String> {
        let id = ostracon_protocol::ids::IncidentId::parse(&item.reference).map_err(|e| e.to_string())?;
        let record = self.ledger.store().incident(&id).await.map_err(|e| e.to_string())?.ok_or("incident is gone")?;
        let nonce = Nonce::from_bytes(&rand::random::<[u8; 16]>());
        let (signer, now) = (&self.settings.jid, self.env.now());
        let incident = record.incident;
        let payload = match verb {
            Verb::Report => IncidentPayload::Report {
                signed: Some(
                    envelope::sign(&ReportClaim(incident.clone()), &self.key, signer, now, nonce)
                        .map_err(|e| e.to_string())?,
                ),
                incident,
            },
            Verb::Request => IncidentPayload::Request {
                signed: Some(
                    envelope::sign(&RequestClaim(incident.clone()), &self.key, signer, now, nonce)
                        .map_err(|e| e.to_string())?,
                ),
                incident,
            },
            Verb::Response => IncidentPayload::Response {
                signed: Some(
                    envelope::sign(&ResponseClaim(incident.clone()), &self.key, signer, now, nonce)
                        .map_err(|e| e.to_string())?,
                ),
                incident,
            },
        };
        self.request(&item.peer, payload.iq_type(), payload.to_element()).await.map(drop)
    }

    /// Forwards a stored, verified report: re-verifies its chain with today's pinned keys,
    /// adds our link (signed now) and sends it.
    async fn deliver_forward(&self, item: &OutboxItem) -> Result<(), String> {
        let id = ostracon_protocol::ids::IncidentId::parse(&item.reference).map_err(|e| e.to_string())?;
        let record = self.ledger.store().incident(&id).await.map_err(|e| e.to_string())?.ok_or("incident is gone")?;
        let links = record.provenance.ok_or("the report has no provenance to forward")?;
        let keys = self.buddy_keys().await.map_err(|e| e.to_string())?;
        keys.check_validity(&links, false).map_err(|e| e.text)?;
        let now = self.env.now();
        let policy =
            VerifyPolicy { now, window_secs: WINDOW_SECS, max_links: usize::from(self.settings.forward_hops) + 1 };
        let verified = envelope::Unverified::<ReportClaim>::new(links)
            .and_then(|chain| chain.verify_stored(&keys, &policy))
            .map_err(|e| e.to_string())?;
        let nonce = Nonce::from_bytes(&rand::random::<[u8; 16]>());
        let chain = verified.forward(&self.key, &self.settings.jid, now, nonce).map_err(|e| e.to_string())?;
        let payload = IncidentPayload::Report { incident: record.incident, signed: Some(chain) };
        self.request(&item.peer, "set", payload.to_element()).await.map(drop)
    }

    /// Sends our signed key-rotation claim to a buddy.
    async fn announce_rotation(&self, item: &OutboxItem) -> Result<(), String> {
        let links: Vec<envelope::SignedEnvelope> = serde_json::from_str(&item.payload).map_err(|e| e.to_string())?;
        let claim = envelope::Unverified::<KeyRotation>::new(links).map_err(|e| e.to_string())?;
        self.request(&item.peer, "set", rotation_to_element(&claim)).await.map(drop)
    }

    /// A buddy announces a new key, signed by the key we pinned: pin the new one and retire
    /// the old one from the new key's start. Timestamps are not windowed here: re-pinning the
    /// same key is harmless, and the announcement may wait in the sender's outbox.
    async fn handle_rotation(&self, from: &str, child: &Element) -> Result<Option<Element>, StanzaError> {
        let mut peer = self.buddy(from).await.ok_or_else(StanzaError::not_buddy)?;
        let claim = rotation_from_element(child).map_err(|e| StanzaError::from_error(&e))?;
        let keys = self.buddy_keys().await.map_err(|_| Self::service_unavailable())?;
        keys.check_validity(claim.links(), true)?;
        let policy = VerifyPolicy { now: self.env.now(), window_secs: WINDOW_SECS, max_links: 1 };
        let verified = claim.verify_stored(&keys, &policy).map_err(|e| StanzaError::from_error(&e))?;
        if verified.origin() != &peer.jid {
            let error = ostracon_protocol::Error::SignerMismatch {
                signer: ostracon_protocol::error::Excerpt::new(&verified.origin().to_string()),
                claimed: ostracon_protocol::error::Excerpt::new(from),
            };
            return Err(StanzaError::from_error(&error));
        }
        let rotation = verified.value().clone();
        for key in peer.keys.iter_mut().filter(|k| k.kid == rotation.old_kid && k.valid_until.is_none()) {
            key.valid_until = Some(rotation.new_key.valid_from);
        }
        if !peer.keys.iter().any(|k| k.kid == rotation.new_key.kid) {
            peer.keys.push(rotation.new_key.clone());
        }
        peer.updated_at = self.env.now();
        self.ledger.store().put_peer(&peer).await.map_err(|_| Self::service_unavailable())?;
        tracing::info!(peer = %peer.jid, old = %rotation.old_kid, new = %rotation.new_key.kid, "peer rotated its key");
        Ok(None)
    }

    /// Asks a buddy its XEP-0275 score for a subject and keeps the answer.
    async fn ask_score(&self, item: &OutboxItem) -> Result<(), String> {
        let subject = BareJid::parse(&item.reference).map_err(|e| e.to_string())?;
        let answer = match self.request(&item.peer, "get", Score::query(subject.clone()).to_element()).await {
            Ok(answer) => answer,
            // "No score" is an answer, not a failure to retry.
            Err(error) if error.starts_with("item-not-found") => return Ok(()),
            Err(error) => return Err(error),
        };
        let score = answer
            .children()
            .next()
            .map(Score::from_element)
            .ok_or("empty score answer")?
            .map_err(|e| e.to_string())?;
        let num = score.num.ok_or("score answer without num")?;
        if score.jid != subject {
            return Err(format!("asked about {subject}, got an answer about {}", score.jid));
        }
        self.ledger
            .store()
            .put_peer_score(&item.peer, &subject.to_string(), i64::from(num), self.env.now())
            .await
            .map_err(|e| e.to_string())
    }

    async fn deliver_inquiry(&self, item: &OutboxItem) -> Result<(), String> {
        let id = ostracon_protocol::ids::IncidentId::parse(&item.reference).map_err(|e| e.to_string())?;
        let payload = IncidentPayload::Inquiry { id };
        self.request(&item.peer, payload.iq_type(), payload.to_element()).await.map(drop)
    }
}

/// Seconds until the next delivery attempt: doubling from 1 s up to an hour, times a jitter
/// factor in 0.5..1.5 so retries after an outage do not arrive in lockstep.
fn retry_delay_secs(attempts: u32, jitter: f64) -> i64 {
    let base = 1u64 << attempts.min(12);
    let delay = (base.min(MAX_RETRY_SECS) as f64 * (0.5 + jitter.clamp(0.0, 1.0))).round() as i64;
    delay.max(1)
}

/// The verb of an XEP-0268 wrapper element.
fn verb_of(wrapper: &Element) -> Verb {
    match wrapper.name() {
        "request" => Verb::Request,
        "response" => Verb::Response,
        _ => Verb::Report,
    }
}

#[cfg(test)]
mod tests {
    //! The component's logic in process: stanzas in through `handle`, stanzas out through the
    //! channel, a real SQLite store, no XMPP server. The real-server tests are in `server/tests`.

    use std::sync::Arc;

    use ostracon_protocol::time::Timestamp;
    use ostracon_store::Store;
    use ostracon_store::clock::FixedEnvironment;
    use ostracon_store::ledger::LedgerConfig;
    use ostracon_store::policy::ListingPolicy;

    use ostracon_protocol::xml::to_string;

    use super::*;

    struct Harness {
        node: Arc<XmppNode>,
        out: mpsc::Receiver<Element>,
        _dir: Dir,
    }

    /// The test's data directory, removed on drop.
    struct Dir(std::path::PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    async fn harness() -> Harness {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ostracon-node-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let store = Store::open(&format!("sqlite://{}/node.db", dir.display())).await.unwrap();
        let key = NodeKey::from_seed(&[4; 32]);
        let env = Arc::new(FixedEnvironment::new(Timestamp::from_unix(1_800_000_000).unwrap()));
        let config = LedgerConfig {
            origin: "b.test/ostracon".into(),
            key_name: "b.test".into(),
            policy: ListingPolicy::default(),
            reputation: ReputationParams::default(),
        };
        let ledger = Arc::new(Ledger::open(store, key.clone(), config).await.unwrap());
        let (tx, out) = mpsc::channel(16);
        let settings = NodeSettings {
            jid: BareJid::parse("incidents.b.test").unwrap(),
            server_domain: Domain::parse("b.test").unwrap(),
            auto_approve: false,
            name: "Ostracon".into(),
            abuse_addresses: vec!["xmpp:abuse@b.test".into()],
            forward_hops: 0,
            reputation: ReputationParams::default(),
        };
        let published = vec![PublishedKey::new(key.public(), env.now())];
        let node = Arc::new(XmppNode::new(ledger, env, key, published, settings, tx));
        Harness { node, out, _dir: Dir(dir) }
    }

    fn iq(iq_type: &str, from: &str, child: &str) -> Element {
        format!("<iq xmlns='{STANZA_NS}' type='{iq_type}' from='{from}' to='incidents.b.test' id='q1'>{child}</iq>")
            .parse()
            .unwrap()
    }

    #[test]
    fn retries_back_off_to_an_hour_with_jitter() {
        assert_eq!(retry_delay_secs(1, 0.5), 2);
        assert_eq!(retry_delay_secs(5, 0.5), 32);
        assert_eq!(retry_delay_secs(40, 0.5), 3_600);
        assert_eq!(retry_delay_secs(40, 1.0), 5_400);
        assert!(retry_delay_secs(0, 0.0) >= 1);
    }

    #[tokio::test]
    async fn disco_answers_features_and_abuse_addresses() {
        let mut h = harness().await;
        h.node.handle(iq("get", "incidents.a.test", "<query xmlns='http://jabber.org/protocol/disco#info'/>")).await;
        let answer = h.out.recv().await.unwrap();
        assert_eq!(answer.attr("type"), Some("result"));
        assert_eq!(answer.attr("to"), Some("incidents.a.test"));
        let text = to_string(&answer);
        assert!(text.contains("urn:xmpp:incident:2") && text.contains("xmpp:abuse@b.test"), "{text}");
    }

    #[tokio::test]
    async fn reports_from_strangers_are_forbidden_and_garbage_is_a_bad_request() {
        let mut h = harness().await;
        let report = IncidentPayload::Inquiry {
            id: ostracon_protocol::ids::IncidentId::parse("a.test:0f6c1c52-7d3e-4e0a-9a51-2b1f4a7e9c10").unwrap(),
        };
        h.node.handle(iq("get", "incidents.a.test", &to_string(&report.to_element()))).await;
        let answer = h.out.recv().await.unwrap();
        let error = answer.children().find(|c| c.name() == "error").unwrap();
        assert_eq!(StanzaError::conditions_of(error), (Some("forbidden".into()), Some("not-buddy".into())));

        h.node.handle(iq("set", "incidents.a.test", "<report xmlns='urn:xmpp:incident:2'><x/></report>")).await;
        let answer = h.out.recv().await.unwrap();
        let error = answer.children().find(|c| c.name() == "error").unwrap();
        assert_eq!(StanzaError::conditions_of(error).0.as_deref(), Some("bad-request"));

        h.node.handle(iq("get", "incidents.a.test", "<unknown xmlns='urn:example'/>")).await;
        let answer = h.out.recv().await.unwrap();
        let error = answer.children().find(|c| c.name() == "error").unwrap();
        assert_eq!(StanzaError::conditions_of(error).0.as_deref(), Some("service-unavailable"));
    }

    #[tokio::test]
    async fn a_buddys_standing_follows_its_facts_at_once_and_other_changes_within_a_minute() {
        let h = harness().await;
        let t0 = h.node.env.now();
        let buddy = PeerRecord {
            jid: BareJid::parse("incidents.a.test").unwrap(),
            state: PeerState::Buddy,
            trust: Trust::Accept,
            keys: vec![],
            created_at: t0,
            updated_at: t0,
        };
        h.node.ledger.store().put_peer(&buddy).await.unwrap();
        let first = h.node.reporter_standing(&buddy, t0).await.unwrap();
        assert_eq!((first.score, first.weight_milli), (9, 500), "a fresh buddy: +10 raw, full `accept` weight");

        // Our operator contradicts one of its reports: a fact, so its stored standing moves at once.
        let report = ostracon_protocol::incident::Incident {
            id: ostracon_protocol::ids::IncidentId::parse("incidents.a.test:0f6c1c52-7d3e-4e0a-9a51-2b1f4a7e9c10")
                .unwrap(),
            reporter: BareJid::parse("incidents.a.test").unwrap(),
            status: ostracon_protocol::incident::Status::New,
            category: ostracon_protocol::incident::Category::Spam,
            severity: ostracon_protocol::incident::Severity::Low,
            offenders: vec![Offender::parse("customer@b.test").unwrap()],
            start: t0,
            end: None,
            reported: t0,
            description: String::new(),
            evidence: vec![],
            action: None,
            expires: None,
            related: None,
            history: vec![],
        };
        let received = ledger::RemoteIncident {
            incident: &report,
            verb: Verb::Report,
            from: "incidents.a.test",
            origin: IncidentOrigin::Peer,
            provenance: None,
            decision: Decision::Accepted,
            decision_reason: None,
            weight_milli: 500,
            forward_to: &[],
        };
        h.node.ledger.record_remote(received, t0).await.unwrap();
        h.node.ledger.allow(&Offender::parse("customer@b.test").unwrap(), "ours", t0).await.unwrap();
        let contradicted = h.node.reporter_standing(&buddy, t0).await.unwrap();
        assert_eq!(contradicted.score, -4, "10 - 15 raw");
        assert!(contradicted.weight_milli > 0 && contradicted.weight_milli < first.weight_milli, "{contradicted:?}");

        // Another buddy's XEP-0275 opinion of -100 about its server (-30 raw) is not a fact:
        // the stored standing serves for a minute, then it is computed afresh.
        let other = PeerRecord { jid: BareJid::parse("incidents.c.test").unwrap(), ..buddy.clone() };
        h.node.ledger.store().put_peer(&other).await.unwrap();
        h.node.ledger.store().put_peer_score("incidents.c.test", "a.test", -100, t0).await.unwrap();
        let stored = h.node.reporter_standing(&buddy, t0.plus_secs(STANDING_TTL_SECS - 1)).await.unwrap();
        assert_eq!(stored.score, -4);
        let fresh = h.node.reporter_standing(&buddy, t0.plus_secs(STANDING_TTL_SECS)).await.unwrap();
        assert_eq!((fresh.score, fresh.weight_milli), (-25, 0), "10 - 15 - 30 raw: ignored");
    }

    #[tokio::test]
    async fn a_buddy_request_waits_for_the_operator_and_fetches_keys() {
        let h = harness().await;
        let presence: Element =
            format!("<presence xmlns='{STANZA_NS}' from='incidents.a.test' to='incidents.b.test' type='subscribe'/>")
                .parse()
                .unwrap();
        h.node.handle(presence).await;
        let peer = h.node.ledger.store().peer(&BareJid::parse("incidents.a.test").unwrap()).await.unwrap().unwrap();
        assert_eq!(peer.state, PeerState::Pending);
        assert_eq!(peer.trust, Trust::Observe);
        let queued = h.node.ledger.store().outbox_for("incidents.a.test", 10).await.unwrap();
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].kind, ledger::OUTBOX_FETCH_KEYS, "keys are fetched, nothing is approved");
    }
}
