//! The component's logic in process: stanzas in through `handle`, stanzas out through the
//! channel, a real SQLite store, no XMPP server. The real-server tests, with a hostile raw
//! component, are in `server/tests`.

use std::sync::Arc;

use ostracon_protocol::ids::Offender;
use ostracon_protocol::keys::{NodeKey, PublishedKey};
use ostracon_protocol::time::Timestamp;
use ostracon_protocol::xml::to_string;
use ostracon_protocol::xml::xep0268::{INCIDENT_NS, IncidentPayload};
use ostracon_store::clock::FixedEnvironment;
use ostracon_store::ledger::{self, LedgerConfig};
use ostracon_store::model::{Decision, IncidentOrigin, OutboxJob, PeerRecord, PeerState, Trust, Verb};
use ostracon_store::policy::ListingPolicy;
use ostracon_store::testing::Throwaway;
use ostracon_store::traits::{BlocklistStore as _, IncidentStore as _, OutboxStore as _, PeerStore as _};

use super::super::intake::STANDING_TTL_SECS;
use super::*;
use ostracon_protocol::xml::stream::Head;

struct Harness {
    node: Arc<XmppNode>,
    out: mpsc::Receiver<Element>,
    _store: Throwaway,
}

async fn harness_with(strangers: StrangerLimits) -> Harness {
    harness_where(Throwaway::sqlite().await, |settings| settings.strangers = strangers).await
}

/// A node on `backend` whose settings `adjust` changes from the defaults below.
async fn harness_where(backend: Throwaway, adjust: impl FnOnce(&mut NodeSettings)) -> Harness {
    let store = backend.store.clone();
    let key = NodeKey::from_seed(&[4; 32]);
    let env = Arc::new(FixedEnvironment::new(Timestamp::from_unix(1_800_000_000).unwrap()));
    let config = LedgerConfig {
        origin: "b.test/ostracon".into(),
        key_name: "b.test".into(),
        policy: ListingPolicy::default(),
        reputation: ReputationParams::default(),
        scope: ostracon_store::scope::PeerScope { refuse_documentation: false, ..Default::default() },
    };
    let published = vec![PublishedKey::new(key.public(), env.now())];
    let ledger = Arc::new(Ledger::open(store, key.clone(), config).await.unwrap().with_published_keys(published));
    let (tx, out) = mpsc::channel(64);
    let mut settings = NodeSettings {
        jid: BareJid::parse("incidents.b.test").unwrap(),
        server_domain: Domain::parse("b.test").unwrap(),
        strangers: StrangerLimits::default(),
        rates: SenderRates::default(),
        name: "Ostracon".into(),
        abuse_addresses: vec!["xmpp:abuse@b.test".into()],
        forward_hops: 0,
        reputation: ReputationParams::default(),
        rtbl: crate::config::RtblSection::default().settings(&Domain::parse("b.test").unwrap()).unwrap(),
    };
    adjust(&mut settings);
    let status = Arc::new(LinkStatus::default());
    let node = Arc::new(XmppNode::new(ledger, env, settings, tx, status));
    Harness { node, out, _store: backend }
}

async fn harness() -> Harness {
    harness_with(StrangerLimits::default()).await
}

fn parse(text: &str) -> Element {
    text.parse().unwrap()
}

fn iq(iq_type: &str, from: &str, child: &str) -> Element {
    parse(&format!("<iq xmlns='{STANZA_NS}' type='{iq_type}' from='{from}' to='incidents.b.test' id='q1'>{child}</iq>"))
}

fn stanza_in(element: Element) -> Inbound {
    Inbound::Stanza(element)
}

fn condition(answer: &Element) -> (Option<String>, Option<String>) {
    let error = answer.children().find(|c| c.name() == "error").expect("an error answer");
    StanzaError::conditions_of(error)
}

use super::super::stanza::STANZA_NS;

/// Makes `jid` a buddy the way the handshake does: our operator asks, its keys arrive.
async fn make_buddy(node: &XmppNode, jid: &str, trust: Trust) -> PeerRecord {
    make_buddy_with(node, jid, trust, &buddy_key(jid)).await
}

/// The signing key `make_buddy` pins for `jid`: one per name, so links cannot be mixed up.
fn buddy_key(jid: &str) -> NodeKey {
    let mut seed = [0x42; 32];
    for (byte, name) in seed.iter_mut().zip(jid.bytes().rev()) {
        *byte ^= name;
    }
    NodeKey::from_seed(&seed)
}

async fn make_buddy_with(node: &XmppNode, jid: &str, trust: Trust, key: &NodeKey) -> PeerRecord {
    let jid = BareJid::parse(jid).unwrap();
    let now = node.env.now();
    node.ledger.request_buddy(&jid, trust, now).await.unwrap();
    let keys = vec![PublishedKey::new(key.public(), now)];
    node.ledger.keys_fetched(&jid, keys, false, now).await.unwrap().unwrap()
}

#[test]
fn retries_back_off_to_an_hour_with_jitter() {
    use super::super::delivery::retry_delay_secs;
    assert_eq!(retry_delay_secs(1, 0.5), 2);
    assert_eq!(retry_delay_secs(5, 0.5), 32);
    assert_eq!(retry_delay_secs(40, 0.5), 3_600);
    assert_eq!(retry_delay_secs(40, 1.0), 5_400);
    assert!(retry_delay_secs(0, 0.0) >= 1);
}

