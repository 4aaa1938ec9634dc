//! The signed envelope under attack: every way a signed report can be forged, altered,
//! replayed or mis-chained must be refused with its own error.

mod support;

use ostracon_protocol::Error;
use ostracon_protocol::envelope::{self, SignedEnvelope, Unverified, VerifyPolicy};
use ostracon_protocol::ids::{IncidentId, Offender};
use ostracon_protocol::incident::{Category, Incident, ReportClaim, RequestClaim, Severity, Status};
use ostracon_protocol::keys::{KeyRing, KeyRotation, NodeKey, PublishedKey};
use support::*;

const ALPHA: &str = "incidents.alpha.example";
const BETA: &str = "incidents.beta.example";
const GAMMA: &str = "incidents.gamma.example";

fn incident(issuer: &str) -> Incident {
    Incident {
        id: IncidentId::parse(&format!("{issuer}:0f6c1c52-7d3e-4e0a-9a51-2b1f4a7e9c10")).unwrap(),
        reporter: jid(issuer),
        status: Status::New,
        category: Category::Spam,
        severity: Severity::Medium,
        offenders: vec![Offender::parse("spammer@bad.example").unwrap()],
        start: ts("2026-05-01T10:00:00Z"),
        end: None,
        reported: ts("2026-05-01T10:20:00Z"),
        description: "spam".to_owned(),
        evidence: vec![],
        action: None,
        expires: None,
        related: None,
        history: vec![],
    }
}

fn ring() -> KeyRing {
    let mut ring = KeyRing::new();
    ring.insert(jid(ALPHA), key(1).public());
    ring.insert(jid(BETA), key(2).public());
    ring.insert(jid(GAMMA), key(3).public());
    ring
}

fn policy() -> VerifyPolicy {
    VerifyPolicy::at(ts("2026-05-01T10:21:00Z"))
}

fn signed_report() -> Unverified<ReportClaim> {
    envelope::sign(&ReportClaim(incident(ALPHA)), &key(1), &jid(ALPHA), ts("2026-05-01T10:20:00Z"), nonce(9)).unwrap()
}

fn verify(chain: Unverified<ReportClaim>) -> Result<ReportClaim, Error> {
    chain.verify(&ring(), &mut SeenNonces::default(), &policy()).map(|v| v.into_parts().0)
}

fn with_link(chain: &Unverified<ReportClaim>, edit: impl FnOnce(&mut SignedEnvelope)) -> Unverified<ReportClaim> {
    let mut links = chain.links().to_vec();
    edit(links.last_mut().unwrap());
    Unverified::new(links).unwrap()
}

/// Re-signs the last link after editing, so only the edited property is wrong.
fn resign(link: &mut SignedEnvelope, key: &NodeKey) {
    link.signature = key.sign(&link.signing_input());
}

#[test]
fn a_valid_report_verifies() {
    assert_eq!(verify(signed_report()).unwrap().0, incident(ALPHA));
}

#[test]
fn a_flipped_byte_anywhere_in_the_payload_is_a_bad_signature() {
    let chain = signed_report();
    let len = chain.links()[0].payload.len();
    for index in [0, len / 2, len - 1] {
        let tampered = with_link(&chain, |link| link.payload[index] ^= 0x01);
        assert!(matches!(verify(tampered), Err(Error::BadSignature { .. })), "byte {index}");
    }
    let tampered = with_link(&chain, |link| link.signature[5] ^= 0x80);
    assert!(matches!(verify(tampered), Err(Error::BadSignature { .. })));
    // Header fields are covered too.
    let tampered = with_link(&chain, |link| link.ts = link.ts.plus_secs(1));
    assert!(matches!(verify(tampered), Err(Error::BadSignature { .. })));
}

#[test]
fn the_wrong_key_is_refused() {
    // Signed by another key while claiming alpha's key id.
    let chain = with_link(&signed_report(), |link| resign(link, &key(7)));
    assert!(matches!(verify(chain), Err(Error::BadSignature { .. })));
    // Signed with a key alpha never had pinned.
    let chain =
        envelope::sign(&ReportClaim(incident(ALPHA)), &key(7), &jid(ALPHA), ts("2026-05-01T10:20:00Z"), nonce(9))
            .unwrap();
    assert!(matches!(verify(chain), Err(Error::UnknownKey { .. })));
    // A signer we do not know at all.
    let chain = envelope::sign(
        &ReportClaim(incident("incidents.stranger.example")),
        &key(8),
        &jid("incidents.stranger.example"),
        ts("2026-05-01T10:20:00Z"),
        nonce(9),
    )
    .unwrap();
    assert!(matches!(verify(chain), Err(Error::UnknownKey { .. })));
}

