//! RTBL item ids in the xmppbl.org conventions, so Prosody's and ejabberd's mod_muc_rtbl and
//! mod_anti_spam consume our lists unchanged.
//!
//! In these lists the pubsub item id *is* the data: lowercase hex SHA-256 of a normalised bare
//! JID or bare domain (`*_sha256` nodes), a plaintext domain, or a CIDR block. The hash is
//! obfuscation, not privacy: anyone who knows a JID can test whether it is listed.

use sha2::{Digest as _, Sha256};

use crate::ids::{BareJid, Domain, Offender};

/// MUC bans: SHA-256 of bare JIDs or bare domains.
pub const NODE_MUC_BANS_SHA256: &str = "muc_bans_sha256";
/// Spam sources: plaintext domains.
pub const NODE_SPAM_SOURCE_DOMAINS: &str = "spam_source_domains";
/// Spam sources: CIDR blocks.
pub const NODE_SPAM_SOURCE_IPS: &str = "spam_source_ips";
/// Spam sources: SHA-256 of bare JIDs.
pub const NODE_SPAM_SOURCE_JIDS_SHA256: &str = "spam_source_jids_sha256";

/// The well-known RTBL nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RtblNode {
    /// `muc_bans_sha256`.
    MucBansSha256,
    /// `spam_source_domains`.
    SpamSourceDomains,
    /// `spam_source_ips`.
    SpamSourceIps,
    /// `spam_source_jids_sha256`.
    SpamSourceJidsSha256,
}

impl RtblNode {
    /// Every node.
    pub const ALL: [Self; 4] =
        [Self::MucBansSha256, Self::SpamSourceDomains, Self::SpamSourceIps, Self::SpamSourceJidsSha256];

    /// The pubsub node name.
    pub fn name(self) -> &'static str {
        match self {
            Self::MucBansSha256 => NODE_MUC_BANS_SHA256,
            Self::SpamSourceDomains => NODE_SPAM_SOURCE_DOMAINS,
            Self::SpamSourceIps => NODE_SPAM_SOURCE_IPS,
            Self::SpamSourceJidsSha256 => NODE_SPAM_SOURCE_JIDS_SHA256,
        }
    }

    /// The node with this pubsub name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|node| node.name() == name)
    }

    /// The entry kinds (`ip`, `cidr`, `jid`, `domain`) this node carries.
    pub fn entry_kinds(self) -> &'static [&'static str] {
        match self {
            Self::MucBansSha256 => &["jid", "domain"],
            Self::SpamSourceDomains => &["domain"],
            Self::SpamSourceIps => &["ip", "cidr"],
            Self::SpamSourceJidsSha256 => &["jid"],
        }
    }

    /// The item id for `offender` on this node, or `None` if the node does not carry that kind.
    pub fn item_id(self, offender: &Offender) -> Option<String> {
        match (self, offender) {
            (Self::MucBansSha256 | Self::SpamSourceJidsSha256, Offender::Jid(jid)) => Some(jid_item_id(jid)),
            (Self::MucBansSha256, Offender::Domain(domain)) => Some(domain_item_id(domain)),
            (Self::SpamSourceDomains, Offender::Domain(domain)) => Some(domain.to_string()),
            (Self::SpamSourceIps, Offender::Ip(ip)) => Some(format!("{ip}/{}", if ip.is_ipv4() { 32 } else { 128 })),
            (Self::SpamSourceIps, Offender::Cidr(cidr)) => Some(cidr.to_string()),
            _ => None,
        }
    }
}

/// Lowercase hex SHA-256 of UTF-8 text, with no newline and no salt.
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The `*_sha256` item id of a bare JID (already normalised by [`BareJid`]).
pub fn jid_item_id(jid: &BareJid) -> String {
    sha256_hex(&jid.to_string())
}

/// The `muc_bans_sha256` item id of a whole domain.
pub fn domain_item_id(domain: &Domain) -> String {
    sha256_hex(domain.as_str())
}

/// Item ids a consumer checks for one JID: the JID's own hash and its domain's, as Prosody and ejabberd do.
pub fn lookup_ids(jid: &BareJid) -> [String; 2] {
    [jid_item_id(jid), domain_item_id(jid.domain())]
}
