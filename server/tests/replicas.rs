//! Replicas of one node on one PostgreSQL database, run as an operator runs them: three
//! `ostracon serve` processes with one `[database] url`, one signing key and one XMPP
//! component on real Prosody, and a buddy node beside them.
//!
//! Writes at each replica are listed at all of them, every replica publishes the same signed
//! checkpoint, one replica holds the XMPP link, and when it is killed (SIGKILL) another takes
//! the link over and a shared incident still reaches the buddy; the killed replica restarts
//! and catches up, and `ostracon verify` against each replica passes with one saved
//! checkpoint (no fork).

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{Api, Node, TOKEN};
use ostracon_store::testing::Throwaway;
use ostracon_tests::prosody::{Prosody, available};
use ostracon_tests::{Process, TempDir, free_port, wait_for_port};
use serde_json::{Value, json};

/// The signing key every replica is given (`<valid from> <base64 seed>`, as `signing.key`
/// holds it): replicas of one node sign with one key.
const SHARED_KEY: &str = "2026-01-01T00:00:00Z BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

struct Replica {
    api: Api,
    config: PathBuf,
    log: PathBuf,
    process: Option<Process>,
}

impl Replica {
    fn write(dir: &Path, n: usize, database: &str, prosody: &Prosody) -> Self {
        let data = dir.join(format!("replica-{n}"));
        std::fs::create_dir_all(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        let key = data.join("signing.key");
        std::fs::write(&key, format!("{SHARED_KEY}\n")).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let config = dir.join(format!("replica-{n}.toml"));
        std::fs::write(
            &config,
            format!(
                "[node]\ndomain = \"ops.test\"\ndata_dir = \"{}\"\n\
                 [http]\nlisten = \"{listen}\"\nrate_per_second = 0\n\
                 [database]\nurl = \"{database}\"\nreplica = \"replica-{n}\"\n\
                 [lists]\nrefuse_documentation_ranges = false\n\
                 [xmpp]\ncomponent = \"incidents.ops.test\"\nserver = \"{}\"\nsecret = \"ops.test-component-secret\"\n",
                data.display(),
                prosody.component_address
            ),
        )
        .unwrap();
        // It holds the component secret inline: the node refuses a file others can read.
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
        let log = dir.join(format!("replica-{n}.log"));
        Self { api: Api { url: format!("http://{listen}") }, config, log, process: None }
    }

    fn start(&mut self) {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ostracon"));
        command.args(["serve", "--config"]).arg(&self.config).env("OSTRACON_ADMIN_TOKEN", TOKEN);
        self.process = Some(Process::spawn(&self.api.url, command, &self.log).unwrap());
        let address: SocketAddr = self.api.url.trim_start_matches("http://").parse().unwrap();
        assert!(wait_for_port(address, Duration::from_secs(30)), "replica at {} did not start", self.api.url);
    }

    async fn health(&self) -> Value {
        self.api.get("/healthz").await
    }
}

/// The replica whose `/healthz` says it holds the link, once exactly one among `alive` does.
async fn link_holder(replicas: &[Replica], alive: &[usize]) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut online = Vec::new();
        let mut standby = 0;
        for &n in alive {
            match replicas[n].health().await["xmpp"].as_str() {
                Some("online") => online.push(n),
                Some("standby") => standby += 1,
                _ => {}
            }
        }
        if online.len() == 1 && standby == alive.len() - 1 {
            return online[0];
        }
        assert!(online.len() <= 1, "two replicas hold the XMPP link at once: {online:?}");
        assert!(std::time::Instant::now() < deadline, "no single replica took the XMPP link: {online:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn submit(at: &Api, offender: &str, share: bool) -> String {
    let body = json!({ "offenders": [offender], "category": "muc-abuse", "severity": "high", "share": share });
    let (status, created) = at.call(reqwest::Method::POST, "/v1/incidents", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

async fn checkpoint_text(at: &Api) -> String {
    reqwest::get(format!("{}/v1/log/checkpoint", at.url)).await.unwrap().text().await.unwrap()
}

/// Waits until every replica in `alive` has the same log size, and returns it.
async fn converged(replicas: &[Replica], alive: &[usize]) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut sizes = Vec::new();
        for &n in alive {
            sizes.push(replicas[n].health().await["log_size"].as_u64().unwrap_or(u64::MAX));
        }
        if sizes.windows(2).all(|w| w[0] == w[1]) {
            return sizes[0];
        }
        assert!(std::time::Instant::now() < deadline, "replicas did not converge: {sizes:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn verify(url: &str, checkpoint: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ostracon"))
        .args(["verify", url, "--checkpoint", checkpoint.to_str().unwrap()])
        .env_remove("OSTRACON_CONFIG")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_serve_one_log_and_hand_the_xmpp_link_on() {
    if !available() {
        return;
    }
    let Some(database) = Throwaway::postgres().await else { return };
    let prosody = Prosody::start(&["ops.test", "buddy.test"], &common::component_specs(&["ops.test", "buddy.test"]));
    let dir = Arc::new(TempDir::new("replicas"));
    let buddy = Node::start("buddy.test", &prosody, Arc::clone(&dir)).await;
    buddy.wait_online().await;

    let mut replicas: Vec<Replica> = (0..3).map(|n| Replica::write(dir.path(), n, &database.url, &prosody)).collect();
    for replica in &mut replicas {
        replica.start();
    }
    let all = [0, 1, 2];
    let holder = link_holder(&replicas, &all).await;
    // Each replica reports once a second: the others' /healthz names the holder after its next
    // report.
    let holder_name = format!("replica-{holder}");
    for replica in &replicas {
        replica
            .api
            .wait_for("the holder named in /healthz", "/healthz", |h| {
                let reported = h["replicas"].as_array().map(Vec::as_slice).unwrap_or_default();
                reported.len() == 3
                    && reported.iter().all(|r| (r["name"] == holder_name) == (r["holds_xmpp_link"] == true))
            })
            .await;
    }

    // The buddy handshake asked at a replica without the link: the holder carries it.
    let asking = (holder + 1) % 3;
    common::make_buddies(&replicas[asking].api, "incidents.ops.test", &buddy, "incidents.buddy.test").await;

    // A write at each replica is listed at every one.
    for (n, replica) in replicas.iter().enumerate() {
        submit(&replica.api, &format!("198.51.100.{}", 10 + n), false).await;
    }
    for replica in &replicas {
        for n in 0..3 {
            let path = format!("/v1/lookup/ip/198.51.100.{}", 10 + n);
            replica.api.wait_for("a write at another replica", &path, |l| l["listed"] == true).await;
        }
    }
    converged(&replicas, &all).await;
    let checkpoints = [
        checkpoint_text(&replicas[0].api).await,
        checkpoint_text(&replicas[1].api).await,
        checkpoint_text(&replicas[2].api).await,
    ];
    assert!(checkpoints.iter().all(|c| c == &checkpoints[0]), "one log, one signed checkpoint: {checkpoints:?}");
    let saved = dir.path().join("saved.checkpoint");
    std::fs::write(&saved, &checkpoints[0]).unwrap();

    // The link holder dies right after a shared incident was submitted to it; another replica
    // takes the link and the outbox continues where it stopped: the buddy holds that incident
    // once, whether it was sent before the kill or after. A shared incident submitted at a
    // survivor reaches the buddy too.
    let before_kill = submit(&replicas[holder].api, "198.51.100.98", true).await;
    replicas[holder].process.as_mut().unwrap().signal_and_wait("KILL");
    let survivors: Vec<usize> = all.iter().copied().filter(|&n| n != holder).collect();
    let successor = link_holder(&replicas, &survivors).await;
    let id = submit(&replicas[survivors[0]].api, "198.51.100.99", true).await;
    let lookup = buddy
        .wait_for("the shared incident at the buddy", "/v1/lookup/ip/198.51.100.99", |l| l["listed"] == true)
        .await;
    assert_eq!(lookup["matches"][0]["why"]["reasons"][0]["incident"], id, "delivered by replica-{successor}");
    let lookup = buddy
        .wait_for("the incident shared as the holder died", "/v1/lookup/ip/198.51.100.98", |l| l["listed"] == true)
        .await;
    let reasons = lookup["matches"][0]["why"]["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 1, "counted once: {lookup}");
    assert_eq!(reasons[0]["incident"], before_kill);

    // The killed replica restarts, follows, and waits on standby.
    replicas[holder].start();
    converged(&replicas, &all).await;
    assert_eq!(link_holder(&replicas, &all).await, successor, "the link stays where it is");
    for replica in &replicas {
        let lookup = replica.api.get("/v1/lookup/ip/198.51.100.99").await;
        assert_eq!(lookup["listed"], true, "{}: {lookup}", replica.api.url);
        let output = verify(&replica.api.url, &saved);
        assert!(output.status.success(), "{}: {}", replica.api.url, String::from_utf8_lossy(&output.stderr));
    }
    let checkpoints: Vec<String> = {
        let mut texts = Vec::new();
        for replica in &replicas {
            texts.push(checkpoint_text(&replica.api).await);
        }
        texts
    };
    assert!(checkpoints.iter().all(|c| c == &checkpoints[0]), "{checkpoints:?}");

    // One key for every replica: a rotation at one while the others run is refused.
    let (status, refused) = replicas[0].api.call(reqwest::Method::POST, "/v1/key/rotate", None).await;
    assert_eq!(status, 409, "{refused}");
    assert!(refused.to_string().contains("other replicas of this node are running"), "{refused}");
}
