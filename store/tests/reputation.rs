//! The reputation function against its specification: the worked examples in
//! `spec/vectors/reputation.json`, properties, and the attack scenarios the listing rule must
//! withstand (Sybils, liars, recovery, retraction).

use ostracon_protocol::incident::Severity;
use ostracon_protocol::time::Timestamp;
use ostracon_store::model::Trust;
use ostracon_store::reputation::{Fact, ReputationParams, Subject, decay, quorum, reporter_weight, score, squash};
use proptest::prelude::*;
use serde_json::Value;

const NOW: i64 = 1_800_000_000;

fn at_days_ago(days: i64) -> Timestamp {
    Timestamp::from_unix(NOW - days * 86_400).unwrap()
}

fn now() -> Timestamp {
    Timestamp::from_unix(NOW).unwrap()
}

fn fact_from(json: &Value) -> Fact {
    let (kind, body) = json.as_object().unwrap().iter().next().unwrap();
    let days = body["age_days"].as_i64().unwrap_or(0);
    match kind.as_str() {
        "incident" => Fact::Incident {
            at: at_days_ago(days),
            severity: Severity::parse(body["severity"].as_str().unwrap()).unwrap(),
            weight_milli: body["weight_milli"].as_i64().unwrap(),
        },
        "request_answered" => Fact::RequestAnswered { at: at_days_ago(days) },
        "request_ignored" => Fact::RequestIgnored { at: at_days_ago(days) },
        "corroborated" => Fact::Corroborated { at: at_days_ago(days) },
        "retracted" => Fact::Retracted { at: at_days_ago(days) },
        "contradicted" => Fact::Contradicted { at: at_days_ago(days) },
        "opinion" => {
            Fact::Opinion { num: body["num"].as_i64().unwrap(), weight_milli: body["weight_milli"].as_i64().unwrap() }
        }
        other => panic!("unknown fact {other}"),
    }
}

#[test]
fn the_specs_worked_examples() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec/vectors/reputation.json");
    let vectors: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(vectors["now"].as_i64(), Some(NOW));
    let cases = vectors["cases"].as_array().unwrap();
    assert!(cases.len() >= 6);
    for case in cases {
        let subject_json = &case["subject"];
        let subject = Subject {
            buddy_since: subject_json["buddy_days"].as_i64().map(at_days_ago),
            operator_override: subject_json["override"].as_i64(),
            facts: subject_json["facts"].as_array().unwrap().iter().map(fact_from).collect(),
        };
        let explained = score(&subject, &ReputationParams::default(), now());
        let name = case["name"].as_str().unwrap();
        assert_eq!(explained.score, case["expected"]["score"].as_i64().unwrap(), "{name}");
        assert_eq!(explained.raw, case["expected"]["raw"].as_i64().unwrap(), "{name}");
        let components: std::collections::BTreeMap<String, i64> =
            explained.components.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        let expected: std::collections::BTreeMap<String, i64> = case["expected"]["components"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_i64().unwrap()))
            .collect();
        assert_eq!(components, expected, "{name}");
    }
}

#[test]
fn twenty_fresh_peers_do_not_list_a_legitimate_domain() {
    let params = ReputationParams::default();
    // Freshly seen peers are not buddies: observe-only, weight 0, however many there are.
    let weight = reporter_weight(Trust::Observe, 0, &params);
    let names: Vec<String> = (0..20).map(|n| format!("incidents.sybil{n}.example")).collect();
    let decision = quorum(names.iter().map(|n| (n.as_str(), weight)), &params);
    assert!(!decision.listed);
    assert_eq!(decision.total_milli, 0);
    // Even as accept-trusted buddies, subdomains of one operator are one voice.
    let weight = reporter_weight(Trust::Accept, 0, &params);
    let same_operator: Vec<String> = (0..20).map(|n| format!("node{n}.sybil.example")).collect();
    assert!(!quorum(same_operator.iter().map(|n| (n.as_str(), weight)), &params).listed);
}

#[test]
fn three_trusted_buddies_list_a_botnet_address_and_one_does_not() {
    let params = ReputationParams::default();
    let weight = reporter_weight(Trust::Accept, 10, &params);
    assert_eq!(weight, 500);
    assert!(!quorum([("incidents.a.example", weight)], &params).listed, "one voice is not a quorum");
    let decision = quorum(
        [("incidents.a.example", weight), ("incidents.b.example", weight), ("incidents.c.example", weight)],
        &params,
    );
    assert!(decision.listed);
    assert_eq!(decision.total_milli, 1_500);
    assert!(
        quorum([("incidents.ops.example", params.local_weight_milli)], &params).listed,
        "the operator's own report lists"
    );
}

