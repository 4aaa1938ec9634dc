//! What a peer's report may put on our lists (spec/reputation.md, Scope).
//!
//! A buddy that turns hostile, or is compromised, must not be able to list everything: a CIDR
//! wider than the configured prefix (by default /24 for IPv4, /48 for IPv6), a special-purpose
//! range (unspecified, loopback, link-local, multicast, broadcast, and the documentation
//! ranges unless a test allows them), our own domain and its users, our component, our buddies'
//! domains, and what the operator declared protected (the XMPP server's addresses, say) are
//! never listed from a peer's report. Such a contribution is refused with a log leaf saying
//! why, and waits for the operator, who may list it directly. The operator's own incidents are
//! not bound by these rules.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use ostracon_protocol::ids::{Cidr, Domain, Offender};

/// The scope rules for peers' reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerScope {
    /// The widest IPv4 block a peer may list (the smallest prefix length accepted).
    pub widest_ipv4_prefix: u8,
    /// The widest IPv6 block a peer may list.
    pub widest_ipv6_prefix: u8,
    /// Refuse the documentation ranges (RFC 5737, RFC 3849). Tests, which use them, turn this off.
    pub refuse_documentation: bool,
    /// Domains never listed from a peer, with their subdomains and their users: ours and our
    /// component's (added by the node), and any the operator names.
    pub protected_domains: Vec<Domain>,
    /// Addresses and blocks never listed from a peer, nor any block that contains one.
    pub protected_networks: Vec<Cidr>,
    /// The brake: entries one peer's reports may list or delist per hour; the rest waits for
    /// the operator (`ledger/brake.rs`).
    pub hourly_budget: u32,
}

impl Default for PeerScope {
    fn default() -> Self {
        Self {
            widest_ipv4_prefix: 24,
            widest_ipv6_prefix: 48,
            refuse_documentation: true,
            protected_domains: Vec::new(),
            protected_networks: Vec::new(),
            hourly_budget: 1_000,
        }
    }
}

/// Ranges no list should ever name: listing them blocks nobody or everybody.
fn special_purpose(net: &IpNet) -> Option<&'static str> {
    let contains_or_within = |special: IpNet| special.contains(net) || net.contains(&special);
    let special: [(IpNet, &str); 9] = [
        (net_of(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8), "the unspecified range"),
        (net_of(IpAddr::V4(Ipv4Addr::LOCALHOST), 8), "loopback"),
        (net_of(IpAddr::V4(Ipv4Addr::new(169, 254, 0, 0)), 16), "link-local"),
        (net_of(IpAddr::V4(Ipv4Addr::new(224, 0, 0, 0)), 4), "multicast"),
        (net_of(IpAddr::V4(Ipv4Addr::BROADCAST), 32), "broadcast"),
        (net_of(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 128), "the unspecified address"),
        (net_of(IpAddr::V6(Ipv6Addr::LOCALHOST), 128), "loopback"),
        (net_of(IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)), 10), "link-local"),
        (net_of(IpAddr::V6(Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0)), 8), "multicast"),
    ];
    special.into_iter().find(|(range, _)| contains_or_within(*range)).map(|(_, what)| what)
}

fn documentation(net: &IpNet) -> bool {
    let ranges = [
        net_of(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 0)), 24),
        net_of(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 0)), 24),
        net_of(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 0)), 24),
        net_of(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0)), 32),
    ];
    ranges.iter().any(|range| range.contains(net) || net.contains(range))
}

fn net_of(addr: IpAddr, prefix: u8) -> IpNet {
    IpNet::new(addr, prefix).unwrap_or_else(|_| IpNet::from(addr))
}

impl PeerScope {
    /// Why a peer's report may not list `offender`, if it may not; `buddies` are our buddies'
    /// server domains.
    pub fn refusal(&self, offender: &Offender, buddies: &[Domain]) -> Option<String> {
        match offender {
            Offender::Ip(ip) => self.network_refusal(&IpNet::from(*ip)),
            Offender::Cidr(cidr) => {
                let net = cidr.net();
                let widest = if net.addr().is_ipv4() { self.widest_ipv4_prefix } else { self.widest_ipv6_prefix };
                if net.prefix_len() < widest {
                    return Some(format!("out of a peer's scope: wider than /{widest}; waits for the operator"));
                }
                self.network_refusal(&net)
            }
            Offender::Jid(jid) => self.protected(jid.domain()).map(|domain| {
                format!("out of a peer's scope: a user of our own domain {domain}; waits for the operator")
            }),
            Offender::Domain(domain) => {
                if let Some(ours) = self.protected(domain) {
                    return Some(format!("out of a peer's scope: our own domain {ours}"));
                }
                buddies.iter().find(|buddy| domain.is_within(buddy) || buddy.is_within(domain)).map(|buddy| {
                    format!("out of a peer's scope: the domain of our buddy {buddy}; waits for the operator")
                })
            }
        }
    }

    fn protected(&self, domain: &Domain) -> Option<&Domain> {
        self.protected_domains.iter().find(|ours| domain.is_within(ours) || ours.is_within(domain))
    }

    fn network_refusal(&self, net: &IpNet) -> Option<String> {
        if let Some(what) = special_purpose(net) {
            return Some(format!("out of a peer's scope: {what}"));
        }
        if self.refuse_documentation && documentation(net) {
            return Some("out of a peer's scope: a documentation range".to_owned());
        }
        self.protected_networks
            .iter()
            .find(|ours| ours.net().contains(net) || net.contains(&ours.net()))
            .map(|ours| format!("out of a peer's scope: a protected address ({ours}); waits for the operator"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(scope: &PeerScope, offender: &str) -> bool {
        let buddies = [Domain::parse("buddy.example").unwrap()];
        scope.refusal(&Offender::parse(offender).unwrap(), &buddies).is_some()
    }

    #[test]
    fn peers_cannot_list_everything_or_what_is_ours() {
        let scope = PeerScope {
            protected_domains: vec![Domain::parse("ours.example").unwrap()],
            protected_networks: vec![Cidr::parse("198.18.0.10/32").unwrap()],
            ..PeerScope::default()
        };
        for bad in [
            "0.0.0.0/0",
            "::/0",
            "10.0.0.0/8",
            "2001:4860::/32",
            "127.0.0.1",
            "::1",
            "224.0.0.1",
            "169.254.1.1",
            "192.0.2.7",
            "2001:db8::1",
            "ours.example",
            "muc.ours.example",
            "someone@ours.example",
            "buddy.example",
            "198.18.0.10",
            "198.18.0.0/24",
        ] {
            assert!(refused(&scope, bad), "{bad} must be out of scope");
        }
        for fine in
            ["198.18.1.7", "198.18.1.0/24", "2001:4860:1::/48", "bot@spam.example", "spam.example", "bot@buddy.example"]
        {
            assert!(!refused(&scope, fine), "{fine} is in scope");
        }
        let tests = PeerScope { refuse_documentation: false, ..PeerScope::default() };
        assert!(!refused(&tests, "192.0.2.7"));
    }
}
