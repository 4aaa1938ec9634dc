//! The reputation function: scores for remote domains on the XEP-0275 scale, reporter
//! weights, and the listing quorum, as `spec/reputation.md` states them.
//!
//! Pure and deterministic: integer arithmetic only (no floats whose rounding could differ
//! between machines), time passed in, inputs explicit. Every score comes with its components,
//! so an operator (and the lookup API) can see why a domain scores what it does.

use std::collections::BTreeMap;

use ostracon_protocol::incident::Severity;
use ostracon_protocol::time::Timestamp;

use crate::model::Trust;

/// The parameters, with the defaults `spec/reputation.md` argues for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReputationParams {
    /// Evidence loses half its weight every this many seconds (30 days).
    pub half_life_secs: i64,
    /// Reports from peers scoring below this are stored but not applied (-20).
    pub ignore_below: i64,
    /// Sum of independent reporters' weights needed to list, in thousandths (1.0).
    pub listing_threshold_milli: i64,
    /// The operator's own reports (1.0: one is enough).
    pub local_weight_milli: i64,
    /// A buddy trusted with `accept` (0.5: two are needed).
    pub accept_weight_milli: i64,
    /// A buddy trusted with `auto-apply` (1.0).
    pub auto_apply_weight_milli: i64,
    /// Points against the subject per accepted incident, by severity (low, medium, high), at full weight.
    pub incident_points: [i64; 3],
    /// Points for a request the subject's node answered (and acted on).
    pub answered_request_points: i64,
    /// Points for a request it left unanswered.
    pub ignored_request_points: i64,
    /// Points for being our buddy.
    pub buddy_points: i64,
    /// Extra points per 30 days of buddy relation, up to `buddy_age_cap_points`.
    pub buddy_age_points: i64,
    /// Cap of the age bonus.
    pub buddy_age_cap_points: i64,
    /// Points for a report of theirs that independent peers corroborated.
    pub corroborated_points: i64,
    /// Points for a report they retracted.
    pub retracted_points: i64,
    /// Points for a report independent peers or our operator contradicted.
    pub contradicted_points: i64,
    /// Share of buddies' XEP-0275 opinions in the score, in thousandths (0.3).
    pub opinion_share_milli: i64,
    /// A domain scoring at or below this that also left our requests unanswered gets a domain
    /// entry (an s2s block recommendation) (-50).
    pub domain_block_below: i64,
    /// A request counts as ignored once this long passes without an answer (2 days).
    pub request_deadline_secs: i64,
    /// Candidate contributions older than this no longer count toward a quorum (7 days).
    pub candidate_window_secs: i64,
    /// One reporter adds at most one incident fact about a domain per this many seconds (1 day).
    pub incident_fact_window_secs: i64,
    /// Buddies' opinions move a reporter's standing by at most this many raw points either
    /// way (5, below the buddy points): what others say of a buddy never costs it weight;
    /// only how its own reports fare here does.
    pub opinion_reporter_cap: i64,
    /// Per-category factors on peers' contributions, in thousandths (absent: 1.0).
    pub category_weights_milli: BTreeMap<String, i64>,
    /// Per-peer base weights, in thousandths, by the peer's server domain; they replace the
    /// trust level's weight (absent: by trust).
    pub peer_weights_milli: BTreeMap<String, i64>,
    /// Registrable domains one operator runs, each mapped to the group's name: one voice.
    pub operator_groups: BTreeMap<String, String>,
}

impl Default for ReputationParams {
    fn default() -> Self {
        Self {
            half_life_secs: 30 * 86_400,
            ignore_below: -20,
            listing_threshold_milli: 1_000,
            local_weight_milli: 1_000,
            accept_weight_milli: 500,
            auto_apply_weight_milli: 1_000,
            incident_points: [-4, -10, -20],
            answered_request_points: 5,
            ignored_request_points: -10,
            buddy_points: 10,
            buddy_age_points: 2,
            buddy_age_cap_points: 10,
            corroborated_points: 3,
            retracted_points: -5,
            contradicted_points: -15,
            opinion_share_milli: 300,
            domain_block_below: -50,
            request_deadline_secs: 2 * 86_400,
            candidate_window_secs: 7 * 86_400,
            incident_fact_window_secs: 86_400,
            opinion_reporter_cap: 5,
            category_weights_milli: BTreeMap::new(),
            peer_weights_milli: BTreeMap::new(),
            operator_groups: BTreeMap::new(),
        }
    }
}