#[tokio::test]
async fn disco_answers_features_and_abuse_addresses() {
    let mut h = harness().await;
    h.node
        .handle(stanza_in(iq("get", "incidents.a.test", "<query xmlns='http://jabber.org/protocol/disco#info'/>")))
        .await;
    let answer = h.out.recv().await.unwrap();
    assert_eq!(answer.attr("type"), Some("result"));
    assert_eq!(answer.attr("to"), Some("incidents.a.test"));
    let text = to_string(&answer);
    assert!(text.contains("urn:xmpp:incident:2") && text.contains("xmpp:abuse@b.test"), "{text}");
}

#[tokio::test]
async fn strangers_are_forbidden_before_parsing_and_unknown_queries_are_unavailable() {
    let mut h = harness().await;
    let inquiry = IncidentPayload::Inquiry {
        id: ostracon_protocol::ids::IncidentId::parse("a.test:0f6c1c52-7d3e-4e0a-9a51-2b1f4a7e9c10").unwrap(),
    };
    h.node.handle(stanza_in(iq("get", "incidents.a.test", &to_string(&inquiry.to_element())))).await;
    assert_eq!(condition(&h.out.recv().await.unwrap()), (Some("forbidden".into()), Some("not-buddy".into())));

    h.node.handle(stanza_in(iq("set", "incidents.a.test", "<report xmlns='urn:xmpp:incident:2'><x/></report>"))).await;
    assert_eq!(condition(&h.out.recv().await.unwrap()).0.as_deref(), Some("forbidden"), "garbage from a stranger");

    make_buddy(&h.node, "incidents.a.test", Trust::Accept).await;
    h.node.handle(stanza_in(iq("set", "incidents.a.test", "<report xmlns='urn:xmpp:incident:2'><x/></report>"))).await;
    assert_eq!(condition(&h.out.recv().await.unwrap()).0.as_deref(), Some("bad-request"), "garbage from a buddy");

    h.node.handle(stanza_in(iq("get", "incidents.a.test", "<unknown xmlns='urn:example'/>"))).await;
    assert_eq!(condition(&h.out.recv().await.unwrap()).0.as_deref(), Some("service-unavailable"));
}

#[tokio::test]
async fn every_malformed_iq_gets_bad_request_even_to_a_full_jid() {
    let mut h = harness().await;
    let shapes = [
        "<iq xmlns='jabber:component:accept' type='bogus' from='x.test' to='incidents.b.test' id='a'><ping xmlns='urn:xmpp:ping'/></iq>",
        "<iq xmlns='jabber:component:accept' type='get' from='x.test' to='incidents.b.test/res' id='b'/>",
        "<iq xmlns='jabber:component:accept' type='set' from='u@x.test/r' to='incidents.b.test' id='c'><a xmlns='urn:a'/><b xmlns='urn:b'/></iq>",
        "<iq xmlns='jabber:component:accept' from='x.test' to='incidents.b.test' id='d'><ping xmlns='urn:xmpp:ping'/></iq>",
    ];
    for (shape, id) in shapes.iter().zip(["a", "b", "c", "d"]) {
        h.node.handle(stanza_in(parse(shape))).await;
        let answer = h.out.recv().await.unwrap();
        assert_eq!((answer.attr("type"), answer.attr("id")), (Some("error"), Some(id)), "{shape}");
        assert_eq!(condition(&answer).0.as_deref(), Some("bad-request"), "{shape}");
    }
    // Without an id there is nothing to answer: counted, not answered.
    h.node.handle(stanza_in(parse("<iq xmlns='jabber:component:accept' type='get' from='x.test'/>"))).await;
    assert_eq!(h.node.status.value(Counter::StanzasDropped), 1);
    assert!(h.out.try_recv().is_err());
}

#[tokio::test]
async fn stanzas_over_a_bound_get_policy_violation_or_are_counted() {
    let mut h = harness().await;
    let head = |name: &str, stanza_type: Option<&str>, id: Option<&str>| Head {
        name: name.into(),
        from: Some("x.test/r".into()),
        to: Some("incidents.b.test".into()),
        id: id.map(Into::into),
        stanza_type: stanza_type.map(Into::into),
    };
    h.node.handle(Inbound::Refused(Refused { head: head("iq", Some("set"), Some("deep")), bound: Bound::Depth })).await;
    let answer = h.out.recv().await.unwrap();
    assert_eq!((answer.attr("id"), answer.attr("to")), (Some("deep"), Some("x.test/r")));
    assert_eq!(condition(&answer), (Some("policy-violation".into()), Some("too-large".into())));
    h.node.handle(Inbound::Refused(Refused { head: head("message", None, Some("m")), bound: Bound::Size })).await;
    h.node.handle(Inbound::Refused(Refused { head: head("iq", Some("result"), Some("r")), bound: Bound::Size })).await;
    assert!(h.out.try_recv().is_err(), "messages and answers over a bound are not answered");
    assert_eq!(h.node.status.value(Counter::StanzasRefused), 1);
    assert_eq!(h.node.status.value(Counter::StanzasDropped), 2);
    // Over its sender's rate at its head (the stream's gate): resource-constraint.
    h.node.handle(Inbound::Refused(Refused { head: head("iq", Some("set"), Some("fast")), bound: Bound::Rate })).await;
    let answer = h.out.recv().await.unwrap();
    assert_eq!(condition(&answer), (Some("resource-constraint".into()), Some("rate-limited".into())));
    assert_eq!(h.node.status.value(Counter::RateLimited), 1);
}

