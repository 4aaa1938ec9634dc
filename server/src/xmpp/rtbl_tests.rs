//! The RTBL service in process: what Prosody and ejabberd send, what a stranger or a flood
//! tries, the answer under the stanza limit, the live pushes and the replay on reconnect.
//! The same against real Prosody and mod_muc_rtbl is in `server/tests/rtbl_prosody.rs`.

use std::collections::BTreeSet;

use ostracon_protocol::rtbl::{RtblNode, sha256_hex};
use ostracon_protocol::xml::pubsub::Subscriber;
use ostracon_store::ledger::rtbl::SubscriberCaps;
use ostracon_store::model::ListAction;

use super::*;
use crate::xmpp::connection::LinkState;
use std::time::Duration;

const PUBSUB: &str = "http://jabber.org/protocol/pubsub";

fn subscribe(jid: &str, node: &str) -> String {
    format!("<pubsub xmlns='{PUBSUB}'><subscribe jid='{jid}' node='{node}'/></pubsub>")
}

fn items(node: &str) -> String {
    format!("<pubsub xmlns='{PUBSUB}'><items node='{node}'/></pubsub>")
}

async fn deny(node: &XmppNode, offender: &str, action: ListAction) {
    node.ledger.deny(&Offender::parse(offender).unwrap(), action, None, node.env.now()).await.unwrap();
}

/// Every item id in an `items` answer or an items event.
fn item_ids(stanza: &Element) -> Vec<String> {
    let mut ids = Vec::new();
    let mut stack = vec![stanza];
    while let Some(element) = stack.pop() {
        if element.name() == "item" {
            ids.extend(element.attr("id").map(str::to_owned));
        }
        stack.extend(element.children());
    }
    ids.sort();
    ids
}

