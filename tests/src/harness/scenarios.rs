//! The scripted attacks. Each starts its own federation, plays the attacker and every honest
//! operator through the real API, and records what happened: when each offender reached each
//! honest node's list, what was listed that should not be (false positives) or never was
//! (false negatives), named checks on outcomes, and each node's traffic and peak memory.
//!
//! Honest operators are scripted the way the scenario's story needs (a home server's
//! operator answers requests; an operator allows a customer a liar reported). Timings are
//! measured, never asserted: the checks are about who is listed and who is not.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use super::federation::{Federation, FederationSpec};

mod poisoner;
use super::{HarnessError, Progress, Result, RunOptions};
use poisoner::{POISONER_BUDGET, poisoner};

/// How long an offender may take to reach every honest list before it counts as a false
/// negative. Generous: a delivery lost with a dead s2s link is retried after the 30 s IQ
/// timeout and the outbox's backoff.
const CONVERGE_WITHIN: Duration = Duration::from_secs(240);

/// The scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Accounts registered on many servers attack one victim (the 2014 jabber.org DDoS).
    Botnet,
    /// A flooder with ten bots; the home server confirms and signs their IPs.
    MucFlood,
    /// Many fresh nodes all report a legitimate domain.
    Sybil,
    /// A buddy starts filing false reports.
    Liar,
    /// A node and a Prosody server go down mid-run and return.
    Outage,
    /// A report is withdrawn.
    Retraction,
    /// A node rotates its signing key, then reports.
    KeyRotation,
    /// One buddy of the victim turns hostile and tries what one buddy can.
    Poisoner,
}

impl Scenario {
    /// Every scenario, in the order the harness runs them.
    pub const ALL: [Self; 8] = [
        Self::Botnet,
        Self::MucFlood,
        Self::Sybil,
        Self::Liar,
        Self::Outage,
        Self::Retraction,
        Self::KeyRotation,
        Self::Poisoner,
    ];

    /// Parses a scenario name.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        Self::ALL.into_iter().find(|s| s.to_string() == text).ok_or_else(|| {
            let names: Vec<String> = Self::ALL.iter().map(ToString::to_string).collect();
            format!("unknown scenario {text:?}: use one of {}", names.join(", "))
        })
    }

    /// What it shows, one line.
    pub fn story(&self) -> &'static str {
        match self {
            Self::Botnet => {
                "bots registered on every other server attack one victim, which reports each bot and asks its home server to act; all but one home server answer with the bots' IPs"
            }
            Self::MucFlood => {
                "a flooder with ten bots on one server floods a room at the victim; the victim asks the home server, which confirms and signs the IPs only it knows"
            }
            Self::Sybil => {
                "an attacker stands up as many fresh nodes as there are honest ones; operators take them as observe-only newcomers; every fresh node reports a legitimate domain and one of its users"
            }
            Self::Liar => {
                "a trusted buddy starts reporting honest users; each user's own operator allows them (contradicting the report) until the liar is ignored everywhere"
            }
            Self::Outage => {
                "a node and a Prosody server are killed mid-run while incidents are submitted and queued, then come back"
            }
            Self::Retraction => "a node reports five IPs, then retracts the report",
            Self::KeyRotation => "a node rotates its signing key while stopped, comes back, and reports",
            Self::Poisoner => {
                "one buddy of the victim turns hostile: it reports 0.0.0.0/0, ::/0, the victim's and a buddy's domains, answers the victim's request about users not its own, rotates with its retired key, answers twice, launders a report through a forwarder, sends 1,000 reports against an innocent server's users, and retracts reports others back"
            }
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Botnet => "botnet",
            Self::MucFlood => "muc-flood",
            Self::Sybil => "sybil",
            Self::Liar => "liar",
            Self::Outage => "outage",
            Self::Retraction => "retraction",
            Self::KeyRotation => "key-rotation",
            Self::Poisoner => "poisoner",
        })
    }
}

/// When one offender reached each honest node's list (seconds after the first report).
#[derive(Clone, Debug, Serialize)]
pub struct Track {
    /// The offender.
    pub offender: String,
    /// Per honest node, in node order; `None`: never within the limit.
    pub listed_after: Vec<Option<f64>>,
    /// When the report (or answer) naming it was submitted, if the scenario records it.
    pub reported_after: Option<f64>,
}

impl Track {
    /// Seconds until the last honest node listed it, if all did.
    pub fn converged_after(&self) -> Option<f64> {
        self.listed_after.iter().try_fold(0.0f64, |max, t| t.map(|t| max.max(t)))
    }

    /// Seconds from its own report (or answer) until the last honest node listed it.
    pub fn converged_after_its_report(&self) -> Option<f64> {
        Some((self.converged_after()? - self.reported_after?).max(0.0))
    }
}