#[tokio::test]
async fn an_answer_from_anyone_but_the_peer_asked_is_dropped_and_counted() {
    let mut h = harness().await;
    let buddy = BareJid::parse("incidents.a.test").unwrap();
    let node = Arc::clone(&h.node);
    let asking = tokio::spawn(async move {
        node.request(&buddy, "get", Element::bare("ping", PING_NS), Duration::from_secs(30)).await
    });
    let sent = h.out.recv().await.unwrap();
    let id = sent.attr("id").unwrap().to_owned();
    assert!(id.len() >= 4 + 32, "128 bits of randomness: {id}");
    let answer = |from: &str| {
        parse(&format!("<iq xmlns='{STANZA_NS}' type='result' from='{from}' to='incidents.b.test' id='{id}'/>"))
    };
    // More than any sender's burst: answers are matched, not rate-limited (throttling answers
    // to our own requests would throttle our deliveries).
    for _ in 0..600 {
        h.node.handle(stanza_in(answer("incidents.evil.test"))).await;
    }
    assert_eq!(h.node.status.value(Counter::UnmatchedAnswers), 600);
    assert_eq!(h.node.status.value(Counter::RateLimited), 0);
    assert!(!asking.is_finished(), "forged answers do not end the wait");
    h.node.handle(stanza_in(answer("incidents.a.test"))).await;
    assert_eq!(asking.await.unwrap().unwrap().attr("from"), Some("incidents.a.test"));
}

#[tokio::test]
async fn one_peer_over_its_rate_gets_resource_constraint_from_any_resource() {
    let mut h = harness().await;
    make_buddy(&h.node, "incidents.a.test", Trust::Accept).await;
    let burst = h.node.settings.rates.incidents_per_jid.burst as usize;
    let mut limited = 0;
    for n in 0..burst + 10 {
        let from = format!("incidents.a.test/r{n}");
        h.node.handle(stanza_in(iq("set", &from, "<report xmlns='urn:xmpp:incident:2'><x/></report>"))).await;
        if condition(&h.out.recv().await.unwrap()).0.as_deref() == Some("resource-constraint") {
            limited += 1;
        }
    }
    assert_eq!(limited, 10, "a new resource is not a new allowance");
    assert_eq!(h.node.status.value(Counter::RateLimited), 10);
}

#[tokio::test]
async fn a_buddy_request_waits_for_the_operator_and_fetches_keys() {
    let h = harness().await;
    let presence = parse(&format!(
        "<presence xmlns='{STANZA_NS}' from='incidents.a.test' to='incidents.b.test' type='subscribe'/>"
    ));
    h.node.handle(stanza_in(presence)).await;
    let peer = h.node.ledger.store().peer(&BareJid::parse("incidents.a.test").unwrap()).await.unwrap().unwrap();
    assert_eq!((peer.state, peer.trust), (PeerState::Pending, Trust::Observe));
    let queued = h.node.ledger.store().outbox_for("incidents.a.test", 10).await.unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].job, OutboxJob::FetchKeys { approve: false }, "keys are fetched, nothing is approved");
}

async fn stranger_requests_are_capped_in_total_and_per_domain_and_revoked_peers_stay_revoked(backend: Throwaway) {
    let limits = StrangerLimits { max_pending: 5, max_pending_per_domain: 2, auto_approve: false };
    let h = harness_where(backend, |settings| settings.strangers = limits).await;
    let subscribe = |from: &str| {
        stanza_in(parse(&format!(
            "<presence xmlns='{STANZA_NS}' from='{from}' to='incidents.b.test' type='subscribe'/>"
        )))
    };
    for n in 0..4 {
        h.node.handle(subscribe(&format!("c{n}.evil.test"))).await;
    }
    for n in 0..10 {
        h.node.handle(subscribe(&format!("incidents.spam{n}.test"))).await;
    }
    let peers = h.node.ledger.store().peers().await.unwrap();
    let evil = peers.iter().filter(|p| p.jid.domain().as_str().ends_with("evil.test")).count();
    assert_eq!((peers.len(), evil), (5, 2), "{peers:?}");
    assert!(h.node.status.value(Counter::StanzasDropped) >= 2);

    // A buddy that ends the relation cannot come back by asking again.
    make_buddy(&h.node, "incidents.a.test", Trust::Accept).await;
    let a = BareJid::parse("incidents.a.test").unwrap();
    h.node.ledger.peer_ended(&a, h.node.env.now()).await.unwrap();
    h.node.handle(subscribe("incidents.a.test")).await;
    assert_eq!(h.node.ledger.store().peer(&a).await.unwrap().unwrap().state, PeerState::Revoked);
}

