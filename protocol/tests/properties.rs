//! Property tests: every identifier and the incident model survive their text, JSON and
//! IODEF forms unchanged, and normalisation is idempotent.

mod support;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ostracon_protocol::envelope::{self, VerifyPolicy};
use ostracon_protocol::ids::{BareJid, Cidr, Domain, IncidentId, Offender};
use ostracon_protocol::incident::{Action, Category, Evidence, HistoryItem, Incident, ReportClaim, Severity, Status};
use ostracon_protocol::keys::KeyRing;
use ostracon_protocol::time::Timestamp;
use ostracon_protocol::xml::iodef::{Purpose, from_iodef, to_iodef};
use ostracon_protocol::xml::{parse_bounded, to_string};
use proptest::prelude::*;
use support::*;

fn domain() -> impl Strategy<Value = Domain> {
    // A label with hyphens in its third and fourth places is reserved (RFC 5891 §4.2.3.1):
    // `xn--` must be valid punycode, and the parser rightly refuses a random one.
    let label =
        "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?".prop_filter("no reserved label", |l: &String| l.get(2..4) != Some("--"));
    prop::collection::vec(label, 1..4).prop_map(|labels| Domain::parse(&(labels.join(".") + ".example")).unwrap())
}

fn jid() -> impl Strategy<Value = BareJid> {
    ("[a-zA-Z0-9._+=-]{1,20}", domain())
        .prop_map(|(local, domain)| BareJid::parse(&format!("{local}@{domain}")).unwrap())
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|n| IpAddr::V4(Ipv4Addr::from(n))),
        any::<u128>()
            .prop_filter("not IPv4-mapped", |n| Ipv6Addr::from(*n).to_ipv4_mapped().is_none())
            .prop_map(|n| IpAddr::V6(Ipv6Addr::from(n))),
    ]
}

fn cidr() -> impl Strategy<Value = Cidr> {
    prop_oneof![
        (any::<u32>(), 0u8..=32).prop_map(|(n, len)| Cidr::parse(&format!("{}/{len}", Ipv4Addr::from(n))).unwrap()),
        (any::<u128>(), 0u8..=128).prop_map(|(n, len)| Cidr::parse(&format!("{}/{len}", Ipv6Addr::from(n))).unwrap()),
    ]
}

fn offender() -> impl Strategy<Value = Offender> {
    prop_oneof![
        jid().prop_map(Offender::Jid),
        domain().prop_map(Offender::Domain),
        ip().prop_map(Offender::Ip),
        cidr().prop_map(Offender::Cidr),
    ]
}

fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[a-zA-Z0-9 .,!?é—€<>&'\"\\n\\t]{{0,{max}}}")).unwrap()
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (1_600_000_000i64..1_900_000_000).prop_map(|secs| Timestamp::from_unix(secs).unwrap())
}

fn pick<T: Copy + std::fmt::Debug + 'static>(all: &'static [T]) -> impl Strategy<Value = T> {
    prop::sample::select(all)
}

