//! The component's state and the dispatch of every stanza to the file that owns it.
//!
//! - `iq.rs`: IQs we send and the answers we wait for (bound to the peer asked);
//! - `intake.rs`: XEP-0268 reports, requests, responses and inquiries (alone or reports in a batch), and relayed XEP-0377 reports;
//! - `handshake.rs`: XEP-0267 presence and key fetches, as ledger operations;
//! - `delivery.rs`: the outbox, one queue per peer;
//! - `trust.rs`: the peer table, pinned keys, rotations and verification;
//! - `score.rs`: our XEP-0275 answers;
//! - `rtbl.rs`: the XEP-0060 RTBL service and what it pushes to subscribers;
//! - `limits.rs`: rates per sender and per domain for every stanza kind.
//!
//! **Invariant:** every stanza gets a defined answer or is counted: IQ get/set are answered
//! (`bad-request` for malformed ones, `policy-violation` for ones over a bound,
//! `resource-constraint` over a rate), IQ answers reach only the waiter that asked their
//! sender, and what is dropped is counted in `/metrics`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use minidom::Element;
use ostracon_protocol::ids::{BareJid, Domain};
use ostracon_protocol::xml::batch::BATCH_NS;
use ostracon_protocol::xml::buddies::{DISCO_INFO_NS, DiscoInfo};
use ostracon_protocol::xml::errors::StanzaError;
use ostracon_protocol::xml::keys::{KEYS_NS, keys_to_element};
use ostracon_protocol::xml::pubsub::PUBSUB_NS;
use ostracon_protocol::xml::reputation::REPUTATION_NS;
use ostracon_protocol::xml::stream::{Bound, Refused};
use ostracon_protocol::xml::xep0268::INCIDENT_NS;
use ostracon_store::clock::Environment;
use ostracon_store::ledger::Ledger;
use ostracon_store::ledger::peers::StrangerLimits;
use ostracon_store::reputation::ReputationParams;
use tokio::sync::{Semaphore, mpsc, watch};

use super::connection::{Counter, LinkStatus, PeerEvent};
use super::group_commit::GroupCommit;
use super::iq::{Requests, request_id};
use super::limits::{SenderLimits, SenderRates, Traffic};
use super::replay::ReplayCache;
use super::stanza::{attr, iq_error, iq_result, stanza};
use super::stream::Inbound;
use super::trust::Peers;
use crate::error::ServerError;

/// XEP-0199.
pub(super) const PING_NS: &str = "urn:xmpp:ping";
/// How long to wait for a buddy's IQ answer.
pub(super) const IQ_TIMEOUT: Duration = Duration::from_secs(30);
/// Incoming stanzas handled at once.
const MAX_IN_FLIGHT: usize = 64;
/// RTBL requests waiting for their one task; past this many, `resource-constraint`.
const RTBL_QUEUE: usize = 256;
/// Signature timestamp window (seconds).
pub(super) const WINDOW_SECS: i64 = 300;
/// Signed envelopes remembered against replay.
const REPLAY_CAPACITY: usize = 200_000;

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
    /// Caps on buddy requests from strangers, and whether to approve them without the operator.
    pub strangers: StrangerLimits,
    /// Rates per sender and per domain.
    pub rates: SenderRates,
    /// Human name in disco.
    pub name: String,
    /// Reputation parameters: a buddy's score sets the weight of its reports, and below
    /// `ignore_below` they are stored as ignored.
    pub reputation: ReputationParams,
    /// The XEP-0060 RTBL service (no nodes: off).
    pub rtbl: crate::config::RtblSettings,
}

/// The component's logic.
pub struct XmppNode {
    pub(super) ledger: Arc<Ledger>,
    /// Stores received incidents, several per transaction under a burst.
    pub(super) committer: GroupCommit,
    pub(super) env: Arc<dyn Environment>,
    pub(super) settings: NodeSettings,
    out: mpsc::Sender<Element>,
    pub(super) requests: Requests,
    pub(super) replay: Mutex<ReplayCache>,
    pub(super) limits: Arc<SenderLimits>,
    /// The peer table as last read, with the ledger's peer version it reflects.
    pub(super) peers: Mutex<Option<(u64, Arc<Peers>)>>,
    pub(super) status: Arc<LinkStatus>,
    pub(super) rtbl: Option<super::rtbl::RtblService>,
}

