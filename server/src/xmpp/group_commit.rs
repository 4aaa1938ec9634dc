//! Group commit for received incidents.
//!
//! Incoming stanzas are handled concurrently, but the ledger has a single writer, so under a
//! burst every handler would wait its turn for a transaction of its own. Instead, handlers
//! hand their verified incident to one task, which stores everything that queued up while
//! the previous commit ran in a single transaction (`Ledger::record_remote_many`). A report
//! that arrives alone is committed at once: grouping adds no wait, it only shares commits.

use std::sync::Arc;

use ostracon_protocol::envelope::SignedEnvelope;
use ostracon_protocol::incident::Incident;
use ostracon_protocol::time::Timestamp;
use ostracon_store::ledger::{Ledger, RemoteIncident};
use ostracon_store::model::{Decision, IncidentOrigin, Verb};
use tokio::sync::{mpsc, oneshot};

/// Most incidents stored in one transaction; bounds a transaction's size and how long the
/// writer lock is held.
const MAX_GROUP: usize = 256;
/// Incidents waiting for the committer; handlers wait when it is full (back-pressure).
const QUEUE: usize = 1_024;

/// A received incident with what the node decided, owned so it can cross to the committer.
#[derive(Debug)]
pub struct Received {
    pub incident: Incident,
    pub verb: Verb,
    pub from: String,
    pub origin: IncidentOrigin,
    pub provenance: Option<Vec<SignedEnvelope>>,
    pub decision: Decision,
    pub decision_reason: Option<String>,
    pub weight_milli: i64,
    /// Weight for what a responder is authoritative for (`RemoteIncident::authority_milli`).
    pub authority_milli: Option<i64>,
    pub forward_to: Vec<String>,
    pub now: Timestamp,
}

impl Received {
    fn as_remote(&self) -> RemoteIncident<'_> {
        RemoteIncident {
            incident: &self.incident,
            verb: self.verb,
            from: &self.from,
            origin: self.origin,
            provenance: self.provenance.as_deref(),
            decision: self.decision,
            decision_reason: self.decision_reason.as_deref(),
            weight_milli: self.weight_milli,
            authority_milli: self.authority_milli,
            forward_to: &self.forward_to,
        }
    }
}

/// How storing one incident ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Stored (and applied to the lists when accepted).
    Recorded,
    /// Already stored: a repeated delivery.
    Duplicate,
    /// The transaction failed (logged by the committer); nothing of the group was written,
    /// so the sender may deliver again.
    Failed,
}

/// The handle handlers use; the committer task ends when the last handle is dropped.
#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<(Received, oneshot::Sender<Outcome>)>,
}

impl GroupCommit {
    /// Starts the committer task on the current runtime.
    pub fn start(ledger: Arc<Ledger>) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(run(ledger, receiver));
        Self { queue }
    }

    /// Stores `received`, in a group with whatever else is waiting.
    pub async fn record(&self, received: Received) -> Outcome {
        let (reply, outcome) = oneshot::channel();
        if self.queue.send((received, reply)).await.is_err() {
            return Outcome::Failed;
        }
        outcome.await.unwrap_or(Outcome::Failed)
    }
}

async fn run(ledger: Arc<Ledger>, mut receiver: mpsc::Receiver<(Received, oneshot::Sender<Outcome>)>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while receiver.recv_many(&mut group, MAX_GROUP).await > 0 {
        let (received, replies): (Vec<Received>, Vec<oneshot::Sender<Outcome>>) = group.drain(..).unzip();
        // One time for the group: they arrived within one commit of each other.
        let Some(now) = received.iter().map(|r| r.now).max() else { continue };
        let remotes: Vec<RemoteIncident<'_>> = received.iter().map(Received::as_remote).collect();
        let outcomes = match ledger.record_remote_many(&remotes, now).await {
            Ok((_, recorded)) => {
                recorded.into_iter().map(|stored| if stored { Outcome::Recorded } else { Outcome::Duplicate }).collect()
            }
            Err(error) => {
                tracing::warn!(%error, incidents = received.len(), "storing received incidents failed");
                vec![Outcome::Failed; received.len()]
            }
        };
        tracing::debug!(incidents = received.len(), "group committed");
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            // The handler may have given up (its stanza timed out); the outcome stands.
            let _ = reply.send(outcome);
        }
    }
}
