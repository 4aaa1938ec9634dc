//! Sealed leaves: an audit record that is not a public fact (an allow entry and its note, an
//! accusation short of a quorum, an ignored report, an operator's score override) enters the
//! log as a salted commitment, and the node keeps the opening (salt and record) apart.
//!
//! The tree hashes the sealed leaf, so erasing the opening later (a takedown, an erasure
//! request) changes no leaf, no root and no proof. The salt is 32 fresh random bytes per leaf:
//! without it nobody can test a guess (an IP address, a JID) against the commitment, and once
//! it is erased nobody ever can. `spec/transparency-log.md` (Sealed leaves) gives the bytes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::canonical::to_canonical_json;
use crate::error::{Error, Result};
use crate::log::record::AuditRecord;
use crate::time::Timestamp;

/// What every commitment hashes first, so it can never be taken for another hash of ours.
pub const SEAL_PREFIX: &[u8] = b"ostracon-seal-v1\n";

/// A leaf whose members are committed, not shown: the time and the kind of decision are
/// public, what it was about is not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedRecord {
    /// When the node wrote it.
    pub at: Timestamp,
    /// The sealed record's `event`, one of [`AuditRecord::SEALED_EVENTS`].
    pub event: String,
    /// `SHA-256(SEAL_PREFIX || salt || leaf bytes of the open record)`, base64.
    #[serde(with = "base64_hash")]
    pub sealed: [u8; 32],
}

/// What opens a sealed leaf: the salt and the record it hides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opening {
    /// 32 random bytes drawn for this leaf alone.
    pub salt: [u8; 32],
    /// The open record.
    pub record: AuditRecord,
}

impl Opening {
    /// The commitment this opening makes.
    pub fn commitment(&self) -> Result<[u8; 32]> {
        let leaf = self.record.to_leaf()?;
        Ok(Sha256::new().chain_update(SEAL_PREFIX).chain_update(self.salt).chain_update(&leaf).finalize().into())
    }

    /// The sealed leaf that stands for the record in the log.
    pub fn seal(&self) -> Result<SealedRecord> {
        Ok(SealedRecord { at: self.record.at(), event: self.record.event().to_owned(), sealed: self.commitment()? })
    }

    /// Whether this opening opens `sealed`: same time, same event, same commitment.
    pub fn opens(&self, sealed: &SealedRecord) -> bool {
        self.seal().is_ok_and(|own| own == *sealed)
    }
}

/// A leaf as the log holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum LogLeaf {
    /// A public record, in full.
    Open(AuditRecord),
    /// A record that is not a public fact, committed.
    Sealed(SealedRecord),
}

impl LogLeaf {
    /// The leaf bytes for `record`: sealed with `salt` when it is not a public fact, open
    /// otherwise. Returns the opening to keep when it is sealed.
    pub fn bytes_for(record: &AuditRecord, salt: [u8; 32]) -> Result<(Vec<u8>, Option<Opening>)> {
        if !record.is_sealed_in_log() {
            return Ok((record.to_leaf()?, None));
        }
        let opening = Opening { salt, record: record.clone() };
        Ok((to_canonical_json(&opening.seal()?)?, Some(opening)))
    }

    /// The exact leaf bytes (RFC 8785 canonical JSON).
    pub fn to_leaf(&self) -> Result<Vec<u8>> {
        match self {
            Self::Open(record) => record.to_leaf(),
            Self::Sealed(sealed) => to_canonical_json(sealed),
        }
    }

    /// Parses leaf bytes. A sealed leaf must name an event that is sealed: a list change
    /// can never hide behind a commitment.
    pub fn from_leaf(bytes: &[u8]) -> Result<Self> {
        let open_error = match AuditRecord::from_leaf(bytes) {
            Ok(record) => return Ok(Self::Open(record)),
            Err(error) => error,
        };
        let Ok(sealed) = serde_json::from_slice::<SealedRecord>(bytes) else { return Err(open_error) };
        if !AuditRecord::SEALED_EVENTS.contains(&sealed.event.as_str()) {
            return Err(Error::InvalidJson {
                what: "audit record",
                reason: format!("a {:?} record is never sealed", sealed.event),
            });
        }
        Ok(Self::Sealed(sealed))
    }