#[tokio::test]
async fn a_buddys_standing_follows_its_facts_at_once_and_other_changes_within_a_minute() {
    let h = harness().await;
    let t0 = h.node.env.now();
    let buddy = make_buddy(&h.node, "incidents.a.test", Trust::Accept).await;
    let first = h.node.reporter_standing(&buddy, t0).await.unwrap();
    assert_eq!((first.score, first.weight_milli), (9, 500), "a fresh buddy: +10 raw, full `accept` weight");

    // Our operator contradicts one of its reports: a fact, so its stored standing moves at once.
    let report = ostracon_protocol::incident::Incident {
        id: ostracon_protocol::ids::IncidentId::parse("incidents.a.test:0f6c1c52-7d3e-4e0a-9a51-2b1f4a7e9c10").unwrap(),
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
        authority_milli: None,
        forward_to: &[],
    };
    h.node.ledger.record_remote(received, t0).await.unwrap();
    h.node.ledger.allow(&Offender::parse("customer@b.test").unwrap(), "ours", t0).await.unwrap();
    let contradicted = h.node.reporter_standing(&buddy, t0).await.unwrap();
    assert_eq!(contradicted.score, -4, "10 - 15 raw");
    assert!(contradicted.weight_milli > 0 && contradicted.weight_milli < first.weight_milli, "{contradicted:?}");

    // Another buddy's XEP-0275 opinion of -100 about its server (-30 raw, bounded to -5 in
    // a standing) is not a fact: the stored standing serves for a minute, then it is
    // computed afresh.
    make_buddy(&h.node, "incidents.c.test", Trust::Accept).await;
    h.node.ledger.store().put_peer_score("incidents.c.test", "a.test", -100, t0).await.unwrap();
    let stored = h.node.reporter_standing(&buddy, t0.plus_secs(STANDING_TTL_SECS - 1)).await.unwrap();
    assert_eq!(stored.score, -4);
    let fresh = h.node.reporter_standing(&buddy, t0.plus_secs(STANDING_TTL_SECS)).await.unwrap();
    assert_eq!(fresh.score, -9, "10 - 15 - 5 raw");
    assert!(fresh.weight_milli > 0 && fresh.weight_milli < contradicted.weight_milli, "{fresh:?}");
}

/// A report of `offenders` issued by `issuer`'s node at `at`.
fn report_of(issuer: &str, n: u128, offenders: &[&str], at: Timestamp) -> ostracon_protocol::incident::Incident {
    let reporter = BareJid::parse(issuer).unwrap();
    ostracon_protocol::incident::Incident {
        id: ostracon_protocol::ids::IncidentId::new(reporter.domain().clone(), uuid::Uuid::from_u128(n)),
        reporter,
        status: ostracon_protocol::incident::Status::New,
        category: ostracon_protocol::incident::Category::BruteForce,
        severity: ostracon_protocol::incident::Severity::Medium,
        offenders: offenders.iter().map(|o| Offender::parse(o).unwrap()).collect(),
        start: at,
        end: None,
        reported: at,
        description: String::new(),
        evidence: vec![],
        action: None,
        expires: None,
        related: None,
        history: vec![],
    }
}

fn nonce(n: u8) -> ostracon_protocol::envelope::Nonce {
    ostracon_protocol::envelope::Nonce::from_bytes(&[n; 16])
}

/// Sends `incident`, signed by `chain`, from the chain's last signer; returns the answer.
async fn deliver(
    h: &mut Harness,
    incident: &ostracon_protocol::incident::Incident,
    chain: ostracon_protocol::envelope::Unverified<ostracon_protocol::incident::ReportClaim>,
) -> Element {
    let from = chain.claimed_last_signer().to_string();
    let payload = IncidentPayload::Report { incident: incident.clone(), signed: Some(chain) };
    h.node.handle(stanza_in(iq(payload.iq_type(), &from, &to_string(&payload.to_element())))).await;
    h.out.recv().await.unwrap()
}

/// `forwarder`'s node verifying `chain` with its origin's key and forwarding it.
fn forward_by<T: ostracon_protocol::envelope::Claim>(
    forwarder: &str,
    chain: ostracon_protocol::envelope::Unverified<T>,
    now: Timestamp,
    n: u8,
) -> ostracon_protocol::envelope::Unverified<T> {
    let origin = chain.claimed_origin().clone();
    let mut ring = ostracon_protocol::keys::KeyRing::new();
    ring.insert(origin.clone(), buddy_key(&origin.to_string()).public());
    let policy = ostracon_protocol::envelope::VerifyPolicy { now, window_secs: 300, max_links: 1 };
    let verified = chain.verify_stored(&ring, &policy).unwrap();
    verified.forward(&buddy_key(forwarder), &BareJid::parse(forwarder).unwrap(), now, nonce(n)).unwrap()
}

// The rules the node applies before its ledger, on both backends (they read standings and
// keys from the store).
ostracon_store::battery!(
    stranger_requests_are_capped_in_total_and_per_domain_and_revoked_peers_stay_revoked,
    a_forwarded_report_weighs_what_the_weaker_of_origin_and_forwarder_weighs,
    a_rotation_is_refused_outside_its_window_and_from_a_retired_key,
    an_inquiry_is_answered_only_about_reports_shared_with_the_asker,
    an_unsigned_report_only_under_its_senders_own_name,
    a_batch_gets_one_outcome_per_wrapper_each_under_its_own_rate_token,
    a_batch_goes_as_one_iq_each_row_takes_its_items_outcome_and_an_old_peer_gets_singles,
);

/// A batch IQ of `wrappers` from `from`.
fn batch_iq(from: &str, wrappers: &[Element]) -> Element {
    let batch = ostracon_protocol::xml::batch::to_element(wrappers.iter().cloned());
    iq("set", from, &to_string(&batch))
}