/// The answer for a failure on our side (the database, a task gone).
pub(super) fn service_unavailable() -> StanzaError {
    StanzaError { error_type: "cancel", condition: "service-unavailable", app_condition: None, text: String::new() }
}

/// `bad-request` with a reason.
fn bad_request(text: &str) -> StanzaError {
    StanzaError {
        error_type: "modify",
        condition: "bad-request",
        app_condition: Some("malformed"),
        text: text.to_owned(),
    }
}

/// The answer for a stanza over a bound.
fn over_bound(bound: Bound) -> StanzaError {
    use ostracon_protocol::limits::{MAX_XML_BYTES, MAX_XML_DEPTH, MAX_XML_ELEMENTS};
    let error = match bound {
        Bound::Size => {
            ostracon_protocol::Error::TooLarge { what: "stanza", len: MAX_XML_BYTES + 1, max: MAX_XML_BYTES }
        }
        Bound::Depth => ostracon_protocol::Error::TooDeep { max: MAX_XML_DEPTH },
        Bound::Elements => ostracon_protocol::Error::TooMany { what: "XML elements", max: MAX_XML_ELEMENTS },
        Bound::Namespace => return bad_request("an element or attribute prefix is not declared"),
        Bound::Rate => return StanzaError::rate_limited(),
    };
    StanzaError::from_error(&error)
}

impl XmppNode {
    /// Builds the node; stanzas it sends go to `out`, and what it refuses or drops is counted
    /// in `status`. Starts the group-commit task for received incidents, which ends with the node.
    pub fn new(
        ledger: Arc<Ledger>,
        env: Arc<dyn Environment>,
        settings: NodeSettings,
        out: mpsc::Sender<Element>,
        status: Arc<LinkStatus>,
    ) -> Self {
        Self {
            committer: GroupCommit::start(Arc::clone(&ledger)),
            ledger,
            env,
            limits: Arc::new(SenderLimits::new(settings.rates)),
            rtbl: super::rtbl::RtblService::new(settings.rtbl.clone()),
            settings,
            out,
            requests: Requests::default(),
            replay: Mutex::new(ReplayCache::new(WINDOW_SECS, REPLAY_CAPACITY)),
            peers: Mutex::new(None),
            status,
        }
    }

    pub(super) fn jid(&self) -> String {
        self.settings.jid.to_string()
    }

    pub(super) async fn send(&self, element: Element) {
        if self.out.send(element).await.is_err() {
            tracing::warn!("XMPP link task is gone; stanza dropped");
        }
    }

    /// Sends an IQ to `to` and waits up to `timeout` for its answer (the whole `<iq/>`).
    pub async fn request(
        &self,
        to: &BareJid,
        iq_type: &str,
        payload: Element,
        timeout: Duration,
    ) -> Result<Element, ServerError> {
        let id = request_id(&self.env.random_bytes());
        let mut iq = stanza("iq", &[("type", iq_type), ("from", &self.jid()), ("to", &to.to_string()), ("id", &id)]);
        iq.append_child(payload);
        let waiter = self.requests.register(to, &id);
        self.send(iq).await;
        let answer = tokio::time::timeout(timeout, waiter).await;
        self.requests.forget(to, &id);
        match answer {
            Ok(Ok(element)) if element.attr("type") == Some("result") => Ok(element),
            Ok(Ok(element)) => {
                let (condition, app) = element
                    .children()
                    .find(|c| c.name() == "error")
                    .map(StanzaError::conditions_of)
                    .unwrap_or((None, None));
                Err(ServerError::Answered { condition: condition.unwrap_or_else(|| "error".to_owned()), app })
            }
            Ok(Err(_)) => Err(ServerError::LinkLost),
            Err(_) => Err(ServerError::NoAnswer { secs: timeout.as_secs() }),
        }
    }

