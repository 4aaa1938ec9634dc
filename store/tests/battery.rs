//! The store battery: every test runs on SQLite (a temp file) and on PostgreSQL (a fresh
//! database in the throwaway cluster `scripts/test` starts), through `ostracon_store::testing`.

use ostracon_protocol::ids::{BareJid, IncidentId, Offender};
use ostracon_protocol::incident::{Action, Category, Incident, Severity, Status};
use ostracon_protocol::keys::NodeKey;
use ostracon_protocol::log::merkle::{MerkleTree, leaf_hash, verify_consistency, verify_inclusion};
use ostracon_protocol::log::record::{AuditRecord, ListState};
use ostracon_protocol::log::seal::LogLeaf;
use ostracon_protocol::time::Timestamp;
use ostracon_store::ledger::{Ledger, LedgerConfig, RemoteIncident};
use ostracon_store::model::{
    ChangeOp, Decision, EntryRecord, EntrySource, IncidentOrigin, ListAction, ListKind, Scope, Verb,
};
use ostracon_store::policy::ListingPolicy;
use ostracon_store::snapshot::{Actions, Format};
use ostracon_store::traits::{AuditLogStore, BlocklistStore, IncidentFilter, IncidentStore, TokenStore};
use ostracon_store::{Store, StoreError};

use ostracon_store::testing::Throwaway as Backend;

ostracon_store::battery!(
    submitted_incident_lists_its_offenders_in_one_transaction,
    duplicate_incident_is_refused_and_nothing_is_written,
    failed_transaction_leaves_nothing_behind,
    retraction_delists_entries_with_no_other_reason,
    expiry_is_applied_at_the_given_time_and_repeat_offenders_get_longer_ttls,
    allow_entries_win,
    an_allowed_block_covers_every_address_and_narrower_block_inside_it,
    operator_deny_entries,
    state_survives_reopening,
    log_replay_equals_the_published_list_and_proofs_verify,
    snapshots_are_signed_consistent_and_in_every_format,
    change_feed_pages_and_prunes_behind_a_horizon,
    tokens_are_stored_hashed_and_revocable,
    incidents_filter_and_page,
    large_incidents_are_written_in_chunks_with_duplicates_and_relistings,
    received_reports_commit_as_a_group,
    a_group_of_reports_is_stored_as_the_same_reports_one_by_one,
    one_voice_is_not_a_quorum_but_independent_reporters_are,
    allow_entries_contradict_the_reports_behind_them,
    scores_are_updated_incrementally_and_listed_in_order,
    a_domain_that_scores_low_and_ignores_requests_gets_a_domain_entry,
    a_reporter_that_falls_to_ignore_below_loses_its_listings,
    maintenance_refreshes_stale_scores_and_the_dry_run_changes_nothing,
    a_request_for_a_report_already_held_waits_for_the_operator,
    the_handshake_is_ledger_operations_with_audit_leaves,
    a_peer_lists_only_what_is_in_its_scope,
    automatic_approval_grants_observe_only,
    a_trust_change_reweighs_what_the_peer_contributed,
    a_rotation_applies_once_and_only_the_current_key_rotates,
    a_response_counts_once_and_only_for_what_its_server_knows,
    one_reporter_moves_a_domains_score_by_one_fact_per_window,
    a_verified_report_supersedes_an_unsigned_copy,
    a_retraction_travels_the_paths_its_report_took,
    independence_is_decided_by_the_public_suffix_list_and_operator_groups,
    the_brake_holds_what_exceeds_a_peers_hourly_budget,
    what_is_not_a_public_fact_is_sealed_and_an_erased_opening_keeps_every_proof,
    a_key_switch_is_one_transaction_and_waits_for_the_previous_announcement,
    finished_outbox_rows_are_pruned_but_what_later_decisions_read,
    rtbl_subscriptions_are_idempotent_capped_and_nodes_publish_only_block_entries,
    a_bouncer_pulls_the_whole_list_then_changes_and_daily_refreshes_from_its_own_position,
    the_history_walks_list_sizes_back_day_by_day_and_counts_decisions,
    reasons_in_memory_are_shared_and_a_read_a_commit_overtook_is_not_kept,
    snapshots_read_from_memory_match_the_database_after_every_kind_of_change,
);

const NODE: &str = "incidents.ops.example";

fn ts(secs: i64) -> Timestamp {
    Timestamp::from_unix(1_800_000_000 + secs).unwrap()
}

fn key() -> NodeKey {
    NodeKey::from_seed(&[9; 32])
}

fn config() -> LedgerConfig {
    LedgerConfig {
        origin: "ops.example/ostracon".to_owned(),
        key_name: "ops.example".to_owned(),
        policy: ListingPolicy::default(),
        reputation: Default::default(),
        scope: ostracon_store::scope::PeerScope { refuse_documentation: false, ..Default::default() },
    }
}

async fn ledger(backend: &Backend) -> Ledger {
    Ledger::open(backend.store.clone(), key(), config()).await.unwrap()
}

fn offender(text: &str) -> Offender {
    Offender::parse(text).unwrap()
}

fn incident(n: u128, offenders: &[&str], at: Timestamp) -> Incident {
    Incident {
        id: IncidentId::new(ostracon_protocol::ids::Domain::parse(NODE).unwrap(), uuid::Uuid::from_u128(n)),
        reporter: BareJid::parse(NODE).unwrap(),
        status: Status::New,
        category: Category::MucAbuse,
        severity: Severity::Medium,
        offenders: offenders.iter().map(|o| offender(o)).collect(),
        start: at,
        end: None,
        reported: at,
        description: format!("incident {n}"),
        evidence: vec![],
        action: Some(Action::BlockHost),
        expires: None,
        related: None,
        history: vec![],
    }
}

async fn submitted_incident_lists_its_offenders_in_one_transaction(backend: Backend) {
    let ledger = ledger(&backend).await;
    let applied = ledger
        .submit_local(
            &incident(1, &["192.0.2.1", "198.51.100.0/24", "bot@bad.example", "bad.example"], ts(0)),
            true,
            ts(0),
        )
        .await
        .unwrap();
    assert_eq!(applied.listed.len(), 4);
    // One leaf for the incident, one per listed offender.
    assert_eq!(applied.leaves, vec![0, 1, 2, 3, 4]);
    assert_eq!(backend.store.leaf_count().await.unwrap(), 5);
    assert_eq!(ledger.log_size(), 5);

    let hits = ledger.with_index(|index| index.lookup_ip("198.51.100.7".parse().unwrap()));
    assert_eq!(hits.len(), 1);
    let hits = ledger.with_index(|index| index.lookup_jid(&BareJid::parse("other@bad.example").unwrap()));
    assert_eq!(hits.len(), 1, "a domain entry covers its JIDs");

    let entry = backend.store.entry(&offender("192.0.2.1")).await.unwrap().unwrap();
    assert!(entry.active);
    assert_eq!(entry.action, ListAction::Block);
    assert_eq!(entry.expires_at, Some(ts(86_400)));
    let reasons = backend.store.entry_reasons(entry.id).await.unwrap();
    assert_eq!(reasons.len(), 1);
    assert_eq!(reasons[0].incident_id.to_string(), incident(1, &[], ts(0)).id.to_string());

    let changes = backend.store.changes_since(0, None, 100).await.unwrap();
    assert_eq!(changes.len(), 4);
    assert!(changes.iter().all(|c| c.op == ChangeOp::Add));
    let ip_changes = backend.store.changes_since(0, Some(ListKind::Ip), 100).await.unwrap();
    assert_eq!(ip_changes.len(), 2);

    let record = backend.store.incident(&incident(1, &[], ts(0)).id).await.unwrap().unwrap();
    assert_eq!(record.decision, Decision::Accepted);
    assert!(record.share);
    assert_eq!(record.log_index, 0);

    // A second incident about the same IP adds a reason without duplicating the entry.
    ledger.submit_local(&incident(2, &["192.0.2.1"], ts(10)), false, ts(10)).await.unwrap();
    let entry = backend.store.entry(&offender("192.0.2.1")).await.unwrap().unwrap();
    assert_eq!(backend.store.entry_reasons(entry.id).await.unwrap().len(), 2);
    assert_eq!(ledger.with_index(|index| index.len()), 4);
}

async fn duplicate_incident_is_refused_and_nothing_is_written(backend: Backend) {
    let ledger = ledger(&backend).await;
    ledger.submit_local(&incident(1, &["192.0.2.1"], ts(0)), false, ts(0)).await.unwrap();
    let before = backend.store.leaf_count().await.unwrap();
    let error = ledger.submit_local(&incident(1, &["192.0.2.2"], ts(5)), false, ts(5)).await.unwrap_err();
    assert!(matches!(error, StoreError::Conflict { .. }), "{error:?}");
    assert_eq!(backend.store.leaf_count().await.unwrap(), before);
    assert!(backend.store.entry(&offender("192.0.2.2")).await.unwrap().is_none());
}

