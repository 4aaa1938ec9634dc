//! `[reputation]`: the parameters of the reputation function and the listing quorum
//! (spec/reputation.md). Weights are decimals here (`0.5`) and thousandths in the store,
//! so every node computes with the same integers.

use std::collections::BTreeMap;

use ostracon_store::reputation::ReputationParams;
use serde::{Deserialize, Serialize};

/// `[reputation]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReputationSection {
    /// Evidence loses half its weight every this many days.
    #[serde(default = "half_life_days")]
    pub half_life_days: i64,
    /// A peer scoring at or below this has its reports stored and recorded as ignored; between
    /// this and 0 its reports carry proportionally less weight. In [-100, 0].
    #[serde(default = "ignore_below")]
    pub ignore_below: i64,
    /// A domain scoring at or below this that also left our requests unanswered gets a
    /// domain entry (an s2s block recommendation). In [-100, 0].
    #[serde(default = "domain_block_below")]
    pub domain_block_below: i64,
    /// Sum of independent reporters' weights that lists an offender.
    #[serde(default = "listing_threshold")]
    pub listing_threshold: f64,
    /// Weight of a buddy trusted with `accept`.
    #[serde(default = "accept_weight")]
    pub accept_weight: f64,
    /// Weight of a buddy trusted with `auto-apply`.
    #[serde(default = "auto_apply_weight")]
    pub auto_apply_weight: f64,
    /// A request counts as ignored once this many seconds pass without an answer (48 hours).
    #[serde(default = "request_deadline_secs")]
    pub request_deadline_secs: i64,
    /// Contributions waiting for a quorum count for this many days.
    #[serde(default = "candidate_window_days")]
    pub candidate_window_days: i64,
    /// One peer's reports add at most one incident fact about a domain per this many seconds
    /// (a day): a thousand reports about one server's users weigh as one.
    #[serde(default = "incident_fact_window_secs")]
    pub incident_fact_window_secs: i64,
    /// Buddies' opinions move a reporter's standing by at most this many points (0 to 19).
    #[serde(default = "opinion_reporter_cap")]
    pub opinion_reporter_cap: i64,
    /// Factors on peers' contributions by incident category (`spam = 0.5`); absent: 1.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub category_weights: BTreeMap<String, f64>,
    /// Base weights by a peer's server domain (`"a.example" = 0.8`), in place of its trust
    /// level's; the peer's score still scales them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub peer_weights: BTreeMap<String, f64>,
    /// Domains one operator runs, by a name for the operator (`example-ops = ["a.example",
    /// "b.example"]`): their reports are one voice for the quorum, as subdomains of one
    /// registrable domain already are (the Public Suffix List decides what is registrable).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub operator_groups: BTreeMap<String, Vec<String>>,
}

fn defaults() -> ReputationParams {
    ReputationParams::default()
}
fn half_life_days() -> i64 {
    defaults().half_life_secs / 86_400
}
pub(crate) fn ignore_below() -> i64 {
    defaults().ignore_below
}
fn domain_block_below() -> i64 {
    defaults().domain_block_below
}
fn listing_threshold() -> f64 {
    defaults().listing_threshold_milli as f64 / 1000.0
}
fn accept_weight() -> f64 {
    defaults().accept_weight_milli as f64 / 1000.0
}
fn auto_apply_weight() -> f64 {
    defaults().auto_apply_weight_milli as f64 / 1000.0
}
fn request_deadline_secs() -> i64 {
    defaults().request_deadline_secs
}
fn incident_fact_window_secs() -> i64 {
    defaults().incident_fact_window_secs
}
fn opinion_reporter_cap() -> i64 {
    defaults().opinion_reporter_cap
}
fn candidate_window_days() -> i64 {
    defaults().candidate_window_secs / 86_400
}

impl Default for ReputationSection {
    fn default() -> Self {
        Self {
            half_life_days: half_life_days(),
            ignore_below: ignore_below(),
            domain_block_below: domain_block_below(),
            listing_threshold: listing_threshold(),
            accept_weight: accept_weight(),
            auto_apply_weight: auto_apply_weight(),
            request_deadline_secs: request_deadline_secs(),
            candidate_window_days: candidate_window_days(),
            incident_fact_window_secs: incident_fact_window_secs(),
            opinion_reporter_cap: opinion_reporter_cap(),
            category_weights: BTreeMap::new(),
            peer_weights: BTreeMap::new(),
            operator_groups: BTreeMap::new(),
        }
    }
}

fn milli(weight: f64) -> i64 {
    (weight * 1000.0).round() as i64
}