/// One fact about a subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fact {
    /// An accepted incident about the subject's users, IPs or the subject itself, reported
    /// with `weight_milli` (the reporter's weight when it was accepted).
    Incident { at: Timestamp, severity: Severity, weight_milli: i64 },
    /// The subject's node answered one of our requests.
    RequestAnswered { at: Timestamp },
    /// The subject's node let one of our requests go unanswered past its deadline.
    RequestIgnored { at: Timestamp },
    /// A report the subject issued was corroborated by an independent peer.
    Corroborated { at: Timestamp },
    /// A report the subject issued was retracted by it.
    Retracted { at: Timestamp },
    /// A report the subject issued was contradicted (allowed by our operator, or reported as
    /// false by independent peers).
    Contradicted { at: Timestamp },
    /// A buddy's XEP-0275 answer about the subject, weighted by our trust in that buddy.
    Opinion { num: i64, weight_milli: i64 },
}

/// What we know about a subject domain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subject {
    /// When it became our buddy, if it is one.
    pub buddy_since: Option<Timestamp>,
    /// The operator's fixed score, which replaces the computed one.
    pub operator_override: Option<i64>,
    /// Everything else.
    pub facts: Vec<Fact>,
}

/// A score and how it was reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explained {
    /// The score in [-100, 100].
    pub score: i64,
    /// The raw sum before the squash to the scale.
    pub raw: i64,
    /// The parts of the raw sum, by name (`incidents`, `requests`, `buddy`, `reporting`, `opinions`).
    pub components: BTreeMap<&'static str, i64>,
    /// True if the operator's override decided the score.
    pub overridden: bool,
}

/// `value` decayed by `age` with the half-life: halved per whole half-life, and linearly
/// between halvings (an integer approximation of 2^-x that is exact at every half-life and
/// never increases with age).
pub fn decay(value: i64, age_secs: i64, half_life_secs: i64) -> i64 {
    if age_secs <= 0 || half_life_secs <= 0 {
        return value;
    }
    let halvings = age_secs / half_life_secs;
    if halvings >= 62 {
        return 0;
    }
    let at_last_halving = value / (1i64 << halvings);
    let within = age_secs % half_life_secs;
    // Between 1 and 1/2 of `at_last_halving`, linearly.
    at_last_halving - at_last_halving * within / (2 * half_life_secs)
}

/// Maps an unbounded raw sum onto [-100, 100]: `100 * raw / (|raw| + 100)`, rounded toward
/// zero. Monotonic, odd, and near-linear for small sums.
pub fn squash(raw: i64) -> i64 {
    let raw = raw.clamp(-1_000_000_000, 1_000_000_000);
    100 * raw / (raw.abs() + 100)
}

fn severity_index(severity: Severity) -> usize {
    match severity {
        Severity::Low => 0,
        Severity::Medium => 1,
        Severity::High => 2,
    }
}

