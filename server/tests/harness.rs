//! The federation harness in CI: every scenario on five real nodes (`ostracon serve`
//! processes) over real Prosody, with assertions on outcomes (who is listed everywhere, who
//! nowhere, that nothing acknowledged is lost), never on timings. Scenarios run one at a
//! time: each starts its own federation, and the machine has two cores.

use ostracon_tests::harness::{self, Outcome, RunOptions, Scenario, Topology};
use ostracon_tests::prosody::available;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn run(scenario: Scenario) -> Option<Outcome> {
    run_with(scenario, None).await
}

async fn run_with(scenario: Scenario, postgres: Option<String>) -> Option<Outcome> {
    if !available() {
        return None;
    }
    let _turn = ONE_AT_A_TIME.lock().await;
    let options = RunOptions {
        binary: env!("CARGO_BIN_EXE_ostracon").into(),
        nodes: 5,
        servers: 1,
        topology: Topology::FullMesh,
        out: None,
        postgres,
        quiet: true,
    };
    let outcome = harness::run(scenario, &options).await.unwrap_or_else(|e| panic!("{scenario}: {e}"));
    assert!(outcome.passed(), "{scenario}: {:?}\n{}", outcome.failures(), harness::report::section_markdown(&outcome));
    Some(outcome)
}

fn every_tracked_offender_reached_every_node(outcome: &Outcome) {
    assert!(!outcome.tracks.is_empty());
    for track in &outcome.tracks {
        assert!(track.converged_after().is_some(), "{} missed a node: {:?}", track.offender, track.listed_after);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn botnet_offenders_reach_every_list_and_only_the_silent_server_is_blocked() {
    let Some(outcome) = run(Scenario::Botnet).await else { return };
    every_tracked_offender_reached_every_node(&outcome);
    // 20 bot JIDs and the 15 IPs the three answering home servers supplied.
    assert_eq!(outcome.tracks.len(), 35);
    assert!(outcome.tracks.iter().any(|t| t.offender == "10.0.1.1"), "an IP only its home server knew");
    assert_eq!(outcome.false_positives, 0, "no answering home server is blocked wholesale");
    let names: Vec<&str> = outcome.checks.iter().map(|c| c.name.as_str()).collect();
    assert!(names.contains(&"the server that ignored requests is blocked by the victim"), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn muc_flood_ips_signed_by_the_home_server_reach_every_list() {
    let Some(outcome) = run(Scenario::MucFlood).await else { return };
    every_tracked_offender_reached_every_node(&outcome);
    assert_eq!(outcome.tracks.len(), 20, "ten IPs and ten JIDs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sybils_list_nothing_anywhere() {
    let Some(outcome) = run(Scenario::Sybil).await else { return };
    assert_eq!(outcome.false_positives, 0);
    assert_eq!(outcome.stats.iter().filter(|s| !s.honest).count(), 5, "five attacker nodes ran");
    assert!(outcome.stats.iter().filter(|s| !s.honest).all(|s| s.stanzas_out > 0), "the attackers did send");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_liar_is_ignored_everywhere_and_its_lies_leave_every_list() {
    let Some(outcome) = run(Scenario::Liar).await else { return };
    assert_eq!(outcome.false_positives, 0, "nothing it said stays listed on its word alone");
    assert!(outcome.measures.contains_key("false reports until ignored everywhere"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_loses_nothing() {
    let Some(outcome) = run(Scenario::Outage).await else { return };
    assert_eq!(outcome.servers, 2, "over s2s");
    every_tracked_offender_reached_every_node(&outcome);
    assert_eq!(outcome.tracks.len(), 5, "one incident from the node that crashed, one from each other node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retraction_propagates() {
    let Some(outcome) = run(Scenario::Retraction).await else { return };
    every_tracked_offender_reached_every_node(&outcome);
    assert_eq!(outcome.false_positives, 0, "delisted everywhere");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_can_share_one_postgresql_server() {
    // The throwaway cluster scripts/test starts; without it (outside the test script) this
    // test skips, and in CI (`OSTRACON_REQUIRE_INTEGRATION=1`) a missing cluster fails it.
    let Ok(admin) = std::env::var("TEST_DATABASE_URL") else {
        assert!(!ostracon_tests::integration_required(), "TEST_DATABASE_URL is not set in CI");
        return;
    };
    let Some(outcome) = run_with(Scenario::Retraction, Some(admin)).await else { return };
    every_tracked_offender_reached_every_node(&outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_propagates() {
    let Some(outcome) = run(Scenario::KeyRotation).await else { return };
    every_tracked_offender_reached_every_node(&outcome);
}

#[tokio::test]
async fn reports_are_written_as_markdown_html_svg_and_json() {
    // The report writer on a synthetic outcome (no federation needed).
    let outcome = Outcome {
        scenario: Scenario::Retraction,
        nodes: 2,
        topology: "mesh".into(),
        servers: 1,
        tracks: vec![harness::scenarios::Track {
            offender: "192.0.2.1".into(),
            listed_after: vec![Some(0.1), Some(0.3)],
            reported_after: Some(0.05),
        }],
        false_positives: 0,
        false_negatives: 0,
        checks: vec![],
        measures: Default::default(),
        stats: vec![],
        seconds: 1.0,
    };
    let dir = ostracon_tests::TempDir::new("report");
    let html = harness::report::write(dir.path(), &[outcome]).unwrap();
    let page = std::fs::read_to_string(html).unwrap();
    assert!(page.contains("<svg") && page.contains("0.30 s") && page.contains("0.25 s"), "{page}");
    for file in ["report.md", "report.json", "retraction-convergence.svg", "retraction-traffic.svg"] {
        assert!(dir.path().join(file).exists(), "{file}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoner_lists_nothing_out_of_scope_and_the_brake_holds_its_flood() {
    let Some(outcome) = run(Scenario::Poisoner).await else { return };
    every_tracked_offender_reached_every_node(&outcome);
    let names: Vec<&str> = outcome.checks.iter().map(|c| c.name.as_str()).collect();
    for check in [
        "the brake holds what exceeds the poisoner's hourly budget, listings and delistings",
        "a report laundered through an auto-apply forwarder weighs what its origin weighs",
        "a second answer to the same request lists nothing alone",
    ] {
        assert!(names.contains(&check), "{check}: {names:?}");
    }
    assert_eq!(outcome.false_positives, 0, "nothing out of scope is listed at any honest node");
}
