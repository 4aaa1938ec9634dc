//! Loads every file under `spec/vectors` and checks the code reproduces it, so the
//! specification and the implementation cannot drift apart.

mod support;

use ostracon_protocol::canonical::to_canonical_json;
use ostracon_protocol::component::handshake_digest;
use ostracon_protocol::envelope::{SignedEnvelope, Unverified, VerifyPolicy};
use ostracon_protocol::ids::{IncidentId, Offender};
use ostracon_protocol::incident::{Action, Category, Evidence, Incident, ReportClaim, Severity, Status};
use ostracon_protocol::keys::KeyRing;
use ostracon_protocol::rtbl::RtblNode;
use ostracon_protocol::xml::reporting::ForwardedReport;
use ostracon_protocol::xml::reputation::Score;
use ostracon_protocol::xml::xep0268::IncidentPayload;
use ostracon_protocol::xml::{parse_bounded, signed, to_string};
use serde_json::{Value, json};
use support::*;

fn payload_json(payload: &IncidentPayload) -> Value {
    match payload {
        IncidentPayload::Inquiry { id } => json!({ "verb": "inquiry", "id": id }),
        IncidentPayload::Report { incident, signed } => {
            json!({ "verb": "report", "signed": signed.is_some(), "incident": incident })
        }
        IncidentPayload::Request { incident, signed } => {
            json!({ "verb": "request", "signed": signed.is_some(), "incident": incident })
        }
        IncidentPayload::Response { incident, signed } => {
            json!({ "verb": "response", "signed": signed.is_some(), "incident": incident })
        }
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap() + "\n"
}

#[test]
fn xep0268_vectors_parse_to_the_expected_model_and_round_trip() {
    let files = vector_files("xep0268", ".xml");
    assert!(files.len() >= 5, "{files:?}");
    for file in files {
        let element = parse_bounded(&read_vector(&file)).unwrap();
        let payload = IncidentPayload::from_element(&element).unwrap_or_else(|e| panic!("{file}: {e}"));
        check_vector(&file.replace(".xml", ".expected.json"), &pretty(&payload_json(&payload)));

        // Emit, serialise, parse again: nothing is lost or changed.
        let emitted = to_string(&payload.to_element());
        let reparsed = IncidentPayload::from_element(&parse_bounded(&emitted).unwrap()).unwrap();
        assert_eq!(reparsed, payload, "{file} does not round-trip");
    }
}

#[test]
fn xep0275_vectors() {
    let files = vector_files("xep0275", ".xml");
    assert_eq!(files.len(), 2);
    for file in files {
        let score = Score::from_element(&parse_bounded(&read_vector(&file)).unwrap()).unwrap();
        check_vector(&file.replace(".xml", ".expected.json"), &pretty(&json!({ "jid": score.jid, "num": score.num })));
        assert_eq!(Score::from_element(&parse_bounded(&to_string(&score.to_element())).unwrap()).unwrap(), score);
    }
}

#[test]
fn xep0377_vectors() {
    let files = vector_files("xep0377", ".xml");
    assert_eq!(files.len(), 2);
    for file in files {
        let message = parse_bounded(&read_vector(&file)).unwrap();
        let report = ForwardedReport::from_message(&message).unwrap().expect("a report");
        let value = json!({
            "relayed_by": report.relayed_by,
            "reported": report.reported,
            "reason": report.report.reason,
            "category": report.report.category,
            "texts": report.report.texts,
            "stanza_ids": report.report.stanza_ids,
            "report_origin": report.report.report_origin,
            "third_party": report.report.third_party,
            "legacy": report.report.legacy,
            "message_sent": report.message_sent,
            "message_body": report.message_body,
        });
        check_vector(&file.replace(".xml", ".expected.json"), &pretty(&value));
        let emitted = report.to_message(&jid("incidents.ops.example"), "rf1", "jabber:component:accept");
        let mut reparsed =
            ForwardedReport::from_message(&parse_bounded(&to_string(&emitted)).unwrap()).unwrap().unwrap();
        // We always emit the current namespace.
        reparsed.report.legacy = report.report.legacy;
        assert_eq!(reparsed, report);
    }
}

#[test]
fn xep0114_handshake_vector() {
    let vectors: Value = serde_json::from_str(&read_vector("xep0114.json")).unwrap();
    for case in vectors["cases"].as_array().unwrap() {
        assert_eq!(
            handshake_digest(case["stream_id"].as_str().unwrap(), case["secret"].as_str().unwrap()),
            case["handshake"].as_str().unwrap()
        );
    }
}

#[test]
fn rtbl_item_id_vectors() {
    let vectors: Value = serde_json::from_str(&read_vector("rtbl.json")).unwrap();
    let cases = vectors["cases"].as_array().unwrap();
    assert!(cases.len() >= 8);
    for case in cases {
        let node = RtblNode::ALL.into_iter().find(|n| n.name() == case["node"].as_str().unwrap()).unwrap();
        let offender = Offender::parse(case["offender"].as_str().unwrap()).unwrap();
        assert_eq!(node.item_id(&offender).as_deref(), case["item_id"].as_str(), "{case}");
    }
}

/// The incident the signed vectors carry.
fn signed_vector_incident() -> Incident {
    Incident {
        id: IncidentId::parse("incidents.alpha.example:0f6c1c52-7d3e-4e0a-9a51-2b1f4a7e9c10").unwrap(),
        reporter: jid("incidents.alpha.example"),
        status: Status::New,
        category: Category::MucAbuse,
        severity: Severity::High,
        offenders: vec![
            Offender::parse("bot1@bad.example").unwrap(),
            Offender::parse("192.0.2.10").unwrap(),
            Offender::parse("2001:db8::/48").unwrap(),
            Offender::parse("bad.example").unwrap(),
        ],
        start: ts("2026-05-01T10:00:00Z"),
        end: Some(ts("2026-05-01T10:15:00Z")),
        reported: ts("2026-05-01T10:20:00Z"),
        description: "Join flood in room@conference.alpha.example — ten bots".to_owned(),
        evidence: vec![
            Evidence::Sample("join join join".to_owned()),
            Evidence::Sha256("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".to_owned()),
        ],
        action: Some(Action::BlockHost),
        expires: Some(ts("2026-05-08T10:20:00Z")),
        related: None,
        history: vec![],
    }
}

#[test]
fn signed_report_vector_is_reproduced_byte_for_byte_and_verifies() {
    let alpha = key(0xa1);
    let beta = key(0xb2);
    let incident = signed_vector_incident();
    let origin = ostracon_protocol::envelope::sign(
        &ReportClaim(incident.clone()),
        &alpha,
        &jid("incidents.alpha.example"),
        ts("2026-05-01T10:20:00Z"),
        nonce(0x01),
    )
    .unwrap();
    let policy = VerifyPolicy::at(ts("2026-05-01T10:21:00Z"));
    let mut ring = KeyRing::new();
    ring.insert(jid("incidents.alpha.example"), alpha.public());
    ring.insert(jid("incidents.beta.example"), beta.public());
    let verified = origin.clone().verify(&ring, &mut SeenNonces::default(), &policy).unwrap();
    let forwarded =
        verified.forward(&beta, &jid("incidents.beta.example"), ts("2026-05-01T10:20:30Z"), nonce(0x02)).unwrap();

    let link = |envelope: &SignedEnvelope| {
        json!({
            "signing_input": String::from_utf8(envelope.signing_input()).unwrap(),
            "envelope": envelope,
            "link_hash": hex::encode(envelope.link_hash()),
        })
    };
    let document = json!({
        "description": "A signed XEP-0268 report forwarded once. Seeds are 32 repeated bytes; nonces 16 repeated bytes, base64url. signing_input is the exact text signed; envelope is the JSON form (payload and sig in standard base64).",
        "keys": {
            "incidents.alpha.example": { "seed_byte": "a1", "public": alpha.public().to_base64(), "kid": alpha.key_id() },
            "incidents.beta.example": { "seed_byte": "b2", "public": beta.public().to_base64(), "kid": beta.key_id() },
        },
        "claim_canonical_json": String::from_utf8(to_canonical_json(&incident).unwrap()).unwrap(),
        "verify_at": "2026-05-01T10:21:00Z",
        "links": forwarded.links().iter().map(link).collect::<Vec<_>>(),
    });
    check_vector("signed/report.json", &pretty(&document));

    let payload = IncidentPayload::Report { incident: incident.clone(), signed: Some(forwarded.clone()) };
    check_vector("signed/report.xml", &(to_string(&payload.to_element()) + "\n"));

    // The committed XML verifies with the keys from the committed JSON, and yields the claim.
    let element = parse_bounded(&read_vector("signed/report.xml")).unwrap();
    let IncidentPayload::Report { signed: Some(received), .. } = IncidentPayload::from_element(&element).unwrap()
    else {
        panic!("not a signed report");
    };
    let verified = received.verify(&ring, &mut SeenNonces::default(), &policy).unwrap();
    assert_eq!(verified.value().0, incident);
    assert_eq!(verified.origin(), &jid("incidents.alpha.example"));
    assert_eq!(verified.last_signer(), &jid("incidents.beta.example"));
    assert_eq!(verified.hops(), 1);

    // And the provenance element alone round-trips.
    let links = signed::from_element(&signed::to_element(forwarded.links())).unwrap();
    assert_eq!(Unverified::<ReportClaim>::new(links).unwrap(), forwarded);
}

#[test]
fn every_vector_file_is_loaded_by_a_test() {
    // Each pattern is owned by the test named beside it.
    let owners: &[(&str, &str)] = &[
        ("jcs.json", "canonical::tests::matches_the_rfc_8785_vectors"),
        ("xep0114.json", "xep0114_handshake_vector"),
        ("rtbl.json", "rtbl_item_id_vectors"),
        ("xep0268/", "xep0268_vectors_parse_to_the_expected_model_and_round_trip"),
        ("xep0275/", "xep0275_vectors"),
        ("xep0377/", "xep0377_vectors"),
        ("signed/report.", "signed_report_vector_is_reproduced_byte_for_byte_and_verifies"),
        ("bad/cases.json", "bad_input::every_bad_input_vector_is_refused_with_its_error"),
        ("log/merkle.json", "log::merkle tests"),
        ("log/checkpoint.json", "log::checkpoint tests"),
        ("reputation.json", "store/tests/reputation.rs the_specs_worked_examples"),
    ];
    let root = vectors_dir();
    let mut stack = vec![root.clone()];
    let mut unowned = Vec::new();
    let mut count = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            count += 1;
            let relative = path.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
            if !owners.iter().any(|(prefix, _)| relative.starts_with(prefix)) {
                unowned.push(relative);
            }
        }
    }
    assert!(count >= 20, "only {count} vector files found");
    assert!(unowned.is_empty(), "vector files no test loads: {unowned:?}");
}
