//! Two nodes as components of one real Prosody: the XEP-0267 buddy handshake with key
//! pinning, a signed XEP-0268 report delivered, verified and listed, refusals of a non-buddy,
//! and delivery of a report queued while the receiving node was down.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Node, peer};
use ostracon_tests::TempDir;
use ostracon_tests::prosody::{ComponentSpec, Prosody, available};
use ostracon_tests::raw_component::signed_report;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn buddies_exchange_signed_reports_through_prosody() {
    if !available() {
        return;
    }
    let components = common::component_specs(&["alpha.test", "beta.test"]);
    let prosody = Prosody::start(&["alpha.test", "beta.test"], &components);
    let dir = Arc::new(TempDir::new("xmpp"));
    let alpha = Node::start("alpha.test", &prosody, Arc::clone(&dir)).await;
    let mut beta = Node::start("beta.test", &prosody, Arc::clone(&dir)).await;
    alpha.wait_online().await;
    beta.wait_online().await;

    // Alpha's operator asks beta; beta's operator sees alpha's key fingerprints, then approves.
    let request = json!({ "jid": "incidents.beta.test", "trust": "auto-apply" });
    let (status, body) = alpha.call(reqwest::Method::POST, "/v1/peers", Some(request)).await;
    assert_eq!(status, 202, "{body}");
    let pending = beta
        .wait_for("alpha's request with keys at beta", "/v1/peers", |p| {
            peer(p, "incidents.alpha.test")
                .is_some_and(|a| a["state"] == "pending" && !a["keys"].as_array().unwrap().is_empty())
        })
        .await;
    let alpha_key = &peer(&pending, "incidents.alpha.test").unwrap()["keys"][0];
    let alpha_published = alpha.get("/.well-known/ostracon").await;
    assert_eq!(alpha_key["kid"], alpha_published["keys"][0]["kid"], "beta fetched alpha's real key over XMPP");
    assert_eq!(
        alpha.get("/v1/peers").await["peers"][0]["state"],
        "requested",
        "nothing happens without beta's operator"
    );

    // `auto-apply`: one report from alpha lists at beta (an `accept` buddy would need a quorum).
    let approval = json!({ "trust": "auto-apply" });
    let (status, body) =
        beta.call(reqwest::Method::POST, "/v1/peers/incidents.alpha.test/approve", Some(approval)).await;
    assert_eq!(status, 200, "{body}");
    alpha
        .wait_for("beta as buddy at alpha", "/v1/peers", |p| {
            peer(p, "incidents.beta.test")
                .is_some_and(|b| b["state"] == "buddy" && !b["keys"].as_array().unwrap().is_empty())
        })
        .await;

    // A shared incident at alpha reaches beta as a signed report and lands on beta's list.
    let (status, created) = alpha
        .call(
            reqwest::Method::POST,
            "/v1/incidents",
            Some(json!({ "offenders": ["198.51.100.77", "flooder@spam.example"], "category": "muc-abuse", "severity": "high", "share": true })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("incidents.alpha.test:"));
    let lookup = beta.wait_for("the report at beta", "/v1/lookup/ip/198.51.100.77", |l| l["listed"] == true).await;
    assert_eq!(lookup["matches"][0]["why"]["reasons"][0]["incident"], id);
    assert_eq!(lookup["matches"][0]["why"]["reasons"][0]["reporter"], "incidents.alpha.test");
    let stored = beta.get(&format!("/v1/incidents/{id}")).await;
    assert_eq!(stored["origin"], "peer");
    assert_eq!(stored["decision"], "accepted");
    assert_eq!(stored["provenance"][0]["signer"], "incidents.alpha.test", "the signed envelope is kept as provenance");
    let (_, jids) = (0, beta.get("/v1/lookup/jid/flooder@spam.example").await);
    assert_eq!(jids["listed"], true);

    // Alpha's outbox shows the report as delivered to beta, in both of the CLI's forms, and
    // /metrics counts beta's confirmations, with nothing waiting.
    let outbox = alpha
        .wait_for("the report's delivery recorded", "/v1/outbox?peer=incidents.beta.test&state=delivered", |o| {
            o["outbox"].as_array().is_some_and(|items| items.iter().any(|i| i["kind"] == "report"))
        })
        .await;
    let report = outbox["outbox"].as_array().unwrap().iter().find(|i| i["kind"] == "report").unwrap();
    assert_eq!(report["about"], json!(id), "{report}");
    assert!(report["attempts"].as_u64().is_some_and(|n| n >= 1), "a delivery is an attempt: {report}");
    let listed: Value = serde_json::from_str(&common::cli(
        &alpha.url,
        &["outbox", "--peer", "incidents.beta.test", "--state", "delivered", "-o", "json"],
    ))
    .unwrap();
    assert_eq!(listed["outbox"], outbox["outbox"], "the CLI's JSON is the API's answer");
    let table = common::cli(&alpha.url, &["outbox", "--peer", "incidents.beta.test", "-o", "text"]);
    assert!(table.starts_with("ID  PEER") && table.contains("NEXT TRY"), "{table}");
    assert!(table.lines().any(|l| l.contains("report") && l.contains("delivered")), "{table}");
    let metrics = common::metrics(&alpha.url, true).await;
    let sample = |family| common::peer_sample(&metrics, family, "incidents.beta.test");
    assert!(sample("ostracon_peer_deliveries_total").is_some_and(|n| n >= 1), "{metrics}");
    assert_eq!(sample("ostracon_peer_outbox_pending"), Some(0), "{metrics}");

    // A report queued while beta is down is delivered once it is back.
    beta.stop().await;
    let (status, created) = alpha
        .call(
            reqwest::Method::POST,
            "/v1/incidents",
            Some(json!({ "offenders": ["203.0.113.200"], "category": "spam", "share": true })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    beta.restart().await;
    beta.wait_for("the delayed report at beta", "/v1/lookup/ip/203.0.113.200", |l| l["listed"] == true).await;

    // Alpha retracts the first incident: the signed retraction reaches beta, which delists.
    let (status, body) = alpha.call(reqwest::Method::POST, &format!("/v1/incidents/{id}/retract"), None).await;
    assert_eq!(status, 200, "{body}");
    beta.wait_for("the retraction at beta", "/v1/lookup/ip/198.51.100.77", |l| l["listed"] == false).await;
    assert_eq!(beta.get(&format!("/v1/incidents/{id}")).await["incident"]["status"], "retracted");
    assert_eq!(beta.get("/v1/lookup/jid/flooder@spam.example").await["listed"], false);
    assert_eq!(beta.get("/v1/lookup/ip/203.0.113.200").await["listed"], true, "other incidents are untouched");
    assert!(prosody.log().contains("incidents.beta.test"));

    // The probe `peers add` queues: beta answered as an incident node; a server JID and a
    // host nobody serves show their error, and the host that never answers is unreachable.
    let delivery = |peers: &Value, jid: &str| peer(peers, jid).map(|p| p["delivery"].clone()).unwrap_or_default();
    assert_eq!(delivery(&alpha.get("/v1/peers").await, "incidents.beta.test")["status"], "ok");
    for jid in ["alpha.test", "incidents.nowhere.test"] {
        let (status, body) = alpha.call(reqwest::Method::POST, "/v1/peers", Some(json!({ "jid": jid }))).await;
        assert_eq!(status, 202, "{body}");
    }
    let peers = alpha
        .wait_for_within(Duration::from_secs(60), "the probes' errors", "/v1/peers", |p| {
            ["alpha.test", "incidents.nowhere.test"].iter().all(|jid| delivery(p, jid)["status"] == "unreachable")
        })
        .await;
    // Prosody answers for its own host (`service-unavailable` to a component's disco#info),
    // and for a host it cannot reach (`remote-server-not-found`).
    let server = delivery(&peers, "alpha.test");
    assert_eq!(server["last_error"], "service-unavailable", "{server}");
    let nowhere = delivery(&peers, "incidents.nowhere.test");
    assert_eq!(nowhere["last_error"], "remote-server-not-found", "{nowhere}");
}

/// A bare component driven by the test, to send what an honest node never would (the raw
/// component of the test crate, with the calls these tests make).
struct RawComponent(ostracon_tests::raw_component::RawComponent);

impl RawComponent {
    async fn connect(jid: &str, secret: &str, prosody: &Prosody) -> Self {
        let raw = ostracon_tests::raw_component::RawComponent::connect(prosody.component_address, jid, secret)
            .await
            .expect("raw component connects");
        Self(raw)
    }

    /// Sends a stanza given as XML text, without waiting for anything.
    async fn send(&mut self, text: &str) {
        self.0.send_raw(text.as_bytes()).await.unwrap();
    }

    /// Sends an IQ with `payload` and returns the answer's type and error conditions.
    async fn iq(
        &mut self,
        to: &str,
        iq_type: &str,
        payload: minidom::Element,
    ) -> (String, Option<String>, Option<String>) {
        let answer = self.0.iq(to, iq_type, &ostracon_protocol::xml::to_string(&payload)).await.unwrap();
        let (defined, app) = ostracon_tests::raw_component::conditions(&answer);
        (answer.attr("type").unwrap_or_default().to_owned(), defined, app)
    }

    async fn accept_buddy_request(&mut self, from: &str, keys: &[ostracon_protocol::keys::PublishedKey]) {
        let keys = ostracon_protocol::xml::to_string(&ostracon_protocol::xml::keys::keys_to_element(keys));
        self.0.accept_buddy_request(from, &keys).await.unwrap();
    }
}

fn report(
    key: &ostracon_protocol::keys::NodeKey,
    signer: &str,
    at: ostracon_protocol::time::Timestamp,
    nonce: u8,
) -> minidom::Element {
    use ostracon_protocol::incident::Status;
    signed_report(
        key,
        signer,
        at,
        u128::from(nonce) + 1000,
        u128::from(nonce),
        Status::New,
        &format!("192.0.2.{nonce}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_unknown_replayed_and_stranger_reports_are_refused_with_their_conditions() {
    use ostracon_protocol::keys::{NodeKey, PublishedKey};
    use ostracon_protocol::time::Timestamp;

    if !available() {
        return;
    }
    // Gamma is a buddy of beta whose key beta pinned, and a key it retired an hour ago.
    let gamma_key = NodeKey::from_seed(&[0x6a; 32]);
    let now = Timestamp::from_datetime(chrono_now());
    let mut retired = PublishedKey::new(NodeKey::from_seed(&[0x6b; 32]).public(), now.plus_secs(-172_800));
    retired.valid_until = Some(now.plus_secs(-3_600));
    let keys = vec![PublishedKey::new(gamma_key.public(), now.plus_secs(-86_400)), retired];
    let delta = ComponentSpec { domain: "incidents.delta.test".into(), secret: "delta-secret-delta-secret".into() };
    let RawBuddy { prosody, beta, mut gamma, _dir } = beta_with_raw_buddy("xmpp-refusals", keys, &[delta], now).await;
    let to = "incidents.beta.test";

    let (kind, ..) = gamma.iq(to, "set", report(&gamma_key, "incidents.gamma.test", now, 1)).await;
    assert_eq!(kind, "result", "a valid signed report from a buddy is taken");
    beta.wait_for("gamma's report listed", "/v1/lookup/ip/192.0.2.1", |l| l["listed"] == true).await;

    let answer = gamma.iq(to, "set", report(&gamma_key, "incidents.gamma.test", now, 1)).await;
    assert_eq!(answer, ("error".into(), Some("conflict".into()), Some("replay".into())));

    let mut forged = report(&gamma_key, "incidents.gamma.test", now, 2);
    let text = ostracon_protocol::xml::to_string(&forged);
    let payload_start = text.find("<payload>").unwrap() + "<payload>".len();
    let flipped = if &text[payload_start..payload_start + 1] == "e" { "f" } else { "e" };
    forged = format!("{}{flipped}{}", &text[..payload_start], &text[payload_start + 1..]).parse().unwrap();
    let answer = gamma.iq(to, "set", forged).await;
    assert_eq!(answer.2.as_deref(), Some("bad-signature"), "{answer:?}");

    let stranger_key = NodeKey::from_seed(&[0x77; 32]);
    let answer = gamma.iq(to, "set", report(&stranger_key, "incidents.gamma.test", now, 3)).await;
    assert_eq!((answer.1.as_deref(), answer.2.as_deref()), (Some("not-authorized"), Some("unknown-key")));

    let answer = gamma.iq(to, "set", report(&gamma_key, "incidents.gamma.test", now.plus_secs(-3_600), 4)).await;
    assert_eq!(answer.2.as_deref(), Some("bad-timestamp"));

    let retired_key = NodeKey::from_seed(&[0x6b; 32]);
    let answer = gamma.iq(to, "set", report(&retired_key, "incidents.gamma.test", now, 6)).await;
    assert_eq!(answer.2.as_deref(), Some("unknown-key"), "a retired key cannot sign new reports: {answer:?}");

    // A plain XEP-0268 report (as Metronome sends): kept as unsigned, waiting, never listed by itself.
    let plain_text = "<report xmlns='urn:xmpp:incident:2'><Incident xmlns='urn:ietf:params:xml:ns:iodef-1.0' purpose='reporting'>\
         <IncidentID name='incidents.gamma.test'>0f6c1c52-7d3e-4e0a-9a51-2b1f4a7e9c10</IncidentID><ReportTime>2026-05-01T10:20:00Z</ReportTime>\
         <Assessment><Impact severity='low' type='ext-type' ext-type='spam'/></Assessment>\
         <EventData><Flow><System category='source'><Node><Address category='ipv4-addr'>192.0.2.77</Address></Node></System></Flow></EventData>\
         </Incident></report>";
    let plain = ostracon_protocol::xml::parse_bounded(plain_text).unwrap();
    // Under a parent domain's name it could squat that domain's ids: refused.
    let squatting = plain_text.replace("name='incidents.gamma.test'", "name='gamma.test'");
    let answer = gamma.iq(to, "set", ostracon_protocol::xml::parse_bounded(&squatting).unwrap()).await;
    assert_eq!(answer.2.as_deref(), Some("signer-mismatch"), "an unsigned report only under the sender's own name");
    assert_eq!(gamma.iq(to, "set", plain).await.0, "result");
    let stored = beta.get("/v1/incidents/incidents.gamma.test:0f6c1c52-7d3e-4e0a-9a51-2b1f4a7e9c10").await;
    assert_eq!(
        (stored["origin"].as_str(), stored["decision"].as_str()),
        (Some("unsigned"), Some("pending")),
        "{stored}"
    );
    assert_eq!(beta.get("/v1/lookup/ip/192.0.2.77").await["listed"], false);

    let answer = gamma.iq(to, "set", "<report xmlns='urn:xmpp:incident:2'/>".parse().unwrap()).await;
    assert_eq!(answer.1.as_deref(), Some("bad-request"));

    // Delta is not a buddy: forbidden, whatever it sends.
    let delta_key = NodeKey::from_seed(&[0x0d; 32]);
    let mut delta = RawComponent::connect("incidents.delta.test", "delta-secret-delta-secret", &prosody).await;
    let answer = delta.iq(to, "set", report(&delta_key, "incidents.delta.test", now, 5)).await;
    assert_eq!((answer.1.as_deref(), answer.2.as_deref()), (Some("forbidden"), Some("not-buddy")));
    let score: minidom::Element = "<score xmlns='urn:xmpp:reputation:0' jid='spam.example'/>".parse().unwrap();
    let answer = delta.iq(to, "get", score).await;
    assert_eq!(answer.1.as_deref(), Some("forbidden"), "XEP-0275 answers only buddies");

    // /metrics counts the buddy's refusals by name, for an admin only; a stranger's are only
    // in the link-wide counter (its name would be a label anyone could mint).
    let metrics = common::metrics(&beta.url, true).await;
    let refused = common::peer_sample(&metrics, "ostracon_peer_refusals_total", "incidents.gamma.test");
    assert!(refused.is_some_and(|n| n >= 6), "gamma's six refusals: {refused:?}\n{metrics}");
    assert!(!metrics.contains("peer=\"incidents.delta.test\""), "{metrics}");
    assert!(!common::metrics(&beta.url, false).await.contains("ostracon_peer_"), "per-peer numbers are not public");

    // Disco and keys answer anyone.
    let disco: minidom::Element = "<query xmlns='http://jabber.org/protocol/disco#info'/>".parse().unwrap();
    assert_eq!(delta.iq(to, "get", disco).await.0, "result");

    // A user's report relayed in the mod_report_forward shape: from a buddy, with the user's
    // consent to tell the offender's server, it waits for the operator; from a stranger it is dropped.
    let relayed = |from: &str, jid: &str, consent: &str| {
        format!(
            "<message xmlns='{}' from='{from}' to='{to}' id='r-{jid}'><body>SPAM/ABUSE REPORT</body>\
             <report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:abuse'><text>harassment</text>{consent}\
             <jid xmlns='urn:xmpp:jid:0'>{jid}</jid></report></message>",
            ostracon_tests::raw_component::COMPONENT_NS
        )
    };
    delta.send(&relayed("incidents.delta.test", "stranger@beta.test", "<report-origin/>")).await;
    gamma.send(&relayed("incidents.gamma.test", "troll@beta.test", "<report-origin/>")).await;
    let pending = beta
        .wait_for("the relayed report at beta", "/v1/incidents?origin=user-report", |l| {
            l["incidents"].as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
    // The stranger's message was sent first; give it a bounded while to (wrongly) show up.
    for _ in 0..10 {
        let all = beta.get("/v1/incidents?origin=user-report").await;
        assert_eq!(all["incidents"].as_array().map(Vec::len), Some(1), "only the buddy's report is kept: {all}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let candidates = pending["incidents"].as_array().unwrap();
    assert_eq!(candidates[0]["decision"], "pending");
    assert_eq!(candidates[0]["incident"]["category"], "abuse");
    assert_eq!(
        beta.get("/v1/lookup/jid/troll@beta.test").await["listed"],
        false,
        "nothing is listed before the operator"
    );
    let id = candidates[0]["id"].as_str().unwrap();
    // The operator sees it waiting in the CLI's table, and accepts it there.
    let waiting = common::cli(&beta.url, &["incident", "list", "--decision", "pending", "-o", "text"]);
    let header = waiting.lines().next().unwrap_or_default();
    assert!(header.starts_with("SEQ") && header.contains("DECISION") && header.contains("OFFENDERS"), "{waiting}");
    assert!(
        waiting.lines().any(|l| l.contains(id) && l.contains("pending") && l.contains("troll@beta.test")),
        "{waiting}"
    );
    let accepted: Value =
        serde_json::from_str(&common::cli(&beta.url, &["incident", "accept", id, "-o", "json"])).unwrap();
    assert_eq!(
        (&accepted["decision"], &accepted["listed"]),
        (&json!("accepted"), &json!(["troll@beta.test"])),
        "{accepted}"
    );
    assert_eq!(beta.get("/v1/lookup/jid/troll@beta.test").await["listed"], true);
    assert_eq!(delta.iq(to, "get", ostracon_protocol::xml::keys::keys_query()).await.0, "result");
    // Nothing refused was listed.
    for n in [2, 3, 4, 5] {
        assert_eq!(beta.get(&format!("/v1/lookup/ip/192.0.2.{n}")).await["listed"], false);
    }
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

/// The seed flow: the victim asks the flooder's home server, which confirms, lists the IPs
/// only it knows under its own signature, and answers; the victim gets them too. Also an
/// inquiry, answered later by a report.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_response_and_inquiry_round_trips() {
    if !available() {
        return;
    }
    let components = common::component_specs(&["victim.test", "home.test"]);
    let prosody = Prosody::start(&["victim.test", "home.test"], &components);
    let dir = Arc::new(TempDir::new("seed"));
    let victim = Node::start("victim.test", &prosody, Arc::clone(&dir)).await;
    let home = Node::start("home.test", &prosody, Arc::clone(&dir)).await;
    victim.wait_online().await;
    home.wait_online().await;
    common::make_buddies(&victim, "incidents.victim.test", &home, "incidents.home.test").await;

    // The victim knows only the flooder's JID.
    let (_, created) = victim
        .call(
            reqwest::Method::POST,
            "/v1/incidents",
            Some(json!({ "offenders": ["flooder@home.test"], "category": "muc-abuse", "severity": "high", "action": "disable-account" })),
        )
        .await;
    let request_id = created["id"].as_str().unwrap().to_owned();
    let (status, body) = victim
        .call(
            reqwest::Method::POST,
            &format!("/v1/incidents/{request_id}/request"),
            Some(json!({ "to": "incidents.home.test" })),
        )
        .await;
    assert_eq!(status, 202, "{body}");

    // The home server sees the request, waiting for its operator.
    let requests = home
        .wait_for("the request at home", "/v1/incidents?verb=request", |l| {
            l["incidents"].as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
    assert_eq!(requests["incidents"][0]["id"], request_id);
    assert_eq!(requests["incidents"][0]["decision"], "pending");
    assert_eq!(requests["incidents"][0]["counterpart"], "incidents.victim.test");
    assert_eq!(
        home.get("/v1/lookup/jid/flooder@home.test").await["listed"],
        false,
        "a request lists nothing by itself"
    );

    // Its operator confirms and supplies the flooder's IP.
    let (status, answered) = home
        .call(
            reqwest::Method::POST,
            &format!("/v1/incidents/{request_id}/respond"),
            Some(json!({ "offenders": ["203.0.113.66", "flooder@home.test"], "action": "disable-account", "note": "account disabled; IP listed" })),
        )
        .await;
    assert_eq!(status, 201, "{answered}");
    let response_id = answered["id"].as_str().unwrap().to_owned();
    let at_home = home.get("/v1/lookup/ip/203.0.113.66").await;
    assert_eq!(at_home["listed"], true);
    assert_eq!(
        at_home["matches"][0]["why"]["reasons"][0]["reporter"], "incidents.home.test",
        "listed under the home server's own name"
    );
    let (status, _) = home
        .call(
            reqwest::Method::POST,
            &format!("/v1/incidents/{request_id}/respond"),
            Some(json!({ "offenders": ["203.0.113.67"] })),
        )
        .await;
    assert_eq!(status, 409, "a request is answered once");

    // The signed response reaches the victim, which now lists the IP it could not know.
    let at_victim =
        victim.wait_for("the response's IP at the victim", "/v1/lookup/ip/203.0.113.66", |l| l["listed"] == true).await;
    assert_eq!(at_victim["matches"][0]["why"]["reasons"][0]["incident"], response_id);
    let responses = victim.get("/v1/incidents?verb=response").await;
    assert_eq!(responses["incidents"][0]["incident"]["related"], request_id);
    assert_eq!(responses["incidents"][0]["incident"]["history"][0]["action"], "disable-account");
    assert_eq!(responses["incidents"][0]["provenance"][0]["typ"], "incident-response");

    // Inquiry: the victim asks about a report the home server kept to itself; an id is no key
    // to it, so nothing arrives. A report home shared with the victim is what an inquiry may
    // bring again (spec/protocol.md, Inquiries).
    let (_, own) = home
        .call(
            reqwest::Method::POST,
            "/v1/incidents",
            Some(json!({ "offenders": ["198.51.100.150"], "category": "brute-force" })),
        )
        .await;
    let own_id = own["id"].as_str().unwrap().to_owned();
    let (status, _) = victim
        .call(
            reqwest::Method::POST,
            &format!("/v1/incidents/{own_id}/inquire"),
            Some(json!({ "to": "incidents.home.test" })),
        )
        .await;
    assert_eq!(status, 202);
    let (_, shared) = home
        .call(
            reqwest::Method::POST,
            "/v1/incidents",
            Some(json!({ "offenders": ["198.51.100.151"], "category": "brute-force", "share": true })),
        )
        .await;
    let shared_id = shared["id"].as_str().unwrap().to_owned();
    let (status, _) = victim
        .call(
            reqwest::Method::POST,
            &format!("/v1/incidents/{shared_id}/inquire"),
            Some(json!({ "to": "incidents.home.test" })),
        )
        .await;
    assert_eq!(status, 202);
    // The shared one lists alone (auto-apply): that home.test hosted the flooder lowers its
    // score, not its voice as a reporter. The kept one, asked about first, never came.
    victim.wait_for("the shared report at the victim", "/v1/lookup/ip/198.51.100.151", |l| l["listed"] == true).await;
    let kept = victim.get(&format!("/v1/incidents/{own_id}")).await;
    assert!(kept["id"].is_null(), "an unshared report is never sent on inquiry: {kept}");
    assert_eq!(victim.get("/v1/lookup/ip/198.51.100.150").await["listed"], false);
    // The answer to our request counted for it.
    let reputation = victim.get("/v1/reputation/home.test").await;
    assert!(reputation["components"]["requests"].as_i64().unwrap() > 0, "{reputation}");
    let unknown = "incidents.home.test:00000000-0000-0000-0000-00000000dead";
    let (status, _) = victim
        .call(
            reqwest::Method::POST,
            &format!("/v1/incidents/{unknown}/inquire"),
            Some(json!({ "to": "incidents.home.test" })),
        )
        .await;
    assert_eq!(status, 202, "queued; the home server answers item-not-found, which the outbox records");

    // XEP-0275: the victim asks its buddies about the flooder; the home server, which lists
    // the account, answers with a score that the victim keeps.
    let (status, asked) = victim
        .call(reqwest::Method::POST, "/v1/peers/scores/ask", Some(json!({ "subject": "flooder@home.test" })))
        .await;
    assert_eq!(status, 202, "{asked}");
    assert_eq!(asked["asked"], json!(["incidents.home.test"]));
    let scores = victim
        .wait_for("the home server's score", "/v1/peers/scores?subject=flooder@home.test", |s| {
            s["answers"].as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
    assert_eq!(scores["answers"][0]["peer"], "incidents.home.test");
    assert_eq!(scores["answers"][0]["num"], -100);
}

/// Forwarding: beta forwards alpha's report to gamma, keeping alpha's signature and adding
/// its own; gamma verifies both links. Alpha does not share with gamma directly (it only
/// observes gamma), so the report can only arrive through beta.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_buddy_forwards_a_report_with_its_provenance_chain() {
    if !available() {
        return;
    }
    let domains = ["alpha.test", "beta.test", "gamma.test"];
    let components = common::component_specs(&domains);
    let prosody = Prosody::start(&domains, &components);
    let dir = Arc::new(TempDir::new("forward"));
    let hops = |config: &mut ostracon::config::Config| {
        if let Some(xmpp) = config.xmpp.as_mut() {
            xmpp.forward_hops = 1;
        }
    };
    let alpha = Node::start_with("alpha.test", &prosody, Arc::clone(&dir), hops).await;
    let beta = Node::start_with("beta.test", &prosody, Arc::clone(&dir), hops).await;
    let gamma = Node::start_with("gamma.test", &prosody, Arc::clone(&dir), hops).await;
    for node in [&alpha, &beta, &gamma] {
        node.wait_for("online", "/healthz", |h| h["xmpp"] == "online").await;
    }
    common::make_buddies(&alpha, "incidents.alpha.test", &beta, "incidents.beta.test").await;
    common::make_buddies(&beta, "incidents.beta.test", &gamma, "incidents.gamma.test").await;
    common::make_buddies(&gamma, "incidents.gamma.test", &alpha, "incidents.alpha.test").await;
    let (status, _) = alpha
        .call(reqwest::Method::POST, "/v1/peers/incidents.gamma.test/trust", Some(json!({ "trust": "observe" })))
        .await;
    assert_eq!(status, 200);

    let (_, created) = alpha
        .call(
            reqwest::Method::POST,
            "/v1/incidents",
            Some(json!({ "offenders": ["192.0.2.222"], "category": "spam", "share": true })),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    gamma.wait_for("the forwarded report at gamma", "/v1/lookup/ip/192.0.2.222", |l| l["listed"] == true).await;
    let stored = gamma.get(&format!("/v1/incidents/{id}")).await;
    let chain = stored["provenance"].as_array().unwrap();
    assert_eq!(chain.len(), 2, "{stored}");
    assert_eq!(chain[0]["signer"], "incidents.alpha.test");
    assert_eq!(chain[1]["signer"], "incidents.beta.test");
    assert_eq!(chain[1]["typ"], "forward");
    assert_eq!(stored["counterpart"], "incidents.beta.test");
    // The chain stops there: gamma's hop limit is 1, and alpha is already in the chain.
    let at_alpha = alpha.get(&format!("/v1/incidents/{id}")).await;
    assert_eq!(at_alpha["origin"], "local", "the report never comes back to its issuer as a peer's");
}

/// Key rotation on the running node: the old key signs the announcement, every signer
/// switches at once, the buddy pins the new key, reports signed with the new key are accepted
/// with no restart, and the old key stays published as retired.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_rotation_signed_by_the_old_key_is_pinned_by_buddies() {
    if !available() {
        return;
    }
    let components = common::component_specs(&["alpha.test", "beta.test"]);
    let prosody = Prosody::start(&["alpha.test", "beta.test"], &components);
    let dir = Arc::new(TempDir::new("rotation"));
    let alpha = Node::start("alpha.test", &prosody, Arc::clone(&dir)).await;
    let beta = Node::start("beta.test", &prosody, Arc::clone(&dir)).await;
    alpha.wait_online().await;
    beta.wait_online().await;
    common::make_buddies(&alpha, "incidents.alpha.test", &beta, "incidents.beta.test").await;
    let old_kid = alpha.get("/.well-known/ostracon").await["keys"][0]["kid"].as_str().unwrap().to_owned();

    let (status, rotation) = alpha.call(reqwest::Method::POST, "/v1/key/rotate", None).await;
    assert_eq!(status, 200, "{rotation}");
    assert_eq!(rotation["old"], old_kid.as_str());
    assert_eq!(rotation["announced_to"], json!(["incidents.beta.test"]));
    let new_kid = rotation["new"].as_str().unwrap().to_owned();

    // At once, with no restart: published, signing the checkpoint, recorded in the log.
    let published = alpha.get("/.well-known/ostracon").await;
    assert_eq!(published["keys"].as_array().unwrap().len(), 2);
    assert_eq!(published["keys"][0]["kid"], old_kid.as_str());
    assert_eq!(published["keys"][1]["kid"], new_kid.as_str());
    assert!(published["keys"][0]["valid_until"].is_string(), "the old key is published as retired");
    assert_eq!(alpha.get("/v1/status").await["node"]["key"]["kid"], new_kid.as_str());
    let leaf = rotation["log_index"].as_u64().unwrap();
    let log = alpha.get(&format!("/v1/log/entries?start={leaf}&end={}", leaf + 1)).await;
    assert_eq!(log["entries"][0]["record"]["event"], "key-rotated", "{log}");
    // The key file holds the new key, so a restart keeps it.
    let on_disk = std::fs::read_to_string(alpha.config.node.data_dir.join("retired-keys.json")).unwrap();
    assert!(on_disk.contains(&old_kid), "{on_disk}");

    let peers = beta
        .wait_for("the new key pinned at beta", "/v1/peers", |p| {
            peer(p, "incidents.alpha.test")
                .is_some_and(|a| a["keys"].as_array().is_some_and(|k| k.iter().any(|k| k["kid"] == new_kid.as_str())))
        })
        .await;
    let keys = &peer(&peers, "incidents.alpha.test").unwrap()["keys"];
    assert!(keys.as_array().unwrap().iter().any(|k| k["kid"] == old_kid.as_str() && k["valid_until"].is_string()));

    let (status, _) = alpha
        .call(
            reqwest::Method::POST,
            "/v1/incidents",
            Some(json!({ "offenders": ["192.0.2.201"], "category": "spam", "share": true })),
        )
        .await;
    assert_eq!(status, 201);
    let at_beta =
        beta.wait_for("a report signed with the new key", "/v1/lookup/ip/192.0.2.201", |l| l["listed"] == true).await;
    let id = at_beta["matches"][0]["why"]["reasons"][0]["incident"].as_str().unwrap().to_owned();
    assert_eq!(beta.get(&format!("/v1/incidents/{id}")).await["provenance"][0]["kid"], new_kid.as_str());
}

/// spec/reputation.md, Reporter weight: a buddy whose reports keep being withdrawn loses
/// weight, then reaches `ignore_below` (-20, after seven) and its reports are stored as
/// ignored, not listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_buddy_that_keeps_retracting_loses_weight_then_is_ignored() {
    use ostracon_protocol::ids::{Domain, IncidentId};
    use ostracon_protocol::incident::Status;
    use ostracon_protocol::keys::{NodeKey, PublishedKey};
    use ostracon_protocol::time::Timestamp;

    if !available() {
        return;
    }
    let gamma_key = NodeKey::from_seed(&[0x5c; 32]);
    let now = Timestamp::from_datetime(chrono_now());
    let keys = vec![PublishedKey::new(gamma_key.public(), now.plus_secs(-86_400))];
    let RawBuddy { beta, mut gamma, prosody: _prosody, _dir } =
        beta_with_raw_buddy("xmpp-reputation", keys, &[], now).await;
    let to = "incidents.beta.test";
    let signer = "incidents.gamma.test";
    let id_of =
        |number: u128| IncidentId::new(Domain::parse(signer).unwrap(), uuid::Uuid::from_u128(number)).to_string();

    retract_reports(&mut gamma, &beta, &gamma_key, now, 1..=4).await;

    // Four withdrawals in a row (a buddy's +10, four times -5): gamma.test scores -9. It is
    // still listened to, but at less than full weight its report no longer lists alone: the
    // contribution waits for a quorum of independent reporters.
    let score = beta.get("/v1/reputation/gamma.test").await["score"].as_i64().unwrap();
    assert!((-20..0).contains(&score), "between ignore_below and neutral: {score}");
    let report = signed_report(&gamma_key, signer, now, 50, 50, Status::New, "192.0.2.50");
    assert_eq!(gamma.iq(to, "set", report).await.0, "result");
    assert_eq!(beta.get(&format!("/v1/incidents/{}", id_of(50))).await["decision"], "accepted");
    let lookup = beta.get("/v1/lookup/ip/192.0.2.50").await;
    assert_eq!(lookup["listed"], false, "{lookup}");
    let waiting = &lookup["awaiting_quorum"];
    // The accusation short of a quorum is the operator's alone: the public lookup does not
    // show it, and the public log holds it sealed.
    let public = reqwest::get(format!("{}/v1/lookup/ip/192.0.2.50", beta.url)).await.unwrap().text().await.unwrap();
    let public: Value = serde_json::from_str(&public).unwrap();
    assert!(public.get("awaiting_quorum").is_none() && public["listed"] == false, "{public}");
    let log = reqwest::get(format!("{}/v1/log/entries?start=0", beta.url)).await.unwrap().text().await.unwrap();
    assert!(!log.contains("192.0.2.50") && log.contains("\"sealed\""), "{log}");
    let weight = waiting["reasons"][0]["weight"].as_f64().unwrap();
    assert!(weight > 0.0 && weight < 1.0, "reduced weight, got {weight}: {lookup}");
    assert_eq!(waiting["independent_reporters"]["gamma.test"].as_f64(), Some(weight), "{lookup}");
    assert_eq!((waiting["threshold"].as_f64(), &waiting["quorum"]), (Some(1.0), &json!(false)), "{lookup}");

    retract_reports(&mut gamma, &beta, &gamma_key, now, 5..=7).await;
    let reputation = beta.get("/v1/reputation/gamma.test").await;
    assert!(reputation["score"].as_i64().unwrap() <= -20, "at ignore_below its weight reaches 0: {reputation}");
    assert_eq!(reputation["consequences"]["reports_ignored"], true, "{reputation}");

    // Now its report is stored and answered, but ignored with the reason, and nothing is listed.
    let report = signed_report(&gamma_key, signer, now, 60, 60, Status::New, "192.0.2.60");
    assert_eq!(gamma.iq(to, "set", report).await.0, "result");
    let stored = beta.get(&format!("/v1/incidents/{}", id_of(60))).await;
    assert_eq!(stored["decision"], "ignored", "{stored}");
    assert!(stored["decision_reason"].as_str().unwrap().contains("reputation"), "{stored}");
    assert_eq!(beta.get("/v1/lookup/ip/192.0.2.60").await["listed"], false);
    // The contribution still waiting from before weighs nothing once its score fell that far.
    let lookup = beta.get("/v1/lookup/ip/192.0.2.50").await;
    assert_eq!(lookup["awaiting_quorum"]["total_weight"].as_f64(), Some(0.0), "{lookup}");
}

/// Gamma reports each of `numbers` (accepted at beta), then withdraws it by a signed
/// retraction (not listed afterwards).
async fn retract_reports(
    gamma: &mut RawComponent,
    beta: &Node,
    key: &ostracon_protocol::keys::NodeKey,
    now: ostracon_protocol::time::Timestamp,
    numbers: std::ops::RangeInclusive<u8>,
) {
    use ostracon_protocol::ids::{Domain, IncidentId};
    use ostracon_protocol::incident::Status;
    let (to, signer) = ("incidents.beta.test", "incidents.gamma.test");
    for n in numbers {
        let ip = format!("192.0.2.{}", 100 + n);
        let report = signed_report(key, signer, now, u128::from(n), u128::from(n), Status::New, &ip);
        assert_eq!(gamma.iq(to, "set", report).await.0, "result");
        let id = IncidentId::new(Domain::parse(signer).unwrap(), uuid::Uuid::from_u128(u128::from(n)));
        assert_eq!(beta.get(&format!("/v1/incidents/{id}")).await["decision"], "accepted");
        let retraction = signed_report(key, signer, now, u128::from(n), u128::from(100 + n), Status::Retracted, &ip);
        assert_eq!(gamma.iq(to, "set", retraction).await.0, "result");
        assert_eq!(beta.get(&format!("/v1/lookup/ip/{ip}")).await["listed"], false);
    }
}

/// Beta as a node on a real Prosody, and `incidents.gamma.test` as a raw component the test
/// drives, which beta holds as an `auto-apply` buddy with `keys` pinned (set up directly in
/// beta's store). `more` components are declared on the server for the test to connect.
/// Bind every field: the server and the data directory must live as long as the test.
struct RawBuddy {
    beta: Node,
    gamma: RawComponent,
    prosody: Prosody,
    _dir: Arc<TempDir>,
}

async fn beta_with_raw_buddy(
    name: &str,
    keys: Vec<ostracon_protocol::keys::PublishedKey>,
    more: &[ComponentSpec],
    now: ostracon_protocol::time::Timestamp,
) -> RawBuddy {
    let _ = now;
    let mut specs = common::component_specs(&["beta.test"]);
    specs.push(ComponentSpec { domain: "incidents.gamma.test".into(), secret: "gamma-secret-gamma-secret".into() });
    specs.extend(more.iter().map(|spec| ComponentSpec { domain: spec.domain.clone(), secret: spec.secret.clone() }));
    let prosody = Prosody::start(&["beta.test"], &specs);
    let dir = Arc::new(TempDir::new(name));
    let beta = Node::start("beta.test", &prosody, Arc::clone(&dir)).await;
    beta.wait_online().await;
    // The real handshake: beta's operator asks, gamma agrees and hands over its keys.
    let mut gamma = RawComponent::connect("incidents.gamma.test", "gamma-secret-gamma-secret", &prosody).await;
    let body = serde_json::json!({ "jid": "incidents.gamma.test", "trust": "auto-apply" });
    let (status, answer) = beta.call(reqwest::Method::POST, "/v1/peers", Some(body)).await;
    assert_eq!(status, 202, "{answer}");
    gamma.accept_buddy_request("incidents.beta.test", &keys).await;
    beta.wait_for("gamma as a buddy", "/v1/peers", |peers| {
        peer(peers, "incidents.gamma.test").is_some_and(|p| p["state"] == "buddy")
    })
    .await;
    RawBuddy { beta, gamma, prosody, _dir: dir }
}

/// Where operators trip when they set up the component: `/healthz` says `degraded` with the
/// reason in words, for a Component block missing from Prosody and for a wrong secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_component_or_a_wrong_secret_is_diagnosed() {
    if !available() {
        return;
    }
    // Prosody serves alpha.test's component only.
    let components = common::component_specs(&["alpha.test"]);
    let prosody = Prosody::start(&["alpha.test", "beta.test"], &components);
    let dir = Arc::new(TempDir::new("diagnosis"));
    let missing = Node::start("beta.test", &prosody, Arc::clone(&dir)).await;
    let health =
        missing.wait_for("the diagnosis of a missing component", "/healthz", |h| h["xmpp_error"].is_string()).await;
    assert_eq!((health["status"].clone(), health["xmpp"].clone()), (json!("degraded"), json!("connecting")));
    let error = health["xmpp_error"].as_str().unwrap();
    assert!(error.contains("no component incidents.beta.test") && error.contains("Component \""), "{error}");
    // `ostracon status` says the same, as text for people and as JSON for scripts.
    let status = |format: &str| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_ostracon"))
            .args(["status", "-o", format, "--url", &missing.url, "--token", common::TOKEN])
            .env_remove("OSTRACON_CONFIG")
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let text = status("text");
    assert!(text.contains("xmpp      connecting: the XMPP server at") && text.contains("host-unknown"), "{text}");
    let json: Value = serde_json::from_str(&status("json")).unwrap();
    assert_eq!(json["xmpp"]["state"], "connecting");

    // `ostracon check`: with the node running it reports the node's link; stopped (another
    // data directory here), it tries the handshake itself; both name the missing Component.
    let check = |config: &ostracon::config::Config, name: &str| {
        let mut config = config.clone();
        if let Some(xmpp) = config.xmpp.as_mut() {
            let secret = dir.path().join(format!("{name}.secret"));
            std::fs::write(&secret, xmpp.secret.take().unwrap_or_default()).unwrap();
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
            xmpp.secret_file = Some(secret);
        }
        std::fs::create_dir_all(&config.node.data_dir).unwrap();
        std::fs::write(config.node.data_dir.join("admin.token"), common::TOKEN).unwrap();
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_ostracon"))
            .args(["check", "--config", path.to_str().unwrap()])
            .output()
            .unwrap();
        (output.status.success(), String::from_utf8(output.stdout).unwrap())
    };
    let (passed, said) = check(&missing.config, "running");
    assert!(!passed && said.contains("PROBLEM  xmpp server: the running node's link is connecting"), "{said}");
    assert!(said.contains("host-unknown"), "{said}");
    let mut stopped = missing.config.clone();
    stopped.node.data_dir = dir.path().join("stopped");
    let (passed, said) = check(&stopped, "stopped");
    assert!(!passed && said.contains("PROBLEM  xmpp server: the XMPP server at"), "{said}");
    assert!(said.contains("has no component incidents.beta.test (host-unknown)"), "{said}");

    let wrong = Node::start_with("alpha.test", &prosody, Arc::clone(&dir), |config| {
        if let Some(xmpp) = config.xmpp.as_mut() {
            xmpp.secret = Some("not-the-component-secret".to_owned());
        }
    })
    .await;
    let health = wrong.wait_for("the diagnosis of a wrong secret", "/healthz", |h| h["xmpp_error"].is_string()).await;
    let error = health["xmpp_error"].as_str().unwrap();
    assert!(error.contains("refused the secret"), "{error}");
    assert_eq!(health["status"], "degraded");

    // With the right secret, in a data directory nobody runs on, the handshake passes.
    let mut right = wrong.config.clone();
    right.node.data_dir = dir.path().join("right");
    if let Some(xmpp) = right.xmpp.as_mut() {
        xmpp.secret = Some("alpha.test-component-secret".to_owned());
    }
    let (passed, said) = check(&right, "right");
    assert!(
        passed && said.contains("ok       xmpp server:") && said.contains("accepts component incidents.alpha.test"),
        "{said}"
    );
}
