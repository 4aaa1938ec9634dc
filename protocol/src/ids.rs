//! Validated identifiers: bare JIDs, domains, IP addresses and CIDR blocks, incident ids and key ids.
//!
//! Every constructor normalises, so two spellings of one identifier compare equal and hash
//! to the same RTBL item id. JIDs are normalised the way Prosody and ejabberd do before
//! hashing for xmppbl.org lists: Unicode lower-case, then NFKC, resource removed.
//! PRECIS (RFC 7622, RFC 8264/8265) is the gate: control, format, bidi-override and
//! unassigned code points are refused in every part, a localpart must be an IdentifierClass
//! string that enforcement leaves as it is, and a resource an OpaqueString.
//! Everything here serialises as a plain string and validates again when deserialised,
//! so a signed claim can never carry an identifier the constructors would refuse.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use precis_profiles::precis_core::profile::Profile as _;
use precis_profiles::precis_core::{DerivedPropertyValue, FreeformClass, StringClass as _};
use precis_profiles::{OpaqueString, UsernameCaseMapped};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha1::{Digest as _, Sha1};
use unicode_normalization::UnicodeNormalization;
use uuid::Uuid;

use crate::error::{Error, Excerpt, Result};
use crate::limits::{MAX_DOMAIN_BYTES, MAX_JID_PART_BYTES, MAX_LABEL_BYTES};

/// Implements `Display`, `FromStr`, `Serialize` and `Deserialize` through `parse` and `as_str`-like text.
macro_rules! string_identifier {
    ($ty:ty) => {
        impl FromStr for $ty {
            type Err = Error;
            fn from_str(text: &str) -> Result<Self> {
                Self::parse(text)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// The UUID namespace of ids mapped from other implementations' local incident ids.
const FOREIGN_ID_NAMESPACE: &[u8; 16] = b"ostracon/incid:0";

/// Lower-cases and NFKC-normalises one JID part.
///
/// NFKC can produce upper-case letters (U+210C becomes `H`), so the pair runs twice; the
/// second pass reaches a fixed point, which keeps normalisation idempotent.
fn prep(part: &str) -> String {
    let once: String = part.to_lowercase().nfkc().collect();
    once.to_lowercase().nfkc().collect()
}

/// Refuses code points PRECIS disallows in every string class (RFC 8264 §8): controls,
/// default-ignorables (bidi embeddings, overrides and isolates, zero-width characters, soft
/// hyphen, BOM), noncharacters, private use, and code points unassigned in the PRECIS tables.
/// Runs on the raw text, before [`prep`] folds anything away.
fn refuse_disallowed(raw: &str) -> std::result::Result<(), &'static str> {
    let class = FreeformClass::default();
    for c in raw.chars() {
        match class.get_value_from_char(c) {
            DerivedPropertyValue::Unassigned => return Err("unassigned code point"),
            DerivedPropertyValue::Disallowed => return Err("control, format or bidi-override character"),
            _ => {}
        }
    }
    Ok(())
}

/// True if `prepped` (the output of [`prep`]) is a PRECIS UsernameCaseMapped string
/// (RFC 8265 §3.3: IdentifierClass, the context rules, the Bidi rule) that enforcement leaves
/// unchanged: PRECIS is a gate here, and the stored form stays `prep`'s, so hashes of
/// accepted JIDs do not move.
fn is_precis_identifier(prepped: &str) -> bool {
    matches!(UsernameCaseMapped::new().enforce(prepped), Ok(ref enforced) if enforced == prepped)
}

/// `name` with every A-label (`xn--…`) decoded to its U-label: RFC 7622 §3.2 compares
/// domainparts as U-labels, the form XMPP servers put in `from`, so `xn--bcher-kva.example`
/// and `bücher.example` are one domain (one entry, one hash). Only canonical A-labels of
/// non-ASCII labels are taken; the U-label is then checked like any typed label.
fn to_u_labels(name: &str) -> std::result::Result<String, &'static str> {
    const ACE: &str = "xn--";
    if !name.split('.').any(|label| label.starts_with(ACE)) {
        return Ok(name.to_owned());
    }
    let labels = name.split('.').map(|label| {
        let Some(encoded) = label.strip_prefix(ACE) else { return Ok(label.to_owned()) };
        let decoded = idna::punycode::decode_to_string(encoded).ok_or("not a valid A-label (punycode)")?;
        if decoded.is_ascii() || idna::punycode::encode_str(&decoded).as_deref() != Some(encoded) {
            return Err("not the canonical A-label of an internationalised label");
        }
        Ok(prep(&decoded))
    });
    Ok(labels.collect::<std::result::Result<Vec<_>, _>>()?.join("."))
}

/// A DNS-style domain name: lower-case, no trailing dot, labels of letters, digits, `-` and `_`
/// (internationalised labels as U-labels).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Domain(String);

impl Domain {
    /// Validates and normalises a domain name.
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = |reason| Error::InvalidDomain { value: Excerpt::new(text), reason };
        if text.len() > MAX_DOMAIN_BYTES * 4 {
            return Err(invalid("too long"));
        }
        refuse_disallowed(text).map_err(invalid)?;
        let prepped = prep(text);
        let name = prepped.strip_suffix('.').unwrap_or(&prepped);
        if name.is_empty() {
            return Err(invalid("empty"));
        }
        let name = &to_u_labels(name).map_err(invalid)?;
        if name.len() > MAX_DOMAIN_BYTES {
            return Err(invalid("longer than 253 bytes"));
        }
        for label in name.split('.') {
            if label.is_empty() {
                return Err(invalid("empty label"));
            }
            if label.len() > MAX_LABEL_BYTES {
                return Err(invalid("label longer than 63 bytes"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(invalid("label starts or ends with '-'"));
            }
            if !label.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '_') {
                return Err(invalid("character not allowed in a domain"));
            }
            if !label.is_ascii() && !is_precis_identifier(label) {
                return Err(invalid("label is not a valid internationalised label"));
            }
        }
        // RFC 3696 §2: a top-level label is never all digits, so `192.0.2.300` is a bad IP, not a domain.
        if name.rsplit('.').next().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit())) {
            return Err(invalid("top-level label is all digits"));
        }
        Ok(Self(name.to_owned()))
    }

    /// The normalised text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True if `self` is `other` or a subdomain of it.
    pub fn is_within(&self, other: &Self) -> bool {
        self.0 == other.0
            || (self.0.len() > other.0.len()
                && self.0.ends_with(&other.0)
                && self.0.as_bytes()[self.0.len() - other.0.len() - 1] == b'.')
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Domain({})", self.0)
    }
}

