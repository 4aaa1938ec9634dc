//! The transparency log: RFC 6962 / RFC 9162 Merkle trees, proofs and signed checkpoints.
//!
//! Every list change and every decision the node takes is one leaf of an append-only Merkle
//! tree. [`merkle`] hashes leaves, builds the tree, generates inclusion and consistency
//! proofs and verifies them; [`checkpoint`] signs and parses tree heads in the C2SP
//! signed-note format, which buddies may cosign. What a leaf contains is decided by the
//! node: each leaf is the canonical JSON of one [`record::AuditRecord`], and
//! [`record::ListState`] replays records into the list they imply, so a consumer can check a
//! published list against the log. [`seal`] hides the records that are not public facts
//! behind salted commitments whose openings the node keeps and can erase.
//! `spec/transparency-log.md` specifies the formats byte for byte.

pub mod checkpoint;
pub mod merkle;
pub mod record;
pub mod seal;

pub use checkpoint::{Checkpoint, NoteSignature, SignedCheckpoint, key_hash, verify_growth};
pub use merkle::{Hash, MerkleTree, empty_root, leaf_hash, node_hash, verify_consistency, verify_inclusion};
