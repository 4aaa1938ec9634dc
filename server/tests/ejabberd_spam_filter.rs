//! The node's JID list read by an unmodified ejabberd 23.01 with Debian's
//! ejabberd-mod-spam-filter, from the file `ostracon export` writes (the way its operators
//! run a cron job or a timer): a sender on another server that the node lists is bounced over
//! s2s with `policy-violation`, one it does not list is delivered; the empty file after the
//! delisting loads too (a blank or comment line would break the load), and a reload lets the
//! sender through.

mod common;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use common::Node;
use ostracon_tests::TempDir;
use ostracon_tests::c2s::{Client, chat};
use ostracon_tests::ejabberd::{self, Ejabberd};
use ostracon_tests::prosody::Prosody;
use serde_json::json;

const PASSWORD: &str = "spam-filter-test-password";

/// A chat message from `from` to `to` (see [`chat`]).
async fn send(from: &mut Client, to: &mut Client, id: &str) -> Option<String> {
    chat(from, to, id, Duration::from_secs(20)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mod_spam_filter_bounces_the_senders_in_the_exported_file() {
    if !ejabberd::available() || !ostracon_tests::prosody::available() {
        return;
    }
    let net = 10 + ((std::process::id() + 50) % 200) as u8;
    let (victim_ip, spam_ip) = (IpAddr::from([127, net, 2, 2]), IpAddr::from([127, net, 2, 3]));
    let dir = Arc::new(TempDir::new("spam-filter"));
    let node = Node::start_http_only(
        "ops.test",
        std::net::SocketAddr::from(([127, 0, 0, 1], ostracon_tests::free_port())),
        Arc::clone(&dir),
    )
    .await;
    let (status, body) =
        node.call(reqwest::Method::POST, "/v1/deny", Some(json!({ "value": "spammer@spam.test" }))).await;
    assert_eq!(status, 201, "{body}");
    // Quarantined: ejabberd would bounce it outright, so the export leaves it out.
    let quarantine = json!({ "value": "friend@spam.test", "action": "quarantine" });
    assert_eq!(node.call(reqwest::Method::POST, "/v1/deny", Some(quarantine)).await.0, 201);
    let jids = dir.path().join("spam_jids.txt");
    let export = |node: &Node| common::cli(&node.url, &["export", "--kind", "jid", "--file", jids.to_str().unwrap()]);
    export(&node);
    assert_eq!(std::fs::read_to_string(&jids).unwrap(), "spammer@spam.test\n");

    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, format!("{victim_ip} victim.test\n{spam_ip} spam.test\n")).unwrap();
    let victim_server = Ejabberd::start("victim.test", victim_ip, &format!("{spam_ip} spam.test\n"), &jids);
    victim_server.register("victim", PASSWORD);
    let spam_server = Prosody::start_on(&["spam.test"], spam_ip, Some(&hosts), &[]);
    spam_server.register("spammer", "spam.test", PASSWORD);
    spam_server.register("friend", "spam.test", PASSWORD);
    let mut victim = Client::login(victim_server.c2s_address, "victim", "victim.test", PASSWORD).await.unwrap();
    let mut spammer = Client::login(spam_server.c2s_address, "spammer", "spam.test", PASSWORD).await.unwrap();
    let mut friend = Client::login(spam_server.c2s_address, "friend", "spam.test", PASSWORD).await.unwrap();

    assert_eq!(send(&mut friend, &mut victim, "f1").await, None, "{}", victim_server.log());
    assert_eq!(
        send(&mut spammer, &mut victim, "s1").await,
        Some("policy-violation".to_owned()),
        "{}",
        victim_server.log()
    );

    // Delisted: the export empties the file (no line at all), which loads, and the reload
    // lets the sender through.
    let (status, body) = node.call(reqwest::Method::DELETE, "/v1/deny?value=spammer@spam.test", None).await;
    assert!(status == 200 || status == 204, "{status} {body}");
    export(&node);
    assert_eq!(std::fs::read_to_string(&jids).unwrap(), "");
    victim_server.reload_spam_filter();
    assert_eq!(send(&mut spammer, &mut victim, "s2").await, None, "{}", victim_server.log());
    assert!(!victim_server.log().contains("Not a valid JID"), "{}", victim_server.log());
}
