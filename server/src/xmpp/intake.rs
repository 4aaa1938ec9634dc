//! Intake: what peers send us about incidents. XEP-0268 reports, requests, responses and
//! inquiries from buddies, reports several at a time in a batch, and users' XEP-0377
//! reports relayed by our server or a buddy.
//!
//! **Invariant:** a report's content is used only after `Unverified::verify` succeeded with
//! the keys pinned for buddies, the last signer is the peer that delivered it, and the peer's
//! trust allows it; everything else is refused with a defined error condition. What is
//! accepted goes to the group committer, which stores it with the ledger.

use minidom::Element;
use ostracon_protocol::envelope;
use ostracon_protocol::error::Excerpt;
use ostracon_protocol::ids::{BareJid, Domain, Offender};
use ostracon_protocol::incident::{ReportClaim, RequestClaim, ResponseClaim};
use ostracon_protocol::xml::batch;
use ostracon_protocol::xml::errors::StanzaError;
use ostracon_protocol::xml::reporting::ForwardedReport;
use ostracon_protocol::xml::xep0268::{INCIDENT_NS, IncidentPayload};
use ostracon_store::ledger;
use ostracon_store::model::{Decision, IncidentOrigin, OutboxJob, PeerRecord, Trust, Verb};
use ostracon_store::reputation;
use ostracon_store::traits::IncidentStore as _;

use super::group_commit::{Outcome, Received};
use super::node::{XmppNode, service_unavailable};

/// How old a stored standing may be and still be used as it is. Every fact rescores its
/// domain in the fact's own transaction, so a stored score is never behind the facts; what
/// it can miss is what is not a fact (a buddy's new XEP-0275 opinion, the relation's age),
/// and that may lag by this long. Older rows are recomputed from the facts.
pub(super) const STANDING_TTL_SECS: i64 = 60;

/// A buddy's standing as a reporter when its report arrives (spec/reputation.md).
#[derive(Clone, Copy, Debug)]
pub(super) struct Standing {
    /// Its domain's score from the facts we hold.
    pub(super) score: i64,
    /// The weight its accepted reports get, in thousandths (0: ignored).
    pub(super) weight_milli: i64,
}

