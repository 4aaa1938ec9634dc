//! The one error type of the protocol crate.
//!
//! Every parser and verifier returns [`Error`], and every variant names what was wrong,
//! so an operator (or a peer receiving an XMPP error) can tell which input failed and why.
//! Offending values are cut to a short prefix before they are stored here, so an
//! attacker cannot make our logs or error stanzas large.

use std::fmt;

/// Longest excerpt of an offending value kept in an error.
const EXCERPT_CHARS: usize = 64;

/// A short, printable excerpt of untrusted input for error messages.
#[derive(Clone, PartialEq, Eq)]
pub struct Excerpt(String);

impl Excerpt {
    /// Keeps at most [`EXCERPT_CHARS`] characters of `value`.
    pub fn new(value: &str) -> Self {
        let mut out: String = value.chars().take(EXCERPT_CHARS).collect();
        if value.chars().nth(EXCERPT_CHARS).is_some() {
            out.push('…');
        }
        Self(out)
    }
}

impl fmt::Debug for Excerpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Excerpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Everything that can go wrong while parsing, emitting, signing or verifying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- identifiers -------------------------------------------------------------------
    /// A JID that is not a valid bare JID.
    #[error("invalid JID {value}: {reason}")]
    InvalidJid { value: Excerpt, reason: &'static str },
    /// A domain name that is not valid.
    #[error("invalid domain {value}: {reason}")]
    InvalidDomain { value: Excerpt, reason: &'static str },
    /// An IP address that does not parse.
    #[error("invalid IP address {value}")]
    InvalidIp { value: Excerpt },
    /// A CIDR block that does not parse or has an impossible prefix length.
    #[error("invalid CIDR {value}: {reason}")]
    InvalidCidr { value: Excerpt, reason: &'static str },
    /// An incident id that is not `issuer-domain:uuid`.
    #[error("invalid incident id {value}: {reason}")]
    InvalidIncidentId { value: Excerpt, reason: &'static str },
    /// A key id that is not 32 lowercase hex digits.
    #[error("invalid key id {value}")]
    InvalidKeyId { value: Excerpt },
    /// A value outside the set or range allowed for a field.
    #[error("invalid value {value} for {field}")]
    InvalidValue { field: &'static str, value: Excerpt },

    // ---- bounds --------------------------------------------------------------------------
    /// Input longer than its limit (bytes for payloads, characters for text fields).
    #[error("{what} is {len} long, over the limit of {max}")]
    TooLarge { what: &'static str, len: usize, max: usize },
    /// More items than allowed (offenders, evidence, chain links, elements).
    #[error("too many {what}: more than {max}")]
    TooMany { what: &'static str, max: usize },
    /// XML nested deeper than allowed.
    #[error("XML nested deeper than {max} levels")]
    TooDeep { max: usize },

    // ---- encodings ---------------------------------------------------------------------
    /// XML that is not well-formed.
    #[error("malformed XML: {reason}")]
    Xml { reason: String },
    /// A required element or attribute is missing.
    #[error("missing {what} in <{element}>")]
    Missing { element: &'static str, what: &'static str },
    /// An element that must appear once appears more often: ambiguous input is refused, never
    /// resolved by picking one.
    #[error("more than one {what} in <{element}>")]
    Ambiguous { element: &'static str, what: &'static str },
    /// An element other than the one expected.
    #[error("unexpected element <{name}> in namespace {namespace}; expected {expected}")]
    UnexpectedElement { name: Excerpt, namespace: Excerpt, expected: &'static str },
    /// Base64 that does not decode.
    #[error("invalid base64 in {what}")]
    InvalidBase64 { what: &'static str },
    /// Bytes that are not UTF-8 where text is required.
    #[error("invalid UTF-8 in {what}")]
    InvalidUtf8 { what: &'static str },
    /// JSON that does not parse into the expected claim.
    #[error("invalid JSON in {what}: {reason}")]
    InvalidJson { what: &'static str, reason: String },
    /// A timestamp that is not RFC 3339.
    #[error("invalid timestamp {value}")]
    InvalidTimestamp { value: Excerpt },

    // ---- signatures ----------------------------------------------------------------------
    /// A signature algorithm we do not implement.
    #[error("unsupported signature algorithm {alg}")]
    UnsupportedAlgorithm { alg: Excerpt },
    /// The signer or key id is not among the keys the caller trusts.
    #[error("unknown key {kid} for signer {signer}")]
    UnknownKey { signer: Excerpt, kid: Excerpt },
    /// The signature does not match the signed bytes and key.
    #[error("bad signature from {signer} with key {kid}")]
    BadSignature { signer: Excerpt, kid: Excerpt },
    /// Signing could not finish: the source of the message failed.
    #[error("signing {what} failed")]
    SigningFailed { what: &'static str },
    /// The signing time is too far from the verifier's clock.
    #[error("timestamp {ts} is outside the accepted window of {window_secs} s around {now}")]
    TimestampOutsideWindow { ts: String, now: String, window_secs: i64 },
    /// The (signer, nonce) pair was seen before.
    #[error("replayed nonce {nonce} from {signer}")]
    Replay { signer: Excerpt, nonce: Excerpt },
    /// The claim inside an envelope is of another type than expected.
    #[error("claim type {found} where {expected} was expected")]
    WrongClaimType { expected: &'static str, found: Excerpt },
    /// The claim names another origin than the key that signed it.
    #[error("claim says it comes from {claimed} but was signed by {signer}")]
    SignerMismatch { signer: Excerpt, claimed: Excerpt },
    /// A provenance chain whose links do not join up.
    #[error("broken provenance chain at link {link}: {reason}")]
    BrokenChain { link: usize, reason: &'static str },

    // ---- transparency log ---------------------------------------------------------------
    /// An inclusion or consistency proof that does not verify or is malformed.
    #[error("invalid proof: {reason}")]
    InvalidProof { reason: String },
    /// Two views of the log that cannot both be true (a fork or a rewrite).
    #[error("inconsistent log: {reason}")]
    InconsistentLog { reason: String },
    /// A checkpoint that does not parse or whose signature does not verify.
    #[error("invalid checkpoint: {reason}")]
    InvalidCheckpoint { reason: String },
}

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