/// A named check on the outcome.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// What must hold.
    pub name: String,
    /// Whether it did.
    pub passed: bool,
    /// The numbers behind it.
    pub detail: String,
}

/// One node's traffic and memory at the end of the run.
#[derive(Clone, Debug, Serialize)]
pub struct NodeStats {
    /// The node's domain.
    pub domain: String,
    /// Whether it is one of the honest nodes.
    pub honest: bool,
    /// What part it plays in the scenario (`victim`, `home of the bots`, `attacker`, ...).
    pub role: String,
    /// Stanzas received on its XMPP link.
    pub stanzas_in: u64,
    /// Stanzas sent.
    pub stanzas_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Peak resident memory (VmHWM), KiB.
    pub peak_rss_kib: Option<u64>,
}

/// What a scenario produced.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// Which scenario.
    pub scenario: Scenario,
    /// Honest nodes.
    pub nodes: usize,
    /// The topology's name.
    pub topology: String,
    /// Prosody servers.
    pub servers: usize,
    /// Offenders that had to reach every honest list.
    pub tracks: Vec<Track>,
    /// (offender, honest node) pairs listed that must not be.
    pub false_positives: usize,
    /// (offender, honest node) pairs that never got listed.
    pub false_negatives: usize,
    /// Checks on outcomes.
    pub checks: Vec<Check>,
    /// Scenario-specific measurements, by name.
    pub measures: BTreeMap<String, String>,
    /// Per node.
    pub stats: Vec<NodeStats>,
    /// Wall time of the scenario itself (after the federation was up), seconds.
    pub seconds: f64,
}

impl Outcome {
    /// Whether every check passed and nothing was listed wrongly or missed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed) && self.false_positives == 0 && self.false_negatives == 0
    }

    /// Convergence times (seconds until every honest node listed the offender), sorted.
    pub fn convergence(&self) -> Vec<f64> {
        let mut times: Vec<f64> = self.tracks.iter().filter_map(Track::converged_after).collect();
        times.sort_by(f64::total_cmp);
        times
    }

    /// The `p`-quantile (0..1) of the convergence times.
    pub fn convergence_quantile(&self, p: f64) -> Option<f64> {
        quantile(&self.convergence(), p)
    }

    /// The `p`-quantile of the times from each offender's own report until every honest
    /// node listed it (offenders whose report time the scenario recorded).
    pub fn from_report_quantile(&self, p: f64) -> Option<f64> {
        let mut times: Vec<f64> = self.tracks.iter().filter_map(Track::converged_after_its_report).collect();
        times.sort_by(f64::total_cmp);
        quantile(&times, p)
    }

    /// Failed checks, for error messages.
    pub fn failures(&self) -> Vec<String> {
        let mut out: Vec<String> =
            self.checks.iter().filter(|c| !c.passed).map(|c| format!("{}: {}", c.name, c.detail)).collect();
        if self.false_positives > 0 {
            out.push(format!("{} false positives", self.false_positives));
        }
        if self.false_negatives > 0 {
            let missed: Vec<String> = self
                .tracks
                .iter()
                .flat_map(|t| {
                    t.listed_after
                        .iter()
                        .enumerate()
                        .filter(|(_, at)| at.is_none())
                        .map(|(n, _)| format!("{} at node {n}", t.offender))
                })
                .take(5)
                .collect();
            out.push(format!("{} false negatives (first: {})", self.false_negatives, missed.join(", ")));
        }
        out
    }
}

fn quantile(sorted: &[f64], p: f64) -> Option<f64> {
    (!sorted.is_empty()).then(|| sorted[((sorted.len() - 1) as f64 * p).round() as usize])
}

/// When each offender's report (or answer) was submitted, seconds after the first.
#[derive(Default)]
struct Reported(std::sync::Mutex<BTreeMap<String, f64>>);

impl Reported {
    fn mark(&self, offenders: &[&str], t0: Instant) {
        let at = t0.elapsed().as_secs_f64();
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for offender in offenders {
            map.entry((*offender).to_owned()).or_insert(at);
        }
    }

    fn apply(self, tracks: &mut [Track]) {
        let map = self.0.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        for track in tracks {
            track.reported_after = map.get(&track.offender).copied();
        }
    }
}

/// What a scenario body hands back.
#[derive(Default)]
struct Body {
    tracks: Vec<Track>,
    /// Offenders no honest node may list at the end.
    must_not_list: Vec<String>,
    /// Nodes that turned out not to be honest (the liar), left out of the counts.
    dishonest: Vec<usize>,
    checks: Vec<Check>,
    measures: BTreeMap<String, String>,
    false_negatives: usize,
    /// What part a node plays, for the report (nodes not named are plain honest buddies).
    roles: BTreeMap<usize, &'static str>,
}