/// incidents.a.test's IQ result to `sent`, empty until a payload is appended.
fn result_from_a(sent: &Element) -> Element {
    let id = sent.attr("id").unwrap();
    stanza("iq", &[("type", "result"), ("from", "incidents.a.test"), ("to", "incidents.b.test"), ("id", id)])
}

/// The signed `<report/>` of `incident` by `issuer` with `key`.
fn signed_report(issuer: &str, key: &NodeKey, incident: &ostracon_protocol::incident::Incident, n: u8) -> Element {
    use ostracon_protocol::incident::ReportClaim;
    let signer = BareJid::parse(issuer).unwrap();
    let chain =
        ostracon_protocol::envelope::sign(&ReportClaim(incident.clone()), key, &signer, incident.reported, nonce(n));
    IncidentPayload::Report { incident: incident.clone(), signed: Some(chain.unwrap()) }.to_element()
}

async fn a_batch_gets_one_outcome_per_wrapper_each_under_its_own_rate_token(backend: Throwaway) {
    use ostracon_protocol::xml::batch::{ItemOutcome, answer_from_element};
    let four = ostracon_store::ratelimit::Rate::new(0.001, 4.0);
    let mut h = harness_where(backend, |settings| settings.rates.incidents_per_jid = four).await;
    let now = h.node.env.now();
    let a = "incidents.a.test";
    make_buddy(&h.node, a, Trust::AutoApply).await;
    let reports: Vec<_> = (1..=5).map(|n| report_of(a, n, &[&format!("192.0.2.{n}")], now)).collect();
    let inquiry = IncidentPayload::Inquiry { id: reports[0].id.clone() }.to_element();
    let wrappers = vec![
        signed_report(a, &buddy_key(a), &reports[0], 1),
        // Signed by a key a never published.
        signed_report(a, &buddy_key("incidents.x.test"), &reports[1], 2),
        inquiry,
        signed_report(a, &buddy_key(a), &reports[2], 3),
        signed_report(a, &buddy_key(a), &reports[3], 4),
        // The sixth wrapper, the fifth incident token: over the rate.
        signed_report(a, &buddy_key(a), &reports[4], 5),
    ];
    h.node.handle(stanza_in(batch_iq(a, &wrappers))).await;
    let answer = h.out.recv().await.unwrap();
    assert_eq!(answer.attr("type"), Some("result"), "{}", String::from(&answer));
    let items = answer_from_element(answer.get_child("batch", BATCH_NS).unwrap(), wrappers.len()).unwrap();
    let refused =
        |condition: &str, app: &str| ItemOutcome::Refused { condition: condition.into(), app: Some(app.into()) };
    assert_eq!(
        items,
        [
            ItemOutcome::Done,
            refused("not-authorized", "unknown-key"),
            refused("bad-request", "malformed"),
            ItemOutcome::Done,
            ItemOutcome::Done,
            refused("resource-constraint", "rate-limited"),
        ]
    );
    // Each refused wrapper is tallied against the buddy, as a refused stanza would be.
    let tallies = h.node.status.peer_tallies();
    assert_eq!(tallies.iter().find(|(peer, _)| peer == a).map(|(_, counts)| counts[2]), Some(3), "{tallies:?}");
    let store = h.node.ledger.store();
    for (n, listed) in [(1, true), (2, false), (3, true), (4, true), (5, false)] {
        let entry = store.entry(&Offender::parse(&format!("192.0.2.{n}")).unwrap()).await.unwrap();
        assert_eq!(entry.is_some(), listed, "192.0.2.{n}");
    }
    // A stranger's batch is refused whole, and so is one over the batch limit.
    h.node.handle(stanza_in(batch_iq("incidents.x.test", &wrappers[..1]))).await;
    assert_eq!(condition(&h.out.recv().await.unwrap()), (Some("forbidden".into()), Some("not-buddy".into())));
    let over = vec![wrappers[0].clone(); ostracon_protocol::limits::MAX_BATCH_ITEMS + 1];
    h.node.handle(stanza_in(batch_iq(a, &over))).await;
    assert_eq!(condition(&h.out.recv().await.unwrap()), (Some("policy-violation".into()), Some("too-large".into())));
}

