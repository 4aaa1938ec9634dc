//! What a DNSBL query name asks about (RFC 5782 section 2): the labels below the zone, read as
//! a reversed IPv4 address, 32 reversed IPv6 nibbles, or (in the domain zone) a domain.
//!
//! Pure and bounded: a DNS name has at most 127 labels of 63 octets, and each is looked at once.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ostracon_protocol::ids::Domain;

/// The subject of a query inside a zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// The zone's own name (SOA, NS).
    Apex,
    /// An address, from `d.c.b.a.zone` or 32 nibbles.
    Ip(IpAddr),
    /// A domain, from `example.org.zone` (the domain zone only).
    Domain(Domain),
    /// A name in the zone that names nothing we list: NXDOMAIN.
    Nothing,
}

/// Reads the labels below an address zone, most specific first, as DNS gives them.
pub fn address_subject(labels: &[&[u8]]) -> Subject {
    match labels.len() {
        0 => Subject::Apex,
        4 => ipv4(labels).map_or(Subject::Nothing, |ip| Subject::Ip(IpAddr::V4(ip))),
        32 => ipv6(labels).map_or(Subject::Nothing, |ip| Subject::Ip(IpAddr::V6(ip))),
        _ => Subject::Nothing,
    }
}

/// Reads the labels below a domain zone as a domain name.
pub fn domain_subject(labels: &[&[u8]]) -> Subject {
    if labels.is_empty() {
        return Subject::Apex;
    }
    let Some(texts) = labels.iter().map(|label| std::str::from_utf8(label).ok()).collect::<Option<Vec<_>>>() else {
        return Subject::Nothing;
    };
    Domain::parse(&texts.join(".")).map_or(Subject::Nothing, Subject::Domain)
}

fn ipv4(labels: &[&[u8]]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    for (slot, label) in octets.iter_mut().rev().zip(labels) {
        // Decimal without leading zeros, as RFC 5782 writes addresses.
        if label.is_empty() || label.len() > 3 || (label.len() > 1 && label[0] == b'0') {
            return None;
        }
        *slot = std::str::from_utf8(label).ok()?.parse().ok()?;
    }
    Some(Ipv4Addr::from(octets))
}

fn ipv6(labels: &[&[u8]]) -> Option<Ipv6Addr> {
    let mut value: u128 = 0;
    for label in labels.iter().rev() {
        let [digit] = label else { return None };
        value = (value << 4) | u128::from(char::from(*digit).to_digit(16)?);
    }
    Some(Ipv6Addr::from(value))
}

/// RFC 5782 section 5: the address every DNSBL lists (`127.0.0.2`, and `::ffff:7f00:2`, the
/// same address mapped), so a client can check that the zone works.
pub fn is_test_listed(ip: IpAddr) -> bool {
    ostracon_protocol::ids::canonical_ip(ip) == IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))
}

/// RFC 5782 section 5: the address no DNSBL may list (`127.0.0.1`, `::ffff:7f00:1`).
pub fn is_test_unlisted(ip: IpAddr) -> bool {
    ostracon_protocol::ids::canonical_ip(ip) == IpAddr::V4(Ipv4Addr::LOCALHOST)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(name: &str) -> Vec<&[u8]> {
        name.split('.').filter(|l| !l.is_empty()).map(str::as_bytes).collect()
    }

    #[test]
    fn reversed_addresses_read_back() {
        assert_eq!(address_subject(&labels("7.2.0.192")), Subject::Ip("192.0.2.7".parse().unwrap()));
        assert_eq!(address_subject(&[]), Subject::Apex);
        let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2";
        assert_eq!(address_subject(&labels(v6)), Subject::Ip("2001:db8::1".parse().unwrap()));
        assert_eq!(address_subject(&labels(&v6.to_uppercase())), Subject::Ip("2001:db8::1".parse().unwrap()));
        for nothing in [
            "2.0.0",
            "256.0.0.1",
            "07.0.0.1",
            "a.b.c.d",
            "1.2.3.4.5",
            "",
            "x.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2",
        ] {
            let subject = address_subject(&labels(nothing));
            assert!(matches!(subject, Subject::Nothing | Subject::Apex), "{nothing}: {subject:?}");
        }
        assert_eq!(address_subject(&labels("10.0.0.1")), Subject::Ip("1.0.0.10".parse().unwrap()));
    }

    #[test]
    fn domains_and_the_test_entries() {
        assert_eq!(domain_subject(&labels("spam.example")), Subject::Domain(Domain::parse("spam.example").unwrap()));
        assert_eq!(domain_subject(&[b"bad label".as_slice()]), Subject::Nothing);
        assert!(is_test_listed("127.0.0.2".parse().unwrap()) && is_test_listed("::ffff:7f00:2".parse().unwrap()));
        assert!(is_test_unlisted("127.0.0.1".parse().unwrap()) && is_test_unlisted("::ffff:7f00:1".parse().unwrap()));
    }
}