/// The score of a subject at `now`.
pub fn score(subject: &Subject, params: &ReputationParams, now: Timestamp) -> Explained {
    let mut components: BTreeMap<&'static str, i64> = BTreeMap::new();
    let age = |at: Timestamp| now.unix() - at.unix();
    let mut opinion_sum = 0i64;
    let mut opinion_weight = 0i64;
    for fact in &subject.facts {
        let (component, points) = match *fact {
            Fact::Incident { at, severity, weight_milli } => {
                let full = params.incident_points[severity_index(severity)] * weight_milli.clamp(0, 10_000) / 1_000;
                ("incidents", decay(full, age(at), params.half_life_secs))
            }
            Fact::RequestAnswered { at } => {
                ("requests", decay(params.answered_request_points, age(at), params.half_life_secs))
            }
            Fact::RequestIgnored { at } => {
                ("requests", decay(params.ignored_request_points, age(at), params.half_life_secs))
            }
            Fact::Corroborated { at } => {
                ("reporting", decay(params.corroborated_points, age(at), params.half_life_secs))
            }
            Fact::Retracted { at } => ("reporting", decay(params.retracted_points, age(at), params.half_life_secs)),
            Fact::Contradicted { at } => {
                ("reporting", decay(params.contradicted_points, age(at), params.half_life_secs))
            }
            Fact::Opinion { num, weight_milli } => {
                let weight = weight_milli.clamp(0, 10_000);
                opinion_sum += num.clamp(-100, 100) * weight;
                opinion_weight += weight;
                continue;
            }
        };
        *components.entry(component).or_insert(0) += points;
    }
    if opinion_weight > 0 {
        components.insert("opinions", opinion_sum / opinion_weight * params.opinion_share_milli / 1_000);
    }
    if let Some(since) = subject.buddy_since {
        let months = (age(since) / (30 * 86_400)).max(0);
        let bonus = (months * params.buddy_age_points).min(params.buddy_age_cap_points);
        components.insert("buddy", params.buddy_points + bonus);
    }
    let raw: i64 = components.values().sum();
    match subject.operator_override {
        Some(fixed) => Explained { score: fixed.clamp(-100, 100), raw, components, overridden: true },
        None => Explained { score: squash(raw), raw, components, overridden: false },
    }
}

/// A domain's standing as a reporter: its score from how it reports (corroborated, retracted
/// and contradicted reports), buddies' opinions, the buddy relation and the operator's
/// override, leaving out the incidents about its users and how it answers our requests.
/// A large provider whose open registration bots abuse is still an honest reporter, and a
/// busy one that answers late must still be heard when it answers: those facts lower its
/// score and can earn it a domain entry, but never silence it.
pub fn reporter_score(subject: &Subject, params: &ReputationParams, now: Timestamp) -> Explained {
    let about_reporting = |fact: &&Fact| {
        !matches!(fact, Fact::Incident { .. } | Fact::RequestAnswered { .. } | Fact::RequestIgnored { .. })
    };
    let as_reporter =
        Subject { facts: subject.facts.iter().filter(about_reporting).cloned().collect(), ..subject.clone() };
    let mut explained = score(&as_reporter, params, now);
    // What buddies say of a reporter moves its standing by a bounded amount (their opinions
    // are about its users, and a hostile buddy's cost it nothing to give).
    let cap = params.opinion_reporter_cap.max(0);
    if let Some(opinions) = explained.components.get_mut("opinions") {
        let bounded = (*opinions).clamp(-cap, cap);
        explained.raw -= *opinions - bounded;
        *opinions = bounded;
        if !explained.overridden {
            explained.score = squash(explained.raw);
        }
    }
    explained
}

/// How much a reporter's accepted reports count, in thousandths: nothing from peers we only
/// observe or that score below `ignore_below`; full trust weight from peers scoring 0 or more;
/// linearly less in between, so a peer that starts lying loses weight before it is ignored.
pub fn reporter_weight(trust: Trust, reporter_score: i64, params: &ReputationParams) -> i64 {
    let base = match trust {
        Trust::Observe => return 0,
        Trust::Accept => params.accept_weight_milli,
        Trust::AutoApply => params.auto_apply_weight_milli,
    };
    scaled_by_score(base, reporter_score, params)
}

/// [`reporter_weight`] with the operator's per-peer base weight, if one is configured for the
/// peer's server domain, in place of the trust level's.
pub fn peer_weight(trust: Trust, peer_server: &str, reporter_score: i64, params: &ReputationParams) -> i64 {
    match (trust, params.peer_weights_milli.get(peer_server)) {
        (Trust::Observe, _) => 0,
        (_, Some(base)) => scaled_by_score((*base).clamp(0, 10_000), reporter_score, params),
        (_, None) => reporter_weight(trust, reporter_score, params),
    }
}

/// A peer's contribution about an incident of `category`: its weight times the category's
/// factor.
pub fn contribution_weight(weight_milli: i64, category: &str, params: &ReputationParams) -> i64 {
    let factor = params.category_weights_milli.get(category).copied().unwrap_or(1_000).clamp(0, 10_000);
    weight_milli * factor / 1_000
}

