//! The `poisoner` scenario: one buddy of the victim turns hostile and tries every attack one
//! buddy can (spec/reputation.md, Bounds on one peer).
//!
//! Through its own node's API, as an operator gone rogue would: reports of everything
//! (`0.0.0.0/0`, `::/0`), of the victim's and a buddy's domains, and an answer to the victim's
//! request naming another server's user. With its stolen keys on a raw component, as an
//! attacker who compromised it would: a rotation signed by its retired key, a second answer to
//! the old request, and a report laundered through a buddy that forwards. Then through its
//! node again: a thousand reports against an innocent server's users and a mass retraction.
//! The victim trusts it with `accept`; every other node with `auto-apply`, the most a buddy
//! can be given.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use ostracon_protocol::envelope::{Nonce, sign};
use ostracon_protocol::ids::{BareJid, IncidentId, Offender};
use ostracon_protocol::incident::{Category, Incident, ReportClaim, ResponseClaim, Severity, Status};
use ostracon_protocol::keys::{KeyRotation, NodeKey, PublishedKey};
use ostracon_protocol::time::Timestamp;
use ostracon_protocol::xml::xep0268::IncidentPayload;
use serde_json::json;

use super::{Body, CONVERGE_WITHIN, Reported, count_listed_at, expect, submit, wait_requests, watch};
use crate::harness::federation::{Federation, peer};
use crate::harness::{HarnessError, Progress, Result};
use crate::raw_component::RawComponent;

/// The brake's hourly budget per peer in this scenario.
pub(in crate::harness) const POISONER_BUDGET: usize = 200;

/// How many reports the poisoner sends against the innocent server's users.
const POISON_REPORTS: usize = 1_000;

/// How many of them it then retracts at once.
const RETRACTED: usize = 300;

