//! Audit records: what each leaf of a node's transparency log says, and replaying them.
//!
//! A leaf is the RFC 8785 canonical JSON of one [`AuditRecord`]. Records that change a
//! published list (`entry-added`, `entry-removed`) carry everything needed to rebuild it, so
//! [`ListState::apply`] over leaves `0..size` yields exactly the list a snapshot naming a
//! checkpoint of that size must contain. Other records document decisions (an incident
//! accepted or ignored and why, a retraction, an allow entry) for auditors; those that are
//! not public facts are sealed (`seal.rs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::canonical::to_canonical_json;
use crate::error::{Error, Result};
use crate::ids::{BareJid, Domain, IncidentId, Offender};
use crate::log::seal::LogLeaf;
use crate::time::Timestamp;

/// One audit record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AuditRecord {
    /// An offender was listed, or its action or expiry changed.
    EntryAdded {
        /// When.
        at: Timestamp,
        /// What.
        offender: Offender,
        /// `block`, `quarantine` or `observe`.
        action: String,
        /// When it drops off (`None`: until removed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires: Option<Timestamp>,
        /// The incidents behind it (empty for operator entries).
        reasons: Vec<IncidentId>,
        /// `incidents` or `operator`.
        source: String,
    },
    /// An offender left the list.
    EntryRemoved {
        /// When.
        at: Timestamp,
        /// What.
        offender: Offender,
        /// `expired`, `retracted`, `allowed` or `operator`.
        why: String,
    },
    /// An incident was accepted and applied.
    IncidentAccepted {
        /// When.
        at: Timestamp,
        /// Which.
        id: IncidentId,
        /// Who reported it.
        reporter: String,
        /// `local`, `peer` or `unsigned`.
        origin: String,
    },
    /// An incident was stored but not applied.
    IncidentIgnored {
        /// When.
        at: Timestamp,
        /// Which.
        id: IncidentId,
        /// Who reported it.
        reporter: String,
        /// Why it was not applied.
        why: String,
    },
    /// An incident was withdrawn.
    IncidentRetracted {
        /// When.
        at: Timestamp,
        /// Which.
        id: IncidentId,
    },
    /// A listing was refused (for example because an allow entry covers the offender).
    ListingRefused {
        /// When.
        at: Timestamp,
        /// What.
        offender: Offender,
        /// The incident that asked for it.
        incident: IncidentId,
        /// Why.
        why: String,
    },
    /// The operator allowed an offender: it is never listed.
    AllowAdded {
        /// When.
        at: Timestamp,
        /// What.
        offender: Offender,
        /// The operator's note.
        note: String,
    },
    /// The operator removed an allow entry.
    AllowRemoved {
        /// When.
        at: Timestamp,
        /// What.
        offender: Offender,
    },
    /// The operator fixed a remote domain's reputation score (spec/reputation.md).
    ReputationOverridden {
        /// When.
        at: Timestamp,
        /// Which domain.
        domain: Domain,
        /// The fixed score in [-100, 100].
        score: i64,
        /// The operator's note.
        note: String,
    },
    /// The operator removed a fixed score; the computed one applies again.
    ReputationOverrideCleared {
        /// When.
        at: Timestamp,
        /// Which domain.
        domain: Domain,
    },
    /// A buddy relation (XEP-0267) changed: who, to what, with which pinned keys, and who
    /// moved it (`operator`, `peer`, or `auto-approve`).
    PeerChanged {
        /// When.
        at: Timestamp,
        /// The peer's component JID.
        peer: BareJid,
        /// `requested`, `pending`, `buddy` or `revoked`.
        state: String,
        /// `observe`, `accept` or `auto-apply`.
        trust: String,
        /// Fingerprints of the keys pinned for it.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        keys: Vec<String>,
        /// Who moved it.
        by: String,
    },
    /// The node's signing key changed: checkpoints and snapshots from here on are signed by
    /// `new`, and `old` stays published as retired.
    KeyRotated {
        /// When.
        at: Timestamp,
        /// The retired key's id.
        old: String,
        /// The new key's id.
        new: String,
        /// The rotation claim (typ `key-rotation`) the old key signed, naming the new key: a
        /// reader who pinned the old key follows it to the new one ([`KeyRotation::follow`]).
        /// Absent on leaves written before nodes recorded it.
        ///
        /// [`KeyRotation::follow`]: crate::keys::KeyRotation::follow
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proof: Option<Box<crate::envelope::SignedEnvelope>>,
    },
    /// The operator erased the opening of a sealed leaf (a takedown or an erasure request):
    /// the leaf and every proof stay, and nobody can learn what it said any more.
    OpeningErased {
        /// When.
        at: Timestamp,
        /// The sealed leaf.
        index: u64,
    },
}

impl AuditRecord {
    /// The `event` member of each record that is sealed in the log (`seal.rs`): decisions
    /// that are not public facts. None of them changes a published list.
    pub const SEALED_EVENTS: [&'static str; 6] = [
        "allow-added",
        "allow-removed",
        "listing-refused",
        "incident-ignored",
        "reputation-overridden",
        "reputation-override-cleared",
    ];

