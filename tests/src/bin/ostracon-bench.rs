//! `ostracon-bench`: the measurements behind BENCHMARKS.md.
//!
//! - `seed`: fills a database through the ledger (the same transactions the API runs) and
//!   reports the bulk ingest rate;
//! - `snapshot`: builds, signs and compresses a list snapshot and reports time and sizes;
//! - `ingest`: posts incidents to a running node with N concurrent clients;
//! - `lookups`: looks up IPs on a running node with N concurrent clients (hits and misses);
//! - `noop`: an axum server with one no-op route, the baseline for what the HTTP stack serves;
//! - `reputation`: a full recomputation of every stored score, and the time to apply one
//!   incident (its transaction and the rescoring it causes), over a history of N facts.
//!
//! Load generators share the machine with the node, so numbers are conservative.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use ostracon_protocol::ids::{BareJid, Domain, IncidentId, Offender};
use ostracon_protocol::incident::{Category, Incident, Severity, Status};
use ostracon_protocol::keys::NodeKey;
use ostracon_protocol::time::Timestamp;
use ostracon_store::Store;
use ostracon_store::ledger::{Ledger, LedgerConfig};
use ostracon_store::model::ListKind;
use ostracon_store::policy::ListingPolicy;
use ostracon_store::snapshot::{Actions, Format};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fill a database with `entries` listed offenders, `per_incident` per incident.
    Seed {
        #[arg(long)]
        db: String,
        #[arg(long)]
        entries: u64,
        #[arg(long, default_value_t = 1000)]
        per_incident: u64,
        /// The node's data directory (its signing key), so a node served later signs with it.
        #[arg(long)]
        seed_hex: Option<String>,
    },
    /// Build a snapshot of a seeded database.
    Snapshot {
        #[arg(long)]
        db: String,
        #[arg(long, default_value = "ip")]
        kind: String,
        #[arg(long, default_value = "txt")]
        format: String,
    },
    /// POST incidents to a running node (several URLs, comma-separated: replicas of one node,
    /// the clients spread over them).
    Ingest {
        #[arg(long)]
        url: String,
        #[arg(long)]
        token: String,
        #[arg(long, default_value_t = 2000)]
        incidents: u64,
        #[arg(long, default_value_t = 8)]
        concurrency: u64,
        #[arg(long, default_value_t = 1)]
        offenders: u64,
    },
    /// Replication lag: POST an incident with one new address at replica `write`, then poll
    /// replica `read` until it lists it; one at a time, `pause_ms` apart.
    Follow {
        #[arg(long)]
        write: String,
        #[arg(long)]
        read: String,
        #[arg(long)]
        token: String,
        #[arg(long, default_value_t = 300)]
        count: u64,
        #[arg(long, default_value_t = 20)]
        pause_ms: u64,
    },
    /// Look up IPs on a running node.
    Lookups {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 64)]
        concurrency: u64,
        #[arg(long, default_value_t = 100_000)]
        requests: u64,
        /// Entries seeded (hits are drawn from the seeded IPv4 range).
        #[arg(long)]
        entries: u64,
        /// Path to request instead (e.g. /noop on the baseline server).
        #[arg(long)]
        path: Option<String>,
    },
    /// Signed reports verified and stored per second, against the raw Ed25519 verify rate.
    VerifyRate {
        #[arg(long)]
        db: String,
        #[arg(long, default_value_t = 20_000)]
        reports: u64,
        /// Reports per transaction (group commit); 1 stores each report in its own.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Verify on a thread of its own while the committer stores what has queued (at most
        /// `batch` a transaction), as a node's receiver and committer do; without it, each
        /// group is verified and then stored, one after the other.
        #[arg(long)]
        pipeline: bool,
    },
    /// End-to-end latency: POST /v1/incidents at node A until B lists the offender.
    E2e {
        /// The `ostracon` binary.
        #[arg(long, default_value = "target/release/ostracon")]
        binary: String,
        #[arg(long, default_value_t = 200)]
        incidents: u64,
        /// Two Prosody servers federating over s2s instead of one.
        #[arg(long)]
        s2s: bool,
        /// Pause between incidents (ms); the receiver limits each peer to 20 reports/s.
        #[arg(long, default_value_t = 100)]
        interval_ms: u64,
        /// What strangers do meanwhile: `none`; `storm` (1,000 components on 1,000 domains ask
        /// beta to be buddies, 1,000 requests a second, and never answer its key fetches); `flood`
        /// (a buddy of beta sends signed reports at 100 times the per-peer rate, each from a new
        /// resource).
        #[arg(long, default_value = "none")]
        attack: String,
    },
    /// Seed `incidents` reputation facts over `domains` domains, then time a full recomputation
    /// and `apply` single-offender incidents (JIDs at seeded domains, and IPs for comparison).
    Reputation {
        #[arg(long)]
        db: String,
        #[arg(long, default_value_t = 10_000)]
        domains: u64,
        #[arg(long, default_value_t = 1_000_000)]
        incidents: u64,
        #[arg(long, default_value_t = 500)]
        apply: u64,
    },
    /// The node as the RTBL service of a real Prosody with mod_muc_rtbl: listing-to-refused-join
    /// latency, and with `--capacity` the largest list one `items` answer carries.
    Rtbl {
        /// The `ostracon` binary.
        #[arg(long, default_value = "target/release/ostracon")]
        binary: String,
        #[arg(long, default_value_t = 100)]
        listings: usize,
        /// Measure the items capacity instead, from this many ids up.
        #[arg(long)]
        capacity_from: Option<usize>,
        /// The capacity probe's step.
        #[arg(long, default_value_t = 50)]
        step: usize,
    },
    /// Serve a no-op route on `listen`.
    Noop {
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
        /// Through the node's own listener (`ostracon_web::serve`: its timeouts and connection
        /// caps) instead of `axum::serve`, so a comparison isolates the handler's cost.
        #[arg(long)]
        hardened: bool,
    },
}

