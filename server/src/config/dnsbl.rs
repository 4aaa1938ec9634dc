//! `[dnsbl]`: the node's DNSBL zone (RFC 5782), which mail and registration filters and
//! `rblcheck` ask (spec/firewalls.md, DNSBL).

use serde::{Deserialize, Serialize};

use crate::dnsbl::DnsblSettings;

/// `[dnsbl]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsblSection {
    /// Where to answer, UDP and TCP (`0.0.0.0:53` for the world; port 53 needs
    /// CAP_NET_BIND_SERVICE).
    pub listen: String,
    /// The address zone, delegated to this node (`bl.example.org`).
    pub zone: String,
    /// A domain zone (RHSBL) for the blocked domains (`dbl.example.org`); absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_zone: Option<String>,
    /// TTL of answers and of cached NXDOMAINs, in seconds.
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// The zone's name server as delegated (default `ns.<zone>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nameserver: Option<String>,
    /// The SOA's contact mailbox, dots for `@` (default `hostmaster.<zone>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostmaster: Option<String>,
    /// The node's public HTTP address, for TXT answers' lookup link (`https://bl.example.org`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookup_url: Option<String>,
}

fn default_ttl() -> u32 {
    60
}

impl DnsblSection {
    /// The settings, or what is wrong.
    pub fn settings(&self, node_domain: &str) -> Result<DnsblSettings, String> {
        let listen =
            self.listen.parse().map_err(|_| format!("[dnsbl] listen {:?} is not ADDRESS:PORT", self.listen))?;
        let zone = self.zone.trim_end_matches('.').to_ascii_lowercase();
        for name in std::iter::once(&zone).chain(&self.domain_zone) {
            if ostracon_protocol::ids::Domain::parse(name).is_err() || !name.contains('.') {
                return Err(format!("[dnsbl] zone {name:?} is not a domain name like bl.example.org"));
            }
        }
        if !(1..=86_400).contains(&self.ttl) {
            return Err(format!("[dnsbl] ttl {} is not 1 to 86400 seconds", self.ttl));
        }
        Ok(DnsblSettings {
            listen,
            nameserver: self.nameserver.clone().unwrap_or_else(|| format!("ns.{zone}")),
            hostmaster: self.hostmaster.clone().unwrap_or_else(|| format!("hostmaster.{zone}")),
            domain_zone: self.domain_zone.as_ref().map(|z| z.trim_end_matches('.').to_ascii_lowercase()),
            zone,
            ttl: self.ttl,
            lookup_url: self.lookup_url.clone(),
            node_domain: node_domain.to_owned(),
        })
    }
}
