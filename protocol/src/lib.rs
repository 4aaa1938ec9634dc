//! Ostracon's wire contract, with no I/O.
//!
//! This crate owns every byte Ostracon sends or accepts:
//!
//! - [`ids`]: validated identifiers (bare JIDs, domains, IPs and CIDRs, incident and key ids);
//! - [`incident`]: the incident model that XEP-0268 reports carry;
//! - [`time`]: the one timestamp format used in signed claims;
//! - [`canonical`]: RFC 8785 canonical JSON, the exact bytes we sign;
//! - [`keys`]: Ed25519 keys, key ids and fingerprints;
//! - [`envelope`]: the signed envelope and provenance chains
//!   ([`Unverified`] becomes [`Verified`] only through verification);
//! - [`xml`]: XEP-0268, XEP-0275, XEP-0267, XEP-0377 and our own elements as XML;
//! - [`rtbl`]: item ids in the xmppbl.org RTBL conventions;
//! - [`log`]: the transparency log (RFC 6962/9162 Merkle trees, proofs, signed checkpoints);
//! - [`component`]: the XEP-0114 handshake digest;
//! - [`limits`]: every size bound in one place.
//!
//! **Architecture invariant:** nothing here reads a clock, draws randomness, opens a socket
//! or touches a database. Callers pass `now`, nonces, keys and the replay check in;
//! `tests/purity.rs` fails the build if an I/O crate appears among the dependencies.

pub mod canonical;
pub mod component;
pub mod envelope;
pub mod error;
pub mod ids;
pub mod incident;
pub mod keys;
pub mod limits;
pub mod log;
pub mod rtbl;
pub mod time;
pub mod xml;

pub use envelope::{Unverified, Verified};
pub use error::{Error, Result};