impl Body {
    fn role(&mut self, node: usize, role: &'static str) {
        self.roles.insert(node, role);
    }

    fn check(&mut self, name: &str, passed: bool, detail: impl Into<String>) {
        self.checks.push(Check { name: name.to_owned(), passed, detail: detail.into() });
    }
}

/// Starts the federation the scenario needs, runs it, and collects the outcome.
pub(super) async fn run(scenario: Scenario, options: &RunOptions, progress: &Progress) -> Result<Outcome> {
    let nodes = options.nodes;
    let (servers, attackers, trust, reputation) = match scenario {
        Scenario::Outage => (options.servers.max(2), 0, "auto-apply", String::new()),
        Scenario::Sybil => (options.servers, nodes.max(5), "auto-apply", String::new()),
        // Requests count as ignored after 10 s, so a silent home server shows within the run.
        Scenario::Botnet => (options.servers, 0, "auto-apply", "request_deadline_secs = 10".to_owned()),
        _ => (options.servers, 0, "auto-apply", String::new()),
    };
    if scenario == Scenario::Liar && nodes < 3 {
        return Err(HarnessError::Setup("the liar scenario needs at least 3 nodes".into()));
    }
    if scenario == Scenario::Poisoner && nodes < 4 {
        return Err(HarnessError::Setup("the poisoner scenario needs at least 4 nodes".into()));
    }
    // The brake's budget, small enough that the poisoner's flood meets it within the run.
    let lists =
        if scenario == Scenario::Poisoner { format!("peer_hourly_budget = {POISONER_BUDGET}") } else { String::new() };
    let spec = FederationSpec {
        binary: options.binary.clone(),
        nodes,
        attackers,
        servers,
        topology: options.topology,
        trust: trust.to_owned(),
        reputation,
        lists,
        xmpp: String::new(),
        postgres: options.postgres.clone(),
    };
    let mut fed = Federation::start(&spec, progress).await?;
    progress.say(&format!("federation up: {}", scenario.story()));
    let started = Instant::now();
    let mut body = match scenario {
        Scenario::Botnet => botnet(&mut fed, progress).await?,
        Scenario::MucFlood => muc_flood(&mut fed, progress).await?,
        Scenario::Sybil => sybil(&mut fed, progress).await?,
        Scenario::Liar => liar(&mut fed, progress).await?,
        Scenario::Outage => outage(&mut fed, progress).await?,
        Scenario::Retraction => retraction(&mut fed, progress).await?,
        Scenario::KeyRotation => key_rotation(&mut fed, progress).await?,
        Scenario::Poisoner => poisoner(&mut fed, progress).await?,
    };
    let seconds = started.elapsed().as_secs_f64();
    let honest: Vec<usize> = (0..fed.honest).filter(|i| !body.dishonest.contains(i)).collect();
    let mut false_positives = 0;
    for offender in &body.must_not_list {
        false_positives += count_listed_at(&fed, offender, &honest).await?;
    }
    let mut stats = Vec::with_capacity(fed.nodes.len());
    for i in 0..fed.nodes.len() {
        let [stanzas_in, stanzas_out, bytes_in, bytes_out] = fed.traffic(i).await.unwrap_or_default();
        stats.push(NodeStats {
            domain: fed.nodes[i].domain.clone(),
            honest: honest.contains(&i),
            role: match (body.roles.get(&i), honest.contains(&i)) {
                (Some(role), _) => (*role).to_owned(),
                (None, true) => "buddy".to_owned(),
                (None, false) => "attacker".to_owned(),
            },
            stanzas_in,
            stanzas_out,
            bytes_in,
            bytes_out,
            peak_rss_kib: fed.peak_rss_kib(i),
        });
    }
    body.false_negatives += body.tracks.iter().flat_map(|t| &t.listed_after).filter(|t| t.is_none()).count();
    Ok(Outcome {
        scenario,
        nodes,
        topology: options.topology.to_string(),
        servers: fed.server_count(),
        tracks: body.tracks,
        false_positives,
        false_negatives: body.false_negatives,
        checks: body.checks,
        measures: body.measures,
        stats,
        seconds,
    })
}

// ---- Scenario bodies ----

