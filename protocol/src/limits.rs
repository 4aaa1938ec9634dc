//! Every size bound the protocol enforces, in one place.
//!
//! Prosody caps component stanzas at 512 KiB and checks nothing else (no depth, count or
//! rate limit), so these bounds are the node's real defence. `spec/protocol.md` lists them;
//! the values here are the authority.

/// Largest XML text accepted by [`crate::xml::parse_bounded`] (bytes).
pub const MAX_XML_BYTES: usize = 256 * 1024;
/// Deepest XML nesting accepted anywhere (the IODEF incident needs 8).
pub const MAX_XML_DEPTH: usize = 24;
/// Most elements in one parsed payload.
pub const MAX_XML_ELEMENTS: usize = 8_192;

/// Largest signed claim (decoded payload bytes).
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Most links in a provenance chain (the origin plus forwards).
pub const MAX_CHAIN_LINKS: usize = 8;
/// Nonce length bounds (characters of unpadded base64url).
pub const MIN_NONCE_CHARS: usize = 16;
/// See [`MIN_NONCE_CHARS`].
pub const MAX_NONCE_CHARS: usize = 64;

/// Most offenders named by one incident.
pub const MAX_OFFENDERS: usize = 1_000;
/// Most evidence items in one incident.
pub const MAX_EVIDENCE: usize = 32;
/// Most history items in one incident (XEP-0268 responses).
pub const MAX_HISTORY: usize = 32;
/// Longest incident description (characters).
pub const MAX_DESCRIPTION_CHARS: usize = 4_096;
/// Longest evidence sample (characters).
pub const MAX_SAMPLE_CHARS: usize = 1_024;
/// Longest short text field: history notes and XEP-0377 texts (characters).
pub const MAX_SHORT_TEXT_CHARS: usize = 1_024;

/// Longest JID localpart, domainpart or resourcepart (bytes, RFC 7622 §3).
pub const MAX_JID_PART_BYTES: usize = 1_023;
/// Longest domain name (bytes; DNS allows 253 in text form).
pub const MAX_DOMAIN_BYTES: usize = 253;
/// Longest DNS label (bytes).
pub const MAX_LABEL_BYTES: usize = 63;

/// Most keys a peer may publish at once.
pub const MAX_PUBLISHED_KEYS: usize = 8;
/// Most signature lines on one checkpoint (the log's own plus cosigners).
pub const MAX_CHECKPOINT_SIGNATURES: usize = 32;
/// Largest checkpoint note (bytes).
pub const MAX_CHECKPOINT_BYTES: usize = 8 * 1024;
/// Most hashes in an inclusion or consistency proof (enough for 2^63 leaves).
pub const MAX_PROOF_HASHES: usize = 128;

/// Most XEP-0268 wrappers in one batch (`xml/batch.rs`).
pub const MAX_BATCH_ITEMS: usize = 32;
/// Most bytes of wrappers a sender puts in one batch: half a stanza, so the IQ around them
/// and any XML escaping stay far inside [`MAX_XML_BYTES`].
pub const MAX_BATCH_BYTES: usize = MAX_XML_BYTES / 2;
/// Most elements of wrappers a sender puts in one batch, for the same margin under
/// [`MAX_XML_ELEMENTS`].
pub const MAX_BATCH_ELEMENTS: usize = MAX_XML_ELEMENTS / 2;