#[test]
fn a_buddy_that_starts_lying_loses_weight_until_ignored() {
    let params = ReputationParams::default();
    let mut liar = Subject { buddy_since: Some(at_days_ago(365)), operator_override: None, facts: Vec::new() };
    let mut weights = Vec::new();
    for _ in 0..6 {
        let current = score(&liar, &params, now()).score;
        weights.push(reporter_weight(Trust::Accept, current, &params));
        liar.facts.push(Fact::Contradicted { at: now() });
    }
    assert_eq!(weights[0], 500, "a well-behaved buddy has full weight");
    assert!(weights.windows(2).all(|w| w[1] <= w[0]), "weights only fall: {weights:?}");
    assert_eq!(*weights.last().unwrap(), 0, "its reports end up ignored: {weights:?}");
}

#[test]
fn a_domain_that_stops_abusing_climbs_back_and_a_retraction_removes_its_contribution() {
    let params = ReputationParams::default();
    let abusive = Subject {
        buddy_since: None,
        operator_override: None,
        facts: (0..10).map(|_| Fact::Incident { at: now(), severity: Severity::High, weight_milli: 1_000 }).collect(),
    };
    let today = score(&abusive, &params, now()).score;
    let later = score(&abusive, &params, Timestamp::from_unix(NOW + 90 * 86_400).unwrap()).score;
    let much_later = score(&abusive, &params, Timestamp::from_unix(NOW + 365 * 86_400).unwrap()).score;
    assert!(today < -60, "{today}");
    assert!(today < later && later < much_later && much_later <= 0, "{today} {later} {much_later}");
    assert!(much_later > -5);

    let mut retracted = abusive.clone();
    retracted.facts.pop();
    let without_one = score(&retracted, &params, now()).score;
    assert!(without_one > today);
    retracted.facts.clear();
    assert_eq!(score(&retracted, &params, now()).score, 0, "no evidence, neutral");
}

fn fact() -> impl Strategy<Value = Fact> {
    let at = (0i64..400).prop_map(at_days_ago);
    prop_oneof![
        (at.clone(), prop::sample::select(vec![Severity::Low, Severity::Medium, Severity::High]), 0i64..2_000)
            .prop_map(|(at, severity, weight_milli)| Fact::Incident { at, severity, weight_milli }),
        at.clone().prop_map(|at| Fact::RequestAnswered { at }),
        at.clone().prop_map(|at| Fact::RequestIgnored { at }),
        at.clone().prop_map(|at| Fact::Corroborated { at }),
        at.clone().prop_map(|at| Fact::Retracted { at }),
        at.prop_map(|at| Fact::Contradicted { at }),
        (-100i64..=100, 0i64..2_000).prop_map(|(num, weight_milli)| Fact::Opinion { num, weight_milli }),
    ]
}

