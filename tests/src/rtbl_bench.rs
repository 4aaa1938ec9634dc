//! `ostracon-bench rtbl`: the node as the RTBL service of a real Prosody with mod_muc_rtbl,
//! measured from outside: the time from a listing at the node (`POST /v1/deny` answered) to a
//! refused MUC join at Prosody, and the largest list one `items` answer carries under
//! Prosody's default stanza limit.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::c2s::Client;
use crate::prosody::{ComponentSpec, Prosody};
use crate::{Process, TempDir, free_port};

const TOKEN: &str = "ost_bench-rtbl-admin-token";
const PASSWORD: &str = "bench-password";
const ROOM: &str = "room@conference.alpha.test";

/// One `ostracon serve` process for alpha.test, pushing to the MUC host.
struct BenchNode {
    url: String,
    _process: Process,
}

async fn call(
    method: reqwest::Method,
    url: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<serde_json::Value> {
    let mut request = reqwest::Client::new().request(method, url).bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body.to_string());
    }
    let response = request.send().await?;
    let status = response.status();
    let value = serde_json::from_slice(&response.bytes().await?).unwrap_or(serde_json::Value::Null);
    if !status.is_success() {
        bail!("{status}: {value}");
    }
    Ok(value)
}

async fn start_node(
    binary: &str,
    dir: &TempDir,
    prosody: &Prosody,
    max_stanza_bytes: usize,
) -> anyhow::Result<BenchNode> {
    let data = dir.path().join("alpha");
    std::fs::create_dir_all(&data)?;
    let secret = data.join("secret");
    std::fs::write(&secret, "alpha.test-component-secret")?;
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let port = free_port();
    let config = data.join("ostracon.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\ndomain = \"alpha.test\"\ndata_dir = \"{}\"\n[http]\nlisten = \"127.0.0.1:{port}\"\nrate_per_second = 0\n\
             [xmpp]\ncomponent = \"incidents.alpha.test\"\nserver = \"{}\"\nsecret_file = \"{}\"\n\
             [rtbl]\nmax_stanza_bytes = {max_stanza_bytes}\n[[rtbl.push]]\njid = \"conference.alpha.test\"\n",
            data.display(),
            prosody.component_address,
            secret.display()
        ),
    )?;
    let mut command = std::process::Command::new(binary);
    command
        .args(["serve", "--config", &config.display().to_string()])
        .env("OSTRACON_ADMIN_TOKEN", TOKEN)
        .env("RUST_LOG", "warn");
    let process = Process::spawn("alpha", command, &data.join("serve.log"))?;
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let health = call(reqwest::Method::GET, &format!("{url}/healthz"), None).await.unwrap_or_default();
        if health["xmpp"] == "online" {
            return Ok(BenchNode { url, _process: process });
        }
        if Instant::now() > deadline {
            bail!("the node never came online: {health}\n{}", process.output());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn prosody() -> Prosody {
    let muc = "Component \"conference.alpha.test\" \"muc\"\n    modules_enabled = { \"muc_rtbl\" }\n    \
               muc_rtbl_jid = \"incidents.alpha.test\"\n    muc_room_locking = false\n";
    let components =
        [ComponentSpec { domain: "incidents.alpha.test".into(), secret: "alpha.test-component-secret".into() }];
    Prosody::start_configured(&["alpha.test"], IpAddr::from([127, 0, 0, 1]), None, &components, muc)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted.get(((sorted.len().max(1) as f64 - 1.0) * p).round() as usize).copied().unwrap_or_default()
}

/// Lists `listings` users one at a time and times each until Prosody refuses its join.
pub async fn join_latency(binary: &str, listings: usize) -> anyhow::Result<()> {
    let dir = TempDir::new("rtbl-bench");
    let server = prosody();
    server.register("owner", "alpha.test", PASSWORD);
    for n in 0..listings {
        server.register(&format!("bot{n}"), "alpha.test", PASSWORD);
    }
    let node = start_node(binary, &dir, &server, 500_000).await?;
    // The owner opens the room: mod_muc_rtbl never checks a room's affiliated users.
    let mut owner = Client::login(server.c2s_address, "owner", "alpha.test", PASSWORD).await?;
    owner.join(&format!("{ROOM}/owner")).await?.map_err(|e| anyhow::anyhow!("owner: {e}"))?;
    // The floor: what one admitted join and its leave take, the probe the loop below repeats.
    let mut probes = Vec::with_capacity(listings);
    let mut unlisted = Client::login(server.c2s_address, "bot0", "alpha.test", PASSWORD).await?;
    for _ in 0..listings {
        let started = Instant::now();
        unlisted.join(&format!("{ROOM}/probe")).await?.map_err(|e| anyhow::anyhow!("probe: {e}"))?;
        unlisted.leave(&format!("{ROOM}/probe")).await?;
        probes.push(started.elapsed());
    }
    drop(unlisted);
    probes.sort_unstable();
    let mut latencies = Vec::with_capacity(listings);
    let mut posts = Vec::with_capacity(listings);
    for n in 0..listings {
        let mut bot = Client::login(server.c2s_address, &format!("bot{n}"), "alpha.test", PASSWORD).await?;
        let occupant = format!("{ROOM}/bot{n}");
        let listed = Instant::now();
        call(
            reqwest::Method::POST,
            &format!("{}/v1/deny", node.url),
            Some(serde_json::json!({ "value": format!("bot{n}@alpha.test") })),
        )
        .await?;
        posts.push(listed.elapsed());
        loop {
            match bot.join(&occupant).await? {
                Err(condition) if condition == "forbidden" => break,
                Err(condition) => bail!("bot{n} refused with {condition}"),
                Ok(()) => bot.leave(&occupant).await?,
            }
            if listed.elapsed() > Duration::from_secs(30) {
                bail!("bot{n} was never refused");
            }
        }
        latencies.push(listed.elapsed());
    }
    latencies.sort_unstable();
    posts.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "POST /v1/deny answered (the listing committed): p50 {:.2} ms, p99 {:.2} ms",
        ms(percentile(&posts, 0.5)),
        ms(percentile(&posts, 0.99))
    );
    println!(
        "an admitted join and its leave (the probe), {listings} times: p50 {:.2} ms, p99 {:.2} ms",
        ms(percentile(&probes, 0.5)),
        ms(percentile(&probes, 0.99))
    );
    println!(
        "listing to refused join, {listings} listings: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default())
    );
    Ok(())
}