string_identifier!(Domain);

/// Characters RFC 7622 (via nodeprep) forbids in a localpart.
fn is_forbidden_in_localpart(c: char) -> bool {
    matches!(c, '"' | '&' | '\'' | '/' | ':' | '<' | '>' | '@') || c.is_whitespace() || c.is_control()
}

/// A bare JID (`local@domain` or a domain JID), normalised, with any resource removed.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BareJid {
    local: Option<String>,
    domain: Domain,
}

impl BareJid {
    /// Parses a JID, dropping any resource, and normalises it.
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = |reason| Error::InvalidJid { value: Excerpt::new(text), reason };
        let (without_resource, resource) = match text.split_once('/') {
            Some((bare, resource)) => (bare, Some(resource)),
            None => (text, None),
        };
        if let Some(resource) = resource {
            if resource.is_empty() {
                return Err(invalid("empty resource"));
            }
            if resource.len() > MAX_JID_PART_BYTES {
                return Err(invalid("resource longer than 1023 bytes"));
            }
            // RFC 7622 §3.4: a resourcepart is a PRECIS OpaqueString. Checked, then dropped.
            refuse_disallowed(resource).map_err(invalid)?;
            if OpaqueString::new().enforce(resource).is_err() {
                return Err(invalid("character not allowed in a resource"));
            }
        }
        let (local, domain) = match without_resource.split_once('@') {
            Some((local, domain)) => (Some(local), domain),
            None => (None, without_resource),
        };
        let local = match local {
            None => None,
            Some("") => return Err(invalid("empty localpart")),
            Some(raw) => {
                let prepped = prep(raw);
                if prepped.len() > MAX_JID_PART_BYTES {
                    return Err(invalid("localpart longer than 1023 bytes"));
                }
                if prepped.chars().any(is_forbidden_in_localpart) {
                    return Err(invalid("character not allowed in a localpart"));
                }
                refuse_disallowed(raw).map_err(invalid)?;
                if !is_precis_identifier(&prepped) {
                    return Err(invalid("localpart is not a PRECIS identifier"));
                }
                Some(prepped)
            }
        };
        let domain = Domain::parse(domain).map_err(|_| invalid("invalid domainpart"))?;
        Ok(Self { local, domain })
    }

    /// A domain JID.
    pub fn from_domain(domain: Domain) -> Self {
        Self { local: None, domain }
    }

    /// The localpart, if any.
    pub fn local(&self) -> Option<&str> {
        self.local.as_deref()
    }

    /// The domainpart.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// True for a JID without a localpart (a server or component).
    pub fn is_domain(&self) -> bool {
        self.local.is_none()
    }
}