    /// Handles every incoming stanza until `incoming` closes, a bounded number at a time.
    ///
    /// RTBL requests are the exception: they go, in the order they came, to one task of
    /// their own, because a consumer's reload sends `unsubscribe` then `subscribe`, and run
    /// side by side the two could leave it unsubscribed.
    pub async fn run_incoming(self: Arc<Self>, mut incoming: mpsc::Receiver<Inbound>) {
        let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let (rtbl_requests, queued) = mpsc::channel(RTBL_QUEUE);
        tokio::spawn(Arc::clone(&self).run_rtbl_requests(queued));
        while let Some(inbound) = incoming.recv().await {
            let inbound = match inbound {
                Inbound::Stanza(element) if super::rtbl::is_request(&element) => {
                    if let Err(mpsc::error::TrySendError::Full(element)) = rtbl_requests.try_send(element) {
                        self.status.add(Counter::RateLimited, 1);
                        self.answer_error(&element, &StanzaError::rate_limited()).await;
                    }
                    continue;
                }
                other => other,
            };
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { return };
            let node = Arc::clone(&self);
            tokio::spawn(async move {
                node.handle(inbound).await;
                drop(permit);
            });
        }
    }

    /// Handles one item of the stream.
    pub async fn handle(&self, inbound: Inbound) {
        match inbound {
            Inbound::Stanza(element) => self.handle_stanza(element).await,
            Inbound::Refused(refused) => self.refuse(refused).await,
        }
    }

    async fn handle_stanza(&self, element: Element) {
        let Some(sender) = element.attr("from").and_then(|from| BareJid::parse(from).ok()) else {
            // Prosody stamps every stanza it routes with a valid `from`.
            self.status.add(Counter::StanzasDropped, 1);
            return;
        };
        // The rate for any stanza was applied at its head, in the stream (`limits::gate`).
        if element.name() == "iq" && matches!(element.attr("type"), Some("result" | "error")) {
            let id = element.attr("id").unwrap_or_default().to_owned();
            if !self.requests.answer(element) {
                self.status.add(Counter::UnmatchedAnswers, 1);
                tracing::debug!(from = %sender, id, "an IQ answer no request of ours waits for (late, or not from whom we asked)");
            }
            return;
        }
        match element.name() {
            "iq" => self.handle_iq(element, &sender).await,
            "presence" => self.handle_presence(&element).await,
            "message" => self.handle_message(&element).await,
            _ => self.status.add(Counter::StanzasDropped, 1),
        }
    }

    /// Answers an IQ get or set with an error.
    pub(super) async fn answer_error(&self, iq: &Element, error: &StanzaError) {
        let (Some(from), Some(id)) = (attr(iq, "from"), attr(iq, "id")) else {
            self.status.add(Counter::StanzasDropped, 1);
            return;
        };
        self.send(iq_error(&self.jid(), &from, &id, error)).await;
    }

    /// The limits on senders, shared with the stream's gate.
    pub fn sender_limits(&self) -> Arc<SenderLimits> {
        Arc::clone(&self.limits)
    }

    /// A stanza over a bound or its sender's rate: IQ gets and sets are answered, everything
    /// else is counted.
    async fn refuse(&self, refused: Refused) {
        let Refused { head, bound } = refused;
        let answerable = head.name == "iq" && matches!(head.stanza_type.as_deref(), Some("get" | "set"));
        let (counter, error) = match bound {
            Bound::Rate => (Counter::RateLimited, StanzaError::rate_limited()),
            _ => {
                tracing::debug!(from = ?head.from, stanza = %head.name, bound = bound.as_str(), "refused a stanza over a bound");
                (Counter::StanzasRefused, over_bound(bound))
            }
        };
        match (answerable, head.from, head.id) {
            (true, Some(from), Some(id)) => {
                self.status.add(counter, 1);
                self.send(iq_error(&self.jid(), &from, &id, &error)).await;
            }
            (false, ..) if bound == Bound::Rate => self.status.add(Counter::RateLimited, 1),
            _ => self.status.add(Counter::StanzasDropped, 1),
        }
    }