    /// The record's `event` member.
    pub fn event(&self) -> &'static str {
        match self {
            Self::EntryAdded { .. } => "entry-added",
            Self::EntryRemoved { .. } => "entry-removed",
            Self::IncidentAccepted { .. } => "incident-accepted",
            Self::IncidentIgnored { .. } => "incident-ignored",
            Self::IncidentRetracted { .. } => "incident-retracted",
            Self::ListingRefused { .. } => "listing-refused",
            Self::AllowAdded { .. } => "allow-added",
            Self::AllowRemoved { .. } => "allow-removed",
            Self::ReputationOverridden { .. } => "reputation-overridden",
            Self::ReputationOverrideCleared { .. } => "reputation-override-cleared",
            Self::PeerChanged { .. } => "peer-changed",
            Self::KeyRotated { .. } => "key-rotated",
            Self::OpeningErased { .. } => "opening-erased",
        }
    }

    /// When the node wrote it.
    pub fn at(&self) -> Timestamp {
        match self {
            Self::EntryAdded { at, .. }
            | Self::EntryRemoved { at, .. }
            | Self::IncidentAccepted { at, .. }
            | Self::IncidentIgnored { at, .. }
            | Self::IncidentRetracted { at, .. }
            | Self::ListingRefused { at, .. }
            | Self::AllowAdded { at, .. }
            | Self::AllowRemoved { at, .. }
            | Self::ReputationOverridden { at, .. }
            | Self::ReputationOverrideCleared { at, .. }
            | Self::PeerChanged { at, .. }
            | Self::KeyRotated { at, .. }
            | Self::OpeningErased { at, .. } => *at,
        }
    }

    /// Whether the log carries this record sealed rather than open.
    pub fn is_sealed_in_log(&self) -> bool {
        Self::SEALED_EVENTS.contains(&self.event())
    }

    /// The exact leaf bytes.
    pub fn to_leaf(&self) -> Result<Vec<u8>> {
        to_canonical_json(self)
    }

    /// Parses leaf bytes.
    pub fn from_leaf(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes)
            .map_err(|error| Error::InvalidJson { what: "audit record", reason: error.to_string() })
    }
}

/// A listed offender as the log describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedEntry {
    /// `block`, `quarantine` or `observe`.
    pub action: String,
    /// When it drops off.
    pub expires: Option<Timestamp>,
    /// The leaf that last added or changed it.
    pub log_index: u64,
}

/// The published list implied by a prefix of the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListState {
    entries: BTreeMap<Offender, ListedEntry>,
}

impl ListState {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies the record at leaf `index`.
    pub fn apply(&mut self, index: u64, record: &AuditRecord) {
        match record {
            AuditRecord::EntryAdded { offender, action, expires, .. } => {
                self.entries.insert(
                    offender.clone(),
                    ListedEntry { action: action.clone(), expires: *expires, log_index: index },
                );
            }
            AuditRecord::EntryRemoved { offender, .. } => {
                self.entries.remove(offender);
            }
            _ => {}
        }
    }

    /// Applies the leaf at `index`: a sealed leaf never changes a list.
    pub fn apply_leaf(&mut self, index: u64, leaf: &LogLeaf) {
        if let LogLeaf::Open(record) = leaf {
            self.apply(index, record);
        }
    }

    /// Replays leaves in order.
    pub fn replay<'a>(leaves: impl IntoIterator<Item = &'a [u8]>) -> Result<Self> {
        let mut state = Self::new();
        for (index, leaf) in leaves.into_iter().enumerate() {
            state.apply_leaf(index as u64, &LogLeaf::from_leaf(leaf)?);
        }
        Ok(state)
    }

    /// The entries, ordered by offender.
    pub fn entries(&self) -> &BTreeMap<Offender, ListedEntry> {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_unix(secs).unwrap()
    }

    #[test]
    fn replay_adds_updates_and_removes() {
        let ip = Offender::parse("192.0.2.1").unwrap();
        let jid = Offender::parse("bot@bad.example").unwrap();
        let id = IncidentId::parse("ops.example:0f6c1c52-7d3e-4e0a-9a51-2b1f4a7e9c10").unwrap();
        let records = [
            AuditRecord::IncidentAccepted {
                at: ts(1),
                id: id.clone(),
                reporter: "ops.example".into(),
                origin: "local".into(),
            },
            AuditRecord::EntryAdded {
                at: ts(1),
                offender: ip.clone(),
                action: "block".into(),
                expires: Some(ts(100)),
                reasons: vec![id.clone()],
                source: "incidents".into(),
            },
            AuditRecord::EntryAdded {
                at: ts(1),
                offender: jid.clone(),
                action: "block".into(),
                expires: None,
                reasons: vec![id.clone()],
                source: "incidents".into(),
            },
            AuditRecord::EntryAdded {
                at: ts(2),
                offender: ip.clone(),
                action: "block".into(),
                expires: Some(ts(200)),
                reasons: vec![id],
                source: "incidents".into(),
            },
            AuditRecord::EntryRemoved { at: ts(3), offender: jid.clone(), why: "expired".into() },
        ];
        let leaves: Vec<Vec<u8>> = records.iter().map(|r| r.to_leaf().unwrap()).collect();
        for (leaf, record) in leaves.iter().zip(&records) {
            assert_eq!(&AuditRecord::from_leaf(leaf).unwrap(), record);
        }
        let state = ListState::replay(leaves.iter().map(Vec::as_slice)).unwrap();
        assert_eq!(state.entries().len(), 1);
        assert_eq!(state.entries()[&ip], ListedEntry { action: "block".into(), expires: Some(ts(200)), log_index: 3 });
        assert!(AuditRecord::from_leaf(b"{\"event\":\"nonsense\"}").is_err());
    }
}