fn retracted(stanza: &Element) -> Vec<String> {
    let items = stanza.children().flat_map(Element::children);
    items
        .flat_map(Element::children)
        .filter(|c| c.name() == "retract")
        .filter_map(|c| c.attr("id"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn prosody_subscribes_idempotently_and_gets_only_block_entries_in_one_answer() {
    let mut h = harness().await;
    deny(&h.node, "spammer@bad.example", ListAction::Block).await;
    deny(&h.node, "bad.example", ListAction::Block).await;
    deny(&h.node, "watched@odd.example", ListAction::Quarantine).await;
    for _ in 0..2 {
        h.node
            .handle(stanza_in(iq("set", "conference.b.test", &subscribe("conference.b.test", "muc_bans_sha256"))))
            .await;
        let answer = h.out.recv().await.unwrap();
        assert_eq!(answer.attr("type"), Some("result"), "{}", to_string(&answer));
        assert!(to_string(&answer).contains("subscription='subscribed'"), "{}", to_string(&answer));
    }
    assert_eq!(
        h.node.ledger.store().rtbl_subscriptions().await.unwrap().len(),
        1,
        "subscribing twice is one subscription"
    );
    h.node.handle(stanza_in(iq("get", "conference.b.test", &items("muc_bans_sha256")))).await;
    let answer = h.out.recv().await.unwrap();
    assert_eq!(
        (answer.attr("type"), answer.attr("to"), answer.attr("id")),
        (Some("result"), Some("conference.b.test"), Some("q1"))
    );
    let mut expected = vec![sha256_hex("spammer@bad.example"), sha256_hex("bad.example")];
    expected.sort();
    assert_eq!(item_ids(&answer), expected, "quarantined entries are not published");
    assert!(h.out.try_recv().is_err(), "a list that fits is one stanza");
    h.node.handle(stanza_in(iq("get", "conference.b.test", &items("spam_source_domains")))).await;
    assert_eq!(item_ids(&h.out.recv().await.unwrap()), ["bad.example"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloads_unsubscribe_then_subscribe_leaves_it_subscribed() {
    let mut h = harness_where(Throwaway::sqlite().await, |settings| {
        let many = ostracon_store::ratelimit::Rate::new(10_000.0, 10_000.0);
        (settings.rates.pubsub_per_domain, settings.rates.pubsub_total) = (many, many);
    })
    .await;
    let (tx, rx) = mpsc::channel(512);
    tokio::spawn(Arc::clone(&h.node).run_incoming(rx));
    let unsubscribe =
        format!("<pubsub xmlns='{PUBSUB}'><unsubscribe jid='conference.b.test' node='muc_bans_sha256'/></pubsub>");
    for _ in 0..50 {
        tx.send(stanza_in(iq("set", "conference.b.test", &unsubscribe))).await.unwrap();
        tx.send(stanza_in(iq("set", "conference.b.test", &subscribe("conference.b.test", "muc_bans_sha256"))))
            .await
            .unwrap();
    }
    let mut states = Vec::new();
    for _ in 0..100 {
        let answer = tokio::time::timeout(Duration::from_secs(10), h.out.recv()).await.unwrap().unwrap();
        let text = to_string(&answer);
        states.push(if text.contains("subscription='subscribed'") { "subscribed" } else { "none" });
    }
    assert_eq!(states, ["none", "subscribed"].repeat(50), "answered in the order asked");
    assert_eq!(h.node.ledger.store().rtbl_subscriptions().await.unwrap().len(), 1, "the last request wins");
}

#[tokio::test]
async fn strangers_third_parties_and_unknown_nodes_are_refused_with_defined_errors() {
    let mut h = harness().await;
    let mut answer = async |from: &str, iq_type: &str, child: &str| {
        h.node.handle(stanza_in(iq(iq_type, from, child))).await;
        let answer = h.out.recv().await.unwrap();
        let error = answer.children().find(|c| c.name() == "error").map(StanzaError::conditions_of);
        error.and_then(|(condition, _)| condition)
    };
    let forbidden = Some("forbidden".to_owned());
    assert_eq!(
        answer("conference.evil.test", "set", &subscribe("conference.evil.test", "muc_bans_sha256")).await,
        forbidden
    );
    assert_eq!(answer("conference.evil.test", "get", &items("muc_bans_sha256")).await, forbidden, "its items too");
    assert_eq!(
        answer("conference.b.test", "set", &subscribe("victim.example", "muc_bans_sha256")).await,
        Some("bad-request".into()),
        "nobody subscribes someone else to our notifications"
    );
    assert_eq!(answer("conference.b.test", "get", &items("secret_node")).await, Some("item-not-found".into()));
    assert_eq!(
        answer("conference.b.test", "get", &subscribe("conference.b.test", "muc_bans_sha256")).await,
        Some("bad-request".into())
    );
    assert!(h.node.ledger.store().rtbl_subscriptions().await.unwrap().is_empty(), "nothing refused was stored");
}

#[tokio::test]
async fn a_flood_of_subscriptions_is_capped_and_a_flood_of_requests_rate_limited() {
    let mut h = harness_where(Throwaway::sqlite().await, |settings| {
        settings.rtbl.public = true;
        settings.rtbl.caps = SubscriberCaps { total: 100, per_domain: 3 };
    })
    .await;
    let mut conditions = Vec::new();
    for n in 0..30 {
        let jid = format!("flood.example/rtbl-{n}");
        h.node.handle(stanza_in(iq("set", &jid, &subscribe(&jid, "muc_bans_sha256")))).await;
        let answer = h.out.recv().await.unwrap();
        conditions.push(answer.children().find(|c| c.name() == "error").and_then(|e| StanzaError::conditions_of(e).0));
    }
    assert_eq!(conditions.iter().filter(|c| c.is_none()).count(), 3, "three full JIDs of one domain: {conditions:?}");
    assert!(conditions.iter().any(|c| c.as_deref() == Some("resource-constraint")));
    assert_eq!(h.node.ledger.store().rtbl_subscriptions().await.unwrap().len(), 3, "the table stays bounded");
    for _ in 0..30 {
        h.node.handle(stanza_in(iq("get", "flood.example", &items("muc_bans_sha256")))).await;
        h.out.recv().await.unwrap();
    }
    assert!(h.node.status.value(Counter::RateLimited) > 0, "20 requests is the burst per domain");
}

#[tokio::test]
async fn a_list_over_the_stanza_limit_is_answered_in_part_and_the_rest_follows_as_notifications() {
    let mut h = harness_where(Throwaway::sqlite().await, |settings| settings.rtbl.max_stanza_bytes = 4_096).await;
    let mut listed = BTreeSet::new();
    for n in 0..200 {
        let jid = format!("bot{n}@bad.example");
        deny(&h.node, &jid, ListAction::Block).await;
        listed.insert(sha256_hex(&jid));
    }
    let requester = "b.test/rtbl-ejabberd@localhost";
    h.node.handle(stanza_in(iq("get", requester, &items("muc_bans_sha256")))).await;
    let answer = h.out.recv().await.unwrap();
    assert_eq!(answer.name(), "iq", "the answer comes first");
    let mut received: BTreeSet<String> = item_ids(&answer).into_iter().collect();
    assert!(
        !received.is_empty() && received.len() < listed.len(),
        "{} of {}: {}",
        received.len(),
        listed.len(),
        to_string(&answer).len()
    );
    let mut stanzas = vec![answer];
    while let Ok(event) = h.out.try_recv() {
        assert_eq!((event.name(), event.attr("to")), ("message", Some(requester)), "to the full JID that asked");
        received.extend(item_ids(&event));
        stanzas.push(event);
    }
    assert_eq!(received, listed, "answer and notifications together carry the whole list");
    let subscriptions = h.node.ledger.store().rtbl_subscriptions().await.unwrap();
    assert_eq!(
        subscriptions[0].jid.to_string(),
        requester,
        "asking for the items subscribes (its subscribe may be lost)"
    );
    for stanza in &stanzas {
        assert!(to_string(stanza).len() < 4_096, "every stanza under the limit: {}", to_string(stanza).len());
    }
}

#[tokio::test]
async fn a_list_that_outgrows_one_answer_is_reported_to_the_operator() {
    let h = harness_where(Throwaway::sqlite().await, |settings| settings.rtbl.max_stanza_bytes = 4_096).await;
    let service = h.node.rtbl.as_ref().unwrap();
    h.node.measure(service).await;
    assert!(h.node.status.warnings().is_empty(), "an empty list fits");
    for n in 0..60 {
        deny(&h.node, &format!("bot{n}@bad.example"), ListAction::Block).await;
    }
    *service.measured.lock().unwrap() = None;
    h.node.measure(service).await;
    let warnings = h.node.status.warnings();
    assert_eq!(warnings.len(), 2, "muc_bans_sha256 and spam_source_jids_sha256: {warnings:?}");
    assert!(warnings[0].contains("4096 bytes") && warnings[0].contains("60 items"), "{warnings:?}");
}

/// Answers the node's confirming ping the way the server would.
async fn answer_ping(h: &mut Harness) -> Vec<Element> {
    let mut others = Vec::new();
    loop {
        let stanza = tokio::time::timeout(Duration::from_secs(10), h.out.recv()).await.unwrap().unwrap();
        if stanza.name() == "iq" && stanza.attr("to") == Some("b.test") {
            let id = stanza.attr("id").unwrap();
            h.node
                .handle(stanza_in(parse(&format!(
                    "<iq xmlns='{STANZA_NS}' type='result' from='b.test' to='incidents.b.test' id='{id}'/>"
                ))))
                .await;
            return others;
        }
        others.push(stanza);
    }
}

#[tokio::test]
async fn changes_are_pushed_as_they_commit_and_a_reconnect_replays_what_was_missed() {
    let mut h = harness_where(Throwaway::sqlite().await, |settings| {
        settings.rtbl.push = vec![(RtblNode::MucBansSha256, Subscriber::parse("conference.b.test").unwrap())];
    })
    .await;
    deny(&h.node, "early@bad.example", ListAction::Block).await;
    deny(&h.node, "gone@bad.example", ListAction::Block).await;
    let (links, links_rx) = watch::channel(0u64);
    let (_stop, stop_rx) = watch::channel(false);
    tokio::spawn(Arc::clone(&h.node).run_rtbl(links_rx, stop_rx));
    h.node.status.set(LinkState::Online);

    // The first connect: the configured subscriber gets the whole list, though it never asked.
    links.send_modify(|n| *n += 1);
    let replay = answer_ping(&mut h).await;
    let ids: BTreeSet<String> = replay.iter().flat_map(item_ids).collect();
    assert_eq!(ids, [sha256_hex("early@bad.example"), sha256_hex("gone@bad.example")].into_iter().collect());
    assert!(
        replay.iter().all(|m| m.attr("to") == Some("conference.b.test") && m.attr("from") == Some("incidents.b.test"))
    );

    // A listing, then a delisting, each pushed as it commits, a retract alone in its event.
    deny(&h.node, "live@bad.example", ListAction::Block).await;
    let pushed = answer_ping(&mut h).await;
    assert_eq!(pushed.iter().flat_map(item_ids).collect::<Vec<_>>(), [sha256_hex("live@bad.example")]);
    h.node.ledger.undeny(&Offender::parse("live@bad.example").unwrap(), h.node.env.now()).await.unwrap();
    let pushed = answer_ping(&mut h).await;
    assert_eq!(pushed.len(), 1);
    assert_eq!(retracted(&pushed[0]), [sha256_hex("live@bad.example")]);
    let end = h.node.ledger.store().last_change_seq().await.unwrap();
    let store = h.node.ledger.store().clone();
    let synced = async || store.rtbl_subscriptions().await.unwrap()[0].synced_through;
    for _ in 0..100 {
        if synced().await == end {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(synced().await, end, "confirmed by the server's answer");

    // The link drops: what changes meanwhile waits, and the reconnect sends retracts for
    // what left and the whole list for what stayed or came.
    h.node.status.set(LinkState::Connecting);
    h.node.ledger.undeny(&Offender::parse("gone@bad.example").unwrap(), h.node.env.now()).await.unwrap();
    deny(&h.node, "offline@bad.example", ListAction::Block).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(h.out.try_recv().is_err(), "nothing is queued while the link is down");
    h.node.status.set(LinkState::Online);
    links.send_modify(|n| *n += 1);
    let replay = answer_ping(&mut h).await;
    assert_eq!(retracted(&replay[0]), [sha256_hex("gone@bad.example")], "retracts first");
    let ids: BTreeSet<String> = replay.iter().flat_map(item_ids).collect();
    assert_eq!(ids, [sha256_hex("early@bad.example"), sha256_hex("offline@bad.example")].into_iter().collect());
}