async fn botnet(fed: &mut Federation, progress: &Progress) -> Result<Body> {
    const BOTS: usize = 5;
    let n = fed.honest;
    let victim = 0;
    let silent = (n >= 4).then_some(n - 1);
    let homes: Vec<usize> = (1..n).collect();
    let bot = |h: usize, k: usize| format!("bot{k}@n{h}.test");
    let bot_ip = |h: usize, k: usize| format!("10.{}.{}.{}", h / 250, h % 250, k + 1);
    progress.say(&format!(
        "{} bots on {} servers attack n0.test; {}",
        BOTS * homes.len(),
        homes.len(),
        silent.map_or("every home server answers".to_owned(), |s| format!("n{s}.test never answers requests"))
    ));
    let answering = |h: &usize| Some(*h) != silent;
    let mut expected: Vec<String> =
        homes.iter().filter(|h| answering(h)).flat_map(|&h| (0..BOTS).map(move |k| bot(h, k))).collect();
    expected.extend(homes.iter().filter(|h| answering(h)).flat_map(|&h| (0..BOTS).map(move |k| bot_ip(h, k))));
    // The silent home's bots reach every list but its own: a peer's report never lists a
    // node's own users (spec/reputation.md, Scope); its operator would have to act.
    let silent_bots: Vec<String> = silent.iter().flat_map(|&h| (0..BOTS).map(move |k| bot(h, k))).collect();
    let honest: Vec<usize> = (0..n).collect();
    let but_silent: Vec<usize> = (0..n).filter(|i| Some(*i) != silent).collect();
    let fed_ref: &Federation = fed;
    let reported_times = Reported::default();
    let reported = &reported_times;
    let t0 = Instant::now();
    // The victim reports each bot and asks its home server; each answering home's operator,
    // all at once, confirms each bot and supplies the IP only it knows. The lists are watched
    // from the first report on, while all this happens.
    let act = async {
        for &h in &homes {
            for k in 0..BOTS {
                let id = submit(fed_ref, victim, &[&bot(h, k)], "dos", "high", true).await?;
                reported.mark(&[&bot(h, k)], t0);
                let to = fed_ref.nodes[h].component.clone();
                let path = format!("/v1/incidents/{id}/request");
                let (status, body) =
                    fed_ref.call(victim, reqwest::Method::POST, &path, Some(json!({ "to": to }))).await?;
                expect(status == 202, "request", status, &body)?;
            }
        }
        let operators = homes.iter().filter(|h| Some(**h) != silent).map(|&h| async move {
            let requests = wait_requests(fed_ref, h, BOTS).await?;
            for (request, offenders) in requests {
                let Some(jid) = offenders.first() else { continue };
                let k: usize =
                    jid.trim_start_matches("bot").split('@').next().and_then(|k| k.parse().ok()).unwrap_or(0);
                let answer =
                    json!({ "offenders": [bot_ip(h, k), jid], "action": "disable-account", "note": "account disabled" });
                let path = format!("/v1/incidents/{request}/respond");
                let (status, body) = fed_ref.call(h, reqwest::Method::POST, &path, Some(answer)).await?;
                expect(status == 201, "respond", status, &body)?;
                reported.mark(&[&bot_ip(h, k)], t0);
            }
            Ok::<(), HarnessError>(())
        });
        for result in futures_util::future::join_all(operators).await {
            result?;
        }
        Ok::<(), HarnessError>(())
    };
    let (tracks, silent_tracks, acted) = tokio::join!(
        watch(fed_ref, &expected, &honest, t0, CONVERGE_WITHIN, progress),
        watch(fed_ref, &silent_bots, &but_silent, t0, CONVERGE_WITHIN, progress),
        act
    );
    acted?;
    let mut tracks = tracks?;
    tracks.extend(silent_tracks?);
    reported_times.apply(&mut tracks);
    let mut body = Body { tracks, ..Body::default() };
    body.role(victim, "victim");
    for &h in &homes {
        body.role(h, if Some(h) == silent { "home of bots, never answers" } else { "home of bots" });
    }
    if let Some(s) = silent {
        let own = count_listed_at(fed, &bot(s, 0), &[s]).await?;
        body.check(
            "a node never lists its own users on a peer's report",
            own == 0,
            format!("{} at n{s}.test: listed at {own}", bot(s, 0)),
        );
    }
    // Innocent servers hosting bots are not blocked wholesale.
    body.must_not_list = homes.iter().filter(|h| Some(**h) != silent).map(|h| format!("n{h}.test")).collect();
    if let Some(s) = silent {
        // The server that ignored the victim's requests gets a domain entry at the victim
        // (requests count as ignored after 10 s; maintenance runs every 15 s).
        let domain = format!("n{s}.test");
        let listed = fed
            .wait_for(
                victim,
                "the silent server's domain entry",
                &format!("/v1/lookup/domain/{domain}"),
                Duration::from_secs(90),
                |l| l["listed"] == true,
            )
            .await;
        let source = listed.as_ref().map(|l| l["matches"][0]["why"]["source"].clone()).unwrap_or(Value::Null);
        body.check(
            "the server that ignored requests is blocked by the victim",
            listed.is_ok() && source == "reputation",
            format!("{domain} at n0.test: source {source}"),
        );
        let elsewhere = count_listed_at(fed, &domain, &(1..n).collect::<Vec<_>>()).await?;
        body.check(
            "nodes it was never asked by do not block it",
            elsewhere == 0,
            format!("{elsewhere} other nodes list {domain}"),
        );
        let reputation = fed.get(victim, &format!("/v1/reputation/{domain}")).await?;
        body.measures.insert("silent server's score at the victim".into(), reputation["score"].to_string());
    }
    body.measures.insert("bots".into(), (BOTS * homes.len()).to_string());
    Ok(body)
}

