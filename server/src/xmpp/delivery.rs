//! Delivery: the outbox, one queue per peer.
//!
//! A dispatcher finds the peers with rows due and starts one queue task for each that has
//! none running (a commit that queues rows wakes it at once). Each queue delivers its peer's
//! rows, fresh rows before retries, with bounded concurrency and a timeout per IQ, and ends
//! when nothing of its peer is due. So a slow, silent or flooding peer holds only its own
//! queue: buddies have their own slots, and peers that are not buddies (requests waiting for
//! our operator, revoked peers) share a small pool, one row at a time each, with a short timeout.
//!
//! A buddy's signed reports go several to an IQ (a batch, spec/protocol.md), each signed as
//! if alone, so a burst costs a few round trips instead of one each; a peer that does not know
//! batches gets them one by one for the rest of the run.
//!
//! **Invariant:** a row leaves the queue only when the peer confirmed it (an IQ result), it
//! expired, or its relation ended; a failure schedules a retry with backoff and jitter.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt as _;
use minidom::Element;
use ostracon_protocol::envelope::{self, Nonce};
use ostracon_protocol::ids::{BareJid, IncidentId};
use ostracon_protocol::incident::{ReportClaim, RequestClaim, ResponseClaim};
use ostracon_protocol::keys::KeyRotation;
use ostracon_protocol::limits::{MAX_BATCH_BYTES, MAX_BATCH_ELEMENTS, MAX_BATCH_ITEMS};
use ostracon_protocol::xml::batch::{self, BATCH_NS, ItemOutcome};
use ostracon_protocol::xml::keys::rotation_to_element;
use ostracon_protocol::xml::reputation::Score;
use ostracon_protocol::xml::xep0268::IncidentPayload;
use ostracon_store::model::{OutboxItem, OutboxJob, PeerState, Verb};
use ostracon_store::traits::{IncidentStore as _, OutboxStore as _, PeerStore as _};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

use super::connection::PeerEvent;
use super::node::{IQ_TIMEOUT, XmppNode};
use super::stanza::STANZA_NS;
use crate::error::ServerError;

/// An outbox item still undelivered this long after it was queued is marked failed: a buddy
/// down for two weeks gets a fresh start (it can inquire) rather than a backlog.
pub(super) const GIVE_UP_AFTER_SECS: i64 = 14 * 86_400;
/// Longest wait between two delivery attempts.
const MAX_RETRY_SECS: u64 = 3_600;
/// IQs in flight to one buddy at once.
const BUDDY_IN_FLIGHT: usize = 8;
/// IQs in flight to all peers that are not buddies together (one each at most).
const STRANGERS_IN_FLIGHT: usize = 16;
/// How long a peer that is not a buddy gets to answer.
const STRANGER_TIMEOUT: Duration = Duration::from_secs(10);
/// IQs in flight to one buddy while its reports go in batches: few, so that under a burst
/// the rows queued during one round trip leave together in the next batch, while a lone
/// report still leaves at once.
const BATCHES_IN_FLIGHT: usize = 2;
/// Rows of one peer read at a time when its reports go in batches.
const BATCHED_READ: usize = BATCHES_IN_FLIGHT * MAX_BATCH_ITEMS;
/// Most peers the dispatcher starts queues for in one pass.
const PEERS_PER_PASS: u32 = 10_000;
/// How often the dispatcher looks for retries that came due.
const POLL: Duration = Duration::from_millis(500);

/// The queues running, each with the bell that tells it new rows are due.
#[derive(Debug, Default)]
struct Queues(Mutex<BTreeMap<BareJid, Arc<Notify>>>);

impl Queues {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<BareJid, Arc<Notify>>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Rings the peer's running queue, or returns a bell for a new queue to start.
    fn ring_or_start(&self, peer: &BareJid) -> Option<Arc<Notify>> {
        let mut queues = self.lock();
        if let Some(bell) = queues.get(peer) {
            bell.notify_one();
            return None;
        }
        let bell = Arc::new(Notify::new());
        queues.insert(peer.clone(), Arc::clone(&bell));
        Some(bell)
    }

    /// Ends the peer's queue unless its bell rang since it last looked: the check and the
    /// removal happen under the lock the dispatcher rings under, so no ring is lost.
    fn finish(&self, peer: &BareJid, bell: &Notify) -> bool {
        let mut queues = self.lock();
        if bell.notified().now_or_never().is_some() {
            return false;
        }
        queues.remove(peer);
        true
    }
}