pub(super) async fn poisoner(fed: &mut Federation, progress: &Progress) -> Result<Body> {
    let n = fed.honest;
    let (victim, poisoner, backer, innocent) = (0, 1, 2, n - 1);
    let domain = |i: usize| format!("n{i}.test");
    let poisoner_jid = fed.nodes[poisoner].component.clone();
    let honest: Vec<usize> = (0..n).filter(|i| *i != poisoner).collect();
    let path = format!("/v1/peers/{poisoner_jid}/trust");
    let (status, body) = fed.call(victim, reqwest::Method::POST, &path, Some(json!({ "trust": "accept" }))).await?;
    expect(status == 200, "trust", status, &body)?;
    progress.say(&format!("{} turns hostile", domain(poisoner)));
    let t0 = Instant::now();

    // 1. Everything, and names it may never list.
    submit(fed, poisoner, &["0.0.0.0/0", "::/0", "10.0.0.0/8"], "dos", "high", true).await?;
    let (ours, buddys) = (domain(victim), domain(backer));
    submit(fed, poisoner, &[ours.as_str(), buddys.as_str()], "spam", "high", true).await?;
    // 2. An entry an honest node backs, that the poisoner reports too and will retract.
    let backed = "192.0.2.60";
    submit(fed, backer, &[backed], "brute-force", "medium", true).await?;
    let co_report = submit(fed, poisoner, &[backed], "brute-force", "medium", true).await?;
    // 3. The victim asks the poisoner about one of its users; it answers, naming another
    //    server's user too, which its answer has no authority over.
    let flooder = format!("flooder@{}", domain(poisoner));
    let bystander = format!("bystander@{}", domain(backer));
    let request = submit(fed, victim, &[&flooder], "muc-abuse", "high", false).await?;
    let path = format!("/v1/incidents/{request}/request");
    let (status, body) = fed.call(victim, reqwest::Method::POST, &path, Some(json!({ "to": poisoner_jid }))).await?;
    expect(status == 202, "request", status, &body)?;
    let answered_ip = "192.0.2.77";
    for (id, _) in wait_requests(fed, poisoner, 1).await? {
        let answer =
            json!({ "offenders": [flooder, answered_ip, bystander], "action": "disable-account", "note": "done" });
        let (status, body) =
            fed.call(poisoner, reqwest::Method::POST, &format!("/v1/incidents/{id}/respond"), Some(answer)).await?;
        expect(status == 201, "respond", status, &body)?;
    }
    // Checked now: the mass retraction below costs the poisoner its voice, and with it what
    // it alone backed.
    let authority = fed
        .wait_for(victim, "the answer", &format!("/v1/lookup/ip/{answered_ip}"), CONVERGE_WITHIN, |l| {
            l["listed"] == true
        })
        .await
        .is_ok();
    let bystander_listed = count_listed_at(fed, &bystander, &[victim]).await?;
    // 4. Its keys are stolen: the operator rotates, and the thief keeps the retired key.
    progress.say(&format!("{} rotates its key; a thief keeps the old one", domain(poisoner)));
    let data_dir = fed.nodes[poisoner].config.parent().map(Path::to_path_buf).unwrap_or_default();
    let retired = read_key(&data_dir)?;
    fed.kill_node(poisoner);
    fed.run_verb(poisoner, &["key", "rotate"])?;
    fed.restart_node(poisoner).await?;
    let current = read_key(&data_dir)?;
    let current_kid = current.key_id().to_string();
    for &h in &[victim, backer] {
        fed.wait_for(h, "the rotation", "/v1/peers", CONVERGE_WITHIN, |peers| {
            peer(peers, &poisoner_jid)
                .and_then(|p| p["keys"].as_array().cloned())
                .is_some_and(|keys| keys.iter().any(|k| k["kid"] == current_kid.as_str()))
        })
        .await?;
    }
    fed.kill_node(poisoner);
    let (address, secret) = fed.component_login(poisoner);
    let mut thief = connect(address, &poisoner_jid, &secret).await?;
    let signer = BareJid::parse(&poisoner_jid).map_err(|e| HarnessError::Node(e.to_string()))?;
    let now = Timestamp::from_unix(chrono::Utc::now().timestamp()).ok_or_else(|| node_error("the clock"))?;

    // 4a. A rotation signed by the retired key, to a key the thief holds.
    let stolen = NodeKey::from_seed(&[0x5a; 32]);
    let rotation = KeyRotation { old_kid: retired.key_id(), new_key: PublishedKey::new(stolen.public(), now) };
    let claim = sign(&rotation, &retired, &signer, now, nonce(1)).map_err(node_error)?;
    let rotation_xml = ostracon_protocol::xml::to_string(&ostracon_protocol::xml::keys::rotation_to_element(&claim));
    let mut rotation_answers = Vec::new();
    for &h in &[victim, backer] {
        let answer = thief.iq(&fed.nodes[h].component, "set", &rotation_xml).await.map_err(node_error)?;
        rotation_answers.push(answer.attr("type").unwrap_or("").to_owned());
    }
    let stolen_kid = stolen.key_id().to_string();
    let mut stolen_pinned = 0;
    for &h in &[victim, backer] {
        let peers = fed.get(h, "/v1/peers").await?;
        let keys = peer(&peers, &poisoner_jid).and_then(|p| p["keys"].as_array().cloned()).unwrap_or_default();
        stolen_pinned += usize::from(keys.iter().any(|k| k["kid"] == stolen_kid.as_str()));
    }

    // 4b. A second answer to the victim's old request, signed with the current key.
    let request_id = IncidentId::parse(&request).map_err(node_error)?;
    let second_ip = "192.0.2.78";
    let second = incident(&signer, 0xa2, &[&format!("other@{}", domain(poisoner)), second_ip], now, Some(request_id));
    let chain = sign(&ResponseClaim(second.clone()), &current, &signer, now, nonce(2)).map_err(node_error)?;
    let payload = IncidentPayload::Response { incident: second, signed: Some(chain) }.to_element();
    let answer = thief
        .iq(&fed.nodes[victim].component, "set", &ostracon_protocol::xml::to_string(&payload))
        .await
        .map_err(node_error)?;
    let second_answer = answer.attr("type").unwrap_or("").to_owned();

    // 4c. Laundering: a report sent only to the backer, whose trust in the poisoner is
    //     `auto-apply`, for it to forward to the victim, which trusts the backer as much. Both
    //     accept one forwarding hop for this step only (a hop more for every report of the
    //     flood below would multiply its traffic).
    for &h in &[victim, backer] {
        fed.restart_with(h, |config| config.replacen("[xmpp]\n", "[xmpp]\nforward_hops = 1\n", 1)).await?;
    }
    let laundered_ip = "192.0.2.79";
    let laundered = incident(&signer, 0xa3, &[laundered_ip], now, None);
    let chain = sign(&ReportClaim(laundered.clone()), &current, &signer, now, nonce(3)).map_err(node_error)?;
    let payload = IncidentPayload::Report { incident: laundered.clone(), signed: Some(chain) }.to_element();
    let answer = thief
        .iq(&fed.nodes[backer].component, "set", &ostracon_protocol::xml::to_string(&payload))
        .await
        .map_err(node_error)?;
    let laundered_answer = answer.attr("type").unwrap_or("").to_owned();
    let path = format!("/v1/incidents/{}", laundered.id);
    let hops = fed
        .wait_for(victim, "the forwarded report", &path, CONVERGE_WITHIN, |i| i["provenance"].is_array())
        .await
        .map(|i| i["provenance"].as_array().map_or(0, Vec::len))
        .unwrap_or(0);
    let laundered_listed =
        (count_listed_at(fed, laundered_ip, &[backer]).await?, count_listed_at(fed, laundered_ip, &[victim]).await?);
    drop(thief);
    for &h in &[victim, backer] {
        fed.restart_with(h, |config| config.replacen("[xmpp]\nforward_hops = 1\n", "[xmpp]\n", 1)).await?;
    }
    fed.restart_node(poisoner).await?;

    // 5. A thousand reports against the innocent server's users, paced under the receivers'
    //    rate so they are delivered, not refused. Halfway through, the backer reports an
    //    honest offender, tracked while the flood goes on: what the flood costs honest traffic.
    progress.say(&format!("{POISON_REPORTS} reports against users of {}", domain(innocent)));
    let accused: Vec<String> = (0..POISON_REPORTS).map(|k| format!("user{k}@{}", domain(innocent))).collect();
    let (halfway, reached) = tokio::sync::oneshot::channel::<()>();
    let flooding = async {
        let mut halfway = Some(halfway);
        let mut flood = Vec::with_capacity(POISON_REPORTS);
        for (k, user) in accused.iter().enumerate() {
            flood.push(submit(fed, poisoner, &[user], "spam", "high", true).await?);
            if k % 15 == 14 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            if k == POISON_REPORTS / 2
                && let Some(halfway) = halfway.take()
            {
                let _ = halfway.send(());
            }
        }
        Ok::<_, HarnessError>(flood)
    };
    let during = "192.0.2.98".to_owned();
    let honest_during_flood = async {
        let _ = reached.await;
        honest_report(fed, backer, &during, &honest, progress).await
    };
    let (flood, during_flood) = tokio::join!(flooding, honest_during_flood);
    let (flood, mut tracks) = (flood?, during_flood?);
    let mut listed_at_peak = Vec::with_capacity(honest.len());
    for &h in &honest {
        listed_at_peak.push(users_listed(fed, h, &domain(innocent)).await?);
    }
    // 6. A mass retraction, and the retraction of a report an honest node backs.
    progress.say(&format!("retracting {RETRACTED} of them at once"));
    for id in flood.iter().take(RETRACTED).chain(std::iter::once(&co_report)) {
        let (status, body) =
            fed.call(poisoner, reqwest::Method::POST, &format!("/v1/incidents/{id}/retract"), None).await?;
        expect(status == 200, "retract", status, &body)?;
    }
    // Wait until each node has the last retraction, then count what its brake holds.
    let others: Vec<usize> = honest.iter().copied().filter(|i| *i != victim && *i != innocent).collect();
    let last_retracted = format!("/v1/incidents/{}", flood[RETRACTED - 1]);
    let mut held = Vec::new();
    for &h in &others {
        fed.wait_for(h, "the mass retraction", &last_retracted, CONVERGE_WITHIN, |i| {
            i["incident"]["status"] == "retracted"
        })
        .await?;
        held.push(held_at(fed, h, &poisoner_jid).await?);
    }

    // 7. Honest traffic keeps flowing: a fresh report from the backer reaches every list.
    let after = honest_report(fed, backer, "192.0.2.99", &honest, progress).await?;
    let seconds = |tracks: &[super::Track]| {
        tracks.first().and_then(super::Track::converged_after).map_or("never".to_owned(), |s| format!("{s:.2} s"))
    };
    let (during_flood, after_attack) = (seconds(&tracks), seconds(&after));
    tracks.extend(after);

    let mut listed_at_end = Vec::with_capacity(honest.len());
    for &h in &honest {
        listed_at_end.push(users_listed(fed, h, &domain(innocent)).await?);
    }

    let mut body = Body { tracks, dishonest: vec![poisoner], ..Body::default() };
    body.role(victim, "victim");
    body.role(poisoner, "poisoner (the victim's buddy)");
    body.role(backer, "co-backs a listing");
    body.role(innocent, "innocent server");
    body.must_not_list = vec![
        ours,
        buddys,
        "203.0.113.9".into(),
        "2001:db8::9".into(),
        "10.1.2.3".into(),
        accused[POISON_REPORTS - 1].clone(),
    ];
    // What a node held of the flood: its listings past the budget (less those retracted
    // since), and the retractions of what it had listed.
    let least_listings = POISON_REPORTS - POISONER_BUDGET - RETRACTED;
    body.check(
        "the brake holds what exceeds the poisoner's hourly budget, listings and delistings",
        held.iter().all(|(listings, retractions)| *listings >= least_listings && *retractions > 0),
        format!(
            "held (listings, retractions) at nodes {others:?}: {held:?} (budget {POISONER_BUDGET} an hour, at least {least_listings} listings)"
        ),
    );
    body.check(
        "the flood lists at most the budget of innocent users at any node, and none once the poisoner is ignored",
        listed_at_peak.iter().all(|n| *n <= POISONER_BUDGET) && listed_at_end.iter().all(|n| *n == 0),
        format!(
            "users of {} listed after the flood {listed_at_peak:?}, at the end {listed_at_end:?}",
            domain(innocent)
        ),
    );
    let mut silenced = 0;
    for &h in &others {
        let reputation = fed.get(h, &format!("/v1/reputation/{}", domain(poisoner))).await?;
        silenced += usize::from(reputation["consequences"]["reports_ignored"] == true);
    }
    body.check(
        "its mass retraction costs it its voice (each applied retraction is a fact against it)",
        silenced == others.len(),
        format!("ignored at {silenced} of {} nodes", others.len()),
    );
    let mut scores = Vec::new();
    let mut innocent_ok = true;
    for &h in honest.iter().filter(|h| **h != innocent) {
        let reputation = fed.get(h, &format!("/v1/reputation/{}", domain(innocent))).await?;
        let score = reputation["score"].as_i64().unwrap_or(i64::MIN);
        let ignore_below = reputation["params"]["ignore_below"].as_i64().unwrap_or(0);
        innocent_ok &= score > ignore_below && reputation["consequences"]["reporter_weight"]["auto-apply"] == 1.0;
        scores.push(score);
    }
    body.check(
        "the innocent server stays above ignore_below everywhere with its full weight",
        innocent_ok,
        format!("{} scores {scores:?}", domain(innocent)),
    );
    body.check(
        "an answer weighs as the operator's only for what the answerer is authoritative for",
        authority && bystander_listed == 0,
        format!("at the victim: {answered_ip} listed {authority}, {bystander} listed at {bystander_listed}"),
    );
    let again = count_listed_at(fed, second_ip, &[victim]).await?;
    body.check(
        "a second answer to the same request lists nothing alone",
        again == 0,
        format!("answered {second_answer}; {second_ip} listed at the victim: {again}"),
    );
    body.check(
        "a report laundered through an auto-apply forwarder weighs what its origin weighs",
        laundered_answer == "result" && hops == 2 && laundered_listed == (1, 0),
        format!(
            "the backer answered {laundered_answer}; the victim holds it with {hops} links; {laundered_ip} listed at (backer, victim): {laundered_listed:?}"
        ),
    );
    body.check(
        "a retired key cannot rotate",
        stolen_pinned == 0 && rotation_answers.iter().all(|t| t == "error"),
        format!("answers {rotation_answers:?}; the thief's key pinned at {stolen_pinned} nodes"),
    );
    let survived = count_listed_at(fed, backed, &honest).await?;
    body.check(
        "retracting its reports removes only its own voice",
        survived == honest.len(),
        format!("{backed} listed at {survived} of {} nodes", honest.len()),
    );
    body.measures
        .insert("innocent users listed after the flood, per honest node".into(), format!("{listed_at_peak:?}"));
    body.measures.insert("innocent users listed at the end, per honest node".into(), format!("{listed_at_end:?}"));
    body.measures.insert("held by the brake, per node".into(), format!("{held:?}"));
    body.measures.insert("innocent server's score, per node".into(), format!("{scores:?}"));
    body.measures.insert("an honest report during the flood reached every honest list after".into(), during_flood);
    body.measures.insert("an honest report after the attack reached every honest list after".into(), after_attack);
    body.measures.insert("poisoner's attack took".into(), format!("{:.1} s", t0.elapsed().as_secs_f64()));
    Ok(body)
}