async fn a_batch_goes_as_one_iq_each_row_takes_its_items_outcome_and_an_old_peer_gets_singles(backend: Throwaway) {
    use ostracon_protocol::xml::batch::{answer_to_element, wrappers_of};
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut h = harness_where(backend, |_| {}).await;
    let now = h.node.env.now();
    let peer = BareJid::parse("incidents.a.test").unwrap();
    make_buddy(&h.node, "incidents.a.test", Trust::AutoApply).await;
    let reports = || async {
        let due = h.node.ledger.store().due_for(&peer, now, 100).await.unwrap();
        due.into_iter().filter(|item| matches!(item.job, OutboxJob::Report { .. })).collect::<Vec<_>>()
    };
    for n in 1..=3u128 {
        let incident = report_of("b.test", n, &[&format!("198.51.100.{n}")], now);
        h.node.ledger.submit_local(&incident, true, now).await.unwrap();
    }
    let rows = reports().await;
    assert_eq!(rows.len(), 3);

    // One IQ carries the three, each signed as it would be alone; the second is refused.
    let batches = Arc::new(AtomicBool::new(true));
    let (node, group, flag) = (Arc::clone(&h.node), rows.clone(), Arc::clone(&batches));
    let sending = tokio::spawn(async move { node.deliver_batch(&group, IQ_TIMEOUT, &flag).await });
    let sent = h.out.recv().await.unwrap();
    let wrappers = wrappers_of(sent.get_child("batch", BATCH_NS).unwrap()).unwrap();
    assert_eq!(wrappers.len(), 3);
    for wrapper in &wrappers {
        assert!(matches!(
            IncidentPayload::from_element(wrapper).unwrap(),
            IncidentPayload::Report { signed: Some(_), .. }
        ));
    }
    let mut answer = result_from_a(&sent);
    answer.append_child(answer_to_element(&[None, Some(StanzaError::rate_limited()), None]));
    h.node.handle(stanza_in(answer)).await;
    sending.await.unwrap();
    let left = reports().await;
    assert!(left.is_empty(), "the refused row waits for its retry: {left:?}");
    let all = h.node.ledger.store().outbox_items(None, None, None, 100).await.unwrap();
    let state = |id| all.iter().find(|item| item.id == id).map(|item| (item.state.clone(), item.attempts)).unwrap();
    assert_eq!(state(rows[0].id), ("delivered".to_owned(), 1));
    assert_eq!(state(rows[1].id), ("pending".to_owned(), 1));
    assert_eq!(state(rows[2].id), ("delivered".to_owned(), 1));
    assert!(batches.load(Ordering::Acquire));

    // A peer that does not know batches answers service-unavailable: the rows go one by one,
    // and batches stay off for the rest of the queue's run.
    let incident = report_of("b.test", 9, &["198.51.100.9"], now);
    h.node.ledger.submit_local(&incident, true, now).await.unwrap();
    let incident = report_of("b.test", 10, &["198.51.100.10"], now);
    h.node.ledger.submit_local(&incident, true, now).await.unwrap();
    let rows = reports().await;
    assert_eq!(rows.len(), 2);
    let (node, group, flag) = (Arc::clone(&h.node), rows.clone(), Arc::clone(&batches));
    let sending = tokio::spawn(async move { node.deliver_batch(&group, IQ_TIMEOUT, &flag).await });
    let sent = h.out.recv().await.unwrap();
    assert!(sent.get_child("batch", BATCH_NS).is_some());
    let refusal = StanzaError {
        error_type: "cancel",
        condition: "service-unavailable",
        app_condition: None,
        text: String::new(),
    };
    h.node
        .handle(stanza_in(iq_error(
            &BareJid::parse("incidents.a.test").unwrap().to_string(),
            "incidents.b.test",
            sent.attr("id").unwrap(),
            &refusal,
        )))
        .await;
    for _ in 0..2 {
        let single = h.out.recv().await.unwrap();
        let wrapper = single.children().next().unwrap();
        assert!(wrapper.is("report", INCIDENT_NS), "{}", String::from(&single));
        let answer = result_from_a(&single);
        h.node.handle(stanza_in(answer)).await;
    }
    sending.await.unwrap();
    assert!(!batches.load(Ordering::Acquire));
    assert!(reports().await.is_empty(), "both delivered one by one");

    // An answer that does not account for every wrapper, or none within the timeout, fails
    // every row of the batch: each waits for its retry, none counts as delivered.
    for n in 20..22u128 {
        let incident = report_of("b.test", n, &[&format!("198.51.100.{n}")], now);
        h.node.ledger.submit_local(&incident, true, now).await.unwrap();
    }
    let rows = reports().await;
    assert_eq!(rows.len(), 2);
    let ledger = Arc::clone(&h.node.ledger);
    let states = |rows: Vec<i64>| {
        let ledger = Arc::clone(&ledger);
        async move {
            let all = ledger.store().outbox_items(None, None, None, 100).await.unwrap();
            rows.iter()
                .map(|id| {
                    all.iter().find(|item| item.id == *id).map(|item| (item.state.clone(), item.attempts)).unwrap()
                })
                .collect::<Vec<_>>()
        }
    };
    let ids: Vec<i64> = rows.iter().map(|item| item.id).collect();
    let batches = Arc::new(AtomicBool::new(true));
    let (node, group, flag) = (Arc::clone(&h.node), rows.clone(), Arc::clone(&batches));
    let sending = tokio::spawn(async move { node.deliver_batch(&group, IQ_TIMEOUT, &flag).await });
    let sent = h.out.recv().await.unwrap();
    let mut short = result_from_a(&sent);
    short.append_child(answer_to_element(&[None]));
    h.node.handle(stanza_in(short)).await;
    sending.await.unwrap();
    assert_eq!(states(ids.clone()).await, vec![("pending".to_owned(), 1); 2]);
    let (node, group, flag) = (Arc::clone(&h.node), rows, Arc::clone(&batches));
    let silent = Duration::from_millis(20);
    let sending = tokio::spawn(async move { node.deliver_batch(&group, silent, &flag).await });
    assert!(h.out.recv().await.unwrap().get_child("batch", BATCH_NS).is_some());
    sending.await.unwrap();
    assert_eq!(states(ids).await, vec![("pending".to_owned(), 2); 2]);
    assert!(batches.load(Ordering::Acquire), "silence is no refusal of batches");
}