async fn muc_flood(fed: &mut Federation, progress: &Progress) -> Result<Body> {
    let (victim, home) = (0, 1);
    let bots: Vec<String> = (0..10).map(|k| format!("flood{k}@n1.test")).collect();
    let ips: Vec<String> = (0..10).map(|k| format!("203.0.113.{}", k + 10)).collect();
    progress.say("ten bots from n1.test flood a room at n0.test");
    let honest: Vec<usize> = (0..fed.honest).collect();
    let mut expected = ips.clone();
    expected.extend(bots.iter().cloned());
    let fed_ref: &Federation = fed;
    let reported = Reported::default();
    let t0 = Instant::now();
    let act = async {
        let jids: Vec<&str> = bots.iter().map(String::as_str).collect();
        let id = submit(fed_ref, victim, &jids, "muc-abuse", "high", true).await?;
        reported.mark(&jids, t0);
        let to = fed_ref.nodes[home].component.clone();
        let path = format!("/v1/incidents/{id}/request");
        let (status, body) = fed_ref.call(victim, reqwest::Method::POST, &path, Some(json!({ "to": to }))).await?;
        expect(status == 202, "request", status, &body)?;
        let requests = wait_requests(fed_ref, home, 1).await?;
        let mut offenders: Vec<String> = ips.clone();
        offenders.extend(bots.iter().cloned());
        let answer =
            json!({ "offenders": offenders, "action": "disable-account", "note": "flooder's accounts disabled" });
        let path = format!("/v1/incidents/{}/respond", requests[0].0);
        let (status, body) = fed_ref.call(home, reqwest::Method::POST, &path, Some(answer)).await?;
        expect(status == 201, "respond", status, &body)?;
        reported.mark(&ips.iter().map(String::as_str).collect::<Vec<_>>(), t0);
        Ok::<(), HarnessError>(())
    };
    let (tracks, acted) = tokio::join!(watch(fed_ref, &expected, &honest, t0, CONVERGE_WITHIN, progress), act);
    acted?;
    let mut tracks = tracks?;
    reported.apply(&mut tracks);
    let mut body = Body { tracks, must_not_list: vec!["n1.test".into()], ..Body::default() };
    body.role(victim, "victim (the room)");
    body.role(home, "home of the flooders");
    let at_third = fed.get(fed.honest - 1, &format!("/v1/lookup/ip/{}", ips[0])).await?;
    let signer = at_third["matches"][0]["why"]["reasons"][0]["issuer"].clone();
    body.check(
        "the IPs are listed under the home server's signature",
        fed.honest < 3 || signer == "incidents.n1.test",
        format!("issuer at n{}.test: {signer}", fed.honest - 1),
    );
    Ok(body)
}

async fn sybil(fed: &mut Federation, progress: &Progress) -> Result<Body> {
    let n = fed.honest;
    let attackers: Vec<usize> = (n..fed.nodes.len()).collect();
    progress.say(&format!(
        "{} fresh nodes ask every honest node to be buddies; operators take them as observe-only",
        attackers.len()
    ));
    for &s in &attackers {
        for h in 0..n {
            fed.make_buddies(s, h, "auto-apply", "observe").await?;
        }
    }
    let targets = ["n1.test", "alice@n1.test"];
    let t0 = Instant::now();
    for &s in &attackers {
        submit(fed, s, &targets, "spam", "high", true).await?;
    }
    // Every honest node receives every report and records it as ignored.
    let expected = attackers.len();
    let mut received_after = Vec::new();
    let mut wrong = Vec::new();
    for h in 0..n {
        let stored = fed
            .wait_for(h, "every Sybil report recorded", "/v1/incidents?origin=peer&limit=500", CONVERGE_WITHIN, |l| {
                l["incidents"].as_array().is_some_and(|a| a.len() >= expected)
            })
            .await?;
        received_after.push(t0.elapsed().as_secs_f64());
        let incidents = stored["incidents"].as_array().cloned().unwrap_or_default();
        let ignored = incidents.iter().filter(|i| i["decision"] == "ignored").count();
        if ignored != expected {
            wrong.push(format!("n{h}.test: {ignored} of {expected} ignored"));
        }
    }
    let mut body = Body { must_not_list: targets.iter().map(|t| (*t).to_owned()).collect(), ..Body::default() };
    body.role(1, "target (legitimate)");
    for &s in &attackers {
        body.role(s, "sybil");
    }
    body.check(
        "every Sybil report reaches every honest node and is stored as ignored (observe-only)",
        wrong.is_empty(),
        if wrong.is_empty() { format!("{expected} reports at each of {n} nodes") } else { wrong.join("; ") },
    );
    let score = fed.get(0, "/v1/reputation/n1.test").await?;
    body.check(
        "the legitimate domain's reputation is untouched",
        score["components"]["incidents"].is_null(),
        format!("n1.test at n0.test: {}", score["components"]),
    );
    let slowest = received_after.iter().copied().fold(0.0f64, f64::max);
    body.measures.insert("all Sybil reports recorded everywhere after".into(), format!("{slowest:.2} s"));
    Ok(body)
}