/// Node `from` reports `offender`; its track until every node of `honest` lists it.
async fn honest_report(
    fed: &Federation,
    from: usize,
    offender: &str,
    honest: &[usize],
    progress: &Progress,
) -> Result<Vec<super::Track>> {
    let t = Instant::now();
    submit(fed, from, &[offender], "brute-force", "medium", true).await?;
    let reported = Reported::default();
    reported.mark(&[offender], t);
    let mut tracks = watch(fed, &[offender.to_owned()], honest, t, CONVERGE_WITHIN, progress).await?;
    reported.apply(&mut tracks);
    Ok(tracks)
}

/// How many users of `domain` node `h` lists.
async fn users_listed(fed: &Federation, h: usize, domain: &str) -> Result<usize> {
    let list = fed.get(h, "/v1/blocklist?kind=jid&format=json").await?;
    let suffix = format!("@{domain}");
    let items = list["items"].as_array().into_iter().flatten();
    Ok(items.filter(|item| item["value"].as_str().is_some_and(|v| v.ends_with(&suffix))).count())
}

/// How many listings and retractions of `peer`'s node `h` holds.
async fn held_at(fed: &Federation, h: usize, peer: &str) -> Result<(usize, usize)> {
    let (mut listings, mut retractions, mut offset) = (0, 0, 0);
    loop {
        let page = fed.get(h, &format!("/v1/held?peer={peer}&limit=500&offset={offset}")).await?;
        for change in page["held"].as_array().into_iter().flatten() {
            match change["change"].as_str() {
                Some("list") => listings += 1,
                Some("retract") => retractions += 1,
                _ => {}
            }
        }
        match page["next_offset"].as_u64() {
            Some(next) => offset = next,
            None => return Ok((listings, retractions)),
        }
    }
}