fn scaled_by_score(base: i64, reporter_score: i64, params: &ReputationParams) -> i64 {
    if reporter_score < params.ignore_below {
        return 0;
    }
    if reporter_score >= 0 || params.ignore_below >= 0 {
        return base;
    }
    base * (reporter_score - params.ignore_below) / (-params.ignore_below)
}

/// The registrable domain of `domain` by the Public Suffix List (`x.a.co.uk` -> `a.co.uk`,
/// `incidents.a.example` -> `a.example`); a name with no registrable part (a bare suffix,
/// `localhost`) is its own.
pub fn registrable(domain: &str) -> &str {
    psl::domain_str(domain).unwrap_or(domain)
}

/// The voice a reporter's domain speaks with for the quorum: its registrable domain, or the
/// operator-declared group that domain belongs to (domains one operator runs are one voice).
/// `a.co.uk` and `b.co.uk` are two voices; `incidents.a.example` and `x.a.example` one.
pub fn independence_key(domain: &str, params: &ReputationParams) -> String {
    let registrable = registrable(domain);
    match params.operator_groups.get(registrable) {
        Some(group) => format!("group:{group}"),
        None => registrable.to_owned(),
    }
}

/// The server a node speaks for: an XEP-0114 component is a subdomain of its server
/// (`incidents.a.example` serves `a.example`), so a domain loses its first label unless that
/// would climb above its registrable domain (`a.co.uk` is a server itself, not `co.uk`).
/// Facts about a peer's behaviour are kept under this domain, together with the incidents
/// about its users.
pub fn server_domain(domain: &str) -> &str {
    match domain.split_once('.') {
        Some((_, parent)) if parent.len() >= registrable(domain).len() => parent,
        _ => domain,
    }
}

/// A domain with its labels reversed (`a.example` -> `example.a`): a domain and all its
/// subdomains then share a prefix, so one index range holds a domain's subtree.
pub fn reversed(domain: &str) -> String {
    domain.rsplit('.').collect::<Vec<_>>().join(".")
}

/// `domain` and its ancestors of at least two labels, most specific first
/// (`x.a.example`, `a.example`): the scores a fact about `domain` changes.
pub fn scored_ancestors(domain: &str) -> Vec<&str> {
    let mut out = vec![domain];
    let mut rest = domain;
    while let Some((_, parent)) = rest.split_once('.') {
        if !parent.contains('.') {
            break;
        }
        out.push(parent);
        rest = parent;
    }
    out
}

/// Whether a score recommends a domain entry (an s2s block): the score is at or below
/// `domain_block_below`, and either the operator fixed it or the domain's node left our
/// requests unanswered. Incidents alone never block a whole server: a provider whose users
/// were abused by a botnet, and that answers when asked, keeps federating.
pub fn recommends_domain_entry(explained: &Explained, params: &ReputationParams) -> bool {
    explained.score <= params.domain_block_below
        && (explained.overridden || explained.components.get("requests").is_some_and(|points| *points < 0))
}

/// A listing decision and its numbers, for the lookup API's "why".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quorum {
    /// Each independent reporter's counted weight (the largest of its reports).
    pub weights: BTreeMap<String, i64>,
    /// Their sum.
    pub total_milli: i64,
    /// The threshold.
    pub threshold_milli: i64,
    /// Whether it is listed.
    pub listed: bool,
}

/// Whether reports `(reporter domain, weight)` list an offender: the weights of independent
/// reporters (one per [`independence_key`], its largest weight) must reach the threshold.
pub fn quorum<'a>(reports: impl IntoIterator<Item = (&'a str, i64)>, params: &ReputationParams) -> Quorum {
    let mut weights: BTreeMap<String, i64> = BTreeMap::new();
    for (reporter, weight) in reports {
        let entry = weights.entry(independence_key(reporter, params)).or_insert(0);
        *entry = (*entry).max(weight.max(0));
    }
    let total_milli = weights.values().sum();
    Quorum {
        listed: total_milli >= params.listing_threshold_milli,
        weights,
        total_milli,
        threshold_milli: params.listing_threshold_milli,
    }
}
