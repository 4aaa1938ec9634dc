//! The node as the RTBL service of an unmodified Prosody 0.12 with Debian's mod_muc_rtbl:
//! a JID or domain the node lists is refused at MUC join, a delisted one joins again, and
//! this holds after the node restarts and after Prosody restarts (the start-up race: Prosody
//! asks once, before our component is connected), with no module reload; a 6,000-entry list
//! loads in one `items` answer; and a Prosody on another server reads it over s2s.

mod common;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Node;
use ostracon::config::PushTarget;
use ostracon_tests::TempDir;
use ostracon_tests::c2s::Client;
use ostracon_tests::prosody::{Prosody, available};
use serde_json::json;

const PASSWORD: &str = "rtbl-test-password";

/// A MUC component whose mod_muc_rtbl reads our node's `muc_bans_sha256`.
fn muc(host: &str, rtbl: &str) -> String {
    format!(
        "Component \"{host}\" \"muc\"\n    modules_enabled = {{ \"muc_rtbl\" }}\n    muc_rtbl_jid = \"{rtbl}\"\n    \
         muc_rtbl_node = \"muc_bans_sha256\"\n    muc_room_locking = false\n"
    )
}

async fn login(server: &Prosody, user: &str, host: &str) -> Client {
    Client::login(server.c2s_address, user, host, PASSWORD).await.unwrap()
}