#[test]
fn timestamps_outside_the_window_are_refused() {
    let chain = signed_report();
    for offset in [-301, 301, 86_400] {
        let policy = VerifyPolicy::at(ts("2026-05-01T10:20:00Z").plus_secs(offset));
        let result = chain.clone().verify(&ring(), &mut SeenNonces::default(), &policy);
        assert!(matches!(result, Err(Error::TimestampOutsideWindow { .. })), "offset {offset}");
    }
    let edge = VerifyPolicy::at(ts("2026-05-01T10:25:00Z"));
    assert!(chain.verify(&ring(), &mut SeenNonces::default(), &edge).is_ok());
}

#[test]
fn a_replayed_nonce_is_refused_and_forged_traffic_does_not_fill_the_cache() {
    let mut seen = SeenNonces::default();
    signed_report().verify(&ring(), &mut seen, &policy()).unwrap();
    assert!(matches!(signed_report().verify(&ring(), &mut seen, &policy()), Err(Error::Replay { .. })));

    let mut fresh = SeenNonces::default();
    let forged = with_link(&signed_report(), |link| link.payload[0] ^= 1);
    assert!(forged.verify(&ring(), &mut fresh, &policy()).is_err());
    assert!(fresh.0.is_empty(), "a forged envelope must not be remembered");
}

#[test]
fn invalid_utf8_and_non_json_payloads_are_refused_after_verification() {
    let chain = with_link(&signed_report(), |link| {
        link.payload = vec![0xff, 0xfe, b'{', b'}'];
        resign(link, &key(1));
    });
    assert!(matches!(verify(chain), Err(Error::InvalidUtf8 { .. })));
    let chain = with_link(&signed_report(), |link| {
        link.payload = b"{\"id\": 1".to_vec();
        resign(link, &key(1));
    });
    assert!(matches!(verify(chain), Err(Error::InvalidJson { .. })));
    let chain = with_link(&signed_report(), |link| {
        let mut claim: serde_json::Value = serde_json::from_slice(&link.payload).unwrap();
        claim["unexpected"] = serde_json::json!(true);
        link.payload = serde_json::to_vec(&claim).unwrap();
        resign(link, &key(1));
    });
    assert!(matches!(verify(chain), Err(Error::InvalidJson { .. })), "unknown fields are refused");
}

#[test]
fn oversized_payloads_are_refused_on_both_sides() {
    let mut big = incident(ALPHA);
    big.description = "x".repeat(70_000);
    let result = envelope::sign(&ReportClaim(big), &key(1), &jid(ALPHA), ts("2026-05-01T10:20:00Z"), nonce(1));
    assert!(matches!(result, Err(Error::TooLarge { .. })));
    let chain = with_link(&signed_report(), |link| {
        link.payload = vec![b' '; 70_000];
        resign(link, &key(1));
    });
    assert!(matches!(verify(chain), Err(Error::TooLarge { .. })));
}

#[test]
fn claims_must_come_from_their_signer_and_have_the_right_type() {
    // Alpha signs an incident that claims beta issued it.
    let chain =
        envelope::sign(&ReportClaim(incident(BETA)), &key(1), &jid(ALPHA), ts("2026-05-01T10:20:00Z"), nonce(3))
            .unwrap();
    assert!(matches!(verify(chain), Err(Error::SignerMismatch { .. })));
    // A signed report presented as a request.
    let as_request = Unverified::<RequestClaim>::new(signed_report().links().to_vec()).unwrap();
    let result = as_request.verify(&ring(), &mut SeenNonces::default(), &policy());
    assert!(matches!(result, Err(Error::WrongClaimType { .. })));
}

#[test]
fn a_forwarded_chain_verifies_link_by_link() {
    let origin = verify_chain(signed_report());
    let via_beta = origin.forward(&key(2), &jid(BETA), ts("2026-05-01T10:20:10Z"), nonce(20)).unwrap();
    let at_beta = verify_chain(via_beta);
    let via_gamma = at_beta.forward(&key(3), &jid(GAMMA), ts("2026-05-01T10:20:20Z"), nonce(30)).unwrap();
    let verified = verify_chain(via_gamma);
    assert_eq!(verified.origin(), &jid(ALPHA));
    assert_eq!(verified.last_signer(), &jid(GAMMA));
    assert_eq!(verified.hops(), 2);
    assert_eq!(verified.value().0, incident(ALPHA));
}

fn verify_chain(chain: Unverified<ReportClaim>) -> ostracon_protocol::Verified<ReportClaim> {
    chain.verify(&ring(), &mut SeenNonces::default(), &policy()).unwrap()
}