proptest! {
    #[test]
    fn scores_stay_in_range_and_do_not_depend_on_fact_order(
        facts in prop::collection::vec(fact(), 0..60),
        buddy in prop::option::of(0i64..2_000),
        shift in 0usize..60,
    ) {
        let params = ReputationParams::default();
        let subject = Subject { buddy_since: buddy.map(at_days_ago), operator_override: None, facts: facts.clone() };
        let first = score(&subject, &params, now());
        prop_assert!((-100..=100).contains(&first.score));
        let mut rotated = facts;
        let len = rotated.len().max(1);
        rotated.rotate_left(shift % len);
        let again = score(&Subject { facts: rotated, ..subject }, &params, now());
        prop_assert_eq!(first, again);
    }

    /// Evidence that agrees in sign only ever moves the score toward 0 as it ages; mixed
    /// evidence decays at different points of the halving curve, so its sum may cross 0 on
    /// the way, but every score is back at 0 once the facts are 20 half-lives old.
    #[test]
    fn evidence_decays_toward_neutral(
        facts in prop::collection::vec(fact(), 0..30),
        positive in any::<bool>(),
        days in 0i64..400,
        more in 1i64..400,
    ) {
        let params = ReputationParams::default();
        let evidence: Vec<Fact> = facts.into_iter().filter(|f| !matches!(f, Fact::Opinion { .. })).collect();
        let far = Timestamp::from_unix(NOW + 20 * params.half_life_secs).unwrap();
        let mixed = Subject { buddy_since: None, operator_override: None, facts: evidence.clone() };
        prop_assert_eq!(score(&mixed, &params, far).score, 0);

        let raises = |f: &Fact| matches!(f, Fact::RequestAnswered { .. } | Fact::Corroborated { .. });
        let facts = evidence.into_iter().filter(|f| raises(f) == positive).collect();
        let subject = Subject { buddy_since: None, operator_override: None, facts };
        let t1 = Timestamp::from_unix(NOW + days * 86_400).unwrap();
        let t2 = t1.plus_secs(more * 86_400);
        let (s1, s2) = (score(&subject, &params, t1), score(&subject, &params, t2));
        prop_assert!(s2.score.abs() <= s1.score.abs(), "{} then {}", s1.score, s2.score);
        prop_assert!(s1.score * s2.score >= 0, "one-signed evidence never crosses 0: {} then {}", s1.score, s2.score);
    }

    #[test]
    fn another_independent_report_never_unlists(
        weights in prop::collection::vec(0i64..1_500, 0..12),
        extra in 0i64..1_500,
    ) {
        let params = ReputationParams::default();
        let names: Vec<String> = (0..weights.len()).map(|n| format!("incidents.r{n}.example")).collect();
        let before = quorum(names.iter().map(String::as_str).zip(weights.iter().copied()), &params);
        let extra_name = "incidents.extra.example".to_owned();
        let after = quorum(names.iter().chain(std::iter::once(&extra_name)).map(String::as_str).zip(weights.iter().copied().chain([extra])), &params);
        prop_assert!(after.total_milli >= before.total_milli);
        prop_assert!(after.listed || !before.listed);
    }

    #[test]
    fn decay_and_squash_are_monotonic(value in -10_000i64..10_000, age in 0i64..10_000_000, later in 0i64..10_000_000, raw in -100_000i64..100_000) {
        let half = 30 * 86_400;
        prop_assert!(decay(value, age + later, half).abs() <= decay(value, age, half).abs());
        prop_assert!(squash(raw) <= squash(raw + 1));
        prop_assert!((-100..=100).contains(&squash(raw)));
    }
}

#[test]
fn a_component_speaks_for_its_server_and_subtrees_are_one_range() {
    use ostracon_store::reputation::{reversed, scored_ancestors, server_domain};
    assert_eq!(server_domain("incidents.a.example"), "a.example");
    assert_eq!(server_domain("a.example"), "a.example");
    assert_eq!(server_domain("localhost"), "localhost");
    assert_eq!(reversed("incidents.a.example"), "example.a.incidents");
    assert_eq!(scored_ancestors("muc.x.a.example"), vec!["muc.x.a.example", "x.a.example", "a.example"]);
    assert_eq!(scored_ancestors("a.example"), vec!["a.example"]);
    // The subtree of a.example is the range [example.a., example.a/): a-b.example is outside.
    let (low, high) = (format!("{}.", reversed("a.example")), format!("{}/", reversed("a.example")));
    assert!(reversed("x.a.example") >= low && reversed("x.a.example") < high);
    assert!(!(reversed("a-b.example") >= low && reversed("a-b.example") < high));
    assert!(!(reversed("ab.example") >= low && reversed("ab.example") < high));
}

#[test]
fn operator_weights_replace_the_trust_level_and_categories_scale_contributions() {
    use ostracon_store::reputation::{contribution_weight, peer_weight};
    let mut params = ReputationParams::default();
    params.peer_weights_milli.insert("a.example".into(), 800);
    params.category_weights_milli.insert("spam".into(), 500);
    assert_eq!(peer_weight(Trust::Accept, "a.example", 0, &params), 800);
    assert_eq!(peer_weight(Trust::Accept, "a.example", -10, &params), 400, "the score still scales it");
    assert_eq!(peer_weight(Trust::Observe, "a.example", 50, &params), 0, "observe is never applied");
    assert_eq!(peer_weight(Trust::Accept, "b.example", 0, &params), 500);
    assert_eq!(contribution_weight(1_000, "spam", &params), 500);
    assert_eq!(contribution_weight(1_000, "dos", &params), 1_000);
}