    /// When the node wrote it.
    pub fn at(&self) -> Timestamp {
        match self {
            Self::Open(record) => record.at(),
            Self::Sealed(sealed) => sealed.at,
        }
    }

    /// Its `event` member.
    pub fn event(&self) -> &str {
        match self {
            Self::Open(record) => record.event(),
            Self::Sealed(sealed) => &sealed.event,
        }
    }
}

/// Exactly 32 bytes as padded standard base64.
mod base64_hash {
    use super::*;

    pub(super) fn serialize<S: serde::Serializer>(
        hash: &[u8; 32],
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(hash))
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<[u8; 32], D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD
            .decode(text.as_bytes())
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or_else(|| serde::de::Error::custom("expected 32 bytes in padded base64"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{IncidentId, Offender};
    use crate::log::record::ListState;

    fn allow(note: &str) -> AuditRecord {
        AuditRecord::AllowAdded {
            at: Timestamp::from_unix(1_800_000_000).unwrap(),
            offender: Offender::parse("198.51.100.0/24").unwrap(),
            note: note.to_owned(),
        }
    }

    #[test]
    fn a_sealed_leaf_shows_neither_offender_nor_note_and_its_opening_checks() {
        let (bytes, opening) = LogLeaf::bytes_for(&allow("office range"), [7; 32]).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(!text.contains("office") && !text.contains("198.51.100"), "{text}");
        assert!(text.starts_with("{\"at\":\"2027-01-15T08:00:00Z\",\"event\":\"allow-added\",\"sealed\":\""), "{text}");
        let LogLeaf::Sealed(sealed) = LogLeaf::from_leaf(&bytes).unwrap() else { panic!("not sealed") };
        let opening = opening.unwrap();
        assert!(opening.opens(&sealed));
        // Another salt, another note or another time does not open it.
        assert!(!Opening { salt: [8; 32], ..opening.clone() }.opens(&sealed));
        assert!(!Opening { record: allow("office"), ..opening.clone() }.opens(&sealed));
        // The same record under another salt gives another commitment: equal records cannot be linked.
        let (other, _) = LogLeaf::bytes_for(&allow("office range"), [8; 32]).unwrap();
        assert_ne!(other, bytes);
    }

    #[test]
    fn public_facts_stay_open_and_list_changes_cannot_be_sealed() {
        let entry = AuditRecord::EntryRemoved {
            at: Timestamp::from_unix(1).unwrap(),
            offender: Offender::parse("192.0.2.1").unwrap(),
            why: "expired".into(),
        };
        let (bytes, opening) = LogLeaf::bytes_for(&entry, [0; 32]).unwrap();
        assert_eq!(LogLeaf::from_leaf(&bytes).unwrap(), LogLeaf::Open(entry));
        assert!(opening.is_none());
        let forged = br#"{"at":"1970-01-01T00:00:01Z","event":"entry-added","sealed":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}"#;
        assert!(LogLeaf::from_leaf(forged).is_err());
        let short = br#"{"at":"1970-01-01T00:00:01Z","event":"allow-added","sealed":"AAAA"}"#;
        assert!(LogLeaf::from_leaf(short).is_err());
    }

    #[test]
    fn replay_passes_over_sealed_leaves() {
        let ip = Offender::parse("192.0.2.1").unwrap();
        let id = IncidentId::parse("ops.example:0f6c1c52-7d3e-4e0a-9a51-2b1f4a7e9c10").unwrap();
        let refused = AuditRecord::ListingRefused {
            at: Timestamp::from_unix(1).unwrap(),
            offender: ip.clone(),
            incident: id,
            why: "weight 0.5 of 1.0".into(),
        };
        let (bytes, _) = LogLeaf::bytes_for(&refused, [1; 32]).unwrap();
        let state = ListState::replay([bytes.as_slice()]).unwrap();
        assert!(state.entries().is_empty());
    }
}