async fn liar(fed: &mut Federation, progress: &Progress) -> Result<Body> {
    let n = fed.honest;
    let liar = n - 1;
    let liar_domain = fed.nodes[liar].domain.clone();
    let honest: Vec<usize> = (0..liar).collect();
    progress.say(&format!("{liar_domain} starts reporting honest users"));
    let t0 = Instant::now();
    let mut lies = 0usize;
    let mut ignored_after: BTreeMap<usize, (usize, f64)> = BTreeMap::new();
    let mut round = 0usize;
    while ignored_after.len() < honest.len() && round < 6 {
        for &victim in &honest {
            let user = format!("user{round}@n{victim}.test");
            let id = submit(fed, liar, &[&user], "spam", "high", true).await?;
            lies += 1;
            // The user's own operator sees the listing and allows the user: the report is contradicted.
            let seen = fed
                .wait_for(victim, "the false report", &format!("/v1/incidents/{id}"), CONVERGE_WITHIN, |i| {
                    i["id"].is_string()
                })
                .await?;
            if seen["decision"] == "accepted" {
                let (status, body) = fed
                    .call(
                        victim,
                        reqwest::Method::POST,
                        "/v1/allow",
                        Some(json!({ "value": user, "note": "our customer" })),
                    )
                    .await?;
                expect(status == 201, "allow", status, &body)?;
            }
        }
        round += 1;
        for &h in &honest {
            if ignored_after.contains_key(&h) {
                continue;
            }
            let reputation = fed.get(h, &format!("/v1/reputation/{liar_domain}")).await?;
            if reputation["consequences"]["reports_ignored"] == true {
                ignored_after.insert(h, (lies, t0.elapsed().as_secs_f64()));
            }
        }
    }
    let mut body = Body { dishonest: vec![liar], ..Body::default() };
    body.role(liar, "liar");
    body.check(
        "every honest node ends up ignoring the liar",
        ignored_after.len() == honest.len(),
        format!("{} of {} nodes ignore it after {lies} false reports", ignored_after.len(), honest.len()),
    );
    // One more lie: stored, ignored, listed nowhere.
    let last = "innocent@n0.test".to_owned();
    let id = submit(fed, liar, &[&last], "spam", "high", true).await?;
    let mut ignored_everywhere = true;
    for &h in &honest {
        let stored = fed
            .wait_for(h, "the last false report", &format!("/v1/incidents/{id}"), CONVERGE_WITHIN, |i| {
                i["id"].is_string()
            })
            .await?;
        ignored_everywhere &= stored["decision"] == "ignored";
    }
    body.check("its next report is stored as ignored everywhere", ignored_everywhere, format!("incident {id}"));
    // Nothing it said stays listed on its word alone.
    body.must_not_list.push(last);
    for r in 0..round {
        body.must_not_list.extend(honest.iter().map(|v| format!("user{r}@n{v}.test")));
    }
    let worst = ignored_after.values().map(|(l, _)| *l).max().unwrap_or(0);
    let slowest = ignored_after.values().map(|(_, t)| *t).fold(0.0f64, f64::max);
    body.measures.insert("false reports until ignored everywhere".into(), worst.to_string());
    body.measures.insert("time until ignored everywhere".into(), format!("{slowest:.2} s"));
    Ok(body)
}