prop_compose! {
    fn incident()(
        issuer in domain(),
        uuid in any::<u128>(),
        status in pick(Status::ALL),
        category in pick(Category::ALL),
        severity in pick(Severity::ALL),
        offenders in prop::collection::vec(offender(), 0..12),
        start in timestamp(),
        duration in prop::option::of(0i64..100_000),
        delay in 0i64..100_000,
        ttl in prop::option::of(1i64..10_000_000),
        description in text(200),
        samples in prop::collection::vec(text(40), 0..3),
        hashes in prop::collection::vec(any::<[u8; 32]>(), 0..3),
        action in prop::option::of(pick(Action::ALL)),
        related in prop::option::of((domain(), any::<u128>())),
        history in prop::collection::vec((pick(Action::ALL), 0i64..100_000, text(30)), 0..3),
    ) -> Incident {
        let unique: BTreeSet<Offender> = BTreeSet::new();
        let mut seen = unique;
        let offenders = offenders.into_iter().filter(|o| seen.insert(o.clone())).collect();
        let mut evidence: Vec<Evidence> = samples.into_iter().map(Evidence::Sample).collect();
        evidence.extend(hashes.into_iter().map(|h| Evidence::Sha256(hex::encode(h))));
        Incident {
            id: IncidentId::new(issuer.clone(), uuid::Uuid::from_u128(uuid)),
            reporter: BareJid::from_domain(issuer),
            status, category, severity, offenders, start,
            end: duration.map(|d| start.plus_secs(d)),
            reported: start.plus_secs(delay),
            description, evidence, action,
            expires: ttl.map(|t| start.plus_secs(t)),
            related: related.map(|(d, u)| IncidentId::new(d, uuid::Uuid::from_u128(u))),
            history: history.into_iter().map(|(action, at, note)| HistoryItem { action, at: start.plus_secs(at), note }).collect(),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn identifiers_round_trip_through_text(jid in jid(), cidr in cidr(), ip in ip(), offender in offender()) {
        prop_assert_eq!(BareJid::parse(&jid.to_string()).unwrap(), jid);
        prop_assert_eq!(Cidr::parse(&cidr.to_string()).unwrap(), cidr);
        prop_assert_eq!(ostracon_protocol::ids::parse_ip(&ip.to_string()).unwrap(), ip);
        prop_assert_eq!(Offender::parse(&offender.to_string()).unwrap(), offender.clone());
        let json = serde_json::to_string(&offender).unwrap();
        prop_assert_eq!(serde_json::from_str::<Offender>(&json).unwrap(), offender);
    }

    #[test]
    fn jid_normalisation_is_idempotent(raw in "[a-zA-ZÀ-ÖØ-öø-ÿ0-9._-]{1,12}@[a-zA-Z0-9]{1,10}\\.[a-zA-Z]{2,5}(/[a-z]{1,5})?") {
        let once = BareJid::parse(&raw).unwrap();
        let twice = BareJid::parse(&once.to_string()).unwrap();
        prop_assert_eq!(&once, &twice);
        prop_assert_eq!(once.to_string(), once.to_string().to_lowercase());
    }

    #[test]
    fn incidents_round_trip_through_json_and_iodef(incident in incident()) {
        prop_assume!(incident.validate().is_ok());
        let json = serde_json::to_string(&incident).unwrap();
        prop_assert_eq!(&serde_json::from_str::<Incident>(&json).unwrap(), &incident);

        let xml = to_string(&to_iodef(&incident, Purpose::Reporting));
        let parsed = from_iodef(&parse_bounded(&xml).unwrap());
        prop_assert_eq!(parsed.as_ref(), Ok(&incident), "{}", xml);
    }

    #[test]
    fn any_signed_incident_verifies_and_any_flipped_payload_bit_does_not(incident in incident(), bit in any::<prop::sample::Index>()) {
        prop_assume!(incident.validate().is_ok());
        let signer = incident.reporter.clone();
        let signing_key = key(0x42);
        let at = incident.reported;
        let chain = envelope::sign(&ReportClaim(incident.clone()), &signing_key, &signer, at, nonce(1)).unwrap();
        let mut ring = KeyRing::new();
        ring.insert(signer, signing_key.public());
        let verified = chain.clone().verify(&ring, &mut SeenNonces::default(), &VerifyPolicy::at(at)).unwrap();
        prop_assert_eq!(&verified.value().0, &incident);

        let mut links = chain.links().to_vec();
        let index = bit.index(links[0].payload.len() * 8);
        links[0].payload[index / 8] ^= 1 << (index % 8);
        let tampered = ostracon_protocol::Unverified::<ReportClaim>::new(links).unwrap();
        prop_assert!(tampered.verify(&ring, &mut SeenNonces::default(), &VerifyPolicy::at(at)).is_err());
    }
}