async fn a_forwarded_report_weighs_what_the_weaker_of_origin_and_forwarder_weighs(backend: Throwaway) {
    use ostracon_protocol::envelope::sign;
    use ostracon_protocol::incident::ReportClaim;
    let mut h = harness_where(backend, |settings| settings.forward_hops = 2).await;
    let now = h.node.env.now();
    let (origin, forwarder, stranger) = ("incidents.a.test", "incidents.c.test", "incidents.x.test");
    make_buddy(&h.node, origin, Trust::Accept).await;
    make_buddy(&h.node, forwarder, Trust::AutoApply).await;
    let forwarded = |issuer: &str, incident: &ostracon_protocol::incident::Incident, n: u8| {
        let issuer_jid = BareJid::parse(issuer).unwrap();
        let first = sign(&ReportClaim(incident.clone()), &buddy_key(issuer), &issuer_jid, now, nonce(n)).unwrap();
        forward_by(forwarder, first, now, n + 1)
    };

    // Alone, the auto-apply forwarder lists what it reports itself.
    let own = report_of(forwarder, 1, &["192.0.2.1"], now);
    let chain =
        sign(&ReportClaim(own.clone()), &buddy_key(forwarder), &BareJid::parse(forwarder).unwrap(), now, nonce(1));
    assert_eq!(deliver(&mut h, &own, chain.unwrap()).await.attr("type"), Some("result"));
    let ledger = Arc::clone(&h.node.ledger);
    let store = ledger.store();
    assert!(store.entry(&Offender::parse("192.0.2.1").unwrap()).await.unwrap().is_some());

    // The accept buddy's report through it weighs what the accept buddy weighs: no quorum.
    let laundered = report_of(origin, 2, &["192.0.2.2"], now);
    assert_eq!(deliver(&mut h, &laundered, forwarded(origin, &laundered, 3)).await.attr("type"), Some("result"));
    let ip = Offender::parse("192.0.2.2").unwrap();
    assert!(
        store.entry(&ip).await.unwrap().is_none(),
        "an accept buddy's voice does not list alone through a forwarder"
    );
    let reasons = store.candidate_reasons(&ip).await.unwrap();
    assert_eq!(reasons.iter().map(|r| r.weight_milli).collect::<Vec<_>>(), vec![500], "{reasons:?}");
    let record = store.incident(&laundered.id).await.unwrap().unwrap();
    assert_eq!((record.decision, record.provenance.map(|p| p.len())), (Decision::Accepted, Some(2)));

    // The same report again, straight from its origin: its voice counts once.
    let direct =
        sign(&ReportClaim(laundered.clone()), &buddy_key(origin), &BareJid::parse(origin).unwrap(), now, nonce(5));
    assert_eq!(deliver(&mut h, &laundered, direct.unwrap()).await.attr("type"), Some("result"));
    assert_eq!(store.candidate_reasons(&ip).await.unwrap().len(), 1);
    assert!(store.entry(&ip).await.unwrap().is_none());

    // From an origin we do not trust, a forward weighs nothing.
    let unknown_key = buddy_key(stranger);
    let foreign = report_of(stranger, 3, &["192.0.2.3"], now);
    let first = sign(&ReportClaim(foreign.clone()), &unknown_key, &BareJid::parse(stranger).unwrap(), now, nonce(7));
    let answer = deliver(&mut h, &foreign, forward_by(forwarder, first.unwrap(), now, 8)).await;
    let record = store.incident(&foreign.id).await.unwrap();
    assert!(store.entry(&Offender::parse("192.0.2.3").unwrap()).await.unwrap().is_none());
    match answer.attr("type") {
        // Either refused outright (its first link cannot be verified) or kept with no weight.
        Some("error") => assert!(record.is_none()),
        _ => assert_eq!(record.unwrap().decision, Decision::Ignored),
    }
}

async fn a_rotation_is_refused_outside_its_window_and_from_a_retired_key(backend: Throwaway) {
    let mut h = harness_where(backend, |_| {}).await;
    let now = h.node.env.now();
    let peer = "incidents.a.test";
    let old = buddy_key(peer);
    make_buddy(&h.node, peer, Trust::Accept).await;
    let day = 86_400;
    let refused = Some("bad-timestamp".to_owned());
    // Signed in the future, older than the outbox delivers, or naming a start it was not
    // signed at: each refused, and the old key stays current.
    let ahead = now.plus_secs(WINDOW_SECS + 60);
    assert_eq!(rotate(&mut h, peer, &old, ahead, ahead, 11).await, refused, "from the future");
    let stale = now.plus_secs(-15 * day);
    assert_eq!(rotate(&mut h, peer, &old, stale, stale, 12).await, refused, "older than 14 days");
    assert_eq!(rotate(&mut h, peer, &old, now, now.plus_secs(-day), 13).await, refused, "a backdated start");
    let jid = BareJid::parse(peer).unwrap();
    let current = h.node.ledger.store().peer(&jid).await.unwrap().unwrap().keys;
    assert_eq!(
        current.iter().filter(|k| k.valid_until.is_none()).map(|k| k.kid.clone()).collect::<Vec<_>>(),
        vec![old.key_id()]
    );

    // A day-old rotation a retry delivers late is accepted; then the retired key signs nothing.
    let late = now.plus_secs(-day);
    assert_eq!(rotate(&mut h, peer, &old, late, late, 14).await, None);
    let current = h.node.ledger.store().peer(&jid).await.unwrap().unwrap().keys;
    assert!(current.iter().any(|k| k.kid == NodeKey::from_seed(&[14; 32]).key_id() && k.valid_until.is_none()));
    assert_eq!(rotate(&mut h, peer, &old, now, now, 15).await.as_deref(), Some("unknown-key"), "retired");
    let current = h.node.ledger.store().peer(&jid).await.unwrap().unwrap().keys;
    assert!(!current.iter().any(|k| k.kid == NodeKey::from_seed(&[15; 32]).key_id()));
}