impl fmt::Display for BareJid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.local {
            Some(local) => write!(f, "{local}@{}", self.domain),
            None => write!(f, "{}", self.domain),
        }
    }
}

impl fmt::Debug for BareJid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BareJid({self})")
    }
}

string_identifier!(BareJid);

/// Parses an IP address; IPv4-mapped IPv6 addresses become IPv4 so one host has one form.
pub fn parse_ip(text: &str) -> Result<IpAddr> {
    let ip = IpAddr::from_str(text.trim()).map_err(|_| Error::InvalidIp { value: Excerpt::new(text) })?;
    Ok(canonical_ip(ip))
}

/// Maps IPv4-mapped IPv6 addresses to IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// A CIDR block with its host bits cleared.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr(IpNet);

impl Cidr {
    /// Parses `addr/len`; host bits are cleared (`192.0.2.7/24` becomes `192.0.2.0/24`).
    pub fn parse(text: &str) -> Result<Self> {
        let trimmed = text.trim();
        let invalid = |reason| Error::InvalidCidr { value: Excerpt::new(text), reason };
        let (addr, len) = trimmed.split_once('/').ok_or_else(|| invalid("missing /prefix-length"))?;
        let addr = parse_ip(addr).map_err(|_| invalid("invalid address"))?;
        if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("invalid prefix length"));
        }
        let len: u8 = len.parse().map_err(|_| invalid("invalid prefix length"))?;
        let net = IpNet::new(addr, len).map_err(|_| invalid("prefix length too long for the address family"))?;
        Ok(Self(net.trunc()))
    }

    /// Wraps an `IpNet`, clearing host bits.
    pub fn from_net(net: IpNet) -> Self {
        Self(net.trunc())
    }

    /// The network.
    pub fn net(&self) -> IpNet {
        self.0
    }

    /// True if the block covers `ip`.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.0.contains(&canonical_ip(*ip))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cidr({})", self.0)
    }
}

string_identifier!(Cidr);

/// An incident id: the issuing node's domain and a UUID, written `issuer:uuid`.
///
/// XEP-0268 carries it as `<IncidentID name='issuer'>uuid</IncidentID>`; the pair is the
/// deduplication key everywhere.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IncidentId {
    issuer: Domain,
    uuid: Uuid,
}

impl IncidentId {
    /// Builds an id from its parts; the caller draws the UUID (the crate has no randomness).
    pub fn new(issuer: Domain, uuid: Uuid) -> Self {
        Self { issuer, uuid }
    }

