//! The node's plain-text lists read by an unmodified Prosody 0.12 with Debian's mod_firewall
//! (`%LIST name: URL`, the way operators already write firewall scripts): a sender the node
//! lists with `block` is bounced, one it lists with `quarantine` is not (the text formats
//! carry `block` entries unless asked), and once delisted, an empty list lets it through.

mod common;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Node;
use ostracon_tests::TempDir;
use ostracon_tests::c2s::{Client, chat};
use ostracon_tests::prosody::{Prosody, available};
use serde_json::json;

const PASSWORD: &str = "firewall-test-password";

/// A chat message from `from` to `to` (see [`chat`]).
async fn send(from: &mut Client, to: &mut Client, id: &str) -> Option<String> {
    chat(from, to, id, Duration::from_secs(5)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mod_firewall_bounces_what_the_node_blocks_and_nothing_it_only_quarantines() {
    if !available() {
        return;
    }
    let dir = Arc::new(TempDir::new("firewall"));
    let http_port = ostracon_tests::free_port();
    let rules = dir.path().join("ostracon.pfw");
    std::fs::write(
        &rules,
        format!(
            "%LIST badjids: http://127.0.0.1:{http_port}/v1/blocklist?kind=jid&format=txt (ttl: 300)\n\
             ::deliver\nKIND: message\nCHECK LIST: badjids contains $<@from|bare>\nBOUNCE=policy-violation (listed by ostracon)\n"
        ),
    )
    .unwrap();
    // The node serves the list before Prosody fetches it at start.
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], http_port));
    let node = Node::start_http_only("alpha.test", listen, Arc::clone(&dir)).await;
    let (status, body) =
        node.call(reqwest::Method::POST, "/v1/deny", Some(json!({ "value": "spammer@alpha.test" }))).await;
    assert_eq!(status, 201, "{body}");
    let quarantine = json!({ "value": "watched@alpha.test", "action": "quarantine" });
    let (status, body) = node.call(reqwest::Method::POST, "/v1/deny", Some(quarantine)).await;
    assert_eq!(status, 201, "{body}");

    let firewall = format!(
        "VirtualHost \"alpha.test\"\n    modules_enabled = {{ \"firewall\" }}\n    firewall_scripts = {{ \"{}\" }}\n",
        rules.display()
    );
    let prosody = Prosody::start_configured(&["alpha.test"], IpAddr::from([127, 0, 0, 1]), None, &[], &firewall);
    for user in ["spammer", "watched", "bob"] {
        prosody.register(user, "alpha.test", PASSWORD);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !prosody.log().contains("Fetched updated list") {
        assert!(Instant::now() < deadline, "mod_firewall never fetched the list:\n{}", prosody.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let login = async |user: &str| Client::login(prosody.c2s_address, user, "alpha.test", PASSWORD).await.unwrap();
    let (mut spammer, mut watched, mut bob) = (login("spammer").await, login("watched").await, login("bob").await);
    assert_eq!(send(&mut spammer, &mut bob, "m1").await, Some("policy-violation".to_owned()), "{}", prosody.log());
    assert_eq!(send(&mut watched, &mut bob, "m2").await, None, "a quarantined sender is not bounced");

    // Delisted, the list is empty (a 0-byte 200); a reload makes mod_firewall fetch it again.
    let (status, body) = node.call(reqwest::Method::DELETE, "/v1/deny?value=spammer@alpha.test", None).await;
    assert!(status == 200 || status == 204, "{status} {body}");
    let list = reqwest::get(format!("{}/v1/blocklist?kind=jid&format=txt", node.url)).await.unwrap();
    assert_eq!(list.text().await.unwrap(), "", "only block entries, and none is left");
    let fetches = prosody.log().matches("Fetched updated list").count();
    // mod_firewall re-reads a script on a reload only when its mtime (in seconds) moved.
    let later = std::time::SystemTime::now() + Duration::from_secs(5);
    std::fs::File::options().write(true).open(&rules).unwrap().set_modified(later).unwrap();
    prosody.reload();
    let deadline = Instant::now() + Duration::from_secs(20);
    while prosody.log().matches("Fetched updated list").count() <= fetches {
        assert!(Instant::now() < deadline, "no fetch after the reload:\n{}", prosody.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(send(&mut spammer, &mut bob, "m3").await, None, "delivered once delisted");
}