/// Makes the database refuse to write an entry for `value` (a trigger), so a write fails in
/// the middle of its transaction.
async fn refuse_entry(backend: &Backend, value: &str) {
    let statements = match backend.store.dialect() {
        ostracon_store::Dialect::Sqlite => vec![format!(
            "CREATE TRIGGER refuse_entry BEFORE INSERT ON entries WHEN NEW.value = '{value}' \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )],
        ostracon_store::Dialect::Postgres => vec![
            format!(
                "CREATE FUNCTION refuse_entry() RETURNS trigger AS $$ BEGIN \
                 IF NEW.value = '{value}' THEN RAISE EXCEPTION 'refused by the test'; END IF; \
                 RETURN NEW; END $$ LANGUAGE plpgsql"
            ),
            "CREATE TRIGGER refuse_entry BEFORE INSERT ON entries FOR EACH ROW EXECUTE FUNCTION refuse_entry()"
                .to_owned(),
        ],
    };
    for statement in statements {
        sqlx::query(sqlx::AssertSqlSafe(statement)).execute(backend.store.pool()).await.unwrap();
    }
}

async fn failed_transaction_leaves_nothing_behind(backend: Backend) {
    let ledger = ledger(&backend).await;
    // The second offender's entry cannot be written, so the transaction fails half-way
    // (after the incident row and the first leaves were written inside it).
    refuse_entry(&backend, "192.0.2.2").await;
    let error = ledger.submit_local(&incident(7, &["192.0.2.1", "192.0.2.2"], ts(0)), false, ts(0)).await.unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert!(backend.store.incident(&incident(7, &[], ts(0)).id).await.unwrap().is_none());
    assert!(backend.store.entry(&offender("192.0.2.1")).await.unwrap().is_none());
    assert!(backend.store.changes_since(0, None, 10).await.unwrap().is_empty());
    assert_eq!(ledger.log_size(), 0, "memory must not move when the commit fails");
    assert_eq!(ledger.with_index(|index| index.len()), 0);
}

async fn retraction_delists_entries_with_no_other_reason(backend: Backend) {
    let ledger = ledger(&backend).await;
    ledger.submit_local(&incident(1, &["192.0.2.1", "192.0.2.2"], ts(0)), false, ts(0)).await.unwrap();
    ledger.submit_local(&incident(2, &["192.0.2.2"], ts(1)), false, ts(1)).await.unwrap();
    let id = incident(1, &[], ts(0)).id;
    let applied = ledger.retract(&id, ts(2)).await.unwrap();
    assert_eq!(applied.delisted, vec![offender("192.0.2.1")]);
    assert!(!backend.store.entry(&offender("192.0.2.1")).await.unwrap().unwrap().active);
    assert!(backend.store.entry(&offender("192.0.2.2")).await.unwrap().unwrap().active, "still reported by incident 2");
    assert_eq!(backend.store.incident(&id).await.unwrap().unwrap().incident.status, Status::Retracted);
    assert!(matches!(ledger.retract(&id, ts(3)).await, Err(StoreError::Rejected(_))));
    let missing = IncidentId::parse("incidents.ops.example:00000000-0000-0000-0000-000000000099").unwrap();
    assert!(matches!(ledger.retract(&missing, ts(3)).await, Err(StoreError::NotFound { .. })));
    assert!(ledger.with_index(|index| index.lookup_ip("192.0.2.1".parse().unwrap())).is_empty());
}

async fn expiry_is_applied_at_the_given_time_and_repeat_offenders_get_longer_ttls(backend: Backend) {
    let ledger = ledger(&backend).await;
    ledger.submit_local(&incident(1, &["192.0.2.1"], ts(0)), false, ts(0)).await.unwrap();
    assert_eq!(ledger.expire(ts(86_399)).await.unwrap(), 0);
    assert_eq!(ledger.expire(ts(86_400)).await.unwrap(), 1);
    let entry = backend.store.entry(&offender("192.0.2.1")).await.unwrap().unwrap();
    assert!(!entry.active);
    assert!(ledger.with_index(|index| index.is_empty()));
    let removed = backend.store.changes_since(0, None, 10).await.unwrap();
    assert_eq!(removed.last().unwrap().op, ChangeOp::Remove);

    // Listed again: the second listing lasts twice as long.
    ledger.submit_local(&incident(2, &["192.0.2.1"], ts(100_000)), false, ts(100_000)).await.unwrap();
    let entry = backend.store.entry(&offender("192.0.2.1")).await.unwrap().unwrap();
    assert_eq!(entry.listings, 2);
    assert_eq!(entry.expires_at, Some(ts(100_000 + 2 * 86_400)));
    assert_eq!(entry.first_seen, ts(0));
    assert_eq!(backend.store.entry_reasons(entry.id).await.unwrap().len(), 1, "reasons restart on relisting");
}

async fn allow_entries_win(backend: Backend) {
    let ledger = ledger(&backend).await;
    ledger.submit_local(&incident(1, &["192.0.2.1"], ts(0)), false, ts(0)).await.unwrap();
    let applied = ledger.allow(&offender("192.0.2.1"), "our own monitoring host", ts(1)).await.unwrap();
    assert_eq!(applied.delisted, vec![offender("192.0.2.1")]);
    assert!(matches!(ledger.allow(&offender("192.0.2.1"), "again", ts(2)).await, Err(StoreError::Conflict { .. })));
    let applied = ledger.submit_local(&incident(2, &["192.0.2.1", "192.0.2.9"], ts(3)), false, ts(3)).await.unwrap();
    assert_eq!(applied.refused.len(), 1);
    assert_eq!(applied.listed, vec![offender("192.0.2.9")]);
    assert!(ledger.deny(&offender("192.0.2.1"), ListAction::Block, None, ts(4)).await.is_err());
    assert_eq!(backend.store.allow_entries().await.unwrap().len(), 1);
    ledger.disallow(&offender("192.0.2.1"), ts(5)).await.unwrap();
    assert!(!ledger.is_allowed(&offender("192.0.2.1")));
    assert!(backend.store.allow_entries().await.unwrap().is_empty());
}

async fn an_allowed_block_covers_every_address_and_narrower_block_inside_it(backend: Backend) {
    let ledger = ledger(&backend).await;
    let inside = ["192.0.2.130", "192.0.2.192/26", "2001:db8:1::5"];
    let listed = incident(1, &[inside[0], inside[1], inside[2], "192.0.2.5"], ts(0));
    assert_eq!(ledger.submit_local(&listed, false, ts(0)).await.unwrap().listed.len(), 4);
    // A peer's report of an address inside waits for a quorum: a candidate.
    let candidate = report_by("incidents.a.example", 2, &["192.0.2.140"], ts(0));
    ledger.record_remote(received_with(&candidate, 500), ts(0)).await.unwrap().unwrap();

    let applied = ledger.allow(&offender("192.0.2.128/25"), "office", ts(1)).await.unwrap();
    assert_eq!(applied.delisted, vec![offender(inside[0]), offender(inside[1])]);
    let applied = ledger.allow(&offender("2001:db8:1::/48"), "office v6", ts(1)).await.unwrap();
    assert_eq!(applied.delisted, vec![offender(inside[2])]);
    for value in inside {
        assert!(!backend.store.entry(&offender(value)).await.unwrap().unwrap().active, "{value} left the list");
        assert!(ledger.is_allowed(&offender(value)));
    }
    assert!(backend.store.entry(&offender("192.0.2.5")).await.unwrap().unwrap().active, "outside the block");
    assert!(backend.store.candidate_reasons(&offender("192.0.2.140")).await.unwrap().is_empty());
    // The peer's report inside the block is contradicted: a fact against its reporter.
    let a = score_of(&backend, "a.example", ts(1)).await;
    assert_eq!(a.components.get("reporting"), Some(&-15), "{a:?}");

    // What the block covers, and what it does not.
    assert_eq!(ledger.allowed_by(&offender("192.0.2.255")), Some(offender("192.0.2.128/25")));
    assert_eq!(ledger.allowed_by(&offender("192.0.2.160/27")), Some(offender("192.0.2.128/25")));
    assert_eq!(ledger.allowed_by(&offender("::ffff:192.0.2.131")), Some(offender("192.0.2.128/25")), "IPv4-mapped");
    assert!(!ledger.is_allowed(&offender("192.0.2.0/24")), "a wider block is not inside it");
    assert!(!ledger.is_allowed(&offender("192.0.2.127")));
    let later = incident(3, &["192.0.2.131", "192.0.2.127"], ts(2));
    let applied = ledger.submit_local(&later, false, ts(2)).await.unwrap();
    assert_eq!(applied.listed, vec![offender("192.0.2.127")]);
    assert_eq!(applied.refused.iter().map(|(o, _)| o.clone()).collect::<Vec<_>>(), vec![offender("192.0.2.131")]);
    let denied = ledger.deny(&offender("192.0.2.150"), ListAction::Block, None, ts(3)).await;
    assert!(matches!(&denied, Err(StoreError::Rejected(why)) if why.contains("192.0.2.128/25")), "{denied:?}");
    // Only the entry itself can be removed, and then the block is open again.
    assert!(matches!(ledger.disallow(&offender("192.0.2.130"), ts(4)).await, Err(StoreError::NotFound { .. })));
    ledger.disallow(&offender("192.0.2.128/25"), ts(4)).await.unwrap();
    let again = incident(4, &["192.0.2.131"], ts(5));
    assert_eq!(ledger.submit_local(&again, false, ts(5)).await.unwrap().listed, vec![offender("192.0.2.131")]);
    // The allow list is rebuilt from the store on reopening.
    drop(ledger);
    let reopened = Ledger::open(backend.store.clone(), key(), config()).await.unwrap();
    assert!(reopened.is_allowed(&offender("2001:db8:1::ff")));
    assert!(!reopened.is_allowed(&offender("192.0.2.131")));
}

async fn operator_deny_entries(backend: Backend) {
    let ledger = ledger(&backend).await;
    ledger.deny(&offender("spam.example"), ListAction::Quarantine, None, ts(0)).await.unwrap();
    let entry = backend.store.entry(&offender("spam.example")).await.unwrap().unwrap();
    assert_eq!(entry.action, ListAction::Quarantine);
    assert_eq!(entry.expires_at, None, "operator entries may be permanent");
    assert_eq!(ledger.expire(ts(10_000_000)).await.unwrap(), 0);
    assert!(ledger.deny(&offender("x.example"), ListAction::Block, Some(ts(0)), ts(1)).await.is_err());
    ledger.undeny(&offender("spam.example"), ts(2)).await.unwrap();
    assert!(matches!(ledger.undeny(&offender("spam.example"), ts(3)).await, Err(StoreError::NotFound { .. })));
}

async fn state_survives_reopening(backend: Backend) {
    let (root, size) = {
        let ledger = ledger(&backend).await;
        ledger.submit_local(&incident(1, &["192.0.2.1", "bot@bad.example"], ts(0)), false, ts(0)).await.unwrap();
        ledger.allow(&offender("192.0.2.50"), "ours", ts(1)).await.unwrap();
        let checkpoint = ledger.checkpoint().unwrap();
        (checkpoint.checkpoint().root, checkpoint.checkpoint().size)
    };
    let store = Store::open(&backend.url).await.unwrap();
    let reopened = Ledger::open(store, key(), config()).await.unwrap();
    let checkpoint = reopened.checkpoint().unwrap();
    assert_eq!((checkpoint.checkpoint().root, checkpoint.checkpoint().size), (root, size));
    assert_eq!(reopened.with_index(|index| index.len()), 2);
    assert!(reopened.is_allowed(&offender("192.0.2.50")));
}

async fn log_replay_equals_the_published_list_and_proofs_verify(backend: Backend) {
    let ledger = ledger(&backend).await;
    // Enough leaves that the tree's lowest levels for all but the last block live only in
    // the audit table, so proofs read them back.
    let many: Vec<String> = (0..40).map(|n| format!("198.18.1.{n}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    ledger.submit_local(&incident(9, &many, ts(0)), false, ts(0)).await.unwrap();
    ledger.retract(&incident(9, &[], ts(0)).id, ts(0)).await.unwrap();
    ledger
        .submit_local(&incident(1, &["192.0.2.1", "192.0.2.2", "bot@bad.example"], ts(0)), false, ts(0))
        .await
        .unwrap();
    let old = ledger.checkpoint().unwrap();
    ledger.submit_local(&incident(2, &["192.0.2.3"], ts(10)), false, ts(10)).await.unwrap();
    ledger.retract(&incident(1, &[], ts(0)).id, ts(20)).await.unwrap();
    ledger.deny(&offender("spam.example"), ListAction::Block, None, ts(30)).await.unwrap();
    ledger.expire(ts(10 + 86_400)).await.unwrap();

    let size = ledger.log_size();
    let leaves = backend.store.leaves(0, size).await.unwrap();
    let state = ListState::replay(leaves.iter().map(|(_, bytes, _)| bytes.as_slice())).unwrap();
    let active: std::collections::BTreeSet<Offender> =
        backend.store.active_entries().await.unwrap().into_iter().map(|e| e.offender).collect();
    let replayed: std::collections::BTreeSet<Offender> = state.entries().keys().cloned().collect();
    assert_eq!(replayed, active);
    assert_eq!(active, [offender("spam.example")].into_iter().collect());

    let tree = MerkleTree::from_leaf_hashes(leaves.iter().map(|(_, bytes, _)| leaf_hash(bytes)));
    let new = ledger.checkpoint().unwrap();
    assert_eq!(tree.root(), new.checkpoint().root);
    new.verify_signature("ops.example", key().public().verifying_key()).unwrap();
    assert!(size > 80, "{size} leaves");
    let reopened = Ledger::open(backend.store.clone(), key(), config()).await.unwrap();
    for ledger in [&ledger, &reopened] {
        for index in 0..size {
            let proof = ledger.inclusion_proof(index, size).await.unwrap();
            assert_eq!(proof, tree.inclusion_proof(index, size).unwrap(), "leaf {index}");
            verify_inclusion(&leaf_hash(&leaves[index as usize].1), index, size, &proof, &new.checkpoint().root)
                .unwrap();
        }
        for earlier in 1..size {
            let proof = ledger.consistency_proof(earlier, size).await.unwrap();
            assert_eq!(proof, tree.consistency_proof(earlier, size).unwrap(), "from {earlier}");
            let checkpoint = ledger.checkpoint_for_size(earlier).await.unwrap();
            assert_eq!(checkpoint.checkpoint().root, tree.root_at(earlier).unwrap(), "root at {earlier}");
        }
        let proof = ledger.consistency_proof(old.checkpoint().size, size).await.unwrap();
        verify_consistency(old.checkpoint().size, size, &old.checkpoint().root, &new.checkpoint().root, &proof)
            .unwrap();
        assert!(ledger.inclusion_proof(size, size).await.is_err(), "beyond the tree");
    }
}

async fn snapshots_are_signed_consistent_and_in_every_format(backend: Backend) {
    let ledger = ledger(&backend).await;
    ledger
        .submit_local(&incident(1, &["192.0.2.1", "2001:db8::/48", "bot@bad.example"], ts(0)), false, ts(0))
        .await
        .unwrap();
    for format in Format::ALL {
        let snapshot = ledger.build_snapshot(ListKind::Ip, format, Actions::All, ts(5)).await.unwrap();
        let body = snapshot.body().unwrap();
        assert!(key().public().verify(&body, &snapshot.signature), "{format:?}");
        assert_eq!((snapshot.entries, snapshot.body_len), (2, body.len()));
        assert_eq!(snapshot.checkpoint.checkpoint().size, ledger.log_size());
        let text = String::from_utf8(body).unwrap();
        assert!(
            text.contains("192.0.2.1") && text.contains("2001:db8::/48") && !text.contains("bot@bad.example"),
            "{text}"
        );
        if format == Format::Txt {
            assert_eq!(text, "2001:db8::/48\n192.0.2.1\n");
        }
        if format == Format::Json {
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(json["items"].as_array().unwrap().len(), 2);
            assert_eq!(json["checkpoint"]["size"], ledger.log_size());
            // The meta fields first, as serde writes the meta flattened beside the items.
            assert!(text.starts_with("{\"list\":\"ip\",\"generated_at\":") && text.ends_with("}]}\n"), "{text}");
        }
    }
    let jids =
        ledger.build_snapshot(ListKind::Jid, Format::Txt, Actions::default_for(Format::Txt), ts(5)).await.unwrap();
    assert_eq!(String::from_utf8(jids.body().unwrap()).unwrap(), "bot@bad.example\n");
}

/// Snapshots are built from the rows the ledger keeps in memory: after new entries, a second
/// report on a live entry (a stronger action, a later expiry), delistings, a relisting and an
/// expiry, they must say what the database says, in the database's byte order, and what a
/// ledger rebuilt from the database says.
async fn snapshots_read_from_memory_match_the_database_after_every_kind_of_change(backend: Backend) {
    let ledger = ledger(&backend).await;
    // Numeric and byte order differ ("10.0.0.10" < "10.0.0.2" < "9.0.0.1"); long names share
    // more than the 16 bytes the sort compares first; CIDRs sort before IPs ("cidr" < "ip").
    let long = "averyveryverylonglocalpart";
    let first = [
        "10.0.0.2",
        "9.0.0.1",
        "10.0.0.10",
        "2001:db8::1",
        "2001:db8:ffff:ffff::1",
        "198.51.100.0/24",
        "10.0.0.0/8",
        "2001:db8::/32",
    ];
    let jids = [format!("{long}2@bad.example"), format!("{long}1@bad.example"), "bot@bad.example".to_owned()];
    let mut offenders: Vec<&str> = first.to_vec();
    offenders.extend(jids.iter().map(String::as_str));
    offenders.push("spam.example");
    let mut watch = incident(1, &offenders, ts(0));
    watch.action = Some(Action::Investigate);
    ledger.submit_local(&watch, false, ts(0)).await.unwrap();
    // A second report on live entries, with a stronger action and a longer expiry.
    let mut stronger = incident(2, &["10.0.0.2", "bot@bad.example", "2001:db8::/32"], ts(10));
    stronger.severity = Severity::High;
    ledger.submit_local(&stronger, false, ts(10)).await.unwrap();
    ledger.deny(&offender("203.0.113.9"), ListAction::Quarantine, None, ts(20)).await.unwrap();
    ledger.undeny(&offender("9.0.0.1"), ts(30)).await.unwrap();
    // Relisted: a new listing of an entry that has a row already.
    ledger.submit_local(&incident(3, &["9.0.0.1"], ts(40)), false, ts(40)).await.unwrap();
    ledger.submit_local(&incident(4, &["192.0.2.200"], ts(45)), false, ts(45)).await.unwrap();
    ledger.retract(&incident(4, &[], ts(45)).id, ts(50)).await.unwrap();
    ledger.deny(&offender("198.18.0.1"), ListAction::Block, Some(ts(150)), ts(55)).await.unwrap();
    assert_eq!(ledger.expire(ts(200)).await.unwrap(), 1);
    let more = format!("{long}3@bad.example");
    ledger.submit_local(&incident(5, &["192.0.2.201", "2001:db8::2", &more], ts(300)), false, ts(300)).await.unwrap();

    let active = backend.store.active_entries().await.unwrap();
    assert!(active.len() >= 4, "{active:?}");
    for list in [ListKind::Ip, ListKind::Jid, ListKind::Domain] {
        let mut want: Vec<&EntryRecord> =
            active.iter().filter(|e| list.entry_kinds().contains(&e.offender.kind())).collect();
        want.sort_by_key(|e| (e.offender.kind(), e.offender.to_string()));
        let want: String = want
            .iter()
            .map(|e| {
                let expires = e.expires_at.map(|t| t.to_string()).unwrap_or_default();
                format!(
                    "{},{},{},{expires},{},{}\n",
                    e.offender,
                    e.offender.kind(),
                    e.action,
                    e.first_seen,
                    e.log_index
                )
            })
            .collect();
        let snapshot = ledger.build_snapshot(list, Format::Csv, Actions::All, ts(400)).await.unwrap();
        let body = String::from_utf8(snapshot.body().unwrap()).unwrap();
        assert_eq!(
            body.strip_prefix("value,kind,action,expires,first_seen,log_index\n"),
            Some(want.as_str()),
            "{list:?}"
        );
        assert_eq!(snapshot.cursor, backend.store.last_change_seq().await.unwrap());
        assert_eq!(snapshot.checkpoint.checkpoint().size, ledger.log_size());
        let reopened = Ledger::open(backend.store.clone(), key(), config()).await.unwrap();
        let rebuilt = reopened.build_snapshot(list, Format::Csv, Actions::All, ts(400)).await.unwrap();
        assert_eq!(rebuilt.body().unwrap(), snapshot.body().unwrap(), "{list:?}");
        reopened.load_reasons().await.unwrap();
        assert_reasons_current(&reopened, &backend.store).await;
    }
    assert_reasons_current(&ledger, &backend.store).await;
    let ips = ledger.build_snapshot(ListKind::Ip, Format::Txt, Actions::All, ts(400)).await.unwrap();
    assert_eq!(
        String::from_utf8(ips.body().unwrap()).unwrap(),
        "10.0.0.0/8\n198.51.100.0/24\n2001:db8::/32\n\
         10.0.0.10\n10.0.0.2\n192.0.2.201\n2001:db8::1\n2001:db8::2\n2001:db8:ffff:ffff::1\n203.0.113.9\n9.0.0.1\n"
    );
    let blocked =
        ledger.build_snapshot(ListKind::Ip, Format::Txt, Actions::default_for(Format::Txt), ts(400)).await.unwrap();
    assert!(!String::from_utf8(blocked.body().unwrap()).unwrap().contains("203.0.113.9"), "a quarantine entry");
    let jids = ledger.build_snapshot(ListKind::Jid, Format::Txt, Actions::All, ts(400)).await.unwrap();
    assert_eq!(
        String::from_utf8(jids.body().unwrap()).unwrap(),
        format!("{long}1@bad.example\n{long}2@bad.example\n{long}3@bad.example\nbot@bad.example\n")
    );
}

async fn change_feed_pages_and_prunes_behind_a_horizon(backend: Backend) {
    let ledger = ledger(&backend).await;
    for n in 0..5u8 {
        ledger
            .submit_local(
                &incident(u128::from(n) + 1, &[&format!("192.0.2.{n}")], ts(i64::from(n))),
                false,
                ts(i64::from(n)),
            )
            .await
            .unwrap();
    }
    let first = backend.store.changes_since(0, None, 2).await.unwrap();
    assert_eq!(first.len(), 2);
    let rest = backend.store.changes_since(first[1].seq, None, 100).await.unwrap();
    assert_eq!(rest.len(), 3);
    assert!(rest[0].seq > first[1].seq);
    let last = backend.store.last_change_seq().await.unwrap();
    assert_eq!(last, rest[2].seq);
    assert_eq!(backend.store.change_feed_bounds().await.unwrap(), (0, last));
    // Everything is older than a week later.
    let pruned = ledger.prune_changes(ts(8 * 86_400)).await.unwrap();
    assert_eq!(pruned, 5);
    assert_eq!(backend.store.pruned_through().await.unwrap(), last);
    assert_eq!(backend.store.last_change_seq().await.unwrap(), last, "the cursor does not go backwards");
    assert_eq!(backend.store.change_feed_bounds().await.unwrap(), (last, last));
}

async fn tokens_are_stored_hashed_and_revocable(backend: Backend) {
    let hash = [7u8; 32];
    let token = backend.store.create_token("ci", Scope::Submit, &hash, ts(0)).await.unwrap();
    assert_eq!(token.scope, Scope::Submit);
    let (found, stored) = backend.store.token_by_hash(&hash).await.unwrap().unwrap();
    assert_eq!(found.name, "ci");
    assert_eq!(stored, hash.to_vec());
    assert!(matches!(
        backend.store.create_token("ci", Scope::Admin, &[8; 32], ts(1)).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(backend.store.revoke_token("ci", ts(2)).await.unwrap());
    assert!(backend.store.token_by_hash(&hash).await.unwrap().is_none());
    assert!(!backend.store.revoke_token("ci", ts(3)).await.unwrap());
    assert_eq!(backend.store.tokens().await.unwrap().len(), 1);
}

async fn incidents_filter_and_page(backend: Backend) {
    let ledger = ledger(&backend).await;
    for n in 1..=5u128 {
        let mut item = incident(n, &["192.0.2.1"], ts(n as i64));
        if n % 2 == 0 {
            item.category = Category::Spam;
        }
        ledger.submit_local(&item, false, ts(n as i64)).await.unwrap();
    }
    let all = backend.store.incidents(&IncidentFilter { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(all.len(), 5);
    assert!(all.windows(2).all(|w| w[0].seq > w[1].seq), "newest first");
    let spam = backend
        .store
        .incidents(&IncidentFilter { category: Some("spam".into()), limit: 10, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(spam.len(), 2);
    let page = backend.store.incidents(&IncidentFilter { limit: 2, ..Default::default() }).await.unwrap();
    let next = backend
        .store
        .incidents(&IncidentFilter { limit: 2, before: Some(page[1].seq), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(next.len(), 2);
    assert!(next[0].seq < page[1].seq);
}

async fn large_incidents_are_written_in_chunks_with_duplicates_and_relistings(backend: Backend) {
    let ledger = ledger(&backend).await;
    // Listed once, then expired, so the big incident relists it.
    ledger.submit_local(&incident(1, &["10.0.0.7"], ts(0)), false, ts(0)).await.unwrap();
    ledger.expire(ts(86_400)).await.unwrap();
    // Active, so the big incident adds a reason without a change row.
    ledger.submit_local(&incident(2, &["10.0.0.8"], ts(86_400)), false, ts(86_400)).await.unwrap();
    let changes_before = backend.store.changes_since(0, None, 10_000).await.unwrap().len();

    let mut offenders: Vec<String> =
        (0..999u32).map(|i| std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string()).collect();
    offenders.push("10.0.0.1".to_owned()); // a duplicate inside the incident
    let refs: Vec<&str> = offenders.iter().map(String::as_str).collect();
    let applied = ledger.submit_local(&incident(3, &refs, ts(86_500)), false, ts(86_500)).await.unwrap();
    assert_eq!(applied.listed.len(), 999, "duplicates are listed once");
    assert_eq!(applied.leaves.len(), 1_000, "one incident leaf and one per distinct offender");
    assert_eq!(ledger.with_index(|index| index.len()), 999);
    let relisted = backend.store.entry(&offender("10.0.0.7")).await.unwrap().unwrap();
    assert_eq!((relisted.active, relisted.listings), (true, 2));
    let reasons = backend.store.entry_reasons(relisted.id).await.unwrap();
    assert_eq!(reasons.len(), 1, "a relisting starts with only the new reason");
    let live = backend.store.entry(&offender("10.0.0.8")).await.unwrap().unwrap();
    assert_eq!(backend.store.entry_reasons(live.id).await.unwrap().len(), 2);
    let changes = backend.store.changes_since(0, None, 10_000).await.unwrap().len();
    // 997 new entries and one relisting change; the live entry's expiry moved too.
    assert!(changes - changes_before >= 998, "{changes} - {changes_before}");

    // The log still replays to exactly the active entries.
    let leaves = backend.store.leaves(0, ledger.log_size()).await.unwrap();
    let state = ListState::replay(leaves.iter().map(|(_, bytes, _)| bytes.as_slice())).unwrap();
    assert_eq!(state.entries().len(), 999);
    let tree = MerkleTree::from_leaf_hashes(leaves.iter().map(|(_, bytes, _)| leaf_hash(bytes)));
    assert_eq!(tree.root(), ledger.checkpoint().unwrap().checkpoint().root);
}

const PEER: &str = "incidents.peer.example";

/// An incident a buddy issued.
fn peer_incident(n: u128, offenders: &[&str], at: Timestamp) -> Incident {
    Incident {
        id: IncidentId::new(ostracon_protocol::ids::Domain::parse(PEER).unwrap(), uuid::Uuid::from_u128(n)),
        reporter: BareJid::parse(PEER).unwrap(),
        ..incident(n, offenders, at)
    }
}

fn received(incident: &Incident) -> RemoteIncident<'_> {
    RemoteIncident {
        incident,
        verb: Verb::Report,
        from: PEER,
        origin: IncidentOrigin::Peer,
        provenance: None,
        decision: Decision::Accepted,
        decision_reason: None,
        weight_milli: 1_000,
        authority_milli: None,
        forward_to: &[],
    }
}

async fn received_reports_commit_as_a_group(backend: Backend) {
    let ledger = ledger(&backend).await;
    let first = peer_incident(1, &["203.0.113.1"], ts(0));
    let second = peer_incident(2, &["203.0.113.1", "203.0.113.2"], ts(0));
    // The same id twice in one group: the second sees the first inside the transaction.
    let (applied, recorded) =
        ledger.record_remote_many(&[received(&first), received(&second), received(&first)], ts(0)).await.unwrap();
    assert_eq!(recorded, vec![true, true, false]);
    assert_eq!(applied.listed.iter().filter(|o| **o == offender("203.0.113.1")).count(), 2, "listed, then updated");
    let entry = backend.store.entry(&offender("203.0.113.1")).await.unwrap().unwrap();
    assert_eq!(backend.store.entry_reasons(entry.id).await.unwrap().len(), 2, "one reason per incident");
    assert_eq!(ledger.with_index(|index| index.len()), 2);
    assert_eq!(ledger.log_size(), backend.store.leaf_count().await.unwrap());
    assert_eq!(applied.leaves.len() as u64, ledger.log_size());

    // A retraction of the first and a new report, together: the retraction only removes
    // the first one's contribution.
    let retraction = Incident { status: Status::Retracted, ..first.clone() };
    let third = peer_incident(3, &["203.0.113.3"], ts(5));
    let (applied, recorded) =
        ledger.record_remote_many(&[received(&retraction), received(&third)], ts(5)).await.unwrap();
    assert_eq!(recorded, vec![true, true]);
    assert!(applied.delisted.is_empty(), "203.0.113.1 is still reported by the second incident");
    assert!(backend.store.entry(&offender("203.0.113.1")).await.unwrap().unwrap().active);
    assert_eq!(backend.store.incident(&first.id).await.unwrap().unwrap().incident.status, Status::Retracted);
    assert!(backend.store.entry(&offender("203.0.113.3")).await.unwrap().unwrap().active);

    // A write that fails half-way through the group takes the whole group with it.
    let size = ledger.log_size();
    refuse_entry(&backend, "203.0.113.5").await;
    let fourth = peer_incident(4, &["203.0.113.4"], ts(9));
    let fifth = peer_incident(5, &["203.0.113.5"], ts(9));
    let error = ledger.record_remote_many(&[received(&fourth), received(&fifth)], ts(9)).await.unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert!(backend.store.incident(&fourth.id).await.unwrap().is_none());
    assert!(backend.store.entry(&offender("203.0.113.4")).await.unwrap().is_none());
    assert_eq!(ledger.log_size(), size, "memory must not move when the commit fails");
    assert_eq!(ledger.with_index(|index| index.len()), 3);
}

/// Every row a ledger's decisions leave, in an order that does not depend on the order of
/// the writes (ids, log positions and sequence numbers left out), and the log's leaves sorted.
async fn everything_stored(store: &Store) -> Vec<String> {
    let tables = [
        "SELECT id, status, decision, COALESCE(decision_reason, '') AS a, verb, origin FROM incidents",
        "SELECT kind, value, action, source, active, listings, COALESCE(expires_at, 0) AS a FROM entries",
        "SELECT e.kind, e.value, r.incident_id, r.reporter, r.weight_milli FROM entry_reasons r \
         JOIN entries e ON e.id = r.entry_id",
        "SELECT kind, value, incident_id, weight_milli, severity, action FROM candidate_reasons",
        "SELECT peer, incident_id, change, COALESCE(value, '') AS a, COALESCE(weight_milli, 0) AS b FROM held_changes",
        "SELECT subject, kind, reference, weight_milli, COALESCE(reporter, '') AS a FROM reputation_facts",
        "SELECT domain, score, reporter_score FROM reputation_scores",
        "SELECT peer, kind, reference, payload, state FROM outbox",
        "SELECT peer, minute, used FROM peer_budget_minutes",
        "SELECT kind, value, op, COALESCE(action, '') AS a, COALESCE(expires_at, 0) AS b FROM list_changes",
    ];
    let mut rows = Vec::new();
    for sql in tables {
        let mut table: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(store.pool())
            .await
            .unwrap()
            .iter()
            .map(|row| {
                use sqlx::Row as _;
                let cells: Vec<String> = (0..row.columns().len())
                    .map(|n| {
                        row.try_get::<String, _>(n)
                            .or_else(|_| row.try_get::<i64, _>(n).map(|v| v.to_string()))
                            .unwrap_or_else(|e| panic!("{sql}: column {n}: {e}"))
                    })
                    .collect();
                format!("{sql:.20} | {}", cells.join(" | "))
            })
            .collect();
        table.sort();
        rows.extend(table);
    }
    let mut leaves: Vec<String> = store
        .leaves(0, store.leaf_count().await.unwrap())
        .await
        .unwrap()
        .iter()
        .map(|(_, bytes, _)| String::from_utf8_lossy(bytes).into_owned())
        .collect();
    leaves.sort();
    rows.extend(leaves);
    rows
}

async fn a_group_of_reports_is_stored_as_the_same_reports_one_by_one(backend: Backend) {
    let other =
        if backend.url.starts_with("sqlite") { Backend::sqlite().await } else { Backend::postgres().await.unwrap() };
    let mut config = config();
    config.scope.hourly_budget = 5;
    let open = |store: &Store| Ledger::open(store.clone(), key(), config.clone());
    let grouped = open(&backend.store).await.unwrap().with_salts(std::sync::Arc::new(|| [7; 32]));
    let alone = open(&other.store).await.unwrap().with_salts(std::sync::Arc::new(|| [7; 32]));
    // Two issuers below the threshold name the same address (a quorum together), one of them
    // a user of a server (a reputation fact); a buddy spends its budget across two reports;
    // one report is ignored, one is a request, one is delivered twice and forwarded.
    let at = ts(0);
    let first = report_by("incidents.a.example", 1, &["198.51.100.1", "bot1@spam.example"], at);
    let second = report_by("incidents.b.example", 2, &["198.51.100.1", "198.51.100.2"], at);
    let third = peer_incident(3, &["198.51.100.3", "198.51.100.4", "198.51.100.5", "198.51.100.6"], at);
    let fourth = peer_incident(4, &["198.51.100.7", "198.51.100.8"], at);
    let ignored = peer_incident(5, &["198.51.100.9"], at);
    let request = peer_incident(6, &["bot2@spam.example"], at);
    let again = report_by("incidents.a.example", 7, &["bot1@spam.example", "198.51.100.10"], at);
    // An answer and a report under one id: the report, after it, is a duplicate.
    let answer = peer_incident(8, &["198.51.100.11"], at);
    let forward = ["incidents.c.example".to_owned()];
    let remotes = [
        RemoteIncident { from: "incidents.a.example", ..received_with(&first, 600) },
        RemoteIncident { from: "incidents.b.example", ..received_with(&second, 600) },
        RemoteIncident { forward_to: &forward, ..received(&third) },
        received(&fourth),
        RemoteIncident { decision: Decision::Ignored, decision_reason: Some("low reputation"), ..received(&ignored) },
        received(&third),
        RemoteIncident { verb: Verb::Request, decision: Decision::Pending, ..received(&request) },
        RemoteIncident { from: "incidents.a.example", ..received_with(&again, 600) },
        RemoteIncident { verb: Verb::Response, from: "incidents.d.example", ..received(&answer) },
        RemoteIncident { from: "incidents.d.example", ..received(&answer) },
    ];
    let (applied, recorded) = grouped.record_remote_many(&remotes, at).await.unwrap();
    let mut one_by_one = Vec::new();
    for remote in remotes {
        one_by_one.push(alone.record_remote_many(&[remote], at).await.unwrap().1[0]);
    }
    assert_eq!(recorded, vec![true, true, true, true, true, false, true, true, true, false]);
    assert_eq!(recorded, one_by_one);

    // What the group did, so that the comparison below compares something.
    let quorum = backend.store.entry(&offender("198.51.100.1")).await.unwrap().unwrap();
    assert!(quorum.active, "two independent reporters make a quorum");
    assert_eq!(backend.store.entry_reasons(quorum.id).await.unwrap().len(), 2);
    assert!(backend.store.entry(&offender("198.51.100.2")).await.unwrap().is_none(), "one voice waits");
    assert_eq!(backend.store.held_changes(Some(PEER), 10, 0).await.unwrap().1, 1, "4 + 2 against a budget of 5");
    assert!(backend.store.entry(&offender("198.51.100.9")).await.unwrap().is_none());
    assert_eq!(applied.leaves.len() as u64, grouped.log_size());

    let (stored, expected) = (everything_stored(&backend.store).await, everything_stored(&other.store).await);
    assert!(stored.len() > 40, "{stored:#?}");
    assert_eq!(stored, expected);
    assert_eq!(grouped.with_index(|index| index.len()), alone.with_index(|index| index.len()));
    // The log replays to the list in memory.
    let leaves = backend.store.leaves(0, grouped.log_size()).await.unwrap();
    let state = ListState::replay(leaves.iter().map(|(_, bytes, _)| bytes.as_slice())).unwrap();
    assert_eq!(state.entries().len(), grouped.with_index(|index| index.len()));
    assert_reasons_current(&grouped, &backend.store).await;
}

// ---- Reputation and the listing quorum (spec/reputation.md) ----

/// A report issued by the node `issuer` (e.g. `incidents.a.example`).
fn report_by(issuer: &str, n: u128, offenders: &[&str], at: Timestamp) -> Incident {
    Incident {
        id: IncidentId::new(ostracon_protocol::ids::Domain::parse(issuer).unwrap(), uuid::Uuid::from_u128(n)),
        reporter: BareJid::parse(issuer).unwrap(),
        ..incident(n, offenders, at)
    }
}

/// `incident` as received from its issuer with `weight_milli`.
fn received_with(incident: &Incident, weight_milli: i64) -> RemoteIncident<'_> {
    RemoteIncident { from: "", weight_milli, ..received(incident) }
}

async fn score_of(backend: &Backend, domain: &str, at: Timestamp) -> ostracon_store::reputation::Explained {
    let params = ostracon_store::reputation::ReputationParams::default();
    let subject = backend
        .store
        .reputation_subject(&ostracon_protocol::ids::Domain::parse(domain).unwrap(), &params)
        .await
        .unwrap();
    ostracon_store::reputation::score(&subject, &params, at)
}

async fn one_voice_is_not_a_quorum_but_independent_reporters_are(backend: Backend) {
    let ledger = ledger(&backend).await;
    let ip = offender("198.51.100.9");
    // An `accept` buddy (0.5) alone: stored, not listed, the numbers in the refusal and the log.
    let first = report_by("incidents.a.example", 1, &["198.51.100.9"], ts(0));
    let applied = ledger.record_remote(received_with(&first, 500), ts(0)).await.unwrap().unwrap();
    assert!(applied.listed.is_empty(), "{applied:?}");
    assert_eq!(applied.refused.len(), 1);
    assert!(applied.refused[0].1.contains("awaiting a quorum: 0.500 of 1.000 from 1"), "{applied:?}");
    let last = applied.leaves[applied.leaves.len() - 1];
    // The public leaf is sealed; the operator reads the refusal in its opening.
    let leaf = backend.store.leaves(last, last + 1).await.unwrap();
    let public = String::from_utf8(leaf[0].1.clone()).unwrap();
    assert!(public.contains("\"sealed\"") && !public.contains("198.51.100.9"), "{public}");
    let opened = backend.store.opened_leaves(last, last + 1).await.unwrap();
    assert!(
        matches!(&opened[0].1, LogLeaf::Open(AuditRecord::ListingRefused { why, .. }) if why.contains("0.500")),
        "{opened:?}"
    );
    assert_eq!(backend.store.candidate_reasons(&ip).await.unwrap().len(), 1);
    // The operator's list of what awaits a quorum names it, with its one reason.
    let (total, page) = backend.store.candidates(10, 0).await.unwrap();
    assert_eq!((total, page.len(), &page[0].0, page[0].1.len()), (1, 1, &ip, 1), "{page:?}");
    assert_eq!(page[0].1[0].weight_milli, 500);
    assert!(!ledger.with_index(|index| !index.lookup_ip("198.51.100.9".parse().unwrap()).is_empty()));

    // The same operator under another name is the same voice.
    let again = report_by("x.a.example", 2, &["198.51.100.9"], ts(1));
    let applied = ledger.record_remote(received_with(&again, 500), ts(1)).await.unwrap().unwrap();
    assert!(applied.listed.is_empty(), "{applied:?}");

    // Twenty fresh peers weigh nothing: never a quorum (Sybils).
    for n in 0..20u128 {
        let sybil = report_by(&format!("incidents.sybil{n}.example"), 100 + n, &["198.51.100.9"], ts(2));
        let applied = ledger.record_remote(received_with(&sybil, 0), ts(2)).await.unwrap().unwrap();
        assert!(applied.listed.is_empty());
    }

    // An independent buddy completes the quorum: listed with every contribution as a reason.
    let second = report_by("incidents.b.example", 3, &["198.51.100.9"], ts(3));
    let applied = ledger.record_remote(received_with(&second, 500), ts(3)).await.unwrap().unwrap();
    assert_eq!(applied.listed, vec![ip.clone()]);
    assert_reasons_current(&ledger, &backend.store).await;
    let entry = backend.store.entry(&ip).await.unwrap().unwrap();
    assert_eq!(backend.store.entry_reasons(entry.id).await.unwrap().len(), 23);
    assert!(backend.store.candidate_reasons(&ip).await.unwrap().is_empty());
    assert_eq!(backend.store.candidates(10, 0).await.unwrap().0, 0, "a listed offender awaits nothing");
    // Independent reports with weight corroborate each other (a.example's two reports each);
    // the Sybils' weightless ones neither corroborate nor are corroborated.
    assert_eq!(score_of(&backend, "a.example", ts(3)).await.components.get("reporting"), Some(&6));
    assert_eq!(score_of(&backend, "sybil0.example", ts(3)).await.components.get("reporting"), None);
    assert_eq!(score_of(&backend, "b.example", ts(3)).await.components.get("reporting"), Some(&3));

    // One of the two withdraws: no quorum is left, the entry leaves the list, and the other
    // voice's contributions wait as candidates again.
    let retraction = Incident { status: Status::Retracted, ..second.clone() };
    let applied = ledger.record_remote(received_with(&retraction, 500), ts(4)).await.unwrap().unwrap();
    assert_eq!(applied.delisted, vec![ip.clone()]);
    assert_eq!(backend.store.candidate_reasons(&ip).await.unwrap().len(), 22);
    let b = score_of(&backend, "b.example", ts(4)).await;
    assert_eq!(b.components.get("reporting"), Some(&-5), "its corroboration is gone, its retraction counts: {b:?}");
    // A new independent voice lists it again.
    let third = report_by("incidents.c.example", 4, &["198.51.100.9"], ts(5));
    let applied = ledger.record_remote(received_with(&third, 500), ts(5)).await.unwrap().unwrap();
    assert_eq!(applied.listed, vec![ip]);
    assert_reasons_current(&ledger, &backend.store).await;
}

async fn allow_entries_contradict_the_reports_behind_them(backend: Backend) {
    let ledger = ledger(&backend).await;
    let report = report_by("incidents.a.example", 1, &["liar-target@good.example"], ts(0));
    let applied = ledger.record_remote(received_with(&report, 1_000), ts(0)).await.unwrap().unwrap();
    assert_eq!(applied.listed.len(), 1, "an auto-apply buddy lists alone");
    ledger.allow(&offender("liar-target@good.example"), "a customer, not a spammer", ts(1)).await.unwrap();
    let a = score_of(&backend, "a.example", ts(1)).await;
    assert_eq!(a.components.get("reporting"), Some(&-15), "{a:?}");
    // And the contradicted report no longer counts against the domain it named.
    assert_eq!(score_of(&backend, "good.example", ts(1)).await.components.get("incidents"), None);
}

async fn scores_are_updated_incrementally_and_listed_in_order(backend: Backend) {
    let ledger = ledger(&backend).await;
    let high = |n, offenders: &[&str]| Incident { severity: Severity::High, ..incident(n, offenders, ts(0)) };
    ledger.submit_local(&high(1, &["a@spam.example", "b@spam.example"]), false, ts(0)).await.unwrap();
    ledger.submit_local(&high(2, &["c@spam.example"]), false, ts(0)).await.unwrap();
    ledger.submit_local(&high(3, &["d@meh.example", "room@muc.meh.example"]), false, ts(0)).await.unwrap();
    let (rows, total) = backend.store.reputation_scores(ostracon_store::facts::ScoreOrder::Worst, 10, 0).await.unwrap();
    assert_eq!(total, 3, "spam.example, meh.example and muc.meh.example: {rows:?}");
    assert_eq!(rows[0].domain, "spam.example");
    assert_eq!((rows[0].raw, rows[0].facts), (-40, 2), "one fact per incident, not per offender: {rows:?}");
    // One incident about a domain and its subdomain counts once for the domain.
    assert_eq!((rows[1].domain.as_str(), rows[1].raw, rows[1].facts), ("meh.example", -20, 1), "{rows:?}");
    let (best, _) = backend.store.reputation_scores(ostracon_store::facts::ScoreOrder::Best, 1, 0).await.unwrap();
    assert_eq!(best[0].domain, "meh.example", "ties by domain");
    let (page, _) = backend.store.reputation_scores(ostracon_store::facts::ScoreOrder::Worst, 1, 2).await.unwrap();
    assert_eq!(page[0].domain, "muc.meh.example");

    // A retraction takes its contribution out of the stored score in the same transaction.
    ledger.retract(&incident(2, &[], ts(0)).id, ts(1)).await.unwrap();
    let (rows, _) = backend.store.reputation_scores(ostracon_store::facts::ScoreOrder::Worst, 10, 0).await.unwrap();
    let spam = rows.iter().find(|r| r.domain == "spam.example").unwrap();
    assert_eq!((spam.raw, spam.facts), (-20, 1), "{rows:?}");
    assert_eq!(spam.score, score_of(&backend, "spam.example", ts(1)).await.score);
}

async fn a_domain_that_scores_low_and_ignores_requests_gets_a_domain_entry(backend: Backend) {
    let ledger = ledger(&backend).await;
    let day = 86_400;
    for (n, domain) in [(1u128, "haven.example"), (10, "busy.example")] {
        for k in 0..5u128 {
            let user = format!("bot{k}@{domain}");
            let incident = Incident { severity: Severity::High, ..incident(n + k, &[user.as_str()], ts(0)) };
            ledger.submit_local(&incident, false, ts(0)).await.unwrap();
        }
    }
    // We ask both home servers to act; busy.example answers, haven.example never does.
    for (n, peer) in [(1u128, "incidents.haven.example"), (10, "incidents.busy.example")] {
        let request = ostracon_store::model::OutboxJob::Request { incident: incident(n, &[], ts(0)).id };
        ledger.enqueue(&BareJid::parse(peer).unwrap(), &request, ts(0)).await.unwrap();
    }
    // The operator's outbox view: newest first, by peer and state, paged by id.
    let store = &backend.store;
    let all = store.outbox_items(None, None, None, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|i| i.peer.to_string()).collect::<Vec<_>>(),
        ["incidents.busy.example", "incidents.haven.example"]
    );
    let haven_only = store.outbox_items(Some("incidents.haven.example"), Some("pending"), None, 10).await.unwrap();
    assert_eq!(haven_only.len(), 1);
    assert!(store.outbox_items(None, Some("delivered"), None, 10).await.unwrap().is_empty());
    let older = store.outbox_items(None, None, Some(all[0].id), 10).await.unwrap();
    assert_eq!(older, all[1..].to_vec(), "the next page starts below the last id");
    let answer = Incident {
        related: Some(incident(10, &[], ts(0)).id),
        ..report_by("incidents.busy.example", 99, &["203.0.113.99"], ts(3600))
    };
    let response = RemoteIncident { verb: Verb::Response, ..received_with(&answer, 1_000) };
    ledger.record_remote(response, ts(3600)).await.unwrap().unwrap();

    // Before the deadline nothing is ignored; after it, haven.example's silence is a fact.
    ledger.maintain_reputation(ts(day)).await.unwrap();
    assert!(backend.store.entry(&offender("haven.example")).await.unwrap().is_none());
    ledger.maintain_reputation(ts(3 * day)).await.unwrap();
    let haven = score_of(&backend, "haven.example", ts(3 * day)).await;
    assert!(haven.score <= -50 && haven.components["requests"] < 0, "{haven:?}");
    let entry = backend.store.entry(&offender("haven.example")).await.unwrap().unwrap();
    assert!(entry.active);
    assert_eq!(entry.source, EntrySource::Reputation);
    assert!(ledger.with_index(|index| !index.lookup_domain(&"haven.example".parse().unwrap()).is_empty()));
    // The provider whose users were abused, and that answered, keeps federating.
    let busy = score_of(&backend, "busy.example", ts(3 * day)).await;
    assert!(busy.components["requests"] > 0, "{busy:?}");
    assert!(backend.store.entry(&offender("busy.example")).await.unwrap().is_none());

    // A late answer is still an answer: it replaces the ignored fact, and the entry goes.
    let late = Incident {
        related: Some(incident(1, &[], ts(0)).id),
        ..report_by("incidents.haven.example", 98, &["203.0.113.98"], ts(3 * day))
    };
    let response = RemoteIncident { verb: Verb::Response, ..received_with(&late, 1_000) };
    let applied = ledger.record_remote(response, ts(3 * day)).await.unwrap().unwrap();
    assert!(applied.delisted.contains(&offender("haven.example")), "{applied:?}");
    let haven = score_of(&backend, "haven.example", ts(3 * day)).await;
    assert!(haven.components["requests"] > 0, "{haven:?}");
    // It goes silent again on a new request: blocked again once the deadline passes.
    for n in [2, 3] {
        let again = ostracon_store::model::OutboxJob::Request { incident: incident(n, &[], ts(0)).id };
        let haven = BareJid::parse("incidents.haven.example").unwrap();
        ledger.enqueue(&haven, &again, ts(3 * day)).await.unwrap();
    }
    ledger.maintain_reputation(ts(6 * day)).await.unwrap();
    let haven = score_of(&backend, "haven.example", ts(6 * day)).await;
    assert!(haven.components["requests"] < 0 && haven.score <= -50, "{haven:?}");
    assert!(backend.store.entry(&offender("haven.example")).await.unwrap().unwrap().active);

    // The operator vouches for haven.example: the entry goes; clearing the override brings it back.
    let domain = ostracon_protocol::ids::Domain::parse("haven.example").unwrap();
    let applied =
        ledger.set_reputation_override(&domain, Some((0, "talked to their admin")), ts(6 * day)).await.unwrap();
    assert_eq!(applied.delisted, vec![offender("haven.example")]);
    assert_eq!(backend.store.reputation_override(&domain).await.unwrap().unwrap().score, 0);
    let applied = ledger.set_reputation_override(&domain, None, ts(6 * day + 1)).await.unwrap();
    assert_eq!(applied.listed, vec![offender("haven.example")]);
    assert!(matches!(
        ledger.set_reputation_override(&domain, None, ts(6 * day + 2)).await,
        Err(StoreError::NotFound { .. })
    ));
    // Evidence decays: months later the maintenance pass finds it recovered and delists it.
    let later = ts(200 * day);
    ledger.maintain_reputation(later).await.unwrap();
    assert!(!backend.store.entry(&offender("haven.example")).await.unwrap().unwrap().active);
}

async fn a_reporter_that_falls_to_ignore_below_loses_its_listings(backend: Backend) {
    let ledger = ledger(&backend).await;
    let report = report_by("incidents.a.example", 1, &["203.0.113.50"], ts(0));
    ledger.record_remote(received_with(&report, 1_000), ts(0)).await.unwrap().unwrap();
    let waiting = report_by("incidents.a.example", 2, &["203.0.113.51"], ts(0));
    ledger.record_remote(received_with(&waiting, 500), ts(0)).await.unwrap().unwrap();
    let local = incident(3, &["203.0.113.50", "203.0.113.52"], ts(0));
    let also = report_by("incidents.a.example", 4, &["203.0.113.52"], ts(0));
    ledger.submit_local(&local, false, ts(0)).await.unwrap();
    ledger.record_remote(received_with(&also, 1_000), ts(0)).await.unwrap().unwrap();

    let domain = ostracon_protocol::ids::Domain::parse("a.example").unwrap();
    let applied = ledger.set_reputation_override(&domain, Some((-60, "caught lying")), ts(10)).await.unwrap();
    // Only what rested on its word alone leaves the list; our own evidence stands.
    assert!(applied.delisted.is_empty(), "{applied:?}");
    assert!(backend.store.entry(&offender("203.0.113.50")).await.unwrap().unwrap().active, "our own report lists it");
    assert!(backend.store.entry(&offender("203.0.113.52")).await.unwrap().unwrap().active);
    let waiting = backend.store.candidate_reasons(&offender("203.0.113.51")).await.unwrap();
    assert_eq!(waiting[0].weight_milli, 0, "its waiting contribution weighs nothing now");
    // What stays listed keeps its withdrawn reason, at weight 0, in memory as in the database.
    assert_reasons_current(&ledger, &backend.store).await;
    assert!(memory_row(&ledger, "203.0.113.52").reasons.unwrap().list().iter().any(|r| r.weight_milli == 0));
    // And an entry it listed alone goes.
    let alone = report_by("incidents.a.example", 5, &["203.0.113.53"], ts(0));
    ledger.set_reputation_override(&domain, None, ts(11)).await.unwrap();
    ledger.record_remote(received_with(&alone, 1_000), ts(12)).await.unwrap().unwrap();
    assert!(backend.store.entry(&offender("203.0.113.53")).await.unwrap().unwrap().active);
    let applied = ledger.set_reputation_override(&domain, Some((-60, "caught lying")), ts(13)).await.unwrap();
    assert_eq!(applied.delisted, vec![offender("203.0.113.53")]);
}

async fn maintenance_refreshes_stale_scores_and_the_dry_run_changes_nothing(backend: Backend) {
    let ledger = ledger(&backend).await;
    let day = 86_400;
    let params = ostracon_store::reputation::ReputationParams::default();
    let report = report_by("incidents.a.example", 1, &["u@spam.example", "198.51.100.1"], ts(0));
    ledger.record_remote(received_with(&report, 500), ts(0)).await.unwrap().unwrap();
    let stored = |rows: Vec<ostracon_store::facts::ScoreRow>| rows.into_iter().find(|r| r.domain == "spam.example");
    let (rows, _) = backend.store.reputation_scores(ostracon_store::facts::ScoreOrder::Worst, 10, 0).await.unwrap();
    let before = stored(rows).unwrap();
    assert_eq!(ledger.maintain_reputation(ts(day / 2)).await.unwrap(), 0, "fresh scores are left alone");
    assert!(ledger.maintain_reputation(ts(45 * day)).await.unwrap() >= 1);
    let (rows, _) = backend.store.reputation_scores(ostracon_store::facts::ScoreOrder::Worst, 10, 0).await.unwrap();
    let after = stored(rows).unwrap();
    assert!(after.raw > before.raw && after.raw < 0, "decayed toward neutral: {before:?} {after:?}");

    // The dry run: at 0.5 the waiting contribution would list; nothing changes.
    let fresh = report_by("incidents.b.example", 2, &["198.51.100.2"], ts(45 * day));
    ledger.record_remote(received_with(&fresh, 500), ts(45 * day)).await.unwrap().unwrap();
    let local = incident(3, &["198.51.100.3"], ts(45 * day));
    ledger.submit_local(&local, false, ts(45 * day)).await.unwrap();
    let size = ledger.log_size();
    let run = backend.store.dry_run(&params, 500, ts(45 * day).unix()).await.unwrap();
    let values =
        |items: &[ostracon_store::dry_run::DryRunItem]| items.iter().map(|i| i.value.clone()).collect::<Vec<_>>();
    assert_eq!(values(&run.would_list), vec!["198.51.100.2"], "the first report is past its window: {run:?}");
    assert!(run.would_delist.is_empty());
    let run = backend.store.dry_run(&params, 2_000, ts(45 * day).unix()).await.unwrap();
    assert_eq!(values(&run.would_delist), vec!["198.51.100.3"]);
    assert_eq!(ledger.log_size(), size);
    assert!(backend.store.entry(&offender("198.51.100.2")).await.unwrap().is_none());
    // Candidates past their window are dropped by maintenance.
    ledger.maintain_reputation(ts(60 * day)).await.unwrap();
    assert!(backend.store.candidate_reasons(&offender("198.51.100.2")).await.unwrap().is_empty());
}

async fn a_request_for_a_report_already_held_waits_for_the_operator(backend: Backend) {
    let ledger = ledger(&backend).await;
    let report = peer_incident(1, &["bot@ops.example"], ts(0));
    ledger.record_remote(received(&report), ts(0)).await.unwrap().unwrap();
    let request = RemoteIncident {
        verb: Verb::Request,
        decision: Decision::Pending,
        decision_reason: Some("request: waits for the operator to confirm and answer"),
        weight_milli: 0,
        ..received(&report)
    };
    assert!(ledger.record_remote(request, ts(1)).await.unwrap().is_some(), "recorded, not a duplicate");
    let stored = backend.store.incident(&report.id).await.unwrap().unwrap();
    assert_eq!((stored.verb, stored.decision), (Verb::Request, Decision::Pending));
    assert!(backend.store.entry(&offender("bot@ops.example")).await.unwrap().unwrap().active, "the listing stays");
    // Once more is a duplicate.
    assert!(ledger.record_remote(request, ts(2)).await.unwrap().is_none());

    // The other order: the request first (nothing listed), then the shared report, which
    // lists with its weight while the request still waits; a second delivery changes nothing.
    let second = peer_incident(2, &["other@ops.example"], ts(3));
    let request = RemoteIncident { incident: &second, ..request };
    ledger.record_remote(request, ts(3)).await.unwrap().unwrap();
    assert!(backend.store.entry(&offender("other@ops.example")).await.unwrap().is_none());
    let applied = ledger.record_remote(received(&second), ts(4)).await.unwrap().unwrap();
    assert_eq!(applied.listed, vec![offender("other@ops.example")]);
    let stored = backend.store.incident(&second.id).await.unwrap().unwrap();
    assert_eq!((stored.verb, stored.decision), (Verb::Request, Decision::Pending));
    assert!(ledger.record_remote(received(&second), ts(5)).await.unwrap().is_none());
}

async fn the_handshake_is_ledger_operations_with_audit_leaves(backend: Backend) {
    use ostracon_protocol::keys::PublishedKey;
    use ostracon_protocol::log::record::AuditRecord;
    use ostracon_store::ledger::peers::{StrangerLimits, Subscribe};
    use ostracon_store::model::{OutboxJob, PeerState, Trust};
    use ostracon_store::traits::{OutboxStore as _, PeerStore as _};
    let ledger = Ledger::open(backend.store.clone(), key(), config()).await.unwrap();
    let peer = BareJid::parse("incidents.peer.example").unwrap();
    let limits = StrangerLimits { max_pending: 2, max_pending_per_domain: 1, auto_approve: false };
    let keys = || vec![PublishedKey::new(NodeKey::from_seed(&[3; 32]).public(), ts(0))];

    // A stranger asks: pending, its keys fetch queued, one leaf; a second request changes nothing.
    let version = ledger.peers_version();
    assert_eq!(ledger.peer_subscribed(&peer, &limits, ts(0)).await.unwrap(), Subscribe::Recorded);
    assert!(ledger.peers_version() > version, "readers' caches see the change");
    assert_eq!(ledger.peer_subscribed(&peer, &limits, ts(0)).await.unwrap(), Subscribe::AlreadyPending);
    let queued = backend.store.outbox_for("incidents.peer.example", 10).await.unwrap();
    assert_eq!(queued.iter().map(|i| i.job.clone()).collect::<Vec<_>>(), vec![OutboxJob::FetchKeys { approve: false }]);
    // The caps: one waiting request per domain, two in all.
    let same_domain = BareJid::parse("other.peer.example").unwrap();
    assert_eq!(ledger.peer_subscribed(&same_domain, &limits, ts(0)).await.unwrap(), Subscribe::OverCap);
    let elsewhere = BareJid::parse("incidents.far.example").unwrap();
    assert_eq!(ledger.peer_subscribed(&elsewhere, &limits, ts(0)).await.unwrap(), Subscribe::Recorded);
    let third = BareJid::parse("incidents.third.example").unwrap();
    assert_eq!(ledger.peer_subscribed(&third, &limits, ts(0)).await.unwrap(), Subscribe::OverCap);
    assert!(backend.store.peer(&third).await.unwrap().is_none(), "nothing written over the cap");

    // Approval needs the keys first; then the operator approves while a second fetch is in flight.
    assert!(matches!(
        ledger.approve_buddy(&peer, Trust::AutoApply, ts(1)).await,
        Err(StoreError::KeysNotFetched { .. })
    ));
    let shown = ledger.keys_fetched(&peer, keys(), false, ts(1)).await.unwrap().unwrap();
    assert_eq!((shown.state, shown.keys.len()), (PeerState::Pending, 1));
    let approved = ledger.approve_buddy(&peer, Trust::AutoApply, ts(2)).await.unwrap();
    assert_eq!((approved.state, approved.trust), (PeerState::Buddy, Trust::AutoApply));
    assert!(ledger.keys_fetched(&peer, vec![], false, ts(3)).await.unwrap().is_none(), "a late fetch undoes nothing");
    let stored = backend.store.peer(&peer).await.unwrap().unwrap();
    assert_eq!((stored.state, stored.trust, stored.keys.len()), (PeerState::Buddy, Trust::AutoApply, 1));

    // Revoking cancels what still waits for the peer; asking again does not bring it back.
    ledger.enqueue(&peer, &OutboxJob::ScoreQuery { subject: peer.clone() }, ts(4)).await.unwrap();
    ledger.revoke_buddy(&peer, ts(5)).await.unwrap();
    let rows = backend.store.outbox_for("incidents.peer.example", 10).await.unwrap();
    assert!(rows.iter().any(|r| r.job == OutboxJob::ScoreQuery { subject: peer.clone() } && r.state == "cancelled"));
    assert_eq!(ledger.peer_subscribed(&peer, &limits, ts(6)).await.unwrap(), Subscribe::Revoked);

    // Every step left a leaf saying who moved the relation.
    let leaves = backend.store.leaves(0, ledger.log_size()).await.unwrap();
    let steps: Vec<(String, String)> = leaves
        .iter()
        .filter_map(|(_, bytes, _)| match LogLeaf::from_leaf(bytes).unwrap() {
            LogLeaf::Open(AuditRecord::PeerChanged { peer: p, state, by, .. }) if p == peer => Some((state, by)),
            _ => None,
        })
        .collect();
    let expected = [("pending", "peer"), ("pending", "peer"), ("buddy", "operator"), ("revoked", "operator")];
    assert_eq!(steps, expected.map(|(s, b)| (s.to_owned(), b.to_owned())));
}

async fn a_peer_lists_only_what_is_in_its_scope(backend: Backend) {
    use ostracon_protocol::keys::PublishedKey;
    use ostracon_store::model::Trust;
    use ostracon_store::scope::PeerScope;
    let scope = PeerScope {
        protected_domains: vec![ostracon_protocol::ids::Domain::parse("ops.example").unwrap()],
        protected_networks: vec![ostracon_protocol::ids::Cidr::parse("198.18.0.10/32").unwrap()],
        ..PeerScope::default()
    };
    let ledger = Ledger::open(backend.store.clone(), key(), LedgerConfig { scope, ..config() }).await.unwrap();
    // A buddy whose server domain is protected from other peers' reports.
    let buddy = BareJid::parse("incidents.friend.example").unwrap();
    ledger.request_buddy(&buddy, Trust::Accept, ts(0)).await.unwrap();
    let keys = vec![PublishedKey::new(NodeKey::from_seed(&[8; 32]).public(), ts(0))];
    ledger.keys_fetched(&buddy, keys, false, ts(0)).await.unwrap();

    let out_of_scope = [
        "0.0.0.0/0",
        "::/0",
        "10.0.0.0/8",
        "127.0.0.1",
        "203.0.113.9",
        "ops.example",
        "user@ops.example",
        "friend.example",
        "198.18.0.10",
    ];
    let mut offenders = out_of_scope.to_vec();
    offenders.push("198.18.5.5");
    let report = peer_incident(1, &offenders, ts(1));
    let applied = ledger.record_remote(received(&report), ts(1)).await.unwrap().unwrap();
    assert_eq!(applied.listed, vec![offender("198.18.5.5")], "only the in-scope offender is listed");
    assert_eq!(applied.refused.len(), out_of_scope.len(), "{:?}", applied.refused);
    // Nothing covers an arbitrary address: 0.0.0.0/0 did not go on the list.
    assert!(ledger.with_index(|index| index.lookup_ip("203.0.113.77".parse().unwrap()).is_empty()));
    for bad in out_of_scope {
        let refusal = applied.refused.iter().find(|(o, _)| *o == offender(bad)).unwrap_or_else(|| panic!("{bad}"));
        assert!(refusal.1.starts_with("out of a peer's scope"), "{bad}: {}", refusal.1);
    }
    // Every refusal is a leaf saying why.
    let leaves = backend.store.opened_leaves(0, ledger.log_size()).await.unwrap();
    let refusals = leaves
        .iter()
        .filter(|(_, leaf)| {
            matches!(leaf, LogLeaf::Open(AuditRecord::ListingRefused { why, .. }) if why.starts_with("out of a peer's scope"))
        })
        .count();
    assert_eq!(refusals, out_of_scope.len());
    // The operator is not bound by a peer's scope.
    let own = incident(2, &["10.0.0.0/8"], ts(2));
    assert_eq!(ledger.submit_local(&own, false, ts(2)).await.unwrap().listed, vec![offender("10.0.0.0/8")]);
    // A refused accusation against one of our users still counts against the accuser once
    // our operator vouches for the user.
    ledger.allow(&offender("user@ops.example"), "our customer", ts(3)).await.unwrap();
    let accuser = score_of(&backend, "peer.example", ts(3)).await;
    assert!(accuser.components.get("reporting").is_some_and(|points| *points < 0), "{accuser:?}");
}

async fn a_trust_change_reweighs_what_the_peer_contributed(backend: Backend) {
    use ostracon_protocol::keys::PublishedKey;
    use ostracon_store::model::Trust;
    let ledger = ledger(&backend).await;
    let a = BareJid::parse("incidents.a.example").unwrap();
    ledger.request_buddy(&a, Trust::Accept, ts(0)).await.unwrap();
    let keys = vec![PublishedKey::new(NodeKey::from_seed(&[5; 32]).public(), ts(0))];
    ledger.keys_fetched(&a, keys, false, ts(0)).await.unwrap().unwrap();
    // Its `accept` voice alone waits; with b's, it lists.
    let alone = report_by("incidents.a.example", 1, &["192.0.2.1"], ts(1));
    ledger.record_remote(received_with(&alone, 500), ts(1)).await.unwrap().unwrap();
    let together = report_by("incidents.a.example", 2, &["192.0.2.2"], ts(1));
    ledger.record_remote(received_with(&together, 500), ts(1)).await.unwrap().unwrap();
    let backing = report_by("incidents.b.example", 3, &["192.0.2.2"], ts(1));
    ledger.record_remote(received_with(&backing, 500), ts(1)).await.unwrap().unwrap();
    let active = |value: &'static str| {
        let store = backend.store.clone();
        async move { store.entry(&offender(value)).await.unwrap().is_some_and(|e| e.active) }
    };
    assert!(!active("192.0.2.1").await && active("192.0.2.2").await);

    // Raised to auto-apply: its waiting contribution weighs 1.0 and lists at once.
    let applied_before = backend.store.leaf_count().await.unwrap();
    ledger.set_trust(&a, Trust::AutoApply, ts(2)).await.unwrap();
    assert!(active("192.0.2.1").await, "its candidate completes a quorum alone now");
    let entry = backend.store.entry(&offender("192.0.2.1")).await.unwrap().unwrap();
    let reasons = backend.store.entry_reasons(entry.id).await.unwrap();
    assert_eq!(reasons.iter().map(|r| r.weight_milli).collect::<Vec<_>>(), vec![1_000]);
    // A raised weight changes the reasons of entries that stay listed, without a listing.
    assert_reasons_current(&ledger, &backend.store).await;
    assert!(memory_row(&ledger, "192.0.2.2").reasons.unwrap().list().iter().any(|r| r.weight_milli == 1_000));
    assert!(backend.store.leaf_count().await.unwrap() >= applied_before + 2, "the trust change and the listing");

    // Back to accept: what it listed alone waits again; what b backs stays.
    ledger.set_trust(&a, Trust::Accept, ts(3)).await.unwrap();
    assert!(!active("192.0.2.1").await && active("192.0.2.2").await);
    assert_reasons_current(&ledger, &backend.store).await;
    let waiting = backend.store.candidate_reasons(&offender("192.0.2.1")).await.unwrap();
    assert_eq!(waiting.iter().map(|r| r.weight_milli).collect::<Vec<_>>(), vec![500]);
    // Observe: its voice is gone, and b's alone is no quorum.
    ledger.set_trust(&a, Trust::Observe, ts(4)).await.unwrap();
    assert!(!active("192.0.2.2").await);
    let waiting = backend.store.candidate_reasons(&offender("192.0.2.2")).await.unwrap();
    let mut weights: Vec<i64> = waiting.iter().map(|r| r.weight_milli).collect();
    weights.sort();
    assert_eq!(weights, vec![0, 500]);
}

async fn automatic_approval_grants_observe_only(backend: Backend) {
    use ostracon_protocol::keys::PublishedKey;
    use ostracon_store::ledger::peers::{StrangerLimits, Subscribe};
    use ostracon_store::model::{PeerState, Trust};
    let ledger = ledger(&backend).await;
    let limits = StrangerLimits { auto_approve: true, ..StrangerLimits::default() };
    let stranger = BareJid::parse("incidents.cheap.example").unwrap();
    assert_eq!(ledger.peer_subscribed(&stranger, &limits, ts(0)).await.unwrap(), Subscribe::Recorded);
    let keys = vec![PublishedKey::new(NodeKey::from_seed(&[4; 32]).public(), ts(0))];
    let peer = ledger.keys_fetched(&stranger, keys, true, ts(1)).await.unwrap().unwrap();
    assert_eq!((peer.state, peer.trust), (PeerState::Buddy, Trust::Observe), "weight is the operator's to give");
    // Revoked, it never comes back by asking, automatic approval or not.
    ledger.revoke_buddy(&stranger, ts(2)).await.unwrap();
    assert_eq!(ledger.peer_subscribed(&stranger, &limits, ts(3)).await.unwrap(), Subscribe::Revoked);
}

async fn a_rotation_applies_once_and_only_the_current_key_rotates(backend: Backend) {
    use ostracon_protocol::keys::PublishedKey;
    use ostracon_store::model::Trust;
    use ostracon_store::traits::PeerStore as _;
    let ledger = ledger(&backend).await;
    let buddy = BareJid::parse("incidents.rotor.example").unwrap();
    let key_at = |seed: u8, at: i64| PublishedKey::new(NodeKey::from_seed(&[seed; 32]).public(), ts(at));
    ledger.request_buddy(&buddy, Trust::Accept, ts(0)).await.unwrap();
    ledger.keys_fetched(&buddy, vec![key_at(1, 0)], false, ts(0)).await.unwrap();
    let (a, b, c) = (key_at(1, 0), key_at(2, 10), key_at(3, 20));

    assert!(ledger.keys_rotated(&buddy, &a.kid, b.clone(), ts(10)).await.unwrap());
    assert!(
        !ledger.keys_rotated(&buddy, &a.kid, b.clone(), ts(11)).await.unwrap(),
        "a retried delivery changes nothing"
    );
    assert!(ledger.keys_rotated(&buddy, &b.kid, c.clone(), ts(20)).await.unwrap());
    // The first announcement replayed after the second rotation: its key is retired.
    let replayed = ledger.keys_rotated(&buddy, &a.kid, b.clone(), ts(30)).await;
    assert!(matches!(replayed, Err(StoreError::Rejected(_))), "{replayed:?}");
    let keys = backend.store.peer(&buddy).await.unwrap().unwrap().keys;
    let current: Vec<_> = keys.iter().filter(|k| k.valid_until.is_none()).map(|k| k.kid.clone()).collect();
    assert_eq!(current, vec![c.kid.clone()], "exactly one current key, the newest");

    // Keys per peer are capped however often it rotates.
    let mut previous = c;
    for seed in 4..20u8 {
        let next = key_at(seed, 100 + i64::from(seed));
        assert!(ledger.keys_rotated(&buddy, &previous.kid, next.clone(), next.valid_from).await.unwrap());
        previous = next;
    }
    let keys = backend.store.peer(&buddy).await.unwrap().unwrap().keys;
    assert_eq!(keys.len(), ostracon_protocol::limits::MAX_PUBLISHED_KEYS);
    assert!(keys.iter().any(|k| k.kid == previous.kid && k.valid_until.is_none()));
}

async fn a_response_counts_once_and_only_for_what_its_server_knows(backend: Backend) {
    use ostracon_store::model::OutboxJob;
    let ledger = ledger(&backend).await;
    let home = "incidents.home.example";
    let request = incident(1, &["flooder@home.example"], ts(0));
    ledger.submit_local(&request, false, ts(0)).await.unwrap();
    ledger
        .enqueue(&BareJid::parse(home).unwrap(), &OutboxJob::Request { incident: request.id.clone() }, ts(0))
        .await
        .unwrap();
    let answer = |n: u128, offenders: &[&str]| Incident {
        related: Some(request.id.clone()),
        ..report_by(home, n, offenders, ts(60))
    };
    // An accept buddy's answer: its own user and the IPs it names with them carry our
    // operator's weight; a user of another server is only the buddy's word (0.5, no quorum).
    let first = answer(10, &["flooder@home.example", "198.18.7.1", "bystander@elsewhere.example"]);
    let response =
        RemoteIncident { verb: Verb::Response, from: home, authority_milli: Some(1_000), ..received_with(&first, 500) };
    let applied = ledger.record_remote(response, ts(60)).await.unwrap().unwrap();
    assert!(applied.listed.contains(&offender("198.18.7.1")), "{applied:?}");
    assert!(!applied.listed.contains(&offender("bystander@elsewhere.example")), "{applied:?}");
    // A second answer to the same request is no blank cheque: nothing it names lists alone.
    let second = answer(11, &["other@home.example", "198.18.7.2", "victim.example"]);
    let response = RemoteIncident {
        verb: Verb::Response,
        from: home,
        authority_milli: Some(1_000),
        ..received_with(&second, 500)
    };
    let applied = ledger.record_remote(response, ts(120)).await.unwrap().unwrap();
    assert!(applied.listed.is_empty(), "{applied:?}");
    assert!(ledger.with_index(|index| index.lookup_ip("198.18.7.2".parse().unwrap()).is_empty()));
}

async fn one_reporter_moves_a_domains_score_by_one_fact_per_window(backend: Backend) {
    let ledger = ledger(&backend).await;
    let day = 86_400;
    // One buddy sends 100 reports about users of innocent.example within a day.
    let reports: Vec<Incident> =
        (0..100u128).map(|k| peer_incident(100 + k, &[&format!("user{k}@innocent.example")], ts(k as i64))).collect();
    for (k, report) in reports.iter().enumerate() {
        ledger.record_remote(received(report), ts(k as i64)).await.unwrap().unwrap();
    }
    let once = score_of(&backend, "innocent.example", ts(100)).await;
    assert_eq!(once.components["incidents"], -10, "one medium fact at full weight: {once:?}");
    assert!(once.score > ostracon_store::reputation::ReputationParams::default().ignore_below, "{once:?}");
    // The listings themselves are not bounded by it: each report still listed its offender.
    assert!(backend.store.entry(&offender("user99@innocent.example")).await.unwrap().unwrap().active);
    // A day later the same reporter may add one more; another reporter adds its own.
    let later = peer_incident(300, &["late@innocent.example"], ts(day + 1));
    ledger.record_remote(received(&later), ts(day + 1)).await.unwrap().unwrap();
    let other = report_by("incidents.other.example", 301, &["x@innocent.example"], ts(day + 2));
    ledger.record_remote(received_with(&other, 1_000), ts(day + 2)).await.unwrap().unwrap();
    let facts = backend
        .store
        .reputation_subject(&"innocent.example".parse().unwrap(), &Default::default())
        .await
        .unwrap()
        .facts
        .len();
    assert_eq!(facts, 3);
    // Our public answer (XEP-0275) counts only what is behind a listing: retracting nothing,
    // all three are; a report that never reached a quorum is not.
    let unbacked = report_by("incidents.third.example", 302, &["y@quiet.example"], ts(day + 3));
    ledger.record_remote(received_with(&unbacked, 500), ts(day + 3)).await.unwrap().unwrap();
    let params = Default::default();
    let quiet = ostracon_protocol::ids::Domain::parse("quiet.example").unwrap();
    assert_eq!(backend.store.reputation_subject(&quiet, &params).await.unwrap().facts.len(), 1);
    assert!(backend.store.backed_reputation_subject(&quiet, &params).await.unwrap().facts.is_empty());
}

async fn a_verified_report_supersedes_an_unsigned_copy(backend: Backend) {
    let ledger = ledger(&backend).await;
    let report = peer_incident(7, &["squatter@bad.example"], ts(0));
    let unsigned = RemoteIncident {
        origin: IncidentOrigin::Unsigned,
        decision: Decision::Pending,
        weight_milli: 0,
        ..received(&report)
    };
    assert!(ledger.record_remote(unsigned, ts(0)).await.unwrap().unwrap().listed.is_empty());
    let applied = ledger.record_remote(received(&report), ts(1)).await.unwrap().expect("not a duplicate");
    assert_eq!(applied.listed, vec![offender("squatter@bad.example")]);
    let stored = backend.store.incident(&report.id).await.unwrap().unwrap();
    assert_eq!((stored.origin, stored.decision), (IncidentOrigin::Peer, Decision::Accepted));
    // The other way round, an unsigned copy of a verified report is a duplicate.
    let unsigned =
        RemoteIncident { origin: IncidentOrigin::Unsigned, decision: Decision::Pending, ..received(&report) };
    assert!(ledger.record_remote(unsigned, ts(2)).await.unwrap().is_none());
}

async fn a_retraction_travels_the_paths_its_report_took(backend: Backend) {
    use ostracon_store::model::OutboxJob;
    use ostracon_store::traits::OutboxStore as _;
    let ledger = ledger(&backend).await;
    let next = vec!["incidents.next.example".to_owned()];
    let report = peer_incident(8, &["198.18.9.9"], ts(0));
    ledger.record_remote(RemoteIncident { forward_to: &next, ..received(&report) }, ts(0)).await.unwrap().unwrap();
    let retraction = Incident { status: Status::Retracted, ..report.clone() };
    let applied = ledger
        .record_remote(RemoteIncident { forward_to: &next, ..received(&retraction) }, ts(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(applied.delisted, vec![offender("198.18.9.9")]);
    let queued = backend.store.outbox_for("incidents.next.example", 10).await.unwrap();
    let forwards = queued.iter().filter(|i| i.job == OutboxJob::Forward { incident: report.id.clone() }).count();
    assert_eq!(forwards, 2, "the report, then its retraction, on the same path");
}

async fn independence_is_decided_by_the_public_suffix_list_and_operator_groups(backend: Backend) {
    let mut config = config();
    config.reputation.operator_groups.insert("one-op.example".into(), "acme".into());
    config.reputation.operator_groups.insert("same-op.example".into(), "acme".into());
    let ledger = Ledger::open(backend.store.clone(), key(), config).await.unwrap();
    let pair = |a: &str, b: &str, n: u128, ip: &str| (report_by(a, n, &[ip], ts(0)), report_by(b, n + 1, &[ip], ts(1)));
    // Two operators under the public suffix co.uk: two accept voices make a quorum.
    let (a, b) = pair("incidents.a.co.uk", "incidents.b.co.uk", 1, "198.18.10.1");
    // Two domains of one declared operator: one voice, no quorum.
    let (c, d) = pair("incidents.one-op.example", "incidents.same-op.example", 3, "198.18.10.2");
    for report in [&a, &b, &c, &d] {
        ledger.record_remote(received_with(report, 500), ts(1)).await.unwrap().unwrap();
    }
    assert!(backend.store.entry(&offender("198.18.10.1")).await.unwrap().unwrap().active);
    assert!(backend.store.entry(&offender("198.18.10.2")).await.unwrap().is_none());
}

async fn the_brake_holds_what_exceeds_a_peers_hourly_budget(backend: Backend) {
    use ostracon_store::ledger::brake::HeldKind;
    let mut config = config();
    config.scope.hourly_budget = 3;
    let ledger = Ledger::open(backend.store.clone(), key(), config).await.unwrap();
    let ips = ["198.18.20.1", "198.18.20.2", "198.18.20.3", "198.18.20.4", "198.18.20.5"];
    let report = peer_incident(20, &ips, ts(0));
    let applied = ledger.record_remote(received(&report), ts(0)).await.unwrap().unwrap();
    assert_eq!(applied.listed.len(), 3, "{applied:?}");
    assert_eq!(applied.refused.len(), 2);
    assert!(applied.refused.iter().all(|(_, why)| why.starts_with("held by the brake")), "{applied:?}");
    let (held, total) = backend.store.held_changes(Some(PEER), 10, 0).await.unwrap();
    assert_eq!(total, 2);
    assert!(matches!(&held[0].kind, HeldKind::List { offender: o, weight_milli: 1_000 } if *o == offender(ips[3])));
    // The same hour, the peer's retraction would delist three: over budget, it waits whole.
    let retraction = Incident { status: Status::Retracted, ..report.clone() };
    assert!(ledger.record_remote(received(&retraction), ts(60)).await.unwrap().unwrap().delisted.is_empty());
    assert!(backend.store.entry(&offender(ips[0])).await.unwrap().unwrap().active);
    assert_eq!(backend.store.held_changes(None, 10, 0).await.unwrap().1, 3);
    // The operator releases: the held listings, then the retraction, in order.
    let released = ledger.release_held(None, ts(120)).await.unwrap();
    assert_eq!(released.listed.len(), 2, "{released:?}");
    assert_eq!(released.delisted.len(), 5, "{released:?}");
    assert_eq!(backend.store.held_changes(None, 10, 0).await.unwrap().1, 0);
    // An hour later the budget is whole again; what the operator discards never applies.
    let next = peer_incident(21, &["198.18.21.1", "198.18.21.2", "198.18.21.3", "198.18.21.4"], ts(3_600));
    assert_eq!(ledger.record_remote(received(&next), ts(3_600)).await.unwrap().unwrap().listed.len(), 3);
    assert_eq!(ledger.discard_held(None, ts(3_700)).await.unwrap(), 1);
    assert!(backend.store.entry(&offender("198.18.21.4")).await.unwrap().is_none());

    // The budget covers any sixty minutes, not each clock hour (ts(10_800) is the turn of
    // one): a budget spent just before the hour turns is still spent just after it.
    let before = peer_incident(22, &["198.18.22.1", "198.18.22.2", "198.18.22.3"], ts(10_740));
    assert_eq!(ledger.record_remote(received(&before), ts(10_740)).await.unwrap().unwrap().listed.len(), 3);
    let after = peer_incident(23, &["198.18.23.1", "198.18.23.2"], ts(10_860));
    let applied = ledger.record_remote(received(&after), ts(10_860)).await.unwrap().unwrap();
    assert!(applied.listed.is_empty(), "{applied:?}");
    assert_eq!(backend.store.held_changes(None, 10, 0).await.unwrap().1, 2);
    // Sixty minutes after it was spent, it is whole again.
    let later = peer_incident(24, &["198.18.24.1", "198.18.24.2", "198.18.24.3", "198.18.24.4"], ts(14_340));
    assert_eq!(ledger.record_remote(received(&later), ts(14_340)).await.unwrap().unwrap().listed.len(), 3);
}

async fn what_is_not_a_public_fact_is_sealed_and_an_erased_opening_keeps_every_proof(backend: Backend) {
    let ledger = ledger(&backend).await;
    let office = offender("198.51.100.0/24");
    ledger.allow(&office, "office range of Jane Doe", ts(0)).await.unwrap();
    // One `accept` voice: an accusation short of the quorum.
    let accusation = report_by("incidents.a.example", 1, &["203.0.113.77", "victim@users.example"], ts(1));
    let applied = ledger.record_remote(received_with(&accusation, 500), ts(1)).await.unwrap().unwrap();
    assert_eq!(applied.refused.len(), 2, "{applied:?}");
    // And a public fact: a local incident that lists.
    ledger.submit_local(&incident(2, &["192.0.2.50"], ts(2)), false, ts(2)).await.unwrap();

    let size = ledger.log_size();
    let public: Vec<String> = backend
        .store
        .leaves(0, size)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, bytes, _)| String::from_utf8(bytes).unwrap())
        .collect();
    let everything = public.join("\n");
    for secret in ["Jane Doe", "198.51.100", "203.0.113.77", "victim@users.example"] {
        assert!(!everything.contains(secret), "the public log shows {secret:?}:\n{everything}");
    }
    assert!(everything.contains("192.0.2.50"), "a listing is a public fact");
    let sealed: Vec<u64> = (0..size).filter(|&i| public[i as usize].contains("\"sealed\"")).collect();
    assert_eq!(sealed.len(), 3, "the allow entry and both refusals:\n{everything}");

    // The operator reads every opening.
    let opened = backend.store.opened_leaves(0, size).await.unwrap();
    let allow_index = sealed[0];
    assert!(matches!(&opened[allow_index as usize].1,
        LogLeaf::Open(AuditRecord::AllowAdded { note, .. }) if note == "office range of Jane Doe"));

    // Erasing the allow entry's opening changes no leaf: the old root is a prefix of the new
    // log, the replay is the same list, and the opening is gone for good.
    let before = MerkleTree::from_leaf_hashes(public.iter().map(|leaf| leaf_hash(leaf.as_bytes()))).root();
    let erased = ledger.erase_opening(allow_index, ts(3)).await.unwrap();
    assert_eq!(erased.leaves, vec![size]);
    let after = backend.store.leaves(0, size + 1).await.unwrap();
    for (index, bytes, _) in &after[..size as usize] {
        assert_eq!(bytes, public[*index as usize].as_bytes());
    }
    let tree = MerkleTree::from_leaf_hashes(after.iter().map(|(_, bytes, _)| leaf_hash(bytes)));
    verify_consistency(size, size + 1, &before, &tree.root(), &ledger.consistency_proof(size, size + 1).await.unwrap())
        .unwrap();
    let state = ListState::replay(after.iter().map(|(_, bytes, _)| bytes.as_slice())).unwrap();
    assert_eq!(state.entries().keys().collect::<Vec<_>>(), vec![&offender("192.0.2.50")]);
    let opened = backend.store.opened_leaves(0, size + 1).await.unwrap();
    assert!(matches!(opened[allow_index as usize].1, LogLeaf::Sealed(_)));
    assert!(
        matches!(&opened[size as usize].1, LogLeaf::Open(AuditRecord::OpeningErased { index, .. }) if *index == allow_index)
    );
    // The allow entry itself still protects the range.
    assert!(ledger.allowed_by(&offender("198.51.100.7")).is_some());

    // Erasing twice, erasing an open leaf or a leaf not yet written is refused and writes nothing.
    for index in [allow_index, size, size + 10] {
        let error = ledger.erase_opening(index, ts(4)).await.unwrap_err();
        assert!(matches!(error, StoreError::NotFound { .. }), "{error}");
    }
    assert_eq!(ledger.log_size(), size + 1);
}

async fn a_key_switch_is_one_transaction_and_waits_for_the_previous_announcement(backend: Backend) {
    use ostracon_protocol::keys::PublishedKey;
    use ostracon_store::ledger::peers::StrangerLimits;
    use ostracon_store::model::{OutboxJob, Trust};
    use ostracon_store::traits::OutboxStore as _;
    let ledger = ledger(&backend).await;
    let buddy = BareJid::parse("incidents.peer.example").unwrap();
    let limits = StrangerLimits { max_pending: 2, max_pending_per_domain: 1, auto_approve: false };
    ledger.peer_subscribed(&buddy, &limits, ts(0)).await.unwrap();
    let buddy_key = vec![PublishedKey::new(NodeKey::from_seed(&[3; 32]).public(), ts(0))];
    ledger.keys_fetched(&buddy, buddy_key, false, ts(0)).await.unwrap();
    ledger.approve_buddy(&buddy, Trust::Accept, ts(0)).await.unwrap();

    let old = key();
    let new = NodeKey::from_seed(&[10; 32]);
    let published = vec![PublishedKey::new(old.public(), ts(0)), PublishedKey::new(new.public(), ts(5))];
    use ostracon_protocol::keys::KeyRotation;
    let claim = KeyRotation { old_kid: old.key_id(), new_key: PublishedKey::new(new.public(), ts(5)) };
    let signer = BareJid::parse("incidents.ops.example").unwrap();
    let nonce = ostracon_protocol::envelope::Nonce::from_bytes(&[9; 16]);
    let proof = ostracon_protocol::envelope::sign(&claim, &old, &signer, ts(5), nonce).unwrap().links()[0].clone();
    let announcement = OutboxJob::Rotation { old_kid: old.key_id().to_string(), links: vec![proof.clone()] };
    // Naming a key that is not the current one is refused and writes nothing.
    let size = ledger.log_size();
    let stale =
        ledger.switch_key("not-the-current-key", new.clone(), published.clone(), proof.clone(), false, ts(5)).await;
    assert!(matches!(stale, Err(StoreError::Rejected(_))), "{stale:?}");
    assert_eq!(ledger.log_size(), size);

    let switch = ledger
        .switch_key(old.key_id().as_str(), new.clone(), published.clone(), proof.clone(), true, ts(5))
        .await
        .unwrap();
    assert_eq!(switch.announced_to, vec![buddy.clone()]);
    assert_eq!(ledger.signing_key().key_id(), new.key_id());
    assert_eq!(ledger.published_keys(), published);
    let leaf = backend.store.leaves(switch.log_index, switch.log_index + 1).await.unwrap();
    let AuditRecord::KeyRotated { new: kid, proof: Some(logged), .. } = AuditRecord::from_leaf(&leaf[0].1).unwrap()
    else {
        panic!("not a key-rotated leaf with its proof");
    };
    assert_eq!(kid, new.key_id().as_str());
    // The log carries the old key's word for the new one: a reader who pinned the old key
    // follows it; nobody else's key can stand in for the old one.
    assert_eq!(KeyRotation::follow(&logged, &old.public(), ts(6)).unwrap(), new.public());
    assert!(KeyRotation::follow(&logged, &NodeKey::from_seed(&[12; 32]).public(), ts(6)).is_err());
    // Checkpoints and snapshots are signed by the new key from now on.
    ledger.checkpoint().unwrap().verify_signature("ops.example", new.public().verifying_key()).unwrap();
    assert!(ledger.checkpoint().unwrap().verify_signature("ops.example", old.public().verifying_key()).is_err());
    let snapshot = ledger.build_snapshot(ListKind::Ip, Format::Json, Actions::All, ts(6)).await.unwrap();
    assert_eq!(snapshot.key_id, new.key_id());
    let queued = backend.store.outbox_for("incidents.peer.example", 10).await.unwrap();
    assert!(queued.iter().any(|item| item.job == announcement), "{queued:?}");

    // While that announcement waits, a second rotation is refused: the buddy would not know
    // the key that signs it.
    assert_eq!(ledger.rotation_pending().await.unwrap().as_deref(), Some("incidents.peer.example"));
    let third = NodeKey::from_seed(&[11; 32]);
    let early = ledger.switch_key(new.key_id().as_str(), third, published, proof, false, ts(7)).await;
    assert!(matches!(early, Err(StoreError::Rejected(_))), "{early:?}");
    assert_eq!(ledger.signing_key().key_id(), new.key_id());
}

async fn finished_outbox_rows_are_pruned_but_what_later_decisions_read(backend: Backend) {
    use ostracon_store::ledger::OUTBOX_HISTORY_SECS;
    use ostracon_store::model::OutboxJob;
    let ledger = ledger(&backend).await;
    let peer = BareJid::parse("incidents.peer.example").unwrap();
    let report = OutboxJob::Report { incident: incident(1, &[], ts(0)).id };
    for job in [&OutboxJob::Probe, &report, &OutboxJob::FetchKeys { approve: false }] {
        ledger.enqueue(&peer, job, ts(0)).await.unwrap();
    }
    let rows = backend.store.outbox_items(None, None, None, 10).await.unwrap();
    let (fetch, report_row, probe) = (rows[0].id, rows[1].id, rows[2].id);
    ledger.outbox_delivered(&[probe, report_row], ts(10)).await.unwrap();
    // Within the history window nothing goes; a row still pending never goes.
    assert_eq!(ledger.prune_outbox(ts(OUTBOX_HISTORY_SECS)).await.unwrap(), 0);
    assert_eq!(ledger.prune_outbox(ts(OUTBOX_HISTORY_SECS + 11)).await.unwrap(), 1);
    let left: Vec<i64> = backend.store.outbox_items(None, None, None, 10).await.unwrap().iter().map(|i| i.id).collect();
    assert_eq!(left, [fetch, report_row], "the delivered probe went; the pending fetch and the report stay");
    assert!(backend.store.report_shared_with("incidents.peer.example", &incident(1, &[], ts(0)).id).await.unwrap());

    // The incident's deliveries: its own rows only, oldest first, bounded with a "more" flag.
    let other = BareJid::parse("incidents.other.example").unwrap();
    ledger.enqueue(&other, &report, ts(20)).await.unwrap();
    let elsewhere = OutboxJob::Report { incident: incident(2, &[], ts(0)).id };
    ledger.enqueue(&other, &elsewhere, ts(20)).await.unwrap();
    let id = incident(1, &[], ts(0)).id;
    let (went, more) = backend.store.incident_deliveries(&id, 10).await.unwrap();
    let seen: Vec<(String, &str)> = went.iter().map(|i| (i.peer.to_string(), i.state.as_str())).collect();
    assert_eq!(
        seen,
        [("incidents.peer.example".to_owned(), "delivered"), ("incidents.other.example".to_owned(), "pending")]
    );
    assert!(!more);
    let (first, more) = backend.store.incident_deliveries(&id, 1).await.unwrap();
    assert_eq!((first.len(), more), (1, true));
}

async fn rtbl_subscriptions_are_idempotent_capped_and_nodes_publish_only_block_entries(backend: Backend) {
    use ostracon_protocol::rtbl::RtblNode;
    use ostracon_protocol::xml::pubsub::Subscriber;
    use ostracon_store::ledger::rtbl::{Subscribed, SubscriberCaps};

    let ledger = ledger(&backend).await;
    ledger.deny(&offender("spammer@bad.example"), ListAction::Block, None, ts(0)).await.unwrap();
    ledger.deny(&offender("bad.example"), ListAction::Block, None, ts(0)).await.unwrap();
    ledger.deny(&offender("watched@odd.example"), ListAction::Observe, None, ts(0)).await.unwrap();
    ledger.deny(&offender("192.0.2.7"), ListAction::Block, None, ts(0)).await.unwrap();
    ledger.deny(&offender("198.51.100.0/24"), ListAction::Quarantine, None, ts(0)).await.unwrap();

    let jid = |text: &str| Subscriber::parse(text).unwrap();
    let caps = SubscriberCaps { total: 3, per_domain: 2 };
    let muc = RtblNode::MucBansSha256;
    assert_eq!(
        ledger.rtbl_subscribe(muc, &jid("conference.ops.example"), caps, ts(1)).await.unwrap(),
        Subscribed::Added
    );
    assert_eq!(
        ledger.rtbl_subscribe(muc, &jid("conference.ops.example"), caps, ts(2)).await.unwrap(),
        Subscribed::Already,
        "a reload subscribes again"
    );
    let ejabberd = jid("other.example/rtbl-ejabberd@node1");
    assert_eq!(ledger.rtbl_subscribe(muc, &ejabberd, caps, ts(3)).await.unwrap(), Subscribed::Added);
    assert_eq!(ledger.rtbl_subscribe(muc, &jid("other.example/rtbl-2"), caps, ts(3)).await.unwrap(), Subscribed::Added);
    assert_eq!(
        ledger.rtbl_subscribe(muc, &jid("other.example/rtbl-3"), caps, ts(3)).await.unwrap(),
        Subscribed::OverCap,
        "the total cap holds"
    );
    let subscriptions = backend.store.rtbl_subscriptions().await.unwrap();
    assert_eq!(subscriptions.len(), 3);
    let through = backend.store.last_change_seq().await.unwrap();
    assert!(subscriptions.iter().all(|s| s.synced_through == through), "new subscribers start at the feed's end");
    assert!(subscriptions.iter().any(|s| s.jid == ejabberd), "the full JID is kept");

    ledger.rtbl_synced(muc, std::slice::from_ref(&ejabberd), through + 5).await.unwrap();
    ledger.rtbl_synced(muc, std::slice::from_ref(&ejabberd), through + 1).await.unwrap();
    let synced = backend.store.rtbl_subscriptions().await.unwrap();
    assert_eq!(synced.iter().find(|s| s.jid == ejabberd).unwrap().synced_through, through + 5, "never moves back");
    assert!(ledger.rtbl_unsubscribe(muc, &ejabberd).await.unwrap());
    assert!(!ledger.rtbl_unsubscribe(muc, &ejabberd).await.unwrap(), "unsubscribing twice is no error");

    // Only `block` entries are published, each in the node that carries its kind.
    let published = |node: RtblNode| {
        let store = backend.store.clone();
        async move {
            let page = store.rtbl_entries(node, true, 0, 100).await.unwrap();
            page.into_iter().map(|(_, o)| o.to_string()).collect::<Vec<_>>()
        }
    };
    assert_eq!(published(muc).await, ["spammer@bad.example", "bad.example"]);
    assert_eq!(published(RtblNode::SpamSourceDomains).await, ["bad.example"]);
    assert_eq!(published(RtblNode::SpamSourceIps).await, ["192.0.2.7"]);
    assert_eq!(published(RtblNode::SpamSourceJidsSha256).await, ["spammer@bad.example"]);
    let unpublished = backend.store.rtbl_entries(muc, false, 0, 100).await.unwrap();
    assert_eq!(unpublished.iter().map(|(_, o)| o.to_string()).collect::<Vec<_>>(), ["watched@odd.example"]);
    ledger.undeny(&offender("spammer@bad.example"), ts(4)).await.unwrap();
    assert_eq!(published(muc).await, ["bad.example"], "a delisted entry is no longer published");
    let size = backend.store.rtbl_size(muc).await.unwrap();
    assert_eq!(size, (1, 64 + 13), "one hashed id");
    assert_eq!(backend.store.rtbl_size(RtblNode::SpamSourceIps).await.unwrap(), (1, "192.0.2.7/32".len() as u64 + 13));
}

async fn a_bouncer_pulls_the_whole_list_then_changes_and_daily_refreshes_from_its_own_position(backend: Backend) {
    let ledger = ledger(&backend).await;
    let bouncer = backend.store.create_token("fw", Scope::Bouncer, &[3; 32], ts(0)).await.unwrap();
    let values = |entries: &[EntryRecord]| {
        let mut values: Vec<String> = entries.iter().map(|e| e.offender.to_string()).collect();
        values.sort();
        values
    };
    ledger.deny(&offender("192.0.2.7"), ListAction::Block, None, ts(0)).await.unwrap();
    ledger.deny(&offender("198.51.100.0/24"), ListAction::Block, Some(ts(3600)), ts(0)).await.unwrap();
    ledger.deny(&offender("bot@spam.example"), ListAction::Block, None, ts(0)).await.unwrap();
    let whole = ledger.pull_decisions(bouncer.id, true, ts(10)).await.unwrap();
    assert!(whole.whole);
    assert_eq!(values(&whole.new), ["192.0.2.7", "198.51.100.0/24"]);
    let cursor = backend.store.bouncer_cursor(bouncer.id).await.unwrap().unwrap();
    assert_eq!((cursor.through, cursor.pulled_at), (whole.through, ts(10)));

    ledger.undeny(&offender("192.0.2.7"), ts(20)).await.unwrap();
    ledger.deny(&offender("2001:db8::/48"), ListAction::Block, None, ts(20)).await.unwrap();
    let changed = ledger.pull_decisions(bouncer.id, false, ts(30)).await.unwrap();
    assert!(!changed.whole);
    assert_eq!(
        (values(&changed.new), values(&changed.deleted)),
        (vec!["2001:db8::/48".to_owned()], vec!["192.0.2.7".to_owned()])
    );
    // An entry past its expiry is lifted even before the expiry sweep runs.
    let later = ledger.pull_decisions(bouncer.id, false, ts(3700)).await.unwrap();
    assert_eq!(values(&later.new), Vec::<String>::new());
    assert_eq!(ledger.expire(ts(3700)).await.unwrap(), 1);
    let swept = ledger.pull_decisions(bouncer.id, false, ts(3710)).await.unwrap();
    assert_eq!(values(&swept.deleted), ["198.51.100.0/24"]);
    // Each live decision comes again once a day, at its id's second of the day.
    let mut refreshed = Vec::new();
    for step in 1..=24 {
        let pull = ledger.pull_decisions(bouncer.id, false, ts(3710 + step * 3600)).await.unwrap();
        assert!(!pull.whole);
        refreshed.extend(values(&pull.new));
    }
    assert_eq!(refreshed, ["2001:db8::/48"]);
    // A day away: the whole list again.
    let back = ledger.pull_decisions(bouncer.id, false, ts(3710 + 50 * 3600)).await.unwrap();
    assert!(back.whole);
    assert_eq!(values(&back.new), ["2001:db8::/48"]);
}

async fn the_history_walks_list_sizes_back_day_by_day_and_counts_decisions(backend: Backend) {
    use ostracon_store::history::MAX_HISTORY_DAYS;
    let ledger = ledger(&backend).await;
    let day = 86_400;
    for value in ["192.0.2.1", "192.0.2.2", "spam.example"] {
        ledger.deny(&offender(value), ListAction::Block, None, ts(0)).await.unwrap();
    }
    // The next day one address changes its action (an add that does not grow the list), one
    // is delisted, and an incident lists a JID.
    ledger.deny(&offender("192.0.2.1"), ListAction::Quarantine, None, ts(day)).await.unwrap();
    ledger.undeny(&offender("192.0.2.2"), ts(day)).await.unwrap();
    ledger.submit_local(&incident(1, &["bot@spam.example"], ts(day)), false, ts(day)).await.unwrap();
    ledger.deny(&offender("192.0.2.3"), ListAction::Block, None, ts(2 * day)).await.unwrap();

    let now = ts(2 * day + 60);
    let sizes = ledger.with_index(ostracon_store::index::BlocklistIndex::sizes);
    let history = backend.store.history(4, now, sizes).await.unwrap();
    let size = |kind: &str| -> Vec<i64> {
        history.iter().map(|d| d.list_sizes.iter().find(|(k, _)| *k == kind).unwrap().1).collect()
    };
    assert_eq!(size("ip"), [0, 2, 1, 2], "{history:?}");
    assert_eq!(size("domain"), [0, 1, 1, 1]);
    assert_eq!(size("jid"), [0, 0, 1, 1]);
    assert_eq!(history[3].day.unix() % day, 0, "days start at midnight UTC");
    assert!(history[3].day <= now && now.unix() - history[3].day.unix() < day);
    let received: Vec<u64> = history.iter().map(|d| d.decisions.values().sum()).collect();
    assert_eq!(received, [0, 0, 1, 0], "{history:?}");
    let long = backend.store.history(10_000, now, sizes).await.unwrap();
    assert_eq!(long.len(), MAX_HISTORY_DAYS as usize);
}

/// Every listed entry's reasons as memory holds them: the database's, after any commit.
async fn assert_reasons_current(ledger: &Ledger, store: &Store) {
    assert_reasons_not_stale(ledger, store, false).await;
}

/// Every listed entry's reasons that memory holds are the database's; after a bulk commit,
/// or for a replica that followed another (`followed`), some may be forgotten.
async fn assert_reasons_not_stale(ledger: &Ledger, store: &Store, followed: bool) {
    let mut rows = Vec::new();
    ledger.with_index(|index| {
        for kind in ostracon_store::index::KINDS {
            index.for_each_of_kind(kind, |offender, row| rows.push((offender, row.clone())));
        }
    });
    assert!(!rows.is_empty());
    for (offender, row) in rows {
        let held = row.reasons.as_ref().map(|reasons| reasons.list().to_vec());
        if followed && held.is_none() {
            continue;
        }
        let stored = match row.listed.source {
            EntrySource::Incidents => Some(store.entry_reasons(row.listed.id).await.unwrap()),
            EntrySource::Operator | EntrySource::Reputation => None,
        };
        assert_eq!(held, stored, "{offender}");
    }
}

fn memory_row(ledger: &Ledger, value: &str) -> ostracon_store::ledger::explained::Indexed {
    ledger.with_index(|index| index.row(&offender(value))).unwrap()
}

async fn reasons_in_memory_are_shared_and_a_read_a_commit_overtook_is_not_kept(backend: Backend) {
    use ostracon_store::ledger::explained::Reasons;
    use std::sync::Arc;
    let ledger = ledger(&backend).await;
    ledger.submit_local(&incident(1, &["192.0.2.1", "192.0.2.2"], ts(0)), false, ts(0)).await.unwrap();
    ledger.deny(&offender("192.0.2.3"), ListAction::Block, None, ts(0)).await.unwrap();
    let reasons = |value| memory_row(&ledger, value).reasons;
    let (one, two) = (reasons("192.0.2.1").unwrap(), reasons("192.0.2.2").unwrap());
    assert!(Arc::ptr_eq(&one, &two), "one report's entries share one set");
    assert!(reasons("192.0.2.3").is_none(), "the operator's entry has no quorum to explain");

    // Reasons read before a commit that changed any entry's reasons are refused.
    let first = memory_row(&ledger, "192.0.2.1").listed;
    let before = ledger.reasons_epoch();
    ledger.submit_local(&incident(2, &["192.0.2.1"], ts(1)), false, ts(1)).await.unwrap();
    assert_ne!(ledger.reasons_epoch(), before);
    let bogus = Arc::new(Reasons::new(Vec::new()));
    ledger.offer_reasons(&offender("192.0.2.1"), first.id, before, &bogus);
    assert_reasons_current(&ledger, &backend.store).await;
    assert_eq!(reasons("192.0.2.1").unwrap().list().len(), 2);
    assert!(!Arc::ptr_eq(&reasons("192.0.2.1").unwrap(), &reasons("192.0.2.2").unwrap()));
    // So is an offer for another entry id, or for the operator's entry.
    let now = ledger.reasons_epoch();
    ledger.offer_reasons(&offender("192.0.2.1"), first.id + 100, now, &bogus);
    let denied = memory_row(&ledger, "192.0.2.3").listed;
    ledger.offer_reasons(&offender("192.0.2.3"), denied.id, now, &bogus);
    assert_reasons_current(&ledger, &backend.store).await;
    // A commit that touches no entry (a peer) leaves the epoch where it was, and an offer at
    // the current epoch is kept.
    let peer = BareJid::parse("incidents.peer.example").unwrap();
    ledger.request_buddy(&peer, ostracon_store::model::Trust::Accept, ts(5)).await.unwrap();
    assert_eq!(ledger.reasons_epoch(), now);
    ledger.offer_reasons(&offender("192.0.2.1"), first.id, now, &bogus);
    assert!(Arc::ptr_eq(&reasons("192.0.2.1").unwrap(), &bogus));
    let real = Arc::new(Reasons::new(backend.store.entry_reasons(first.id).await.unwrap()));
    ledger.offer_reasons(&offender("192.0.2.1"), first.id, now, &real);
    assert_reasons_current(&ledger, &backend.store).await;

    // A bulk report's entries are too many to read back in its commit: their reasons are
    // forgotten, for lookups to read and offer.
    let bulk: Vec<String> = (0..100).map(|n| format!("198.51.100.{n}")).collect();
    let bulk: Vec<&str> = bulk.iter().map(String::as_str).collect();
    ledger.submit_local(&incident(3, &bulk, ts(6)), false, ts(6)).await.unwrap();
    assert!(memory_row(&ledger, "198.51.100.7").reasons.is_none());
    assert_reasons_not_stale(&ledger, &backend.store, true).await;
    let row = memory_row(&ledger, "198.51.100.7").listed;
    let epoch = ledger.reasons_epoch();
    let read = Arc::new(Reasons::new(backend.store.entry_reasons(row.id).await.unwrap()));
    ledger.offer_reasons(&offender("198.51.100.7"), row.id, epoch, &read);
    assert_eq!(memory_row(&ledger, "198.51.100.7").reasons.unwrap().list().len(), 1);
    assert_reasons_not_stale(&ledger, &backend.store, true).await;

    // Start-up reads the rows only; the reasons follow, a chunk of entries at a time, and
    // a commit between the two does not keep them from coming in (the first ledger is not
    // used again: it would have to follow this one's commit).
    drop(ledger);
    let reopened = Ledger::open(backend.store.clone(), key(), config()).await.unwrap();
    assert!(memory_row(&reopened, "192.0.2.2").reasons.is_none());
    reopened.submit_local(&incident(90, &["192.0.2.90"], ts(7)), false, ts(7)).await.unwrap();
    assert_eq!(reopened.load_reasons().await.unwrap(), 102, "what start-up read; the new entry had its own");
    let (one, bulk) = (memory_row(&reopened, "198.51.100.1").reasons, memory_row(&reopened, "198.51.100.2").reasons);
    assert!(Arc::ptr_eq(&one.unwrap(), &bulk.unwrap()), "one report's entries share one set again");
    assert_reasons_current(&reopened, &backend.store).await;
}

/// What a replica serves, to compare replicas: every list as CSV (each entry's action,
/// expiry, first-seen time and log index), the log's size and its signed checkpoint.
async fn served(ledger: &Ledger) -> (Vec<Vec<u8>>, u64, String) {
    let mut lists = Vec::new();
    for list in [ListKind::Ip, ListKind::Jid, ListKind::Domain] {
        let snapshot = ledger.build_snapshot(list, Format::Csv, Actions::All, ts(1_000)).await.unwrap();
        lists.push(snapshot.body().unwrap());
    }
    (lists, ledger.log_size(), ledger.checkpoint().unwrap().to_text())
}

/// Replicas of one node on one PostgreSQL database (PostgreSQL only: SQLite serves one
/// process). Writes at either replica serialise, never collide on a leaf index, and each
/// replica's memory follows the other's commits.
#[tokio::test]
async fn replicas_on_one_database_serialise_their_writes_and_follow_each_other() {
    use ostracon_store::ledger::explained::Reasons;
    let Some(backend) = Backend::postgres().await else { return };
    let second = Store::open(&backend.url).await.unwrap();
    let a = std::sync::Arc::new(ledger(&backend).await);
    let b = std::sync::Arc::new(Ledger::open(second.clone(), key(), config()).await.unwrap());

    a.submit_local(&incident(1, &["192.0.2.1", "bot@bad.example"], ts(0)), false, ts(0)).await.unwrap();
    assert_eq!(b.log_size(), 0, "B has not followed yet");
    let caught = b.catch_up().await.unwrap();
    assert_eq!((caught.leaves, caught.entries), (3, 2));
    assert_eq!(served(&a).await, served(&b).await);
    // B cannot tell whose reasons A changed: it forgets them, and takes them back from a read.
    assert!(memory_row(&a, "192.0.2.1").reasons.is_some());
    let forgotten = memory_row(&b, "192.0.2.1");
    assert!(forgotten.reasons.is_none());
    let epoch = b.reasons_epoch();
    let read = backend.store.entry_reasons(forgotten.listed.id).await.unwrap();
    b.offer_reasons(&offender("192.0.2.1"), forgotten.listed.id, epoch, &std::sync::Arc::new(Reasons::new(read)));
    assert_eq!(
        memory_row(&b, "192.0.2.1").reasons.unwrap().list(),
        memory_row(&a, "192.0.2.1").reasons.unwrap().list()
    );
    // Another contribution that changes neither the action nor the expiry has no change-feed
    // row, but moves the entry's log index (and its count of listings): B follows it too.
    let mut weaker = incident(6, &["192.0.2.1"], ts(0));
    weaker.expires = Some(ts(10));
    a.submit_local(&weaker, false, ts(0)).await.unwrap();
    assert_eq!(b.catch_up().await.unwrap().entries, 1);
    assert_eq!(served(&a).await, served(&b).await);
    assert_eq!(b.with_index(|i| i.lookup_ip("192.0.2.1".parse().unwrap()).len()), 1);

    // B writes without following first: its write catches up inside its own transaction.
    a.submit_local(&incident(2, &["192.0.2.2"], ts(1)), false, ts(1)).await.unwrap();
    let applied = b.submit_local(&incident(3, &["192.0.2.3"], ts(2)), false, ts(2)).await.unwrap();
    assert_eq!(applied.leaves, vec![7, 8], "B's leaves come after A's, never on them");

    // Both write at once: the advisory lock serialises them.
    let mut writes = Vec::new();
    for n in 0..20u128 {
        let (ledger, address) = (std::sync::Arc::clone(if n % 2 == 0 { &a } else { &b }), format!("198.51.100.{n}"));
        writes.push(tokio::spawn(async move {
            ledger.submit_local(&incident(100 + n, &[&address], ts(3)), false, ts(3)).await.unwrap();
        }));
    }
    for write in writes {
        write.await.unwrap();
    }
    a.retract(&incident(1, &[], ts(0)).id, ts(4)).await.unwrap();
    a.retract(&incident(6, &[], ts(0)).id, ts(4)).await.unwrap();
    b.deny(&offender("203.0.113.7"), ListAction::Quarantine, None, ts(5)).await.unwrap();
    a.catch_up().await.unwrap();
    b.catch_up().await.unwrap();
    assert_eq!(b.with_index(|i| i.lookup_ip("192.0.2.1".parse().unwrap()).len()), 0, "A's retraction reached B");
    let rebuilt = Ledger::open(backend.store.clone(), key(), config()).await.unwrap();
    assert_eq!(served(&a).await, served(&rebuilt).await);
    assert_eq!(served(&b).await, served(&rebuilt).await);
    assert_eq!(a.log_size(), backend.store.leaf_count().await.unwrap());

    // A replica that was away longer than the change feed is kept still follows: it reads the
    // entries by their log index, not from the feed.
    let away = Ledger::open(second.clone(), key(), config()).await.unwrap();
    a.submit_local(&incident(4, &["192.0.2.4"], ts(6)), false, ts(6)).await.unwrap();
    assert!(a.prune_changes(ts(10_000_000)).await.unwrap() > 0);
    let caught = away.catch_up().await.unwrap();
    assert!(caught.leaves > 0 && caught.entries > 0, "{caught:?}");
    assert_eq!(served(&away).await, served(&a).await);
    for replica in [&a, &b] {
        assert_reasons_not_stale(replica, &backend.store, true).await;
    }
    assert!(memory_row(&a, "192.0.2.4").reasons.is_some(), "what A's own commit changed, A knows");
}

/// One replica at a time holds the XMPP link: the lock lives with its database session.
#[tokio::test]
async fn one_replica_holds_the_link_until_its_session_ends() {
    let Some(backend) = Backend::postgres().await else { return };
    let second = Store::open(&backend.url).await.unwrap();
    let mut held = backend.store.try_hold_link().await.unwrap().expect("the first replica takes the link");
    assert!(second.try_hold_link().await.unwrap().is_none(), "a second replica waits");
    held.check().await.unwrap();
    drop(held);
    // The session closes as the connection drops; PostgreSQL then releases the lock.
    let mut taken = None;
    for _ in 0..100 {
        taken = second.try_hold_link().await.unwrap();
        if taken.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(taken.is_some(), "the second replica takes the link once the first lets go");
    assert!(backend.store.try_hold_link().await.unwrap().is_none());
}