/// How one peer's rows are delivered.
#[derive(Clone, Copy, Debug)]
struct Shape {
    in_flight: usize,
    timeout: Duration,
    stranger: bool,
}

impl XmppNode {
    /// Delivers due outbox items until `stop` turns true.
    pub async fn run_outbox(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let queues = Arc::new(Queues::default());
        let strangers = Arc::new(Semaphore::new(STRANGERS_IN_FLIGHT));
        loop {
            // Registered before reading, so a row queued while we read is not missed.
            let queued = self.ledger.outbox_queued();
            match self.ledger.store().peers_with_due_work(self.env.now(), PEERS_PER_PASS).await {
                Ok(peers) => {
                    for peer in peers {
                        if let Some(bell) = queues.ring_or_start(&peer) {
                            let (node, queues, strangers) =
                                (Arc::clone(&self), Arc::clone(&queues), Arc::clone(&strangers));
                            tokio::spawn(node.run_queue(peer, bell, queues, strangers));
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "reading the outbox failed"),
            }
            tokio::select! {
                _ = queued => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// How this peer's rows go out: buddies and peers our operator asked get their own slots
    /// and the full timeout; everyone else one row at a time from the shared pool.
    async fn shape(&self, peer: &BareJid) -> Shape {
        let state = self.ledger.store().peer(peer).await.ok().flatten().map(|p| p.state);
        match state {
            Some(PeerState::Buddy | PeerState::Requested) => {
                Shape { in_flight: BUDDY_IN_FLIGHT, timeout: IQ_TIMEOUT, stranger: false }
            }
            _ => Shape { in_flight: 1, timeout: STRANGER_TIMEOUT, stranger: true },
        }
    }

    /// One peer's queue: delivers its due rows until none is left.
    async fn run_queue(
        self: Arc<Self>,
        peer: BareJid,
        bell: Arc<Notify>,
        queues: Arc<Queues>,
        strangers: Arc<Semaphore>,
    ) {
        let shape = self.shape(&peer).await;
        // Strangers get no reports, so batches are for buddies; cleared for the rest of the
        // run if the peer does not know them.
        let batches = Arc::new(AtomicBool::new(!shape.stranger));
        let mut in_flight: JoinSet<Vec<i64>> = JoinSet::new();
        let mut active: BTreeSet<i64> = BTreeSet::new();
        loop {
            let batching = batches.load(Ordering::Acquire);
            let slots = if batching { BATCHES_IN_FLIGHT } else { shape.in_flight };
            if in_flight.len() < slots {
                let read = if batching { BATCHED_READ } else { shape.in_flight };
                let wanted = u32::try_from(read + active.len()).unwrap_or(u32::MAX);
                let due = match self.ledger.store().due_for(&peer, self.env.now(), wanted).await {
                    Ok(due) => due,
                    Err(error) => {
                        tracing::warn!(%error, %peer, "reading the peer's outbox failed");
                        Vec::new()
                    }
                };
                let free = slots - in_flight.len();
                let fresh = due.into_iter().filter(|item| !active.contains(&item.id));
                for group in groups(fresh, if batching { MAX_BATCH_ITEMS } else { 1 }).into_iter().take(free) {
                    active.extend(group.iter().map(|item| item.id));
                    let (node, strangers, batches) = (Arc::clone(&self), Arc::clone(&strangers), Arc::clone(&batches));
                    in_flight.spawn(async move {
                        let _permit = if shape.stranger { strangers.acquire_owned().await.ok() } else { None };
                        match group.as_slice() {
                            [item] => node.deliver(item, shape.timeout).await,
                            _ => node.deliver_batch(&group, shape.timeout, &batches).await,
                        }
                        group.iter().map(|item| item.id).collect()
                    });
                }
            }
            if in_flight.is_empty() {
                if queues.finish(&peer, &bell) {
                    return;
                }
                continue;
            }
            tokio::select! {
                Some(done) = in_flight.join_next() => {
                    for id in done.unwrap_or_default() {
                        active.remove(&id);
                    }
                }
                () = bell.notified() => {}
            }
        }
    }

    async fn deliver(&self, item: &OutboxItem, timeout: Duration) {
        let outcome = match &item.job {
            OutboxJob::Presence { presence } => {
                self.send(presence.to_stanza(&self.settings.jid, &item.peer, STANZA_NS)).await;
                Ok(())
            }
            OutboxJob::FetchKeys { approve } => self.fetch_keys(item, *approve, timeout).await,
            OutboxJob::Probe => self.probe(item, timeout).await,
            OutboxJob::Report { incident } => self.deliver_signed(item, incident, Verb::Report, timeout).await,
            OutboxJob::Request { incident } => self.deliver_signed(item, incident, Verb::Request, timeout).await,
            OutboxJob::Response { incident } => self.deliver_signed(item, incident, Verb::Response, timeout).await,
            OutboxJob::Inquiry { incident } => {
                let payload = IncidentPayload::Inquiry { id: incident.clone() };
                self.request(&item.peer, payload.iq_type(), payload.to_element(), timeout).await.map(drop)
            }
            OutboxJob::Forward { incident } => self.deliver_forward(item, incident, timeout).await,
            OutboxJob::ScoreQuery { subject } => self.ask_score(item, subject, timeout).await,
            OutboxJob::Rotation { links, .. } => match envelope::Unverified::<KeyRotation>::new(links.clone()) {
                Ok(claim) => self.request(&item.peer, "set", rotation_to_element(&claim), timeout).await.map(drop),
                Err(error) => Err(error.into()),
            },
        };
        self.record_outcomes(vec![(item, outcome)]).await;
    }

    /// Delivers a group of one peer's reports and forwards in batches: each signed as if
    /// alone, packed into IQs within the batch limits, and each row's outcome is its
    /// wrapper's. A peer that answers a batch with `service-unavailable` (the answer to a
    /// payload it does not serve) gets this group and the rest of the run one by one.
    pub(super) async fn deliver_batch(&self, group: &[OutboxItem], timeout: Duration, batches: &AtomicBool) {
        let mut outcomes = Vec::with_capacity(group.len());
        // Packed in order, each pack within the batch limits (a wrapper over them goes alone).
        let mut packs: Vec<Vec<(&OutboxItem, Element)>> = Vec::new();
        let (mut bytes, mut elements) = (0, 0);
        // Only reports and forwards are grouped; anything else would go alone.
        let mut alone = Vec::new();
        for item in group {
            let wrapper = match self.report_wrapper(item).await {
                Some(Ok(wrapper)) => wrapper,
                Some(Err(error)) => {
                    outcomes.push((item, Err(error)));
                    continue;
                }
                None => {
                    alone.push(item);
                    continue;
                }
            };
            let (size, count) = (String::from(&wrapper).len(), element_count(&wrapper));
            match packs.last_mut() {
                Some(pack) if bytes + size <= MAX_BATCH_BYTES && elements + count <= MAX_BATCH_ELEMENTS => {
                    pack.push((item, wrapper));
                    (bytes, elements) = (bytes + size, elements + count);
                }
                _ => {
                    packs.push(vec![(item, wrapper)]);
                    (bytes, elements) = (size, count);
                }
            }
        }
        let sent = futures_util::future::join_all(packs.into_iter().map(|pack| async move {
            let (items, wrappers): (Vec<&OutboxItem>, Vec<Element>) = pack.into_iter().unzip();
            let answer = self.request(&items[0].peer, "set", batch::to_element(wrappers), timeout).await;
            (items, answer)
        }))
        .await;
        let mut unbatched = alone;
        for (items, answer) in sent {
            match answer.and_then(|answer| batch_outcomes(&answer, items.len())) {
                Ok(results) => outcomes.extend(items.into_iter().zip(results)),
                Err(ServerError::Answered { condition, app: None }) if condition == "service-unavailable" => {
                    if batches.swap(false, Ordering::AcqRel) {
                        tracing::info!(peer = %items[0].peer, "the peer does not take batches; delivering one by one");
                    }
                    unbatched.extend(items);
                }
                Err(error) => {
                    let cause = Arc::new(error);
                    let failed = |item| (item, Err(ServerError::BatchFailed { cause: Arc::clone(&cause) }));
                    outcomes.extend(items.into_iter().map(failed));
                }
            }
        }
        self.record_outcomes(outcomes).await;
        futures_util::future::join_all(unbatched.into_iter().map(|item| self.deliver(item, timeout))).await;
    }

    /// Records what became of delivered rows: the confirmed ones in one statement, each
    /// failure with its retry.
    async fn record_outcomes(&self, outcomes: Vec<(&OutboxItem, Result<(), ServerError>)>) {
        let now = self.env.now();
        // Tallied per peer for buddies only: strangers come and go, and their names would be
        // labels anyone can mint (they are in the link-wide counters).
        let buddy = match outcomes.first() {
            Some((item, _)) => matches!(self.buddy(&item.peer).await, Ok(Some(_))),
            None => return,
        };
        let mut delivered = Vec::new();
        for (item, outcome) in outcomes {
            let event = if outcome.is_ok() { PeerEvent::Delivered } else { PeerEvent::Failed };
            if buddy {
                self.status.count_peer(&item.peer.to_string(), event);
            }
            let Err(error) = outcome else {
                delivered.push(item.id);
                continue;
            };
            let attempts = item.attempts.saturating_add(1);
            let expired = now.unix() - item.created_at.unix() > GIVE_UP_AFTER_SECS;
            let jitter = f64::from(self.env.random_bytes()[0]) / 255.0;
            let next = (!expired).then(|| now.plus_secs(retry_delay_secs(attempts, jitter)));
            tracing::warn!(peer = %item.peer, kind = item.job.kind(), attempts, %error, "outbox delivery failed");
            if let Err(error) = self.ledger.outbox_failed(item.id, &error.to_string(), next).await {
                tracing::warn!(%error, "updating the outbox failed");
            }
        }
        if let Err(error) = self.ledger.outbox_delivered(&delivered, now).await {
            tracing::warn!(%error, "updating the outbox failed");
        }
    }

    /// The signed `<report/>` a report or forward row sends; `None` for other rows.
    async fn report_wrapper(&self, item: &OutboxItem) -> Option<Result<Element, ServerError>> {
        Some(match &item.job {
            OutboxJob::Report { incident } => self.signed_payload(incident, Verb::Report).await.map(|p| p.to_element()),
            OutboxJob::Forward { incident } => self.forward_payload(incident).await.map(|p| p.to_element()),
            _ => return None,
        })
    }

    /// Signs a stored incident as a report, request or response and sends it. Signed at
    /// delivery time, so a delivery delayed by an outage still has a fresh timestamp.
    async fn deliver_signed(
        &self,
        item: &OutboxItem,
        id: &IncidentId,
        verb: Verb,
        timeout: Duration,
    ) -> Result<(), ServerError> {
        let payload = self.signed_payload(id, verb).await?;
        self.request(&item.peer, payload.iq_type(), payload.to_element(), timeout).await.map(drop)
    }

    /// A stored incident signed now as a report, request or response.
    async fn signed_payload(&self, id: &IncidentId, verb: Verb) -> Result<IncidentPayload, ServerError> {
        let record = self.ledger.store().incident(id).await?.ok_or(ServerError::Gone { what: "the incident" })?;
        let (signer, now, nonce) = (&self.settings.jid, self.env.now(), self.nonce());
        // Read at each delivery: a key rotation switches every signer at once.
        let key = self.ledger.signing_key();
        let incident = record.incident;
        let payload = match verb {
            Verb::Report => IncidentPayload::Report {
                signed: Some(envelope::sign(&ReportClaim(incident.clone()), &key, signer, now, nonce)?),
                incident,
            },
            Verb::Request => IncidentPayload::Request {
                signed: Some(envelope::sign(&RequestClaim(incident.clone()), &key, signer, now, nonce)?),
                incident,
            },
            Verb::Response => IncidentPayload::Response {
                signed: Some(envelope::sign(&ResponseClaim(incident.clone()), &key, signer, now, nonce)?),
                incident,
            },
        };
        Ok(payload)
    }

    /// Forwards a stored, verified report: re-verifies its chain with today's pinned keys,
    /// adds our link (signed now) and sends it.
    async fn deliver_forward(&self, item: &OutboxItem, id: &IncidentId, timeout: Duration) -> Result<(), ServerError> {
        let payload = self.forward_payload(id).await?;
        self.request(&item.peer, "set", payload.to_element(), timeout).await.map(drop)
    }

    /// A stored, verified report with our forward link added, signed now.
    async fn forward_payload(&self, id: &IncidentId) -> Result<IncidentPayload, ServerError> {
        let record = self.ledger.store().incident(id).await?.ok_or(ServerError::Gone { what: "the incident" })?;
        let links = record.provenance.ok_or(ServerError::Gone { what: "the report's provenance" })?;
        let peers = self.peers().await.map_err(|_| ServerError::Gone { what: "the peer table" })?;
        peers.keys().check_validity(&links).map_err(|_| ServerError::Gone { what: "a key of the chain" })?;
        let now = self.env.now();
        let verified =
            envelope::Unverified::<ReportClaim>::new(links)?.verify_stored(peers.keys(), &self.verify_policy(now))?;
        let chain = verified.forward(&self.ledger.signing_key(), &self.settings.jid, now, self.nonce())?;
        Ok(IncidentPayload::Report { incident: record.incident, signed: Some(chain) })
    }

    /// Asks a buddy its XEP-0275 score for a subject and keeps the answer.
    async fn ask_score(&self, item: &OutboxItem, subject: &BareJid, timeout: Duration) -> Result<(), ServerError> {
        let answer = match self.request(&item.peer, "get", Score::query(subject.clone()).to_element(), timeout).await {
            Ok(answer) => answer,
            // "No score" is an answer, not a failure to retry.
            Err(ServerError::Answered { condition, .. }) if condition == "item-not-found" => return Ok(()),
            Err(error) => return Err(error),
        };
        let score = Score::from_element(answer.children().next().ok_or(ServerError::BadAnswer("empty score answer"))?)?;
        let num = score.num.ok_or(ServerError::BadAnswer("a score answer without num"))?;
        if &score.jid != subject {
            return Err(ServerError::BadAnswer("the answer is about another subject"));
        }
        let peer = item.peer.to_string();
        Ok(self.ledger.store().put_peer_score(&peer, &subject.to_string(), i64::from(num), self.env.now()).await?)
    }

    /// A fresh nonce from the environment's randomness.
    fn nonce(&self) -> Nonce {
        let random = self.env.random_bytes();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&random[..16]);
        Nonce::from_bytes(&bytes)
    }
}

/// Due rows in groups of at most `size` in the order given: consecutive reports and forwards
/// together, every other row alone.
fn groups(due: impl Iterator<Item = OutboxItem>, size: usize) -> Vec<Vec<OutboxItem>> {
    let batchable = |item: &OutboxItem| matches!(item.job, OutboxJob::Report { .. } | OutboxJob::Forward { .. });
    let mut groups: Vec<Vec<OutboxItem>> = Vec::new();
    for item in due {
        // A group holds rows of one kind: it is batchable if its first row is.
        match groups.last_mut() {
            Some(group) if group.len() < size && batchable(&item) && batchable(&group[0]) => group.push(item),
            _ => groups.push(vec![item]),
        }
    }
    groups
}

/// The outcome of each of `sent` wrappers from a batch's IQ result.
fn batch_outcomes(answer: &Element, sent: usize) -> Result<Vec<Result<(), ServerError>>, ServerError> {
    let batch =
        answer.get_child("batch", BATCH_NS).ok_or(ServerError::BadAnswer("a batch answer without its items"))?;
    let outcomes = batch::answer_from_element(batch, sent)?;
    Ok(outcomes
        .into_iter()
        .map(|outcome| match outcome {
            ItemOutcome::Done => Ok(()),
            ItemOutcome::Refused { condition, app } => Err(ServerError::Answered { condition, app }),
        })
        .collect())
}

/// Elements in `root`, itself included (a wrapper's share of a stanza's element bound).
fn element_count(root: &Element) -> usize {
    let mut stack = vec![root];
    let mut count = 0;
    while let Some(element) = stack.pop() {
        count += 1;
        stack.extend(element.children());
    }
    count
}

/// Seconds until the next delivery attempt: doubling from 1 s up to an hour, times a jitter
/// factor in 0.5..1.5 so retries after an outage do not arrive in lockstep.
pub(super) fn retry_delay_secs(attempts: u32, jitter: f64) -> i64 {
    let base = 1u64 << attempts.min(12);
    let delay = (base.min(MAX_RETRY_SECS) as f64 * (0.5 + jitter.clamp(0.0, 1.0))).round() as i64;
    delay.max(1)
}