fn node_error(error: impl std::fmt::Display) -> HarnessError {
    HarnessError::Node(error.to_string())
}

fn nonce(n: u8) -> Nonce {
    Nonce::from_bytes(&[n; 16])
}

/// The node's current signing key, as `DATA_DIR/signing.key` holds it.
fn read_key(data_dir: &Path) -> Result<NodeKey> {
    let path = data_dir.join("signing.key");
    let text = std::fs::read_to_string(&path)?;
    let seed = text
        .split_whitespace()
        .nth(1)
        .and_then(|seed| base64::engine::general_purpose::STANDARD.decode(seed).ok())
        .and_then(|seed| <[u8; 32]>::try_from(seed).ok())
        .ok_or_else(|| HarnessError::Node(format!("{} holds no key", path.display())))?;
    Ok(NodeKey::from_seed(&seed))
}

/// Connects as the component, retrying while Prosody notices the old connection is gone.
async fn connect(address: std::net::SocketAddr, jid: &str, secret: &str) -> Result<RawComponent> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match RawComponent::connect(address, jid, secret).await {
            Ok(component) => return Ok(component),
            Err(error) if Instant::now() > deadline => return Err(node_error(error)),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// An incident issued by `signer`.
fn incident(signer: &BareJid, n: u128, offenders: &[&str], at: Timestamp, related: Option<IncidentId>) -> Incident {
    Incident {
        id: IncidentId::new(signer.domain().clone(), uuid::Uuid::from_u128(n)),
        reporter: signer.clone(),
        status: Status::New,
        category: Category::Spam,
        severity: Severity::High,
        offenders: offenders.iter().filter_map(|o| Offender::parse(o).ok()).collect(),
        start: at,
        end: None,
        reported: at,
        description: "poisoner".to_owned(),
        evidence: vec![],
        action: None,
        expires: None,
        related,
        history: vec![],
    }
}