async fn outage(fed: &mut Federation, progress: &Progress) -> Result<Body> {
    let n = fed.honest;
    let server = 1;
    let node = (0..n).find(|i| fed.nodes[*i].server == server && *i != 0).unwrap_or(1);
    let down_domain = fed.nodes[node].domain.clone();
    // Before: an incident at the node that will crash, acknowledged.
    let t0 = Instant::now();
    submit(fed, node, &["198.51.100.201"], "flood", "medium", true).await?;
    progress.say(&format!("killing {down_domain} (SIGKILL) and Prosody server {server}"));
    fed.kill_node(node);
    fed.stop_server(server);
    // During: every other node reports while part of the network is down.
    let mut expected = vec!["198.51.100.201".to_owned()];
    for i in (0..n).filter(|i| *i != node) {
        let ip = format!("198.51.100.{}", 10 + i);
        submit(fed, i, &[&ip], "flood", "medium", true).await?;
        expected.push(ip);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    progress.say("bringing them back");
    let back = Instant::now();
    fed.restart_server(server);
    fed.restart_node(node).await?;
    for i in 0..n {
        fed.wait_online(i, Duration::from_secs(90)).await?;
    }
    let honest: Vec<usize> = (0..n).collect();
    let tracks = watch(fed, &expected, &honest, t0, CONVERGE_WITHIN, progress).await?;
    let mut body = Body { tracks, ..Body::default() };
    body.role(node, "killed with its server, returns");
    let converged = body.tracks.iter().all(|t| t.converged_after().is_some());
    body.check(
        "nothing acknowledged is lost: every incident reaches every node",
        converged,
        format!("{} incidents, {} nodes", expected.len(), n),
    );
    body.measures.insert("recovered after return".into(), format!("{:.2} s", back.elapsed().as_secs_f64()));
    Ok(body)
}

async fn retraction(fed: &mut Federation, progress: &Progress) -> Result<Body> {
    let ips: Vec<String> = (1..=5).map(|k| format!("192.0.2.{}", 40 + k)).collect();
    let refs: Vec<&str> = ips.iter().map(String::as_str).collect();
    let t0 = Instant::now();
    let id = submit(fed, 0, &refs, "brute-force", "medium", true).await?;
    let honest: Vec<usize> = (0..fed.honest).collect();
    let tracks = watch(fed, &ips, &honest, t0, CONVERGE_WITHIN, progress).await?;
    progress.say("retracting");
    let t1 = Instant::now();
    let (status, body) = fed.call(0, reqwest::Method::POST, &format!("/v1/incidents/{id}/retract"), None).await?;
    expect(status == 200, "retract", status, &body)?;
    let mut gone_after = Vec::new();
    let mut all_gone = true;
    for &h in &honest {
        let gone = fed
            .wait_for(h, "the retraction", &format!("/v1/lookup/ip/{}", ips[0]), CONVERGE_WITHIN, |l| {
                l["listed"] == false
            })
            .await;
        all_gone &= gone.is_ok();
        gone_after.push(t1.elapsed().as_secs_f64());
    }
    let mut body = Body { tracks, must_not_list: ips, ..Body::default() };
    body.role(0, "reporter, then retracts");
    body.check("the retraction reaches every node", all_gone, format!("{} nodes", honest.len()));
    let slowest = gone_after.iter().copied().fold(0.0f64, f64::max);
    body.measures.insert("delisted everywhere after".into(), format!("{slowest:.2} s"));
    Ok(body)
}

async fn key_rotation(fed: &mut Federation, progress: &Progress) -> Result<Body> {
    let rotator = 1.min(fed.honest - 1);
    let domain = fed.nodes[rotator].domain.clone();
    let old = fed.get(rotator, "/.well-known/ostracon").await?;
    let old_kid = old["keys"].as_array().and_then(|k| k.last()).map(|k| k["kid"].clone()).unwrap_or(Value::Null);
    progress.say(&format!("{domain} stops, rotates its key, and comes back"));
    fed.kill_node(rotator);
    let printed = fed.run_verb(rotator, &["key", "rotate"])?;
    let t0 = Instant::now();
    fed.restart_node(rotator).await?;
    let new = fed.get(rotator, "/.well-known/ostracon").await?;
    let new_kid = new["keys"].as_array().and_then(|k| k.last()).map(|k| k["kid"].clone()).unwrap_or(Value::Null);
    let mut body = Body::default();
    body.role(rotator, "rotates its key");
    body.check("the key changed", new_kid != old_kid && !new_kid.is_null(), printed.trim().to_owned());
    let ips = vec!["192.0.2.77".to_owned()];
    submit(fed, rotator, &["192.0.2.77"], "spam", "medium", true).await?;
    let honest: Vec<usize> = (0..fed.honest).collect();
    body.tracks = watch(fed, &ips, &honest, t0, CONVERGE_WITHIN, progress).await?;
    // Every buddy pinned the new key (it verified the report signed with it).
    let mut pinned = 0;
    for h in (0..fed.honest).filter(|h| *h != rotator) {
        let peers = fed.get(h, "/v1/peers").await?;
        let keys = super::federation::peer(&peers, &fed.nodes[rotator].component)
            .and_then(|p| p["keys"].as_array().cloned())
            .unwrap_or_default();
        pinned += usize::from(keys.iter().any(|k| k["kid"] == new_kid));
    }
    body.check("every buddy pinned the new key", pinned == fed.honest - 1, format!("{pinned} of {}", fed.honest - 1));
    Ok(body)
}

// ---- Helpers ----

fn expect(ok: bool, what: &str, status: u16, body: &Value) -> Result<()> {
    if ok { Ok(()) } else { Err(HarnessError::Node(format!("{what} answered {status}: {body}"))) }
}

/// Submits an incident at node `i` through its API and returns its id.
async fn submit(
    fed: &Federation,
    i: usize,
    offenders: &[&str],
    category: &str,
    severity: &str,
    share: bool,
) -> Result<String> {
    let body = json!({ "offenders": offenders, "category": category, "severity": severity, "share": share });
    let (status, created) = fed.call(i, reqwest::Method::POST, "/v1/incidents", Some(body)).await?;
    expect(status == 201, "submit", status, &created)?;
    created["id"].as_str().map(str::to_owned).ok_or_else(|| HarnessError::Node(format!("no id in {created}")))
}

/// Waits until node `i` holds `count` pending requests; returns each id with its offenders.
async fn wait_requests(fed: &Federation, i: usize, count: usize) -> Result<Vec<(String, Vec<String>)>> {
    let list = fed
        .wait_for(i, "the requests", "/v1/incidents?verb=request&decision=pending&limit=500", CONVERGE_WITHIN, |l| {
            l["incidents"].as_array().is_some_and(|a| a.len() >= count)
        })
        .await?;
    Ok(list["incidents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let id = r["id"].as_str()?.to_owned();
            let offenders = r["incident"]["offenders"]
                .as_array()?
                .iter()
                .filter_map(|o| o["value"].as_str().map(str::to_owned))
                .collect();
            Some((id, offenders))
        })
        .collect())
}