/// The i-th seeded offender: 80% IPv4 addresses, 5% IPv4 /24s, 5% IPv6, 7% JIDs, 3% domains.
fn offender(i: u64) -> Offender {
    let kind = i % 100;
    let text = match kind {
        0..=79 => Ipv4Addr::from(0x0a00_0000u32 + i as u32).to_string(),
        80..=84 => format!("{}/24", Ipv4Addr::from(0x6400_0000u32 + ((i as u32) << 8))),
        85..=89 => format!("2001:db8::{:x}:{:x}", i >> 16, i & 0xffff),
        90..=96 => format!("bot{i}@spam{}.example", i % 997),
        _ => format!("spam-{i}.example"),
    };
    Offender::parse(&text).expect("valid seeded offender")
}

fn node_key(seed_hex: Option<&str>) -> anyhow::Result<NodeKey> {
    let mut seed = [7u8; 32];
    if let Some(hex) = seed_hex {
        for (i, byte) in seed.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2).context("seed is 64 hex digits")?, 16)?;
        }
    }
    Ok(NodeKey::from_seed(&seed))
}

/// A ledger for the in-process benches. The brake's budget is lifted: these measure the
/// listing path, and past a real budget every report would be held instead.
async fn ledger(db: &str, key: NodeKey) -> anyhow::Result<Ledger> {
    let store = Store::open(db).await?;
    Ok(Ledger::open(
        store,
        key,
        LedgerConfig {
            origin: "bench.example/ostracon".into(),
            key_name: "bench.example".into(),
            policy: ListingPolicy::default(),
            reputation: Default::default(),
            scope: ostracon_store::scope::PeerScope {
                refuse_documentation: false,
                hourly_budget: u32::MAX,
                ..Default::default()
            },
        },
    )
    .await?)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// `ostracon-bench follow`: from the 201 of a write at one replica to the first lookup at
/// another that lists it (polled back to back, so the figure includes one lookup's time).
async fn follow(write: &str, read: &str, token: &str, count: u64, pause_ms: u64) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let base = u32::from(Ipv4Addr::new(172, 30, 0, 0)) + (std::process::id() % 256) * 4096;
    let mut lags = Vec::new();
    let start = Instant::now();
    for n in 0..count {
        let address = Ipv4Addr::from(base + n as u32).to_string();
        let body = serde_json::json!({ "offenders": [address], "category": "spam" }).to_string();
        let response = client
            .post(format!("{write}/v1/incidents"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        anyhow::ensure!(response.status().as_u16() == 201, "POST at {write}: {}", response.status());
        let committed = Instant::now();
        loop {
            let body = client.get(format!("{read}/v1/lookup/ip/{address}")).send().await?.bytes().await?;
            let lookup: serde_json::Value = serde_json::from_slice(&body)?;
            if lookup["listed"] == true {
                break;
            }
            anyhow::ensure!(committed.elapsed() < Duration::from_secs(30), "{read} never listed {address}");
        }
        lags.push(committed.elapsed());
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
    }
    report_latencies(&format!("from a write at {write} to a lookup at {read}"), lags, start.elapsed());
    Ok(())
}

fn report_latencies(label: &str, mut latencies: Vec<Duration>, elapsed: Duration) {
    latencies.sort_unstable();
    let n = latencies.len();
    println!(
        "{label}: {n} requests in {:.2} s = {:.0} req/s; p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `RUST_LOG=sqlx=debug` shows every statement a bench sends, with its time.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    match Cli::parse().command {
        Command::Seed { db, entries, per_incident, seed_hex } => {
            let ledger = ledger(&db, node_key(seed_hex.as_deref())?).await?;
            let issuer = Domain::parse("bench.example")?;
            let reporter = BareJid::parse("bench.example")?;
            let start = Instant::now();
            let now = Timestamp::from_unix(1_800_000_000).context("time")?;
            let mut next = ledger.with_index(|index| index.len()) as u64;
            let target = next + entries;
            let mut incidents = 0u64;
            while next < target {
                let count = per_incident.min(target - next);
                let incident = Incident {
                    id: IncidentId::new(issuer.clone(), uuid::Uuid::from_u128(u128::from(next) + 1)),
                    reporter: reporter.clone(),
                    status: Status::New,
                    category: Category::Spam,
                    severity: Severity::Medium,
                    offenders: (next..next + count).map(offender).collect(),
                    start: now,
                    end: None,
                    reported: now,
                    description: String::new(),
                    evidence: Vec::new(),
                    action: None,
                    expires: Some(now.plus_secs(30 * 86_400)),
                    related: None,
                    history: Vec::new(),
                };
                ledger.submit_local(&incident, false, now).await?;
                next += count;
                incidents += 1;
            }
            let elapsed = start.elapsed();
            println!(
                "seeded {entries} offenders in {incidents} incidents in {:.1} s: {:.0} offenders/s, {:.1} incidents/s; log {} leaves",
                elapsed.as_secs_f64(),
                entries as f64 / elapsed.as_secs_f64(),
                incidents as f64 / elapsed.as_secs_f64(),
                ledger.log_size()
            );
        }
        Command::Snapshot { db, kind, format } => {
            let load = Instant::now();
            let ledger = ledger(&db, node_key(None)?).await?;
            println!(
                "loaded ledger ({} listed, {} leaves) in {:.2} s",
                ledger.with_index(|i| i.len()),
                ledger.log_size(),
                load.elapsed().as_secs_f64()
            );
            let list = match kind.as_str() {
                "jid" => ListKind::Jid,
                "domain" => ListKind::Domain,
                _ => ListKind::Ip,
            };
            let format = Format::parse(&format).context("format")?;
            for round in 0..3 {
                let start = Instant::now();
                let snapshot = ledger
                    .build_snapshot(list, format, Actions::All, Timestamp::from_unix(1_800_000_000).context("time")?)
                    .await?;
                println!(
                    "round {round}: {} entries, body {} bytes, gzip {} bytes, built+signed+gzipped in {:.3} s",
                    snapshot.entries,
                    snapshot.body_len,
                    snapshot.gzip.len(),
                    start.elapsed().as_secs_f64()
                );
            }
        }
        Command::Follow { write, read, token, count, pause_ms } => {
            follow(&write, &read, &token, count, pause_ms).await?
        }
        Command::Ingest { url, token, incidents, concurrency, offenders } => {
            let client = reqwest::Client::new();
            let counter = Arc::new(AtomicU64::new(0));
            let start = Instant::now();
            let mut tasks = Vec::new();
            // Distinct offenders per run, far from the seeded ranges.
            let base = u64::from(u32::from(Ipv4Addr::new(172, 16, 0, 0)))
                + (start.elapsed().as_nanos() as u64 % 1000) * 1_000_000;
            let urls: Vec<&str> = url.split(',').collect();
            for client_number in 0..concurrency {
                let url = urls[client_number as usize % urls.len()].to_owned();
                let (client, token, counter) = (client.clone(), token.clone(), Arc::clone(&counter));
                tasks.push(tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    loop {
                        let n = counter.fetch_add(1, Ordering::SeqCst);
                        if n >= incidents {
                            return latencies;
                        }
                        let list: Vec<String> = (0..offenders)
                            .map(|k| IpAddr::V4(Ipv4Addr::from((base + n * offenders + k) as u32)).to_string())
                            .collect();
                        let body = serde_json::json!({ "offenders": list, "category": "spam" }).to_string();
                        let sent = Instant::now();
                        let response = client
                            .post(format!("{url}/v1/incidents"))
                            .bearer_auth(&token)
                            .header("content-type", "application/json")
                            .body(body)
                            .send()
                            .await;
                        match response {
                            Ok(r) if r.status().as_u16() == 201 => latencies.push(sent.elapsed()),
                            Ok(r) => eprintln!("unexpected status {}", r.status()),
                            Err(e) => eprintln!("request failed: {e}"),
                        }
                    }
                }));
            }
            let mut latencies = Vec::new();
            for task in tasks {
                latencies.extend(task.await?);
            }
            report_latencies(
                &format!("ingest ({offenders} offender(s) per incident, {concurrency} clients)"),
                latencies,
                start.elapsed(),
            );
        }
        Command::Lookups { url, concurrency, requests, entries, path } => {
            let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency as usize).build()?;
            let counter = Arc::new(AtomicU64::new(0));
            let start = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..concurrency {
                let (client, url, counter, path) = (client.clone(), url.clone(), Arc::clone(&counter), path.clone());
                tasks.push(tokio::spawn(async move {
                    let mut latencies = Vec::with_capacity((requests / concurrency) as usize + 1);
                    let mut hits = 0u64;
                    loop {
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        if n >= requests {
                            return (latencies, hits);
                        }
                        // Even requests hit a seeded IPv4 address, odd ones miss.
                        let target = match &path {
                            Some(path) => format!("{url}{path}"),
                            None if n % 2 == 0 => {
                                let i = (n.wrapping_mul(2_654_435_761) % entries.max(1)) / 100 * 100 + (n % 80);
                                format!("{url}/v1/lookup/ip/{}", Ipv4Addr::from(0x0a00_0000u32 + i as u32))
                            }
                            None => format!("{url}/v1/lookup/ip/{}", Ipv4Addr::from(0xc000_0200u32 + (n % 200) as u32)),
                        };
                        let sent = Instant::now();
                        if let Ok(response) = client.get(&target).send().await {
                            let ok = response.status().is_success();
                            let body = response.bytes().await.unwrap_or_default();
                            if ok {
                                latencies.push(sent.elapsed());
                                hits += u64::from(body.windows(13).any(|w| w == b"\"listed\":true"));
                            }
                        }
                    }
                }));
            }
            let mut latencies = Vec::new();
            let mut hits = 0;
            for task in tasks {
                let (l, h) = task.await?;
                latencies.extend(l);
                hits += h;
            }
            report_latencies(&format!("lookups ({concurrency} clients, {hits} listed)"), latencies, start.elapsed());
        }
        Command::VerifyRate { db, reports, batch, pipeline } => verify_rate(&db, reports, batch, pipeline).await?,
        Command::E2e { binary, incidents, s2s, interval_ms, attack } => {
            e2e(&binary, incidents, s2s, interval_ms, &attack).await?
        }
        Command::Reputation { db, domains, incidents, apply } => {
            reputation_bench(&db, domains, incidents, apply).await?;
        }
        Command::Rtbl { binary, listings, capacity_from, step } => match capacity_from {
            Some(from) => ostracon_tests::rtbl_bench::items_capacity(&binary, from, step).await?,
            None => ostracon_tests::rtbl_bench::join_latency(&binary, listings).await?,
        },
        Command::Noop { listen, hardened } => {
            let app = axum::Router::new().route("/noop", axum::routing::get(|| async { "{}" }));
            let listener = tokio::net::TcpListener::bind(listen).await?;
            if hardened {
                let limits = ostracon_web::serve::HttpLimits::default();
                ostracon_web::serve::serve(listener, app, limits, std::future::pending()).await?;
            } else {
                axum::serve(listener, app).await?;
            }
        }
    }
    Ok(())
}