    /// Parses our text form, `issuer:uuid` (strict: a foreign local id has no text form here
    /// but the UUID it maps to).
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = |reason| Error::InvalidIncidentId { value: Excerpt::new(text), reason };
        let (issuer, uuid) = text.rsplit_once(':').ok_or_else(|| invalid("expected issuer:uuid"))?;
        if uuid.trim().len() != 36 || Uuid::parse_str(uuid.trim()).is_err() {
            return Err(invalid("not a hyphenated UUID"));
        }
        Self::from_parts(issuer, uuid)
    }

    /// Builds an id from the XEP-0268 `IncidentID@name` and element text.
    ///
    /// Ours are UUIDs. Other implementations use other local ids (Metronome: 16 letters and
    /// digits); such an id is mapped to a name-based UUID (version 5 layout, SHA-1 over the
    /// issuer and the id), so the same foreign incident always gets the same id here. Local ids
    /// are 1 to 64 characters of letters, digits, `.`, `_` and `-`.
    pub fn from_parts(issuer: &str, local: &str) -> Result<Self> {
        let joined = || Excerpt::new(&format!("{issuer}:{local}"));
        let issuer = Domain::parse(issuer)
            .map_err(|_| Error::InvalidIncidentId { value: joined(), reason: "issuer is not a domain" })?;
        let local = local.trim();
        if local.len() == 36
            && let Ok(uuid) = Uuid::parse_str(local)
        {
            return Ok(Self { issuer, uuid });
        }
        let foreign = !local.is_empty()
            && local.len() <= 64
            && local.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !foreign {
            return Err(Error::InvalidIncidentId { value: joined(), reason: "not a UUID or a local incident id" });
        }
        let digest = Sha1::new()
            .chain_update(FOREIGN_ID_NAMESPACE)
            .chain_update(issuer.as_str().as_bytes())
            .chain_update(b":")
            .chain_update(local.as_bytes())
            .finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        Ok(Self { issuer, uuid: uuid::Builder::from_sha1_bytes(bytes).into_uuid() })
    }

    /// The issuing node's domain.
    pub fn issuer(&self) -> &Domain {
        &self.issuer
    }

    /// The UUID part.
    pub fn uuid(&self) -> Uuid {
        self.uuid
    }
}

impl fmt::Display for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.issuer, self.uuid.hyphenated())
    }
}

impl fmt::Debug for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IncidentId({self})")
    }
}

string_identifier!(IncidentId);

/// A key id: the first 16 bytes of SHA-256 over the raw 32-byte public key, as 32 lowercase hex digits.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(String);

impl KeyId {
    /// Validates a key id.
    pub fn parse(text: &str) -> Result<Self> {
        if text.len() == 32 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(Self(text.to_owned()))
        } else {
            Err(Error::InvalidKeyId { value: Excerpt::new(text) })
        }
    }

    /// Builds the id from the digest prefix (used by [`crate::keys`]).
    pub(crate) fn from_digest_prefix(prefix: &[u8]) -> Self {
        Self(hex::encode(prefix))
    }

    /// The hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

string_identifier!(KeyId);

/// What an incident names as the source of abuse.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase", deny_unknown_fields)]
pub enum Offender {
    /// An account (bare JID with a localpart).
    Jid(BareJid),
    /// A whole server.
    Domain(Domain),
    /// One address.
    Ip(#[serde(with = "ip_text")] IpAddr),
    /// An address block.
    Cidr(Cidr),
}

impl Offender {
    /// Reads the forms an operator types: an IP, a CIDR, `user@domain` or a domain.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        if let Ok(ip) = parse_ip(text) {
            return Ok(Self::Ip(ip));
        }
        // `address/digits` is a CIDR block, valid or not; anything else with a slash is a JID resource.
        if let Some((addr, len)) = text.split_once('/')
            && parse_ip(addr).is_ok()
            && !len.is_empty()
            && len.bytes().all(|b| b.is_ascii_digit())
        {
            return Cidr::parse(text).map(Self::Cidr);
        }
        if text.contains('@') || text.contains('/') {
            // An '@' may sit in a resource; a JID without a localpart names the server.
            return BareJid::parse(text).map(Self::from_jid);
        }
        Domain::parse(text).map(Self::Domain)
    }

    /// Builds an offender from a JID: a domain JID names the server, others the account.
    pub fn from_jid(jid: BareJid) -> Self {
        if jid.is_domain() { Self::Domain(jid.domain().clone()) } else { Self::Jid(jid) }
    }

    /// The kind as a lowercase word (`jid`, `domain`, `ip`, `cidr`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Jid(_) => "jid",
            Self::Domain(_) => "domain",
            Self::Ip(_) => "ip",
            Self::Cidr(_) => "cidr",
        }
    }
}

impl fmt::Display for Offender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Jid(jid) => jid.fmt(f),
            Self::Domain(domain) => domain.fmt(f),
            Self::Ip(ip) => ip.fmt(f),
            Self::Cidr(cidr) => cidr.fmt(f),
        }
    }
}