/// Finds the largest list whose one `items` answer Prosody accepts at its default limit (the
/// node's own limit set far above), listing hashed JIDs from `from` up in steps of `step` and
/// having mod_muc_rtbl ask again at each step, until Prosody refuses the answer.
pub async fn items_capacity(binary: &str, from: usize, step: usize) -> anyhow::Result<()> {
    let dir = TempDir::new("rtbl-capacity");
    let server = prosody();
    let node = start_node(binary, &dir, &server, 16 * 1024 * 1024).await?;
    let mut listed = 0usize;
    let mut accepted = 0usize;
    let mut probe = from;
    let refused = loop {
        while listed < probe {
            let count = (probe - listed).min(1_000);
            let offenders: Vec<String> =
                (listed..listed + count).map(|n| format!("bulk{n:06}@flood.example")).collect();
            let incident = serde_json::json!({ "offenders": offenders, "category": "spam", "severity": "high" });
            call(reqwest::Method::POST, &format!("{}/v1/incidents", node.url), Some(incident)).await?;
            listed += count;
        }
        let before = server.log().len();
        server.shell("module:reload('muc_rtbl', 'conference.alpha.test')");
        let deadline = Instant::now() + Duration::from_secs(20);
        let fits = loop {
            let log = server.log();
            let fresh = &log[before.min(log.len())..];
            if fresh.contains(&format!("{probe} RTBL entries received")) {
                break true;
            }
            // Prosody 0.12 logs the stanza-too-large at debug level and closes the component
            // stream as not-well-formed.
            if fresh.contains("stanza-too-large") || fresh.contains("<stream:error> is: not-well-formed") {
                break false;
            }
            if Instant::now() > deadline {
                bail!("no outcome for {probe} items:\n{}", &log[before.min(log.len())..]);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if !fits {
            break probe;
        }
        accepted = probe;
        probe += step;
        // A reload sends three requests; stay under the node's per-domain RTBL rate.
        tokio::time::sleep(Duration::from_secs(6)).await;
    };
    let _ = call(reqwest::Method::GET, &format!("{}/healthz", node.url), None).await.context("node")?;
    let bytes_per_item = 13 + 64;
    println!(
        "one items answer at Prosody's default limit: {accepted} hashed ids accepted, {refused} refused \
         (about {} and {} bytes of items)",
        accepted * bytes_per_item,
        refused * bytes_per_item
    );
    Ok(())
}