impl ReputationSection {
    /// As the store's parameters.
    pub fn params(&self) -> ReputationParams {
        ReputationParams {
            half_life_secs: self.half_life_days * 86_400,
            ignore_below: self.ignore_below,
            domain_block_below: self.domain_block_below,
            listing_threshold_milli: milli(self.listing_threshold),
            accept_weight_milli: milli(self.accept_weight),
            auto_apply_weight_milli: milli(self.auto_apply_weight),
            request_deadline_secs: self.request_deadline_secs,
            candidate_window_secs: self.candidate_window_days * 86_400,
            incident_fact_window_secs: self.incident_fact_window_secs,
            opinion_reporter_cap: self.opinion_reporter_cap,
            category_weights_milli: self.category_weights.iter().map(|(k, v)| (k.clone(), milli(*v))).collect(),
            peer_weights_milli: self.peer_weights.iter().map(|(k, v)| (k.to_lowercase(), milli(*v))).collect(),
            operator_groups: self
                .operator_groups
                .iter()
                .flat_map(|(group, domains)| {
                    domains.iter().map(move |domain| {
                        let domain = domain.to_lowercase();
                        (ostracon_store::reputation::registrable(&domain).to_owned(), group.clone())
                    })
                })
                .collect(),
            ..ReputationParams::default()
        }
    }

    /// What is wrong with these settings, one message each.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let weight_ok = |w: f64| w.is_finite() && (0.0..=10.0).contains(&w);
        if !(1..=3650).contains(&self.half_life_days) {
            out.push(format!("[reputation] half_life_days is 1 to 3650 (is {})", self.half_life_days));
        }
        for (name, value) in [("ignore_below", self.ignore_below), ("domain_block_below", self.domain_block_below)] {
            if !(-100..=0).contains(&value) {
                out.push(format!("[reputation] {name} is a score in [-100, 0] (is {value})"));
            }
        }
        if !(self.listing_threshold.is_finite() && (0.001..=100.0).contains(&self.listing_threshold)) {
            out.push(format!("[reputation] listing_threshold is 0.001 to 100 (is {})", self.listing_threshold));
        }
        for (name, value) in [("accept_weight", self.accept_weight), ("auto_apply_weight", self.auto_apply_weight)] {
            if !weight_ok(value) {
                out.push(format!("[reputation] {name} is a weight from 0 to 10 (is {value})"));
            }
        }
        // One `accept` buddy is no quorum (spec/reputation.md, Why these defaults): its report,
        // in the heaviest category, must stay below the threshold.
        let heaviest_category = self.category_weights.values().copied().fold(1.0, f64::max);
        if weight_ok(self.accept_weight) && self.accept_weight * heaviest_category >= self.listing_threshold {
            out.push(format!(
                "[reputation] accept_weight {} x the heaviest category weight {heaviest_category} reaches listing_threshold {}: \
                 one `accept` buddy would list alone; keep the product below the threshold (trust a buddy you \
                 want to list alone with auto-apply instead)",
                self.accept_weight, self.listing_threshold
            ));
        }
        // Short deadlines are for test federations (the harness); 90 days is the longest.
        if !(10..=90 * 86_400).contains(&self.request_deadline_secs) {
            out.push(format!(
                "[reputation] request_deadline_secs is 10 to 7776000 (is {})",
                self.request_deadline_secs
            ));
        }
        if !(1..=90).contains(&self.candidate_window_days) {
            out.push(format!("[reputation] candidate_window_days is 1 to 90 (is {})", self.candidate_window_days));
        }
        if !(0..=90 * 86_400).contains(&self.incident_fact_window_secs) {
            out.push(format!(
                "[reputation] incident_fact_window_secs is 0 to 7776000 (is {})",
                self.incident_fact_window_secs
            ));
        }
        // Below |ignore_below|, so opinions alone can never silence a reporter.
        if !(0..(-self.ignore_below).max(1)).contains(&self.opinion_reporter_cap) {
            out.push(format!(
                "[reputation] opinion_reporter_cap is 0 to {} (below -ignore_below; is {})",
                (-self.ignore_below - 1).max(0),
                self.opinion_reporter_cap
            ));
        }
        for (category, weight) in &self.category_weights {
            if ostracon_protocol::incident::Category::parse(category).is_err() {
                out.push(format!("[reputation] category_weights: unknown category {category:?}"));
            }
            if !weight_ok(*weight) {
                out.push(format!("[reputation] category_weights.{category} is a weight from 0 to 10 (is {weight})"));
            }
        }
        for (domain, weight) in &self.peer_weights {
            if ostracon_protocol::ids::Domain::parse(domain).is_err() {
                out.push(format!("[reputation] peer_weights: {domain:?} is not a domain"));
            }
            if !weight_ok(*weight) {
                out.push(format!("[reputation] peer_weights.{domain:?} is a weight from 0 to 10 (is {weight})"));
            }
        }
        let mut grouped = BTreeMap::new();
        for (group, domains) in &self.operator_groups {
            for domain in domains {
                if ostracon_protocol::ids::Domain::parse(domain).is_err() {
                    out.push(format!("[reputation] operator_groups.{group}: {domain:?} is not a domain"));
                } else if let Some(other) = grouped.insert(domain.to_lowercase(), group) {
                    out.push(format!("[reputation] operator_groups: {domain:?} is in both {other} and {group}"));
                }
            }
        }
        out
    }
}