/// Serde for IP addresses through [`parse_ip`], so mapped forms are refused in claims.
mod ip_text {
    use std::net::IpAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(ip: &IpAddr, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(ip)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<IpAddr, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        let ip = super::parse_ip(&text).map_err(serde::de::Error::custom)?;
        if ip.to_string() == text {
            Ok(ip)
        } else {
            Err(serde::de::Error::custom(format!("IP address {text:?} is not in canonical form")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jid_normalisation_matches_prosody_and_ejabberd() {
        let jid = BareJid::parse("Spammer@Bad.Example/Resource").unwrap();
        assert_eq!(jid.to_string(), "spammer@bad.example");
        assert_eq!(BareJid::parse("bad.example.").unwrap().to_string(), "bad.example");
        // NFKC folds compatibility forms such as the fullwidth letter.
        assert_eq!(BareJid::parse("ｕser@example.org").unwrap().to_string(), "user@example.org");
    }

    #[test]
    fn invalid_jids_are_refused_with_a_reason() {
        for (input, reason) in [
            ("@example.org", "empty localpart"),
            ("a b@example.org", "character not allowed in a localpart"),
            ("a<b@example.org", "character not allowed in a localpart"),
            ("user@", "invalid domainpart"),
            ("user@exa mple.org", "invalid domainpart"),
            ("user@example.org/", "empty resource"),
            ("", "invalid domainpart"),
        ] {
            match BareJid::parse(input) {
                Err(Error::InvalidJid { reason: got, .. }) => assert_eq!(got, reason, "{input}"),
                other => panic!("{input}: {other:?}"),
            }
        }
        let long_local = format!("{}@example.org", "a".repeat(1024));
        assert!(BareJid::parse(&long_local).is_err());
    }

    #[test]
    fn invalid_domains_are_refused() {
        for input in [
            "",
            ".",
            "a..b",
            "-a.example",
            "a-.example",
            "exa$mple.org",
            "192.0.2.300",
            "localhost.1",
            &"a".repeat(64),
            &"a.".repeat(130),
        ] {
            assert!(Domain::parse(input).is_err(), "{input}");
        }
    }

    #[test]
    fn a_labels_and_u_labels_are_one_domain() {
        let typed = Domain::parse("bücher.example").unwrap();
        for form in ["xn--bcher-kva.example", "XN--BCHER-KVA.example.", "Bücher.Example"] {
            assert_eq!(Domain::parse(form).unwrap(), typed, "{form}");
        }
        assert_eq!(typed.as_str(), "bücher.example");
        let jid = BareJid::parse("Spammer@xn--bcher-kva.example").unwrap();
        assert_eq!(jid.to_string(), "spammer@bücher.example", "the domainpart is a U-label");
        assert_eq!(Offender::parse("xn--bcher-kva.example").unwrap(), Offender::Domain(typed));
        // Not an A-label of a non-ASCII label (`xn--abc-` encodes plain `abc`), or not a valid
        // one: refused, not guessed.
        for bad in ["xn--abc-.example", "xn--example-.org", "xn--.example", "xn--bcher-kv.example"] {
            assert!(Domain::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn domain_containment() {
        let parent = Domain::parse("example.org").unwrap();
        assert!(Domain::parse("muc.example.org").unwrap().is_within(&parent));
        assert!(parent.is_within(&parent));
        assert!(!Domain::parse("badexample.org").unwrap().is_within(&parent));
    }

    #[test]
    fn ip_and_cidr_parsing() {
        assert_eq!(parse_ip("::ffff:192.0.2.1").unwrap().to_string(), "192.0.2.1");
        assert!(parse_ip("192.0.2.256").is_err());
        assert!(parse_ip("192.0.2").is_err());
        assert_eq!(Cidr::parse("192.0.2.7/24").unwrap().to_string(), "192.0.2.0/24");
        assert_eq!(Cidr::parse("2001:db8::1/32").unwrap().to_string(), "2001:db8::/32");
        for bad in ["192.0.2.0/33", "192.0.2.0", "192.0.2.0/", "192.0.2.0/-1", "2001:db8::/129", "x/8", "10.0.0.0/08x"]
        {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
        let block = Cidr::parse("192.0.2.0/24").unwrap();
        assert!(block.contains(&parse_ip("192.0.2.99").unwrap()));
        assert!(!block.contains(&parse_ip("192.0.3.1").unwrap()));
    }

    #[test]
    fn incident_ids() {
        let id = IncidentId::parse("ops.example:0F6C1C52-7D3E-4E0A-9A51-2B1F4A7E9C10").unwrap();
        assert_eq!(id.to_string(), "ops.example:0f6c1c52-7d3e-4e0a-9a51-2b1f4a7e9c10");
        assert!(IncidentId::parse("ops.example").is_err());
        assert!(IncidentId::parse("ops.example:not-a-uuid").is_err());
        assert!(IncidentId::parse("bad domain:0f6c1c52-7d3e-4e0a-9a51-2b1f4a7e9c10").is_err());
        assert!(IncidentId::parse("ops.example:0f6c1c527d3e4e0a9a512b1f4a7e9c10").is_err());
        // Another implementation's local id (Metronome's) maps to one stable UUID.
        let foreign = IncidentId::from_parts("chat.example.net", "tR4qW9zXbK2m6413").unwrap();
        assert_eq!(foreign, IncidentId::from_parts("chat.example.net", "tR4qW9zXbK2m6413").unwrap());
        assert_ne!(foreign, IncidentId::from_parts("other.example", "tR4qW9zXbK2m6413").unwrap());
        assert_eq!(foreign.uuid().get_version_num(), 5);
        assert_eq!(IncidentId::parse(&foreign.to_string()).unwrap(), foreign);
        assert!(IncidentId::from_parts("ops.example", "has space").is_err());
        assert!(IncidentId::from_parts("ops.example", &"a".repeat(65)).is_err());
    }

    #[test]
    fn offender_forms() {
        assert_eq!(Offender::parse("192.0.2.1").unwrap().kind(), "ip");
        assert_eq!(Offender::parse("192.0.2.0/24").unwrap().kind(), "cidr");
        assert_eq!(Offender::parse("bot@bad.example/res").unwrap().kind(), "jid");
        assert_eq!(Offender::parse("bad.example").unwrap().kind(), "domain");
        assert!(Offender::parse("192.0.2.0/40").is_err());
        // Found by the `identifiers` fuzz target: the '@' is in the resource.
        assert_eq!(Offender::parse("F/x@y").unwrap(), Offender::Domain(Domain::parse("f").unwrap()));
        let json = serde_json::to_string(&Offender::parse("2001:db8::1").unwrap()).unwrap();
        assert_eq!(json, r#"{"kind":"ip","value":"2001:db8::1"}"#);
        assert!(serde_json::from_str::<Offender>(r#"{"kind":"ip","value":"::ffff:192.0.2.1"}"#).is_err());
        assert!(serde_json::from_str::<Offender>(r#"{"kind":"jid","value":"a b@x"}"#).is_err());
        assert!(serde_json::from_str::<Offender>(r#"{"kind":"ip","value":"192.0.2.1","x":1}"#).is_err());
    }

    #[test]
    fn key_ids() {
        assert!(KeyId::parse("0123456789abcdef0123456789abcdef").is_ok());
        assert!(KeyId::parse("0123456789ABCDEF0123456789abcdef").is_err());
        assert!(KeyId::parse("0123").is_err());
    }

    #[test]
    fn precis_refuses_controls_bidi_overrides_and_unassigned_code_points() {
        for bad in [
            "ev\u{202E}il@example.org",
            "a\u{200B}b@example.org",
            "a\u{0378}b@example.org",
            "a\u{E000}b@example.org",
            "a\u{00D7}b@example.org",
            "user@example.org/ab\u{202E}cd",
            "user@exa\u{202E}mple.org",
        ] {
            assert!(matches!(BareJid::parse(bad), Err(Error::InvalidJid { .. })), "{bad:?}");
        }
        assert_eq!(
            BareJid::parse("\u{039F}\u{0394}\u{039F}\u{03A3}@example.org").unwrap().to_string(),
            "\u{03BF}\u{03B4}\u{03BF}\u{03C2}@example.org"
        );
        assert_eq!(
            BareJid::parse("stra\u{00DF}e@m\u{00FC}nchen.example/phone").unwrap().to_string(),
            "stra\u{00DF}e@m\u{00FC}nchen.example"
        );
    }
}