#[test]
fn a_broken_chain_link_is_refused() {
    let origin = verify_chain(signed_report());
    let forwarded = origin.forward(&key(2), &jid(BETA), ts("2026-05-01T10:20:10Z"), nonce(20)).unwrap();

    // The forward names another link than the one before it (re-signed, so only the link is wrong).
    let broken = with_link(&forwarded, |link| {
        let mut claim: serde_json::Value = serde_json::from_slice(&link.payload).unwrap();
        claim["prev"] = serde_json::json!("00".repeat(32));
        link.payload = ostracon_protocol::canonical::to_canonical_json(&claim).unwrap();
        resign(link, &key(2));
    });
    assert!(matches!(verify(broken), Err(Error::BrokenChain { link: 1, .. })));

    // The wrong hop number.
    let broken = with_link(&forwarded, |link| {
        let mut claim: serde_json::Value = serde_json::from_slice(&link.payload).unwrap();
        claim["hop"] = serde_json::json!(2);
        link.payload = ostracon_protocol::canonical::to_canonical_json(&claim).unwrap();
        resign(link, &key(2));
    });
    assert!(matches!(verify(broken), Err(Error::BrokenChain { link: 1, .. })));

    // The origin was altered after forwarding: its own signature fails first.
    let mut links = forwarded.links().to_vec();
    links[0].payload[3] ^= 1;
    assert!(matches!(verify(Unverified::new(links).unwrap()), Err(Error::BadSignature { .. })));

    // A forward whose origin was swapped for another valid report no longer joins up.
    let other =
        envelope::sign(&ReportClaim(incident(ALPHA)), &key(1), &jid(ALPHA), ts("2026-05-01T10:20:05Z"), nonce(10))
            .unwrap();
    let mut links = forwarded.links().to_vec();
    links[0] = other.links()[0].clone();
    assert!(matches!(verify(Unverified::new(links).unwrap()), Err(Error::BrokenChain { link: 1, .. })));

    // A second origin in place of a forward.
    let mut links = forwarded.links().to_vec();
    links[1] = other.links()[0].clone();
    assert!(matches!(verify(Unverified::new(links).unwrap()), Err(Error::BrokenChain { link: 1, .. })));
}

#[test]
fn loops_and_overlong_chains_are_refused() {
    let origin = verify_chain(signed_report());
    // Alpha cannot forward its own report back.
    let result = origin.forward(&key(1), &jid(ALPHA), ts("2026-05-01T10:20:10Z"), nonce(11));
    assert!(matches!(result, Err(Error::BrokenChain { .. })));
    // A hop limit of one link refuses any forward.
    let forwarded = origin.forward(&key(2), &jid(BETA), ts("2026-05-01T10:20:10Z"), nonce(20)).unwrap();
    let strict = VerifyPolicy { max_links: 1, ..policy() };
    let result = forwarded.verify(&ring(), &mut SeenNonces::default(), &strict);
    assert!(matches!(result, Err(Error::TooMany { .. })));
}

#[test]
fn key_rotation_is_signed_by_the_old_key() {
    let old = key(1);
    let new = key(4);
    let rotation =
        KeyRotation { old_kid: old.key_id(), new_key: PublishedKey::new(new.public(), ts("2026-06-01T00:00:00Z")) };
    let now = VerifyPolicy::at(ts("2026-06-01T00:00:00Z"));
    let signed = envelope::sign(&rotation, &old, &jid(ALPHA), ts("2026-06-01T00:00:00Z"), nonce(40)).unwrap();
    let verified = signed.verify(&ring(), &mut SeenNonces::default(), &now).unwrap();
    assert_eq!(verified.value().new_key.key, new.public());

    // Signed by the new key claiming to retire the old one: refused.
    let mut ring = ring();
    ring.insert(jid(ALPHA), new.public());
    let by_new = envelope::sign(&rotation, &new, &jid(ALPHA), ts("2026-06-01T00:00:00Z"), nonce(41)).unwrap();
    assert!(matches!(by_new.verify(&ring, &mut SeenNonces::default(), &now), Err(Error::SignerMismatch { .. })));
}

#[test]
fn future_origins_are_refused_even_when_the_last_hop_is_fresh() {
    let future =
        envelope::sign(&ReportClaim(incident(ALPHA)), &key(1), &jid(ALPHA), ts("2026-05-01T12:00:00Z"), nonce(50))
            .unwrap();
    let late = VerifyPolicy::at(ts("2026-05-01T12:00:00Z"));
    let at_beta = future.verify(&ring(), &mut SeenNonces::default(), &late).unwrap();
    let forwarded = at_beta.forward(&key(2), &jid(BETA), ts("2026-05-01T10:21:00Z"), nonce(51)).unwrap();
    // Beta's clock is behind alpha's signature by more than the window: the chain is not believable.
    let result = forwarded.verify(&ring(), &mut SeenNonces::default(), &policy());
    assert!(matches!(result, Err(Error::BrokenChain { link: 1, .. })));
}