impl XmppNode {
    pub(super) async fn handle_incident(
        &self,
        sender: &BareJid,
        iq_type: &str,
        child: &Element,
    ) -> Result<Option<Element>, StanzaError> {
        // Strangers are refused before anything of theirs is parsed.
        let peer = self.buddy(sender).await?.ok_or_else(StanzaError::not_buddy)?;
        let payload = IncidentPayload::from_element(child).map_err(|e| StanzaError::from_error(&e))?;
        if payload.iq_type() != iq_type {
            let error = ostracon_protocol::Error::InvalidValue { field: "iq type", value: Excerpt::new(iq_type) };
            return Err(StanzaError::from_error(&error));
        }
        let now = self.env.now();
        let from = sender.to_string();
        let from = from.as_str();
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
                let record = self.ledger.store().incident(&id).await.map_err(|_| service_unavailable())?;
                // Only about reports we shared with this peer: an id is no key to what our
                // operator kept to themselves.
                let shared = match &record {
                    Some(record) if record.origin == IncidentOrigin::Local && record.share => {
                        self.ledger.store().report_shared_with(from, &id).await.map_err(|_| service_unavailable())?
                    }
                    _ => false,
                };
                match record {
                    Some(record) if shared && record.verb == Verb::Report => {
                        // Once per asker and incident while it waits: repeats queue nothing more.
                        self.ledger
                            .enqueue_once(sender, &OutboxJob::Report { incident: id }, now)
                            .await
                            .map_err(|_| service_unavailable())?;
                        Ok(None)
                    }
                    _ => Err(StanzaError::unknown_incident()),
                }
            }
            IncidentPayload::Report { signed: Some(chain), .. } => {
                let claim = self.verify_from(chain, &peer.jid, now).await?;
                let (links, ReportClaim(claim)) = (claim.links().to_vec(), claim.into_parts().0);
                let (mut decision, mut reason) = accept(peer.trust);
                let mut weight_milli = standing.weight_milli;
                // A forwarded report counts only if we also trust the node that first issued
                // it, and weighs what the weaker of the two weighs here: a forwarder cannot
                // lend its trust to another's report.
                if links.len() > 1 && decision == Decision::Accepted {
                    let origin = self.buddy(&links[0].signer).await?.filter(|o| o.trust != Trust::Observe);
                    let origin_weight = match &origin {
                        Some(origin) => self.reporter_standing(origin, now).await?.weight_milli,
                        None => 0,
                    };
                    weight_milli = weight_milli.min(origin_weight);
                    if weight_milli == 0 {
                        (decision, reason) = (Decision::Ignored, Some("forwarded from an issuer we do not trust"));
                    }
                }
                let forward_to =
                    if decision == Decision::Accepted && links.len() <= usize::from(self.settings.forward_hops) {
                        self.peers().await?.forward_targets(&links)
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
                    (weight_milli, None),
                    &forward_to,
                    now,
                )
                .await
            }
            IncidentPayload::Response { signed: Some(chain), .. } => {
                let claim = self.verify_from(chain, &peer.jid, now).await?;
                let (links, ResponseClaim(claim)) = (claim.links().to_vec(), claim.into_parts().0);
                let (decision, reason) = accept(peer.trust);
                // The first answer to a request our operator sent this peer, within its
                // deadline, carries our operator's weight for what the peer is authoritative
                // for (its own users and their IPs; the ledger decides which offenders and
                // whether it is the first): we asked that server, and it answered under its
                // signature (spec/reputation.md). Everything else is the peer's report.
                let asked_at = match &claim.related {
                    Some(request) => {
                        self.ledger.store().request_sent_at(from, request).await.map_err(|_| service_unavailable())?
                    }
                    None => None,
                };
                let deadline = self.settings.reputation.request_deadline_secs;
                let in_time = asked_at.is_some_and(|at| now.unix() - at.unix() <= deadline);
                let authority = (in_time && standing.weight_milli > 0).then_some(ledger::LOCAL_WEIGHT_MILLI);
                self.store_remote(
                    &claim,
                    Verb::Response,
                    from,
                    IncidentOrigin::Peer,
                    Some(&links),
                    (decision, reason),
                    (standing.weight_milli, authority),
                    &[],
                    now,
                )
                .await
            }
            IncidentPayload::Request { signed: Some(chain), .. } => {
                let claim = self.verify_from(chain, &peer.jid, now).await?;
                let (links, RequestClaim(claim)) = (claim.links().to_vec(), claim.into_parts().0);
                let reason = Some("request: waits for the operator to confirm and answer");
                self.store_remote(
                    &claim,
                    Verb::Request,
                    from,
                    IncidentOrigin::Peer,
                    Some(&links),
                    (Decision::Pending, reason),
                    (0, None),
                    &[],
                    now,
                )
                .await
            }
            IncidentPayload::Report { incident, signed: None }
            | IncidentPayload::Request { incident, signed: None }
            | IncidentPayload::Response { incident, signed: None } => {
                // Plain XEP-0268 (as Metronome sends): kept for the operator, never treated as signed.
                // Only under its own name: a parent domain would let it squat ids (F-3.4).
                if peer.jid.domain() != incident.id.issuer() {
                    let error = ostracon_protocol::Error::SignerMismatch {
                        signer: Excerpt::new(from),
                        claimed: Excerpt::new(&incident.id.to_string()),
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
                    (0, None),
                    &[],
                    now,
                )
                .await
            }
        }
    }

    /// A batch of reports (spec/protocol.md, Batches): the sender must be a buddy; then each
    /// wrapper is handled as if it had come alone, with its own incident token, all side by
    /// side so that their incidents share the group commit; the answer gives each its outcome.
    pub(super) async fn handle_batch(&self, sender: &BareJid, batch: &Element) -> Result<Option<Element>, StanzaError> {
        self.buddy(sender).await?.ok_or_else(StanzaError::not_buddy)?;
        let wrappers = batch::wrappers_of(batch).map_err(|e| StanzaError::from_error(&e))?;
        let outcomes = futures_util::future::join_all(wrappers.into_iter().map(|wrapper| async move {
            if !wrapper.is("report", INCIDENT_NS) {
                let error = ostracon_protocol::Error::UnexpectedElement {
                    name: Excerpt::new(wrapper.name()),
                    namespace: Excerpt::new(&wrapper.ns()),
                    expected: "a report in urn:xmpp:incident:2",
                };
                return Some(StanzaError::from_error(&error));
            }
            match self.admit_incident(sender) {
                Ok(()) => self.handle_incident(sender, "set", wrapper).await.err(),
                Err(error) => Some(error),
            }
        }))
        .await;
        // Each refused wrapper is counted and logged as a refused stanza would be.
        for error in outcomes.iter().flatten() {
            self.note_refusal(sender, error).await;
        }
        Ok(Some(batch::answer_to_element(&outcomes)))
    }

    /// Records a received incident with our decision, queueing any forwards with it.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn store_remote(
        &self,
        incident: &ostracon_protocol::incident::Incident,
        verb: Verb,
        from: &str,
        origin: IncidentOrigin,
        provenance: Option<&[envelope::SignedEnvelope]>,
        (decision, decision_reason): (Decision, Option<&str>),
        (weight_milli, authority_milli): (i64, Option<i64>),
        forward_to: &[String],
        now: ostracon_protocol::time::Timestamp,
    ) -> Result<Option<Element>, StanzaError> {
        let category =
            |weight| reputation::contribution_weight(weight, incident.category.as_str(), &self.settings.reputation);
        let (weight_milli, authority_milli) = if decision == Decision::Accepted {
            (category(weight_milli), authority_milli.map(category))
        } else {
            (0, None)
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
            authority_milli,
            forward_to: forward_to.to_vec(),
            now,
        };
        match self.committer.record(received).await {
            Outcome::Recorded => {}
            Outcome::Duplicate => {
                tracing::debug!(peer = %from, incident = %incident.id, "repeated delivery");
                return Ok(None);
            }
            Outcome::Failed => return Err(service_unavailable()),
        }
        tracing::info!(peer = %from, incident = %incident.id, %verb, %decision, forwards = forward_to.len(), "incident received");
        Ok(None)
    }

    /// A buddy's standing as a reporter: its server domain's reporter score (the stored one,
    /// one indexed row, when it is recent; else computed from the facts we hold), and the
    /// weight that gives its reports (spec/reputation.md, Reporter weight).
    pub(super) async fn reporter_standing(
        &self,
        peer: &PeerRecord,
        now: ostracon_protocol::time::Timestamp,
    ) -> Result<Standing, StanzaError> {
        let params = &self.settings.reputation;
        // A component speaks for its server: the server's score is the peer's standing.
        let server =
            Domain::parse(reputation::server_domain(peer.jid.domain().as_str())).map_err(|_| service_unavailable())?;
        let unavailable = |error: ostracon_store::StoreError| {
            tracing::warn!(%error, "reading a peer's reputation failed");
            service_unavailable()
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

    /// Takes a user's XEP-0377 report relayed in the mod_report_forward shape: from our own
    /// server, or from a buddy when the user allowed forwarding to the offender's server
    /// (`report-origin`, and we are that server) or to third parties. It becomes an incident
    /// waiting for the operator; nothing is listed until they accept it.
    pub(super) async fn handle_message(&self, element: &Element) {
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
        let from_buddy = matches!(self.buddy(&report.relayed_by).await, Ok(Some(_)));
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
                (0, None),
                &[],
                now,
            )
            .await;
    }

    /// Verifies a signed claim from `from`: signatures with the buddies' pinned keys, the
    /// window, replay, and that `from` signed last.
    pub(super) async fn verify_from<T: envelope::Claim>(
        &self,
        chain: envelope::Unverified<T>,
        from: &BareJid,
        now: ostracon_protocol::time::Timestamp,
    ) -> Result<envelope::Verified<T>, StanzaError> {
        let peers = self.peers().await?;
        peers.keys().check_validity(chain.links())?;
        let verified = {
            let mut replay = self.replay.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            chain.verify(peers.keys(), &mut *replay, &self.verify_policy(now))
        }
        .map_err(|error| {
            tracing::info!(peer = %from, %error, "refused a signed claim");
            StanzaError::from_error(&error)
        })?;
        if verified.last_signer() != from {
            let error = ostracon_protocol::Error::SignerMismatch {
                signer: Excerpt::new(&verified.last_signer().to_string()),
                claimed: Excerpt::new(&from.to_string()),
            };
            return Err(StanzaError::from_error(&error));
        }
        Ok(verified)
    }
}

/// The verb of an XEP-0268 wrapper element.
fn verb_of(wrapper: &Element) -> Verb {
    match wrapper.name() {
        "request" => Verb::Request,
        "response" => Verb::Response,
        _ => Verb::Report,
    }
}