/// Joins `occupant` until the room refuses (`forbidden`) or, with `refused = false`, until it
/// admits; a join that goes the other way is left again and retried, since the list reaches
/// Prosody asynchronously.
async fn wait_join(server: &Prosody, client: &mut Client, occupant: &str, refused: bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let outcome = client.join(occupant).await.unwrap();
        match (&outcome, refused) {
            (Err(condition), true) => {
                assert_eq!(condition, "forbidden", "{} refused by {condition}", client.jid);
                return;
            }
            (Ok(()), false) => {
                client.leave(occupant).await.unwrap();
                return;
            }
            (Ok(()), true) => client.leave(occupant).await.unwrap(),
            (Err(_), false) => {}
        }
        assert!(
            Instant::now() < deadline,
            "{} never {} at {occupant}; the room's server logged:\n{}",
            client.jid,
            if refused { "refused" } else { "admitted" },
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn deny(node: &Node, value: &str) {
    let (status, body) = node.call(reqwest::Method::POST, "/v1/deny", Some(json!({ "value": value }))).await;
    assert_eq!(status, 201, "{body}");
}

async fn undeny(node: &Node, value: &str) {
    let (status, body) = node.call(reqwest::Method::DELETE, &format!("/v1/deny?value={value}"), None).await;
    assert!(status == 200 || status == 204, "{status} {body}");
}

fn push_to_conference(config: &mut ostracon::config::Config) {
    config.rtbl.push = vec![PushTarget { jid: "conference.alpha.test".to_owned(), node: "muc_bans_sha256".to_owned() }];
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mod_muc_rtbl_refuses_what_the_node_lists_across_restarts_of_either_side() {
    if !available() {
        return;
    }
    let components = common::component_specs(&["alpha.test"]);
    let mut prosody = Prosody::start_configured(
        &["alpha.test", "spam.test"],
        IpAddr::from([127, 0, 0, 1]),
        None,
        &components,
        &muc("conference.alpha.test", "incidents.alpha.test"),
    );
    for (user, host) in [
        ("alice", "alpha.test"),
        ("spammer", "alpha.test"),
        ("bot", "spam.test"),
        ("bulk5999", "alpha.test"),
        ("bulk6999", "alpha.test"),
        ("watched", "alpha.test"),
    ] {
        prosody.register(user, host, PASSWORD);
    }
    // Prosody asked for the list at its start, before the node could be connected: only the
    // node's push on connecting brings it.
    let dir = Arc::new(TempDir::new("rtbl"));
    let mut node = Node::start_with("alpha.test", &prosody, Arc::clone(&dir), push_to_conference).await;
    node.wait_online().await;
    let room = |nick: &str| format!("room1@conference.alpha.test/{nick}");

    let mut alice = login(&prosody, "alice", "alpha.test").await;
    let mut spammer = login(&prosody, "spammer", "alpha.test").await;
    let mut bot = login(&prosody, "bot", "spam.test").await;
    assert_eq!(alice.join(&room("alice")).await.unwrap(), Ok(()), "{}", prosody.log());
    wait_join(&prosody, &mut spammer, &room("spammer"), false).await;

    deny(&node, "spammer@alpha.test").await;
    wait_join(&prosody, &mut spammer, &room("spammer"), true).await;
    wait_join(&prosody, &mut bot, &room("bot"), false).await;
    deny(&node, "spam.test").await;
    wait_join(&prosody, &mut bot, &room("bot"), true).await;
    undeny(&node, "spammer@alpha.test").await;
    wait_join(&prosody, &mut spammer, &room("spammer"), false).await;
    let (status, body) = node
        .call(reqwest::Method::POST, "/v1/deny", Some(json!({ "value": "watched@alpha.test", "action": "quarantine" })))
        .await;
    assert_eq!(status, 201, "{body}");
    let log = prosody.log();
    assert!(log.contains("Blocked user <spammer@alpha.test>"), "Prosody says why: {log}");

    // Our node restarts while Prosody restarts too (Prosody forgets the list and asks again
    // before we are back): the node's push on connecting restores it, with no module reload.
    deny(&node, "spammer@alpha.test").await;
    wait_join(&prosody, &mut spammer, &room("spammer"), true).await;
    node.stop().await;
    prosody.restart();
    node.restart().await;
    node.wait_online().await;
    // A room's first occupant owns it, and mod_muc_rtbl never checks affiliated users: alice
    // opens the room again first, as a real room has its owners.
    let mut alice = login(&prosody, "alice", "alpha.test").await;
    assert_eq!(alice.join(&room("alice")).await.unwrap(), Ok(()));
    let mut spammer = login(&prosody, "spammer", "alpha.test").await;
    wait_join(&prosody, &mut spammer, &room("spammer"), true).await;
    let mut bot = login(&prosody, "bot", "spam.test").await;
    wait_join(&prosody, &mut bot, &room("bot"), true).await;

    // Prosody alone restarts: the node reconnects and pushes again.
    prosody.restart();
    node.wait_online().await;
    let mut alice = login(&prosody, "alice", "alpha.test").await;
    assert_eq!(alice.join(&room("alice")).await.unwrap(), Ok(()));
    let mut spammer = login(&prosody, "spammer", "alpha.test").await;
    wait_join(&prosody, &mut spammer, &room("spammer"), true).await;
    // A quarantined JID is not published: mod_muc_rtbl would ban it outright.
    let mut watched = login(&prosody, "watched", "alpha.test").await;
    wait_join(&prosody, &mut watched, &room("watched"), false).await;
    // And a delisting after the restarts still reaches it.
    let mut bot = login(&prosody, "bot", "spam.test").await;
    wait_join(&prosody, &mut bot, &room("bot"), true).await;
    undeny(&node, "spam.test").await;
    wait_join(&prosody, &mut bot, &room("bot"), false).await;

    // 6,000 entries: pushed on a change, and answered in one `items` result when the module
    // asks again (a reload unsubscribes, subscribes and asks).
    for batch in 0..6 {
        let offenders: Vec<String> =
            (batch * 1_000..(batch + 1) * 1_000).map(|n| format!("bulk{n}@alpha.test")).collect();
        let incident = json!({ "offenders": offenders, "category": "spam", "severity": "high" });
        let (status, body) = node.call(reqwest::Method::POST, "/v1/incidents", Some(incident)).await;
        assert_eq!(status, 201, "{body}");
    }
    let mut bulk = login(&prosody, "bulk5999", "alpha.test").await;
    eprintln!("LOOKUP {}", node.get("/v1/lookup/jid/bulk5999@alpha.test").await);
    wait_join(&prosody, &mut bulk, &room("bulk"), true).await;
    let reloaded = prosody.shell("module:reload('muc_rtbl', 'conference.alpha.test')");
    assert!(reloaded.contains("reloaded"), "{reloaded}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !prosody.log().contains("6001 RTBL entries received from incidents.alpha.test") {
        assert!(Instant::now() < deadline, "no full items answer:\n{}", prosody.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = prosody.log();
    assert!(!log.contains("stanza-too-large"), "the answer fits Prosody's default limit");
    wait_join(&prosody, &mut bulk, &room("bulk"), true).await;
    let healthz = node.get("/healthz").await;
    assert_eq!(
        healthz["warnings"],
        json!([]),
        "6,001 items (the spammer and 6,000 bulk users) still fit one answer: {healthz}"
    );

    // 7,001 do not: the answer carries what fits, the rest follows as notifications, and
    // the node tells its operator.
    list_bulk(&node, 6_000..7_000).await;
    let mut bulk = login(&prosody, "bulk6999", "alpha.test").await;
    wait_join(&prosody, &mut bulk, &room("bulk6999"), true).await;
    let before = prosody.log().len();
    prosody.shell("module:reload('muc_rtbl', 'conference.alpha.test')");
    let deadline = Instant::now() + Duration::from_secs(30);
    let received = loop {
        let log = prosody.log();
        if let Some(line) = log[before..].lines().find(|l| l.contains("RTBL entries received")) {
            break line.to_owned();
        }
        assert!(Instant::now() < deadline, "no items answer after the reload:\n{log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!received.contains(" 7001 RTBL"), "one answer cannot carry 7,001 ids: {received}");
    wait_join(&prosody, &mut bulk, &room("bulk6999"), true).await;
    node.wait_for("the warning", "/healthz", |h| h["warnings"].as_array().is_some_and(|w| !w.is_empty())).await;
    node.stop().await;
}

/// Lists `bulk{n}@alpha.test` for every `n` in `range`, 1,000 per incident.
async fn list_bulk(node: &Node, range: std::ops::Range<usize>) {
    let offenders: Vec<String> = range.map(|n| format!("bulk{n}@alpha.test")).collect();
    for chunk in offenders.chunks(1_000) {
        let incident = json!({ "offenders": chunk, "category": "spam", "severity": "high" });
        let (status, body) = node.call(reqwest::Method::POST, "/v1/incidents", Some(incident)).await;
        assert_eq!(status, 201, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stanza_limit_set_above_the_servers_does_not_drop_the_link_forever() {
    if !available() {
        return;
    }
    let components = common::component_specs(&["alpha.test"]);
    let prosody = Prosody::start_configured(
        &["alpha.test"],
        IpAddr::from([127, 0, 0, 1]),
        None,
        &components,
        &muc("conference.alpha.test", "incidents.alpha.test"),
    );
    prosody.register("owner", "alpha.test", PASSWORD);
    prosody.register("bulk6999", "alpha.test", PASSWORD);
    let dir = Arc::new(TempDir::new("rtbl-ceiling"));
    // 2 MiB: four times Prosody's default limit, a plausible operator mistake.
    let mut node = Node::start_with("alpha.test", &prosody, Arc::clone(&dir), |config| {
        push_to_conference(config);
        config.rtbl.max_stanza_bytes = 2 * 1024 * 1024;
    })
    .await;
    node.wait_online().await;
    list_bulk(&node, 0..7_000).await;
    // The replay on the next connect sends the 7,000 ids in one notification over the limit:
    // Prosody closes the stream, and the node must come back under it.
    node.stop().await;
    node.restart().await;
    let mut owner = login(&prosody, "owner", "alpha.test").await;
    assert_eq!(owner.join("room1@conference.alpha.test/owner").await.unwrap(), Ok(()));
    let mut bulk = login(&prosody, "bulk6999", "alpha.test").await;
    wait_join(&prosody, &mut bulk, "room1@conference.alpha.test/bulk", true).await;
    assert!(prosody.log().contains("not-well-formed"), "the first replay was over the limit");
    node.wait_for("the ceiling warning", "/healthz", |h| h["warnings"].to_string().contains("closed the stream")).await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_prosody_on_another_server_subscribes_over_s2s() {
    if !available() {
        return;
    }
    let net = 10 + ((std::process::id() + 100) % 200) as u8;
    let (alpha_ip, beta_ip) = (IpAddr::from([127, net, 1, 2]), IpAddr::from([127, net, 1, 3]));
    let dir = Arc::new(TempDir::new("rtbl-s2s"));
    let hosts = dir.path().join("hosts");
    std::fs::write(
        &hosts,
        format!("{alpha_ip} alpha.test incidents.alpha.test\n{beta_ip} beta.test conference.beta.test\n"),
    )
    .unwrap();
    let alpha_server =
        Prosody::start_on(&["alpha.test"], alpha_ip, Some(&hosts), &common::component_specs(&["alpha.test"]));
    alpha_server.register("spammer", "alpha.test", PASSWORD);
    alpha_server.register("friend", "alpha.test", PASSWORD);
    let node = Node::start_with("alpha.test", &alpha_server, Arc::clone(&dir), |config| {
        config.rtbl.allow = vec!["beta.test".to_owned()];
    })
    .await;
    node.wait_online().await;
    deny(&node, "spammer@alpha.test").await;
    // Beta's MUC subscribes and asks at its start, over s2s. Its subscribe, sent as the
    // module loads, can be lost before beta's s2s is up; the items request is not, and
    // subscribes it too.
    let beta_server = Prosody::start_configured(
        &["beta.test"],
        beta_ip,
        Some(&hosts),
        &[],
        &muc("conference.beta.test", "incidents.alpha.test"),
    );
    let room = |nick: &str| format!("lobby@conference.beta.test/{nick}");
    // The room's first occupant owns it and stays (mod_muc_rtbl never checks owners).
    let mut friend = login(&alpha_server, "friend", "alpha.test").await;
    assert_eq!(friend.join(&room("friend")).await.unwrap(), Ok(()), "{}", beta_server.log());
    let mut spammer = login(&alpha_server, "spammer", "alpha.test").await;
    wait_join(&beta_server, &mut spammer, &room("spammer"), true).await;
    undeny(&node, "spammer@alpha.test").await;
    wait_join(&beta_server, &mut spammer, &room("spammer"), false).await;
    assert!(beta_server.log().contains("RTBL entries received from incidents.alpha.test"));
}
