//! Two Prosody servers federating over s2s (127.0.N.2 and 127.0.N.3, port 5269, names from a
//! `hoststxt` file read by lua-unbound: no DNS, no /etc/hosts), one node on each: the buddy
//! handshake crosses s2s, and an incident at alpha lands in beta's published list.
//! Then alpha's Prosody goes down while an incident is queued, and delivery resumes after it
//! comes back.

mod common;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{Node, make_buddies};
use ostracon_tests::TempDir;
use ostracon_tests::prosody::{Prosody, available};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_incident_crosses_s2s_into_the_other_nodes_list() {
    if !available() {
        return;
    }
    // A loopback /24 of our own, so parallel runs do not fight over port 5269.
    let net = 10 + (std::process::id() % 200) as u8;
    let alpha_ip = IpAddr::from([127, net, 0, 2]);
    let beta_ip = IpAddr::from([127, net, 0, 3]);
    let dir = Arc::new(TempDir::new("s2s"));
    let hosts = dir.path().join("hosts");
    std::fs::write(
        &hosts,
        format!("{alpha_ip} alpha.test incidents.alpha.test\n{beta_ip} beta.test incidents.beta.test\n"),
    )
    .unwrap();
    let mut alpha_server =
        Prosody::start_on(&["alpha.test"], alpha_ip, Some(&hosts), &common::component_specs(&["alpha.test"]));
    let beta_server =
        Prosody::start_on(&["beta.test"], beta_ip, Some(&hosts), &common::component_specs(&["beta.test"]));
    let alpha = Node::start("alpha.test", &alpha_server, Arc::clone(&dir)).await;
    let beta = Node::start("beta.test", &beta_server, Arc::clone(&dir)).await;
    alpha.wait_online().await;
    beta.wait_online().await;

    make_buddies(&alpha, "incidents.alpha.test", &beta, "incidents.beta.test").await;

    let (status, created) = alpha
        .call(
            reqwest::Method::POST,
            "/v1/incidents",
            Some(json!({ "offenders": ["198.51.100.99", "bot@spam.example"], "category": "flood", "share": true })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    beta.wait_for("the incident in beta's published list", "/v1/lookup/ip/198.51.100.99", |l| l["listed"] == true)
        .await;
    let (status, list) = {
        let response = reqwest::get(format!("{}/v1/blocklist?kind=ip&format=txt", beta.url)).await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    assert_eq!(status, 200);
    assert!(list.lines().any(|line| line == "198.51.100.99"), "{list}");

    // Alpha's server goes down with an incident queued; nothing is lost once it returns.
    alpha_server.stop();
    let (status, _) = alpha
        .call(
            reqwest::Method::POST,
            "/v1/incidents",
            Some(json!({ "offenders": ["203.0.113.99"], "category": "spam", "share": true })),
        )
        .await;
    assert_eq!(status, 201, "submitting works while the XMPP server is down");
    alpha_server.restart();
    alpha.wait_for("alpha back online", "/healthz", |h| h["xmpp"] == "online").await;
    beta.wait_for_within(Duration::from_secs(120), "the queued incident at beta", "/v1/lookup/ip/203.0.113.99", |l| {
        l["listed"] == true
    })
    .await;
}