/// A replay guard that remembers every pair (the bench never repeats one).
#[derive(Default)]
struct Seen(std::collections::BTreeSet<(String, String)>);

impl ostracon_protocol::envelope::ReplayGuard for Seen {
    fn check_and_remember(
        &mut self,
        signer: &BareJid,
        nonce: &ostracon_protocol::envelope::Nonce,
        _: Timestamp,
    ) -> bool {
        self.0.insert((signer.to_string(), nonce.as_str().to_owned()))
    }
}

async fn verify_rate(db: &str, reports: u64, batch: usize, pipeline: bool) -> anyhow::Result<()> {
    use ostracon_protocol::envelope::{Nonce, Unverified, VerifyPolicy, sign};
    use ostracon_protocol::incident::ReportClaim;
    use ostracon_protocol::keys::KeyRing;
    use ostracon_store::ledger::RemoteIncident;
    use ostracon_store::model::{Decision, IncidentOrigin, Verb};

    let peer_key = NodeKey::from_seed(&[0x21; 32]);
    let peer = BareJid::parse("incidents.peer.example")?;
    let now = Timestamp::from_unix(1_800_000_000).context("time")?;
    let mut ring = KeyRing::new();
    ring.insert(peer.clone(), peer_key.public());
    let chains: Vec<Unverified<ReportClaim>> = (0..reports)
        .map(|n| {
            let incident = Incident {
                id: IncidentId::new(peer.domain().clone(), uuid::Uuid::from_u128(u128::from(n) + 1)),
                reporter: peer.clone(),
                status: Status::New,
                category: Category::Spam,
                severity: Severity::Medium,
                offenders: vec![Offender::Ip(IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + n as u32)))],
                start: now,
                end: None,
                reported: now,
                description: "bench".to_owned(),
                evidence: Vec::new(),
                action: None,
                expires: None,
                related: None,
                history: Vec::new(),
            };
            let mut nonce = [0u8; 16];
            nonce[..8].copy_from_slice(&n.to_be_bytes());
            sign(&ReportClaim(incident), &peer_key, &peer, now, Nonce::from_bytes(&nonce)).expect("sign")
        })
        .collect();

    // The physical limit: Ed25519 verification of the same signing inputs on one core.
    let inputs: Vec<(Vec<u8>, [u8; 64])> =
        chains.iter().map(|c| (c.links()[0].signing_input(), c.links()[0].signature)).collect();
    let start = Instant::now();
    let mut valid = 0u64;
    for (input, signature) in &inputs {
        valid += u64::from(peer_key.public().verify(input, signature));
    }
    let raw = start.elapsed();
    println!(
        "raw Ed25519 verify: {valid} signatures in {:.2} s = {:.0}/s (one core)",
        raw.as_secs_f64(),
        reports as f64 / raw.as_secs_f64()
    );

    let ledger = ledger(db, node_key(None)?).await?;
    let from = peer.to_string();
    let store = |received: Vec<(Incident, Vec<ostracon_protocol::envelope::SignedEnvelope>)>| {
        let (ledger, from) = (&ledger, &from);
        async move {
            let remotes: Vec<RemoteIncident<'_>> = received
                .iter()
                .map(|(incident, links)| RemoteIncident {
                    incident,
                    verb: Verb::Report,
                    from,
                    origin: IncidentOrigin::Peer,
                    provenance: Some(links),
                    decision: Decision::Accepted,
                    decision_reason: None,
                    weight_milli: 1_000,
                    authority_milli: None,
                    forward_to: &[],
                })
                .collect();
            let (_, recorded) = ledger.record_remote_many(&remotes, now).await?;
            anyhow::ensure!(recorded.iter().all(|stored| *stored), "a fresh report was taken for a duplicate");
            anyhow::Ok(received.len())
        }
    };
    let verify = move |chain: Unverified<ReportClaim>, seen: &mut Seen| {
        let verified = chain.verify(&ring, seen, &VerifyPolicy::at(now))?;
        let links = verified.links().to_vec();
        let ReportClaim(incident) = verified.into_parts().0;
        anyhow::Ok((incident, links))
    };
    let batch = batch.max(1);
    let start = Instant::now();
    if pipeline {
        let (queue, mut queued) = tokio::sync::mpsc::channel(batch * 4);
        let verifier = std::thread::spawn(move || {
            let mut seen = Seen::default();
            for chain in chains {
                if queue.blocking_send(verify(chain, &mut seen)).is_err() {
                    break;
                }
            }
        });
        while let Some(first) = queued.recv().await {
            let mut received = vec![first?];
            while received.len() < batch {
                match queued.try_recv() {
                    Ok(next) => received.push(next?),
                    Err(_) => break,
                }
            }
            store(received).await?;
        }
        verifier.join().map_err(|_| anyhow::anyhow!("the verifier thread panicked"))?;
    } else {
        let mut seen = Seen::default();
        let mut chains = chains.into_iter().peekable();
        while chains.peek().is_some() {
            let received = chains
                .by_ref()
                .take(batch)
                .map(|chain| verify(chain, &mut seen))
                .collect::<anyhow::Result<Vec<_>>>()?;
            store(received).await?;
        }
    }
    let total = start.elapsed();
    let how = if pipeline { "pipelined, at most" } else { "one after the other," };
    println!(
        "verified + stored + listed ({how} {batch} per transaction): {reports} reports in {:.2} s = {:.0}/s ({:.0}% of the raw verify rate)",
        total.as_secs_f64(),
        reports as f64 / total.as_secs_f64(),
        100.0 * raw.as_secs_f64() / total.as_secs_f64()
    );
    Ok(())
}