    async fn handle_iq(&self, iq: Element, sender: &BareJid) {
        let iq_type = attr(&iq, "type").unwrap_or_default();
        if attr(&iq, "id").is_none() {
            // RFC 6120 §8.1.3: an IQ without an id cannot be answered.
            self.status.add(Counter::StanzasDropped, 1);
            return;
        }
        if iq_type != "get" && iq_type != "set" {
            return self.answer_error(&iq, &bad_request("the IQ type must be get, set, result or error")).await;
        }
        let mut children = iq.children();
        let (Some(child), None) = (children.next(), children.next()) else {
            return self.answer_error(&iq, &bad_request("an IQ get or set carries exactly one child element")).await;
        };
        if child.is("pubsub", PUBSUB_NS) {
            return self.handle_pubsub(&iq, sender, child).await;
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
            ("keys", KEYS_NS, "get") => Ok(Some(keys_to_element(&self.ledger.published_keys()))),
            ("rotation", KEYS_NS, "set") => match self.admit_incident(sender) {
                Ok(()) => self.handle_rotation(sender, child).await,
                Err(error) => Err(error),
            },
            // Each wrapper takes its own incident token.
            ("batch", BATCH_NS, "set") => self.handle_batch(sender, child).await,
            (_, INCIDENT_NS, _) => match self.admit_incident(sender) {
                Ok(()) => self.handle_incident(sender, &iq_type, child).await,
                Err(error) => Err(error),
            },
            ("score", REPUTATION_NS, "get") => match self.buddy(sender).await {
                Ok(Some(_)) => self.score(child).await,
                Ok(None) => Err(StanzaError::not_buddy()),
                Err(error) => Err(error),
            },
            _ => Err(service_unavailable()),
        };
        let (from, id) = (attr(&iq, "from").unwrap_or_default(), attr(&iq, "id").unwrap_or_default());
        let reply = match answer {
            Ok(payload) => iq_result(&self.jid(), &from, &id, payload),
            Err(error) => {
                self.note_refusal(sender, &error).await;
                iq_error(&self.jid(), &from, &id, &error)
            }
        };
        self.send(reply).await;
    }

    /// Counts and logs a refusal: of a stanza, or of one wrapper of a batch. A buddy's means a
    /// misconfiguration on one side (a key it did not announce, a clock off): WARN. A
    /// stranger's only DEBUG, so that a flood of them cannot flood the log too.
    pub(super) async fn note_refusal(&self, sender: &BareJid, error: &StanzaError) {
        let (condition, app, text) = (error.condition, error.app_condition.unwrap_or(""), &error.text);
        if matches!(self.buddy(sender).await, Ok(Some(_))) {
            self.status.count_peer(&sender.to_string(), PeerEvent::Refused);
            tracing::warn!(peer = %sender, condition, app, text, "refused a buddy's stanza");
        } else {
            tracing::debug!(sender = %sender, condition, app, text, "refused a stranger's stanza");
        }
    }

    /// The rate for stanzas that may verify a signature or write a transaction.
    pub(super) fn admit_incident(&self, sender: &BareJid) -> Result<(), StanzaError> {
        if self.limits.admit(sender, Traffic::Incident, Instant::now()) {
            Ok(())
        } else {
            self.status.add(Counter::RateLimited, 1);
            Err(StanzaError::rate_limited())
        }
    }

    /// Fails every IQ still waiting for an answer, so its sender retries at once (called when
    /// the link comes back: answers to stanzas sent before may have been lost with it).
    pub async fn run_link_resets(self: Arc<Self>, mut online: watch::Receiver<u64>, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                changed = online.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let waiting = self.requests.reset();
                    if waiting > 0 {
                        tracing::info!(requests = waiting, "link re-established; retrying unanswered requests");
                    }
                }
                _ = stop.changed() => return,
            }
        }
    }
}

#[cfg(test)]
#[path = "node_tests.rs"]
mod tests;