/// The lookup path for an offender.
fn lookup_path(offender: &str) -> String {
    let kind = if offender.parse::<std::net::IpAddr>().is_ok() {
        "ip"
    } else if offender.contains('@') {
        "jid"
    } else {
        "domain"
    };
    format!("/v1/lookup/{kind}/{offender}")
}

/// Follows every node's change feed (`/v1/blocklist/changes`, as a consumer would: one
/// request per node per round, whatever the number of offenders) until each offender was
/// added at each node or `within` passes, recording when each was first seen (seconds
/// after `t0`; the resolution is one polling round, tens of milliseconds).
async fn watch(
    fed: &Federation,
    offenders: &[String],
    nodes: &[usize],
    t0: Instant,
    within: Duration,
    progress: &Progress,
) -> Result<Vec<Track>> {
    let index: BTreeMap<&str, usize> = offenders.iter().enumerate().map(|(i, o)| (o.as_str(), i)).collect();
    let mut seen: Vec<Vec<Option<f64>>> = vec![vec![None; nodes.len()]; offenders.len()];
    let mut cursors = vec![0i64; nodes.len()];
    let deadline = Instant::now() + within;
    let total = offenders.len() * nodes.len();
    let mut done = 0;
    let mut reported = 0;
    while done < total && Instant::now() < deadline {
        let rounds = nodes.iter().zip(&cursors).map(|(&node, &cursor)| async move {
            fed.get(node, &format!("/v1/blocklist/changes?since={cursor}&limit=10000")).await
        });
        let answers = futures_util::future::join_all(rounds).await;
        let at = t0.elapsed().as_secs_f64();
        for (n, answer) in answers.into_iter().enumerate() {
            let Ok(feed) = answer else { continue };
            if let Some(cursor) = feed["cursor"].as_i64() {
                cursors[n] = cursor;
            }
            for change in feed["changes"].as_array().into_iter().flatten() {
                let Some(&o) = change["value"].as_str().and_then(|v| index.get(v)) else { continue };
                if change["op"] == "add" && seen[o][n].is_none() {
                    seen[o][n] = Some(at);
                    done += 1;
                }
            }
        }
        if done * 10 / total.max(1) > reported {
            reported = done * 10 / total.max(1);
            progress.say(&format!("{done} of {total} (offender, node) listings"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(offenders
        .iter()
        .zip(seen)
        .map(|(offender, listed_after)| Track { offender: offender.clone(), listed_after, reported_after: None })
        .collect())
}

async fn count_listed_at(fed: &Federation, offender: &str, nodes: &[usize]) -> Result<usize> {
    let mut total = 0;
    for &n in nodes {
        total += usize::from(fed.get(n, &lookup_path(offender)).await?["listed"] == true);
    }
    Ok(total)
}
