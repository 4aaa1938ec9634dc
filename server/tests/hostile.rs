//! The hostile-peer suite: a node on a real Prosody, attacked by raw components that share no
//! code with the node's XMPP side (`ostracon_tests::raw_component`). Each test asserts that the
//! node survives, answers with the defined condition (or counts what it cannot answer), and
//! that honest traffic still flows: a real second node's reports are listed, and ours reach it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Node, make_buddies, peer};
use ostracon_protocol::incident::Status;
use ostracon_protocol::keys::{NodeKey, PublishedKey};
use ostracon_tests::TempDir;
use ostracon_tests::prosody::{ComponentSpec, Prosody, available};
use ostracon_tests::raw_component::{COMPONENT_NS, RawComponent, conditions, signed_report};
use serde_json::{Value, json};

const BETA: &str = "incidents.beta.test";
const ALPHA: &str = "incidents.alpha.test";

/// Beta (the node under attack) and alpha (an honest buddy of it), real nodes on one Prosody
/// that also declares the raw components `raw` names (`incidents.NAME.test`, secret `NAME-secret`).
struct Federation {
    beta: Node,
    alpha: Node,
    prosody: Prosody,
    _dir: Arc<TempDir>,
}

fn raw_spec(name: &str) -> ComponentSpec {
    ComponentSpec { domain: format!("incidents.{name}.test"), secret: format!("{name}-secret") }
}

async fn federation(name: &str, raw: &[String]) -> Federation {
    let mut specs = common::component_specs(&["alpha.test", "beta.test"]);
    specs.extend(raw.iter().map(|name| raw_spec(name)));
    let prosody = Prosody::start(&["alpha.test", "beta.test"], &specs);
    let dir = Arc::new(TempDir::new(name));
    let beta = Node::start("beta.test", &prosody, Arc::clone(&dir)).await;
    let alpha = Node::start("alpha.test", &prosody, Arc::clone(&dir)).await;
    beta.wait_online().await;
    alpha.wait_online().await;
    make_buddies(&beta, BETA, &alpha, ALPHA).await;
    Federation { beta, alpha, prosody, _dir: dir }
}

async fn raw(federation: &Federation, name: &str) -> RawComponent {
    let spec = raw_spec(name);
    RawComponent::connect(federation.prosody.component_address, &spec.domain, &spec.secret).await.unwrap()
}

/// A raw component `name` that beta's operator asks to be a buddy with `trust`, and that plays
/// the handshake with a key from `seed`.
async fn raw_buddy(federation: &Federation, name: &str, seed: u8, trust: &str) -> (RawComponent, NodeKey) {
    let mut buddy = raw(federation, name).await;
    let key = NodeKey::from_seed(&[seed; 32]);
    let now = ostracon_protocol::time::Timestamp::from_datetime(chrono::Utc::now());
    let keys = ostracon_protocol::xml::to_string(&ostracon_protocol::xml::keys::keys_to_element(&[PublishedKey::new(
        key.public(),
        now,
    )]));
    let body = json!({ "jid": buddy.jid(), "trust": trust });
    assert_eq!(federation.beta.call(reqwest::Method::POST, "/v1/peers", Some(body)).await.0, 202);
    buddy.accept_buddy_request(BETA, &keys).await.unwrap();
    let jid = buddy.jid().to_owned();
    federation
        .beta
        .wait_for("the raw buddy", "/v1/peers", |p| peer(p, &jid).is_some_and(|x| x["state"] == "buddy"))
        .await;
    (buddy, key)
}

impl Federation {
    /// Honest traffic still flows both ways: an incident at alpha is listed at beta, and one
    /// at beta at alpha.
    async fn honest_traffic_flows(&self, ip_suffix: u8) {
        for (from, to, ip) in [
            (&self.alpha, &self.beta, format!("198.51.100.{ip_suffix}")),
            (&self.beta, &self.alpha, format!("203.0.113.{ip_suffix}")),
        ] {
            let body = json!({ "offenders": [ip], "category": "spam", "severity": "high", "share": true });
            let (status, created) = from.call(reqwest::Method::POST, "/v1/incidents", Some(body)).await;
            assert_eq!(status, 201, "{created}");
            to.wait_for_within(Duration::from_secs(60), "an honest report", &format!("/v1/lookup/ip/{ip}"), |l| {
                l["listed"] == true
            })
            .await;
        }
        assert_eq!(self.beta.get("/healthz").await["xmpp"], "online");
    }