#[test]
fn only_a_low_score_with_ignored_requests_or_an_override_recommends_a_domain_entry() {
    use ostracon_store::reputation::recommends_domain_entry;
    let params = ReputationParams::default();
    let incidents = |n: usize| {
        (0..n).map(|_| Fact::Incident { at: now(), severity: Severity::High, weight_milli: 1_000 }).collect::<Vec<_>>()
    };
    let abused = Subject { facts: incidents(10), ..Subject::default() };
    let scored = score(&abused, &params, now());
    assert!(scored.score <= -50 && !recommends_domain_entry(&scored, &params), "incidents alone: {scored:?}");
    let mut silent = abused.clone();
    silent.facts.push(Fact::RequestIgnored { at: now() });
    assert!(recommends_domain_entry(&score(&silent, &params, now()), &params));
    let mut answering = silent.clone();
    answering.facts.extend([
        Fact::RequestAnswered { at: now() },
        Fact::RequestAnswered { at: now() },
        Fact::RequestAnswered { at: now() },
    ]);
    assert!(!recommends_domain_entry(&score(&answering, &params, now()), &params), "it answers more than it ignores");
    let fixed = Subject { operator_override: Some(-60), ..Subject::default() };
    assert!(recommends_domain_entry(&score(&fixed, &params, now()), &params));
}

#[test]
fn incidents_about_a_servers_users_lower_its_score_not_its_voice() {
    use ostracon_store::reputation::reporter_score;
    let params = ReputationParams::default();
    let mut provider = Subject { buddy_since: Some(now()), ..Subject::default() };
    provider.facts =
        (0..10).map(|_| Fact::Incident { at: now(), severity: Severity::High, weight_milli: 1_000 }).collect();
    assert!(score(&provider, &params, now()).score < -50);
    let voice = reporter_score(&provider, &params, now()).score;
    assert_eq!(reporter_weight(Trust::AutoApply, voice, &params), 1_000, "standing {voice}");
    provider.facts.extend((0..3).map(|_| Fact::Contradicted { at: now() }));
    let voice = reporter_score(&provider, &params, now()).score;
    assert_eq!(reporter_weight(Trust::AutoApply, voice, &params), 0, "lying silences it: {voice}");
}

#[test]
fn opinions_never_cost_a_buddy_weight() {
    use ostracon_store::reputation::reporter_score;
    let params = ReputationParams::default();
    // Every other buddy says the worst of an honest buddy.
    let slandered = Subject {
        buddy_since: Some(now()),
        facts: (0..5).map(|_| Fact::Opinion { num: -100, weight_milli: 1_000 }).collect(),
        ..Subject::default()
    };
    let standing = reporter_score(&slandered, &params, now());
    assert_eq!(standing.components.get("opinions"), Some(&-params.opinion_reporter_cap));
    assert!(standing.score >= 0, "{standing:?}");
    assert_eq!(reporter_weight(Trust::AutoApply, standing.score, &params), params.auto_apply_weight_milli);
    // What we saw of its own reports still counts in full: a liar is silenced.
    let mut facts = slandered.facts.clone();
    facts.extend(vec![Fact::Contradicted { at: now() }; 2]);
    let contradicted = Subject { facts, ..slandered };
    let liar = reporter_score(&contradicted, &params, now());
    assert_eq!(reporter_weight(Trust::AutoApply, liar.score, &params), 0, "{liar:?}");
}

#[test]
fn independence_follows_the_public_suffix_list_and_operator_groups() {
    use ostracon_store::reputation::{independence_key, server_domain};
    let mut params = ReputationParams::default();
    let weight = reporter_weight(Trust::Accept, 0, &params);
    // Two operators under one public suffix are two voices; one operator's nodes are one.
    assert!(quorum([("incidents.a.co.uk", weight), ("incidents.b.co.uk", weight)], &params).listed);
    assert!(!quorum([("incidents.a.co.uk", weight), ("x.a.co.uk", weight)], &params).listed);
    assert_eq!(independence_key("incidents.a.co.uk", &params), "a.co.uk");
    assert_eq!(server_domain("a.co.uk"), "a.co.uk", "a server under a public suffix is its own server");
    assert_eq!(server_domain("incidents.a.co.uk"), "a.co.uk");
    // Domains the operator declared as run by one operator are one voice.
    params.operator_groups.insert("a.example".into(), "acme".into());
    params.operator_groups.insert("b.example".into(), "acme".into());
    assert!(!quorum([("incidents.a.example", weight), ("incidents.b.example", weight)], &params).listed);
    assert!(quorum([("incidents.a.example", weight), ("incidents.c.example", weight)], &params).listed);
}