/// Sends `peer`'s rotation to the key seeded with `n`, signed by `key`; returns the answer's
/// application condition, or None when it was accepted.
async fn rotate(
    h: &mut Harness,
    peer: &str,
    key: &NodeKey,
    signed_at: Timestamp,
    valid_from: Timestamp,
    n: u8,
) -> Option<String> {
    use ostracon_protocol::keys::KeyRotation;
    let rotation = KeyRotation {
        old_kid: key.key_id(),
        new_key: PublishedKey::new(NodeKey::from_seed(&[n; 32]).public(), valid_from),
    };
    let claim = ostracon_protocol::envelope::sign(&rotation, key, &BareJid::parse(peer).unwrap(), signed_at, nonce(n));
    let element = ostracon_protocol::xml::keys::rotation_to_element(&claim.unwrap());
    h.node.handle(stanza_in(iq("set", peer, &to_string(&element)))).await;
    let answer = h.out.recv().await.unwrap();
    match answer.attr("type") {
        Some("result") => None,
        _ => condition(&answer).1,
    }
}

async fn an_inquiry_is_answered_only_about_reports_shared_with_the_asker(backend: Throwaway) {
    let mut h = harness_where(backend, |_| {}).await;
    let now = h.node.env.now();
    make_buddy(&h.node, "incidents.a.test", Trust::Accept).await;
    let shared = report_of("incidents.b.test", 1, &["192.0.2.1"], now);
    h.node.ledger.submit_local(&shared, true, now).await.unwrap();
    let kept = report_of("incidents.b.test", 2, &["192.0.2.2"], now);
    h.node.ledger.submit_local(&kept, false, now).await.unwrap();
    // A buddy made after the report was shared never had it.
    make_buddy(&h.node, "incidents.c.test", Trust::Accept).await;
    let mut ask = async |from: &str, id: &ostracon_protocol::ids::IncidentId| {
        let inquiry = IncidentPayload::Inquiry { id: id.clone() };
        h.node.handle(stanza_in(iq("get", from, &to_string(&inquiry.to_element())))).await;
        let answer = h.out.recv().await.unwrap();
        match answer.attr("type") {
            Some("result") => None,
            _ => condition(&answer).1,
        }
    };
    let unknown = Some("unknown-incident".to_owned());
    assert_eq!(ask("incidents.a.test", &shared.id).await, None, "shared with a: answered");
    assert_eq!(ask("incidents.a.test", &kept.id).await, unknown, "kept by our operator: as if unknown");
    assert_eq!(ask("incidents.c.test", &shared.id).await, unknown, "never shared with c");
    // The report waits for a once (its delivery still pending, the answer adds none), and
    // nothing waits for c.
    let reports_for = |peer: &'static str| {
        let ledger = Arc::clone(&h.node.ledger);
        async move {
            let queued = ledger.store().outbox_for(peer, 10).await.unwrap();
            queued
                .into_iter()
                .filter(|item| matches!(item.job, OutboxJob::Report { .. }))
                .map(|i| i.job)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(reports_for("incidents.a.test").await, vec![OutboxJob::Report { incident: shared.id.clone() }]);
    assert_eq!(reports_for("incidents.c.test").await, vec![]);
}

async fn an_unsigned_report_only_under_its_senders_own_name(backend: Throwaway) {
    let mut h = harness_where(backend, |_| {}).await;
    let now = h.node.env.now();
    make_buddy(&h.node, "incidents.a.test", Trust::AutoApply).await;
    let mut send = async |incident: &ostracon_protocol::incident::Incident| {
        let payload = IncidentPayload::Report { incident: incident.clone(), signed: None };
        h.node.handle(stanza_in(iq("set", "incidents.a.test", &to_string(&payload.to_element())))).await;
        let answer = h.out.recv().await.unwrap();
        (answer.attr("type").map(str::to_owned), condition_of(&answer))
    };
    // Under a parent domain's name it would squat ids that domain's signed reports need.
    let squatting = report_of("a.test", 1, &["192.0.2.1"], now);
    assert_eq!(send(&squatting).await, (Some("error".into()), Some("signer-mismatch".into())));
    let own = report_of("incidents.a.test", 2, &["192.0.2.2"], now);
    assert_eq!(send(&own).await, (Some("result".into()), None));
    let ledger = Arc::clone(&h.node.ledger);
    assert!(ledger.store().incident(&squatting.id).await.unwrap().is_none());
    let kept = ledger.store().incident(&own.id).await.unwrap().unwrap();
    assert_eq!((kept.origin, kept.decision), (IncidentOrigin::Unsigned, Decision::Pending), "never listed by itself");
    assert!(ledger.store().entry(&Offender::parse("192.0.2.2").unwrap()).await.unwrap().is_none());
}

/// An error answer's application condition; None for a result.
fn condition_of(answer: &Element) -> Option<String> {
    answer.children().find(|c| c.name() == "error").and_then(|error| StanzaError::conditions_of(error).1)
}

#[path = "rtbl_tests.rs"]
mod rtbl;