    async fn metric(&self, name: &str) -> u64 {
        let text = reqwest::get(format!("{}/metrics", self.beta.url)).await.unwrap().text().await.unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
    }
}

/// An IQ set carrying a report whose `AdditionalData` nests `depth` levels.
fn deep_report(from: &str, id: &str, depth: usize) -> String {
    format!(
        "<iq xmlns='{COMPONENT_NS}' type='set' from='{from}' to='{BETA}' id='{id}'>\
         <report xmlns='urn:xmpp:incident:2'><Incident purpose='reporting'><AdditionalData>{}{}</AdditionalData>\
         </Incident></report></iq>",
        "<a>".repeat(depth),
        "</a>".repeat(depth)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deep_large_and_malformed_stanzas_get_defined_answers_and_the_node_lives_on() {
    if !available() {
        return;
    }
    let federation = federation("hostile-shapes", &["evil".to_owned()]).await;
    let mut evil = raw(&federation, "evil").await;
    let me = evil.jid().to_owned();

    // About 70,000 levels: as deep as fits in Prosody's 512 KiB stanza limit with one-letter
    // elements (the stream-level unit tests go to 100,000 without Prosody).
    for depth in [10_000, 70_000] {
        let id = evil.id();
        evil.send_raw(deep_report(&me, &id, depth).as_bytes()).await.unwrap();
        let answer = evil.answer_to(&id).await.unwrap_or_else(|| panic!("no answer at depth {depth}"));
        assert_eq!(conditions(&answer), (Some("policy-violation".into()), Some("too-large".into())), "depth {depth}");
    }
    // Deep, but not an IQ get or set: nothing to answer; counted.
    let dropped_before = federation.metric("ostracon_xmpp_stanzas_dropped_total").await;
    let message = format!(
        "<message xmlns='{COMPONENT_NS}' from='{me}' to='{BETA}'><body>{}{}</body></message>",
        "<a>".repeat(20_000),
        "</a>".repeat(20_000)
    );
    evil.send_raw(message.as_bytes()).await.unwrap();
    // Oversized: 400 KB of text in one IQ.
    let id = evil.id();
    let big = format!(
        "<iq xmlns='{COMPONENT_NS}' type='set' from='{me}' to='{BETA}' id='{id}'>\
         <report xmlns='urn:xmpp:incident:2'><x>{}</x></report></iq>",
        "x".repeat(400_000)
    );
    evil.send_raw(big.as_bytes()).await.unwrap();
    let answer = evil.answer_to(&id).await.expect("an answer to the oversized stanza");
    assert_eq!(conditions(&answer).0.as_deref(), Some("policy-violation"));
    assert!(federation.metric("ostracon_xmpp_stanzas_dropped_total").await > dropped_before);
    assert!(federation.metric("ostracon_xmpp_stanzas_refused_total").await >= 3);

    // Every malformed IQ shape Prosody relays gets bad-request. (Two shapes never reach us:
    // a childless get, on which Prosody 0.12.3's mod_iq fails with a Lua error, and an IQ
    // without a type, which it drops; the node's answers to both are tested in process, in
    // `node_tests.rs`.)
    let shapes = [
        format!(
            "<iq xmlns='{COMPONENT_NS}' type='bogus' from='{me}' to='{BETA}' id='s1'><ping xmlns='urn:xmpp:ping'/></iq>"
        ),
        format!(
            "<iq xmlns='{COMPONENT_NS}' type='set' from='{me}' to='{BETA}/res' id='s3'><a xmlns='urn:a'/><b xmlns='urn:b'/></iq>"
        ),
    ];
    for (shape, id) in shapes.iter().zip(["s1", "s3"]) {
        evil.send_raw(shape.as_bytes()).await.unwrap();
        let Some(answer) = evil.answer_to(id).await else {
            let log = federation.prosody.log();
            let tail: String =
                log.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
            panic!("no answer to {shape}\n{tail}");
        };
        assert_eq!(answer.attr("type"), Some("error"), "{shape}");
        assert_eq!(conditions(&answer).0.as_deref(), Some("bad-request"), "{shape}");
    }
    // An undeclared prefix inside a stanza: refused, and the stream goes on.
    evil.send_raw(
        format!("<iq xmlns='{COMPONENT_NS}' type='get' from='{me}' to='{BETA}' id='s5'><p:x/></iq>").as_bytes(),
    )
    .await
    .unwrap();
    // Prosody itself may refuse a stanza with an undeclared prefix (it is not namespace
    // well-formed) and close our stream; what matters is the node's link and answers.
    let _ = evil.answer_to("s5").await;
    let mut evil = raw(&federation, "evil").await;
    let disco = evil.iq(BETA, "get", "<query xmlns='http://jabber.org/protocol/disco#info'/>").await.unwrap();
    assert_eq!(disco.attr("type"), Some("result"), "the node still answers");
    federation.honest_traffic_flows(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_answer_forged_for_the_peer_we_asked_is_dropped_and_the_real_one_pins_its_keys() {
    if !available() {
        return;
    }
    let federation = federation("hostile-spoof", &["slow".to_owned(), "evil".to_owned()]).await;
    let mut slow = raw(&federation, "slow").await;
    let mut evil = raw(&federation, "evil").await;
    let slow_key = NodeKey::from_seed(&[31; 32]);
    let evil_key = NodeKey::from_seed(&[66; 32]);
    let now = ostracon_protocol::time::Timestamp::from_datetime(chrono::Utc::now());
    let keys_xml = |key: &NodeKey| {
        ostracon_protocol::xml::to_string(&ostracon_protocol::xml::keys::keys_to_element(&[PublishedKey::new(
            key.public(),
            now,
        )]))
    };

    // Beta's operator asks slow to be a buddy; slow agrees, then is slow to answer the key fetch.
    let body = json!({ "jid": slow.jid(), "trust": "auto-apply" });
    assert_eq!(federation.beta.call(reqwest::Method::POST, "/v1/peers", Some(body)).await.0, 202);
    let subscribe = slow.wait_for(Duration::from_secs(20), |e| e.name() == "presence").await.expect("beta's subscribe");
    assert_eq!(subscribe.attr("type"), Some("subscribe"));
    let answer = format!("<presence xmlns='{COMPONENT_NS}' type='subscribed' from='{}' to='{BETA}'/>", slow.jid());
    slow.send_raw(answer.as_bytes()).await.unwrap();
    let fetch = slow
        .wait_for(Duration::from_secs(20), |e| e.name() == "iq" && e.children().any(|c| c.name() == "keys"))
        .await
        .expect("beta's key fetch");
    let id = fetch.attr("id").unwrap().to_owned();

    // The stranger knows the id (the worst case) and sprays 400 results carrying its own key.
    let unmatched_before = federation.metric("ostracon_xmpp_unmatched_answers_total").await;
    for _ in 0..400 {
        let forged = format!(
            "<iq xmlns='{COMPONENT_NS}' type='result' from='{}' to='{BETA}' id='{id}'>{}</iq>",
            evil.jid(),
            keys_xml(&evil_key)
        );
        evil.send_raw(forged.as_bytes()).await.unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while federation.metric("ostracon_xmpp_unmatched_answers_total").await < unmatched_before + 400 {
        assert!(std::time::Instant::now() < deadline, "the forged answers were not all counted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let peers = federation.beta.get("/v1/peers").await;
    let pinned = peer(&peers, slow.jid()).unwrap();
    assert_eq!(pinned["state"], "requested", "nothing was pinned: {pinned}");
    assert!(pinned["keys"].as_array().unwrap().is_empty(), "{pinned}");

    // The real answer, from the peer asked, pins the peer's own key.
    let real = format!(
        "<iq xmlns='{COMPONENT_NS}' type='result' from='{}' to='{BETA}' id='{id}'>{}</iq>",
        slow.jid(),
        keys_xml(&slow_key)
    );
    slow.send_raw(real.as_bytes()).await.unwrap();
    let peers = federation
        .beta
        .wait_for("slow as a buddy", "/v1/peers", |p| peer(p, slow.jid()).is_some_and(|x| x["state"] == "buddy"))
        .await;
    let fingerprint = peer(&peers, slow.jid()).unwrap()["keys"][0]["fingerprint"].clone();
    assert_eq!(fingerprint, Value::String(slow_key.public().fingerprint()));
    federation.honest_traffic_flows(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscribe_storm_from_a_thousand_domains_is_capped_and_honest_deliveries_flow() {
    if !available() {
        return;
    }
    let names: Vec<String> = (0..1_000).map(|n| format!("storm{n}")).collect();
    let federation = federation("hostile-storm", &names).await;
    let mut stormers = Vec::new();
    for name in &names {
        let mut stormer = raw(&federation, name).await;
        let subscribe =
            format!("<presence xmlns='{COMPONENT_NS}' type='subscribe' from='{}' to='{BETA}'/>", stormer.jid());
        stormer.send_raw(subscribe.as_bytes()).await.unwrap();
        // They stay connected and never answer beta's key fetches.
        stormers.push(stormer);
    }
    // Every request was handled: the capped ones were counted, not recorded.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let peers = federation.beta.get("/v1/peers").await;
        let pending = peers["peers"].as_array().unwrap().iter().filter(|p| p["state"] == "pending").count();
        assert!(pending <= 100, "the cap on waiting requests holds: {pending}");
        let dropped = federation.metric("ostracon_xmpp_stanzas_dropped_total").await;
        if pending == 100 && dropped >= 900 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{pending} pending, {dropped} dropped");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A hundred silent strangers hold key fetches; buddies' deliveries do not wait for them.
    federation.honest_traffic_flows(3).await;
    drop(stormers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_buddy_at_a_hundred_times_the_rate_is_limited_from_any_resource_and_honest_reports_flow() {
    if !available() {
        return;
    }
    let federation = federation("hostile-flood", &["gamma".to_owned()]).await;
    let (mut gamma, key) = raw_buddy(&federation, "gamma", 77, "accept").await;
    let now = ostracon_protocol::time::Timestamp::from_datetime(chrono::Utc::now());

    // 2,000 signed reports as fast as the socket takes them, each from a new resource.
    let limited_before = federation.metric("ostracon_xmpp_rate_limited_total").await;
    let started = std::time::Instant::now();
    let signer = gamma.jid().to_owned();
    let mut ids = Vec::new();
    for n in 0..2_000u32 {
        let report = signed_report(
            &key,
            &signer,
            now,
            u128::from(n) + 1,
            u128::from(n) + 1,
            Status::New,
            &format!("192.0.2.{}", n % 250 + 1),
        );
        let id = format!("flood-{n}");
        let text = format!(
            "<iq xmlns='{COMPONENT_NS}' type='set' from='{signer}/r{n}' to='{BETA}' id='{id}'>{}</iq>",
            ostracon_protocol::xml::to_string(&report)
        );
        gamma.send_raw(text.as_bytes()).await.unwrap();
        ids.push(id);
    }
    let (mut accepted, mut limited) = (0u32, 0u32);
    for id in &ids {
        let answer = gamma.answer_to(id).await.unwrap_or_else(|| panic!("no answer to {id}"));
        match (answer.attr("type"), conditions(&answer).0.as_deref()) {
            (Some("result"), _) => accepted += 1,
            (_, Some("resource-constraint")) => limited += 1,
            other => panic!("{id}: {other:?}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The rate is 20 per second per bare JID after a burst of 100, whatever the resource.
    let allowance = 100.0 + 20.0 * elapsed + 1.0;
    assert!(f64::from(accepted) <= allowance, "{accepted} accepted in {elapsed:.1} s (allowance {allowance:.0})");
    assert!(limited >= 2_000 - allowance as u32, "{limited} limited");
    assert!(federation.metric("ostracon_xmpp_rate_limited_total").await >= limited_before + u64::from(limited));
    federation.honest_traffic_flows(4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metronome_style_reports_are_kept_for_the_operator_and_ambiguous_ones_are_refused() {
    if !available() {
        return;
    }
    let federation = federation("hostile-metronome", &["gamma".to_owned()]).await;
    let (mut gamma, _key) = raw_buddy(&federation, "gamma", 78, "accept").await;

    // Metronome's own bytes (spec/vectors/xep0268), issued under gamma's name.
    let vector = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec/vectors/xep0268/metronome-request-ip-cet.xml"),
    )
    .unwrap()
    .replace("request", "report")
    .replace("metronome.example", gamma.jid());
    let answer = gamma.iq(BETA, "set", vector.trim()).await.unwrap();
    assert_eq!(answer.attr("type"), Some("result"), "{}", String::from(&answer));
    let stored = federation
        .beta
        .wait_for("the Metronome report", "/v1/incidents?origin=unsigned", |l| {
            l["incidents"].as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
    let incident = &stored["incidents"][0];
    assert_eq!(incident["decision"], "pending", "unsigned reports wait for the operator: {incident}");
    let offenders: Vec<&str> =
        incident["incident"]["offenders"].as_array().unwrap().iter().filter_map(|o| o["value"].as_str()).collect();
    assert_eq!(offenders, ["203.0.113.45", "2001:db8::17"]);

    // Two IncidentIDs: which one would it be? Refused, not resolved by picking one.
    let ambiguous = vector.replacen("<IncidentID", "<IncidentID name='x.example'>other</IncidentID><IncidentID", 1);
    let answer = gamma.iq(BETA, "set", ambiguous.trim()).await.unwrap();
    assert_eq!(conditions(&answer).0.as_deref(), Some("bad-request"), "{}", String::from(&answer));
    federation.honest_traffic_flows(5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_auto_apply_buddy_cannot_list_everything_or_what_is_ours() {
    if !available() {
        return;
    }
    let federation = federation("hostile-scope", &["gamma".to_owned()]).await;
    let (mut gamma, key) = raw_buddy(&federation, "gamma", 79, "auto-apply").await;
    let now = ostracon_protocol::time::Timestamp::from_datetime(chrono::Utc::now());
    let signer = gamma.jid().to_owned();
    let out_of_scope = ["0.0.0.0/0", "::/0", "10.0.0.0/8", "127.0.0.1", "beta.test", "alpha.test", "someone@beta.test"];
    for (n, offender) in out_of_scope.iter().chain(&["198.18.7.7"]).enumerate() {
        let number = n as u128 + 1;
        let report = signed_report(&key, &signer, now, number, number, Status::New, offender);
        let answer = gamma.iq(BETA, "set", &ostracon_protocol::xml::to_string(&report)).await.unwrap();
        assert_eq!(answer.attr("type"), Some("result"), "{offender}: {}", String::from(&answer));
    }
    // The in-scope one lists at once (auto-apply); nothing else does.
    federation.beta.wait_for("the in-scope report", "/v1/lookup/ip/198.18.7.7", |l| l["listed"] == true).await;
    for path in [
        "ip/203.0.113.9",
        "ip/2001:4860::1",
        "ip/10.1.2.3",
        "domain/beta.test",
        "domain/alpha.test",
        "jid/someone@beta.test",
    ] {
        let lookup = federation.beta.get(&format!("/v1/lookup/{path}")).await;
        assert_eq!(lookup["listed"], false, "{path}: {lookup}");
    }
    federation.honest_traffic_flows(6).await;
}