/// A node process for the end-to-end bench.
struct BenchNode {
    url: String,
    _process: ostracon_tests::Process,
}

async fn json_call(
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<serde_json::Value> {
    let client = reqwest::Client::new();
    let mut request = client.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body.to_string());
    }
    let response = request.send().await?;
    let bytes = response.bytes().await?;
    Ok(serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

async fn wait_until(
    what: &str,
    url: &str,
    token: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if check(&json_call(reqwest::Method::GET, url, token, None).await.unwrap_or_default()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("timed out waiting for {what}")
}

/// Strangers on 1,000 domains for the `storm` attack.
const STORM_DOMAINS: usize = 1_000;

async fn e2e(binary: &str, incidents: u64, s2s: bool, interval_ms: u64, attack: &str) -> anyhow::Result<()> {
    use ostracon_tests::prosody::{ComponentSpec, Prosody};
    const TOKEN: &str = "ost_bench-e2e-admin-token";
    anyhow::ensure!(matches!(attack, "none" | "storm" | "flood"), "--attack: none, storm or flood");
    let dir = ostracon_tests::TempDir::new("e2e");
    let spec = |d: &str| ComponentSpec { domain: format!("incidents.{d}"), secret: format!("{d}-component-secret") };
    let attackers: Vec<ComponentSpec> = match attack {
        "storm" => (0..STORM_DOMAINS).map(|n| spec(&format!("storm{n}.test"))).collect(),
        "flood" => vec![spec("flood.test")],
        _ => Vec::new(),
    };
    let hosts = dir.path().join("hosts");
    let (alpha_ip, beta_ip) = (IpAddr::from([127, 77, 0, 2]), IpAddr::from([127, 77, 0, 3]));
    std::fs::write(
        &hosts,
        format!("{alpha_ip} alpha.test incidents.alpha.test\n{beta_ip} beta.test incidents.beta.test\n"),
    )?;
    // The attackers are components of beta's server.
    let beta_components: Vec<ComponentSpec> = std::iter::once(spec("beta.test")).chain(attackers).collect();
    let servers: Vec<Prosody> = if s2s {
        vec![
            Prosody::start_on(&["alpha.test"], alpha_ip, Some(&hosts), &[spec("alpha.test")]),
            Prosody::start_on(&["beta.test"], beta_ip, Some(&hosts), &beta_components),
        ]
    } else {
        let all: Vec<ComponentSpec> = std::iter::once(spec("alpha.test")).chain(beta_components).collect();
        vec![Prosody::start(&["alpha.test", "beta.test"], &all)]
    };
    let mut nodes = Vec::new();
    for (index, domain) in ["alpha.test", "beta.test"].iter().enumerate() {
        let server = &servers[index.min(servers.len() - 1)];
        let port = ostracon_tests::free_port();
        let data = dir.path().join(domain);
        std::fs::create_dir_all(&data)?;
        let secret = data.join("secret");
        std::fs::write(&secret, format!("{domain}-component-secret"))?;
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let config = data.join("ostracon.toml");
        std::fs::write(
            &config,
            format!(
                "[node]\ndomain = \"{domain}\"\ndata_dir = \"{}\"\n[http]\nlisten = \"127.0.0.1:{port}\"\nrate_per_second = 0\n\
                 [lists]\nrefuse_documentation_ranges = false\n\
                 [xmpp]\ncomponent = \"incidents.{domain}\"\nserver = \"{}\"\nsecret_file = \"{}\"\n",
                data.display(),
                server.component_address,
                secret.display()
            ),
        )?;
        let mut command = std::process::Command::new(binary);
        command
            .args(["serve", "--config", &config.display().to_string()])
            .env("OSTRACON_ADMIN_TOKEN", TOKEN)
            .env("RUST_LOG", "warn");
        let process = ostracon_tests::Process::spawn(domain, command, &data.join("serve.log"))?;
        let url = format!("http://127.0.0.1:{port}");
        wait_until("node online", &format!("{url}/healthz"), TOKEN, |h| h["xmpp"] == "online").await?;
        nodes.push(BenchNode { url, _process: process });
    }
    let (alpha, beta) = (&nodes[0], &nodes[1]);
    json_call(
        reqwest::Method::POST,
        &format!("{}/v1/peers", alpha.url),
        TOKEN,
        Some(serde_json::json!({ "jid": "incidents.beta.test", "trust": "auto-apply" })),
    )
    .await?;
    wait_until("request at beta", &format!("{}/v1/peers", beta.url), TOKEN, |p| {
        p["peers"][0]["state"] == "pending" && p["peers"][0]["keys"].as_array().is_some_and(|k| !k.is_empty())
    })
    .await?;
    // `auto-apply`: one report from alpha lists at beta (an `accept` buddy needs a quorum).
    json_call(
        reqwest::Method::POST,
        &format!("{}/v1/peers/incidents.alpha.test/approve", beta.url),
        TOKEN,
        Some(serde_json::json!({ "trust": "auto-apply" })),
    )
    .await?;
    wait_until("buddy at alpha", &format!("{}/v1/peers", alpha.url), TOKEN, |p| p["peers"][0]["state"] == "buddy")
        .await?;

    // Bring the attack up, then measure while it runs.
    let component_address = servers[servers.len() - 1].component_address;
    let stop = Arc::new(AtomicBool::new(false));
    let attack_task = match attack {
        "storm" => {
            let strangers = storm_components(component_address).await?;
            Some(tokio::spawn(storm(strangers, Arc::clone(&stop))))
        }
        "flood" => {
            let flood = flood_buddy(component_address, &beta.url, TOKEN).await?;
            Some(tokio::spawn(flood_reports(flood, Arc::clone(&stop))))
        }
        _ => None,
    };

    // Alternate directions: alpha -> beta is beta's intake, beta -> alpha is beta's outbox.
    let client = reqwest::Client::new();
    let mut latencies: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let started = Instant::now();
    for n in 0..incidents {
        let (from, to) = if n % 2 == 0 { (alpha, beta) } else { (beta, alpha) };
        let ip = Ipv4Addr::from(0xc633_6400u32 + n as u32);
        let sent = Instant::now();
        json_call(
            reqwest::Method::POST,
            &format!("{}/v1/incidents", from.url),
            TOKEN,
            Some(serde_json::json!({ "offenders": [ip.to_string()], "category": "spam", "share": true })),
        )
        .await?;
        loop {
            let text = client.get(format!("{}/v1/lookup/ip/{ip}", to.url)).send().await?.text().await?;
            if text.contains("\"listed\":true") {
                break;
            }
            anyhow::ensure!(sent.elapsed() < Duration::from_secs(60), "incident {n} never arrived");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies[(n % 2) as usize].push(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(interval_ms)).await;
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    if let Some(task) = attack_task {
        let summary = task.await??;
        println!("attack {attack}: {summary}");
    }
    let metrics = client.get(format!("{}/metrics", beta.url)).send().await?.text().await?;
    for line in metrics.lines().filter(|l| l.starts_with("ostracon_xmpp_") && !l.starts_with('#')) {
        println!("beta {line}");
    }
    let setup = if s2s { "two servers, s2s" } else { "one server" };
    let [to_beta, to_alpha] = latencies;
    let total: Duration = to_beta.iter().sum();
    report_latencies(&format!("POST at alpha -> listed at beta ({setup}, attack {attack})"), to_beta, total);
    let total: Duration = to_alpha.iter().sum();
    report_latencies(&format!("POST at beta -> listed at alpha ({setup}, attack {attack})"), to_alpha, total);
    println!("measured over {:.1} s", elapsed.as_secs_f64());
    Ok(())
}

/// Connects the 1,000 strangers of the `storm` attack (before the measurement starts: what is
/// measured is the requests, not 1,000 component logins at the XMPP server).
async fn storm_components(address: SocketAddr) -> anyhow::Result<Vec<ostracon_tests::raw_component::RawComponent>> {
    use ostracon_tests::raw_component::RawComponent;
    let mut strangers = Vec::with_capacity(STORM_DOMAINS);
    for n in 0..STORM_DOMAINS {
        let domain = format!("storm{n}.test");
        let jid = format!("incidents.{domain}");
        strangers.push(RawComponent::connect(address, &jid, &format!("{domain}-component-secret")).await?);
    }
    Ok(strangers)
}

/// The strangers ask beta to be buddies in turn, one a millisecond (each of them again every
/// second), until `stop`; none ever answers beta's key fetches.
async fn storm(
    mut strangers: Vec<ostracon_tests::raw_component::RawComponent>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<String> {
    use ostracon_tests::raw_component::COMPONENT_NS;
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let stranger = &mut strangers[(sent % STORM_DOMAINS as u64) as usize];
        let subscribe = format!(
            "<presence xmlns='{COMPONENT_NS}' type='subscribe' from='{}' to='incidents.beta.test'/>",
            stranger.jid()
        );
        stranger.send_raw(subscribe.as_bytes()).await?;
        stranger.drain();
        sent += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(format!("{sent} buddy requests from {STORM_DOMAINS} domains in {secs:.1} s; none answered a key fetch"))
}

/// A raw component that becomes beta's `accept` buddy through the real handshake.
async fn flood_buddy(
    address: SocketAddr,
    beta: &str,
    token: &str,
) -> anyhow::Result<(ostracon_tests::raw_component::RawComponent, NodeKey)> {
    use ostracon_tests::raw_component::RawComponent;
    let key = NodeKey::from_seed(&[0x66; 32]);
    let mut flood = RawComponent::connect(address, "incidents.flood.test", "flood.test-component-secret").await?;
    let published = ostracon_protocol::keys::PublishedKey::new(key.public(), Timestamp::from_datetime(chrono_now()));
    let keys = ostracon_protocol::xml::to_string(&ostracon_protocol::xml::keys::keys_to_element(&[published]));
    let body = serde_json::json!({ "jid": "incidents.flood.test", "trust": "accept" });
    json_call(reqwest::Method::POST, &format!("{beta}/v1/peers"), token, Some(body)).await?;
    flood.accept_buddy_request("incidents.beta.test", &keys).await?;
    wait_until("flood as a buddy", &format!("{beta}/v1/peers"), token, |p| {
        p["peers"]
            .as_array()
            .is_some_and(|peers| peers.iter().any(|x| x["jid"] == "incidents.flood.test" && x["state"] == "buddy"))
    })
    .await?;
    Ok((flood, key))
}

/// Signed reports at 2,000 a second (100 times the per-peer rate of 20), each from a new
/// resource, until `stop`; returns how many were sent.
async fn flood_reports(
    (mut flood, key): (ostracon_tests::raw_component::RawComponent, NodeKey),
    stop: Arc<AtomicBool>,
) -> anyhow::Result<String> {
    use ostracon_protocol::incident::Status;
    use ostracon_tests::raw_component::{COMPONENT_NS, signed_report};
    let signer = "incidents.flood.test";
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut sent = 0u64;
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        for _ in 0..2 {
            sent += 1;
            let now = Timestamp::from_datetime(chrono_now());
            let offender = format!("10.{}.{}.{}", (sent >> 16) & 255, (sent >> 8) & 255, sent & 255);
            let report = signed_report(&key, signer, now, u128::from(sent), u128::from(sent), Status::New, &offender);
            let text = format!(
                "<iq xmlns='{COMPONENT_NS}' type='set' from='{signer}/r{sent}' to='incidents.beta.test' id='f{sent}'>{}</iq>",
                ostracon_protocol::xml::to_string(&report)
            );
            flood.send_raw(text.as_bytes()).await?;
        }
        if sent.is_multiple_of(1_000) {
            flood.drain();
        }
    }
    Ok(format!("{sent} signed reports sent in {:.1} s", started.elapsed().as_secs_f64()))
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

/// Seeds the facts table directly (what `incidents` accepted incidents about `domains` domains
/// leave behind: one fact each), then measures a full recomputation and single incidents
/// applied through the ledger, which rescore the domain they touch in their transaction.
async fn reputation_bench(db: &str, domains: u64, incidents: u64, apply: u64) -> anyhow::Result<()> {
    let ledger = ledger(db, node_key(None)?).await?;
    let store = ledger.store().clone();
    let now = Timestamp::from_unix(1_800_000_000).context("time")?;
    let postgres = db.starts_with("postgres");
    let started = Instant::now();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    const ROWS: u64 = 2_000;
    let mut written = 0u64;
    while written < incidents {
        let rows = ROWS.min(incidents - written);
        let mut sql =
            "INSERT INTO reputation_facts (subject, kind, at, severity, weight_milli, reference) VALUES ".to_owned();
        for row in 0..rows {
            let n = written + row;
            let domain = n % domains;
            let age = next() % (90 * 86_400);
            let severity = ["low", "medium", "high"][(next() % 3) as usize];
            let weight = [500, 1_000][(next() % 2) as usize];
            if row > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "('example.d{domain}', 'incident', {}, '{severity}', {weight}, 'bench:{n}')",
                now.unix() - age as i64
            ));
        }
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(store.pool()).await?;
        written += rows;
    }
    let mut sql =
        "INSERT INTO reputation_scores (domain, score, raw, components, facts, computed_at) VALUES ".to_owned();
    for domain in 0..domains {
        if domain > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("('d{domain}.example', 0, 0, '{{}}', 0, 0)"));
    }
    sqlx::query(sqlx::AssertSqlSafe(sql)).execute(store.pool()).await?;
    if postgres {
        sqlx::query("ANALYZE").execute(store.pool()).await?;
    }
    println!(
        "seeded {incidents} facts over {domains} domains ({} per domain) in {:.1} s",
        incidents / domains.max(1),
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let scored = ledger.recompute_scores(now).await?;
    let elapsed = started.elapsed();
    println!(
        "full recomputation: {scored} domains in {:.2} s = {:.0} domains/s, {:.0} facts/s",
        elapsed.as_secs_f64(),
        scored as f64 / elapsed.as_secs_f64(),
        incidents as f64 / elapsed.as_secs_f64()
    );

    for (label, jid) in
        [("incident naming an IP (no fact, baseline)", false), ("incident naming a JID (fact + rescore)", true)]
    {
        let mut latencies = Vec::with_capacity(apply as usize);
        let started = Instant::now();
        for i in 0..apply {
            let n = next();
            let offender = if jid {
                Offender::from_jid(BareJid::parse(&format!("bot{i}@d{}.example", n % domains))?)
            } else {
                Offender::Ip(IpAddr::V4(Ipv4Addr::from((n as u32) | 0x0100_0000)))
            };
            let incident = Incident {
                id: IncidentId::new(
                    Domain::parse("bench.example")?,
                    uuid::Uuid::from_u128(u128::from(n) << 1 | u128::from(jid)),
                ),
                reporter: BareJid::parse("bench.example")?,
                status: Status::New,
                category: Category::Spam,
                severity: Severity::High,
                offenders: vec![offender],
                start: now,
                end: None,
                reported: now,
                description: String::new(),
                evidence: vec![],
                action: None,
                expires: None,
                related: None,
                history: vec![],
            };
            let one = Instant::now();
            ledger.submit_local(&incident, false, now).await?;
            latencies.push(one.elapsed());
        }
        report_latencies(label, latencies, started.elapsed());
    }
    Ok(())
}
