//! RFC 6962 / RFC 9162 Merkle tree hashing, proof generation and proof verification.
//!
//! This file owns the hash functions ([`leaf_hash`], [`node_hash`], [`empty_root`]), the
//! in-memory append-only [`MerkleTree`] that the node uses to answer proof requests, and the
//! two verifiers a consumer runs: [`verify_inclusion`] (RFC 9162 §2.1.3.2) and
//! [`verify_consistency`] (RFC 9162 §2.1.4.2).
//! Proofs are generated exactly as RFC 6962 §2.1.1 (`PATH`) and §2.1.2 (`SUBPROOF`) define
//! them, so CT, Trillian and Sigsum tooling can check our proofs and we can check theirs.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::limits::MAX_PROOF_HASHES;

/// A SHA-256 output: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

/// Domain-separation prefix of leaf hashes (RFC 6962 §2.1), so a leaf can never be
/// passed off as an interior node (second-preimage protection).
const LEAF_PREFIX: u8 = 0x00;
/// Domain-separation prefix of interior node hashes (RFC 6962 §2.1).
const NODE_PREFIX: u8 = 0x01;

/// The hash of one leaf: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    Sha256::new().chain_update([LEAF_PREFIX]).chain_update(data).finalize().into()
}

/// The hash of an interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Sha256::new().chain_update([NODE_PREFIX]).chain_update(left).chain_update(right).finalize().into()
}

/// The root of the empty tree: the SHA-256 of the empty string (RFC 6962 §2.1).
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The size of the left subtree when `size` leaves are split: the largest power of two
/// strictly below `size` (RFC 6962 §2.1). Callers only split subtrees of two or more
/// leaves; for smaller sizes the result is 1 and meaningless, but never a panic.
fn split_point(size: u64) -> u64 {
    1 << (u64::BITS - 1 - size.saturating_sub(1).max(1).leading_zeros())
}

/// An append-only in-memory Merkle tree that keeps every complete aligned subtree, or every
/// one from a level up ([`MerkleTree::with_floor`]).
///
/// Level 0 holds the leaf hashes; level `k` holds the hash of each complete block of `2^k`
/// leaves starting at a multiple of `2^k`. That is about two hashes per leaf, and it makes
/// every hash a proof needs either a stored node or a fold of at most 64 stored nodes
/// (an incomplete right edge splits into complete aligned blocks, one per set bit of its
/// width). Appending is amortised O(1); roots and proofs for any earlier size are O(log n).
///
/// A tree with a floor `f` keeps levels below `f` only for the last, incomplete block of
/// `2^f` leaves: `2 / 2^f` hashes per leaf. A proof or an earlier root that needs a node
/// below the floor computes it from leaf hashes the caller supplies ([`LeafHashes`]);
/// [`MerkleTree::leaves_needed`] says which, at most a few blocks of `2^f`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MerkleTree {
    /// `levels[k][j]` is the hash of leaves `j * 2^k .. (j + 1) * 2^k`.
    /// Invariant: from the floor up, `levels[k].len() == len >> k`, and there is no empty top
    /// level; below it, `levels[k]` holds the nodes of the last incomplete block of `2^floor`
    /// leaves only, from its start.
    levels: Vec<Vec<Hash>>,
    /// Number of leaves.
    len: u64,
    /// The lowest level kept in full.
    floor: u32,
}

/// Leaf hashes a tree with a floor no longer holds, supplied by its owner (who keeps them
/// on disk) for the one computation that needs them.
pub trait LeafHashes {
    /// The hash of leaf `index`, if supplied.
    fn leaf_hash(&self, index: u64) -> Option<Hash>;
}

/// No leaf hashes: enough for a tree without a floor, which never asks.
impl LeafHashes for () {
    fn leaf_hash(&self, _: u64) -> Option<Hash> {
        None
    }
}

impl LeafHashes for BTreeMap<u64, Hash> {
    fn leaf_hash(&self, index: u64) -> Option<Hash> {
        self.get(&index).copied()
    }
}

/// Answers every leaf with zeros and remembers which were asked for.
struct Recorder(RefCell<BTreeSet<u64>>);

impl LeafHashes for Recorder {
    fn leaf_hash(&self, index: u64) -> Option<Hash> {
        self.0.borrow_mut().insert(index);
        Some([0; 32])
    }
}

impl MerkleTree {
    /// An empty tree that keeps every level.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty tree that keeps levels from `floor` up (the leaf hashes of complete blocks of
    /// `2^floor` leaves are left to the owner). A floor above 16 is taken as 16.
    pub fn with_floor(floor: u32) -> Self {
        Self { floor: floor.min(16), ..Self::default() }
    }

    /// A tree holding `leaf_hashes` in order.
    pub fn from_leaf_hashes(leaf_hashes: impl IntoIterator<Item = Hash>) -> Self {
        let mut tree = Self::new();
        for leaf in leaf_hashes {
            tree.push(leaf);
        }
        tree
    }

    /// Number of leaves.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The leaf hash at `index`, if the tree has that many leaves and holds it.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        self.stored_node(0, index)
    }

    /// Appends a leaf hash (see [`leaf_hash`]) and returns its index.
    pub fn push(&mut self, leaf: Hash) -> u64 {
        let index = self.len;
        self.len += 1;
        let mut carry = leaf;
        let mut completed = None;
        for (level, nodes) in self.levels.iter_mut().enumerate() {
            nodes.push(carry);
            // An even count means the node just pushed completed a pair: hash the pair
            // into the level above. An odd count means it waits for its right sibling.
            // Below the floor only the last block's nodes are kept, from an even start, so
            // the parity is the same.
            match nodes.as_slice() {
                [.., left, right] if nodes.len() % 2 == 0 => {
                    carry = node_hash(left, right);
                    completed = Some(level);
                }
                _ => {
                    self.prune(completed);
                    return index;
                }
            }
        }
        // Every level completed a pair, so the tree just reached a power of two.
        self.levels.push(vec![carry]);
        self.prune(completed);
        index
    }

    /// After a push that completed pairs up to `level`: once a node at the floor is made,
    /// the block below it is done, and its nodes under the floor go.
    fn prune(&mut self, completed: Option<usize>) {
        let floor = usize::try_from(self.floor).unwrap_or(0);
        if completed.is_some_and(|level| level + 1 >= floor) {
            for nodes in self.levels.iter_mut().take(floor) {
                nodes.clear();
            }
        }
    }

    /// The leaves whose hashes `operation` needs from the caller on this tree: run it once
    /// with every leaf answered, fetch those, then run it with them.
    pub fn leaves_needed<T>(&self, operation: impl FnOnce(&Self, &dyn LeafHashes) -> Result<T>) -> Vec<u64> {
        let recorder = Recorder(RefCell::new(BTreeSet::new()));
        let _ = operation(self, &recorder);
        recorder.0.into_inner().into_iter().collect()
    }

    /// The root of the whole tree (the [`empty_root`] when it has no leaves).
    pub fn root(&self) -> Hash {
        // The root folds, from the right, the last node of every level whose bit is set in
        // `len`: those are exactly the complete blocks the tree decomposes into.
        let len = self.len();
        let mut root: Option<Hash> = None;
        for (level, nodes) in self.levels.iter().enumerate() {
            if (len >> level) & 1 == 1
                && let Some(node) = nodes.last()
            {
                root = Some(match root {
                    None => *node,
                    Some(right) => node_hash(node, &right),
                });
            }
        }
        root.unwrap_or_else(empty_root)
    }

    /// The root of the tree formed by the first `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash> {
        self.root_at_with(size, &())
    }

    /// [`MerkleTree::root_at`], with the leaf hashes below the floor it needs.
    pub fn root_at_with(&self, size: u64, leaves: &dyn LeafHashes) -> Result<Hash> {
        self.check_size(size)?;
        if size == 0 {
            return Ok(empty_root());
        }
        self.subtree_hash(0, size, leaves)
    }

    /// The inclusion proof of leaf `index` in the tree of the first `size` leaves:
    /// RFC 6962 §2.1.1 `PATH(index, D[0:size])`, ordered from the leaf up.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>> {
        self.inclusion_proof_with(index, size, &())
    }

    /// [`MerkleTree::inclusion_proof`], with the leaf hashes below the floor it needs.
    pub fn inclusion_proof_with(&self, index: u64, size: u64, leaves: &dyn LeafHashes) -> Result<Vec<Hash>> {
        self.check_size(size)?;
        if index >= size {
            return Err(Error::InvalidProof { reason: format!("leaf index {index} is beyond tree size {size}") });
        }
        // Walk down from the root. Each step records the sibling subtree's hash; the
        // RFC lists them from the bottom, so the list is reversed at the end.
        let mut proof = Vec::new();
        let (mut start, mut width, mut offset) = (0, size, index);
        while width > 1 {
            let split = split_point(width);
            if offset < split {
                proof.push(self.subtree_hash(start + split, width - split, leaves)?);
                width = split;
            } else {
                proof.push(self.subtree_hash(start, split, leaves)?);
                start += split;
                offset -= split;
                width -= split;
            }
        }
        proof.reverse();
        Ok(proof)
    }

    /// The consistency proof from the tree of the first `old_size` leaves to the tree of
    /// the first `new_size` leaves: RFC 6962 §2.1.2 `PROOF(old_size, D[0:new_size])`.
    ///
    /// The proof is empty when `old_size` is 0 or equals `new_size`, as [`verify_consistency`]
    /// expects.
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>> {
        self.consistency_proof_with(old_size, new_size, &())
    }

    /// [`MerkleTree::consistency_proof`], with the leaf hashes below the floor it needs.
    pub fn consistency_proof_with(&self, old_size: u64, new_size: u64, leaves: &dyn LeafHashes) -> Result<Vec<Hash>> {
        self.check_size(new_size)?;
        if old_size > new_size {
            return Err(Error::InvalidProof { reason: format!("old size {old_size} is beyond new size {new_size}") });
        }
        if old_size == 0 || old_size == new_size {
            return Ok(Vec::new());
        }
        // SUBPROOF(m, D[start:start+width], complete), unrolled; as in `inclusion_proof`
        // the hashes are collected top-down and reversed at the end.
        let mut proof = Vec::new();
        let (mut start, mut width, mut m, mut complete) = (0, new_size, old_size, true);
        loop {
            if m == width {
                // The old tree's root is this subtree; the verifier already knows it when
                // the subtree is the whole old tree, so it is sent only otherwise.
                if !complete {
                    proof.push(self.subtree_hash(start, m, leaves)?);
                }
                break;
            }
            let split = split_point(width);
            if m <= split {
                proof.push(self.subtree_hash(start + split, width - split, leaves)?);
                width = split;
            } else {
                proof.push(self.subtree_hash(start, split, leaves)?);
                start += split;
                m -= split;
                width -= split;
                complete = false;
            }
        }
        proof.reverse();
        Ok(proof)
    }

    /// Total number of hashes stored (for the memory bound test).
    #[cfg(test)]
    fn stored_hashes(&self) -> usize {
        self.levels.iter().map(Vec::len).sum()
    }

    /// Fails unless the tree has at least `size` leaves.
    fn check_size(&self, size: u64) -> Result<()> {
        let len = self.len();
        if size > len {
            return Err(Error::InvalidProof { reason: format!("tree size {size} is beyond the {len} leaves held") });
        }
        Ok(())
    }

    /// The stored hash of the complete aligned block `index` at `level`, if it is held.
    fn stored_node(&self, level: u32, index: u64) -> Option<Hash> {
        let nodes = self.levels.get(usize::try_from(level).ok()?)?;
        // Below the floor the level starts at the last incomplete block of `2^floor` leaves.
        let first = if level < self.floor { (self.len >> self.floor) << (self.floor - level) } else { 0 };
        nodes.get(usize::try_from(index.checked_sub(first)?).ok()?).copied()
    }

    /// The hash of the complete aligned block `index` at `level`: stored, or below the floor
    /// folded from the caller's leaf hashes (at most `2^floor` of them; the depth is the
    /// floor's, never the caller's).
    fn node(&self, level: u32, index: u64, leaves: &dyn LeafHashes) -> Option<Hash> {
        if let Some(node) = self.stored_node(level, index) {
            return Some(node);
        }
        if level >= self.floor {
            return None;
        }
        if level == 0 {
            return leaves.leaf_hash(index);
        }
        let left = self.node(level - 1, index.checked_mul(2)?, leaves)?;
        let right = self.node(level - 1, index.checked_mul(2)?.checked_add(1)?, leaves)?;
        Some(node_hash(&left, &right))
    }

    /// `MTH(D[start:start+width])` for a subtree that RFC 6962's recursion can produce:
    /// `width >= 1` and `start` a multiple of a power of two that is at least `width`.
    ///
    /// Such a range splits into complete aligned blocks of decreasing size, one per set
    /// bit of `width`, and its hash is their right fold (each RFC split takes the largest
    /// power of two below the width, which is the highest block). The fold needs at most
    /// 64 stored nodes, so this is O(log n).
    fn subtree_hash(&self, start: u64, width: u64, leaves: &dyn LeafHashes) -> Result<Hash> {
        let missing = || Error::InvalidProof { reason: format!("tree has no subtree of {width} leaves at {start}") };
        let mut end = start.checked_add(width).ok_or_else(missing)?;
        let mut remaining = width;
        let mut hash: Option<Hash> = None;
        while remaining != 0 {
            let level = remaining.trailing_zeros();
            let block = 1u64 << level;
            // A misaligned range has no stored node: refuse rather than hash the wrong thing.
            if end % block != 0 {
                return Err(missing());
            }
            let node = self.node(level, end / block - 1, leaves).ok_or_else(missing)?;
            hash = Some(match hash {
                None => node,
                Some(right) => node_hash(&node, &right),
            });
            end -= block;
            remaining -= block;
        }
        hash.ok_or_else(missing)
    }
}

/// Fails if a proof is longer than any honest proof can be.
fn check_proof_length(proof: &[Hash]) -> Result<()> {
    if proof.len() > MAX_PROOF_HASHES {
        return Err(Error::TooMany { what: "proof hashes", max: MAX_PROOF_HASHES });
    }
    Ok(())
}

/// Verifies that `leaf_hash` is leaf `index` of the tree of `size` leaves whose root is
/// `root`, with the RFC 9162 §2.1.3.2 algorithm.
///
/// Any failure is [`Error::InvalidProof`], except a proof over [`MAX_PROOF_HASHES`] long,
/// which is [`Error::TooMany`].
pub fn verify_inclusion(leaf_hash: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> Result<()> {
    check_proof_length(proof)?;
    let invalid = |reason: String| Error::InvalidProof { reason };
    if index >= size {
        return Err(invalid(format!("leaf index {index} is beyond tree size {size}")));
    }
    // `node` and `last` are the RFC's `fn` and `sn`: the positions of the running hash and
    // of the tree's last node on the current level.
    let (mut node, mut last) = (index, size - 1);
    let mut hash = *leaf_hash;
    for sibling in proof {
        if last == 0 {
            return Err(invalid(format!(
                "proof has wrong length: {} hashes is too many for leaf {index} of {size}",
                proof.len()
            )));
        }
        if node & 1 == 1 || node == last {
            hash = node_hash(sibling, &hash);
            // A left child with no right sibling is promoted unchanged: skip those levels.
            while node & 1 == 0 && node != 0 {
                node >>= 1;
                last >>= 1;
            }
        } else {
            hash = node_hash(&hash, sibling);
        }
        node >>= 1;
        last >>= 1;
    }
    if last != 0 {
        return Err(invalid(format!(
            "proof has wrong length: {} hashes is too few for leaf {index} of {size}",
            proof.len()
        )));
    }
    if hash != *root {
        return Err(invalid(format!("root mismatch for leaf {index} of {size}")));
    }
    Ok(())
}

/// Verifies that the tree of `new_size` leaves with root `new_root` extends the tree of
/// `old_size` leaves with root `old_root`, with the RFC 9162 §2.1.4.2 algorithm.
///
/// Equal sizes need an empty proof and equal roots. An old size of 0 needs an empty proof
/// and the [`empty_root`] as old root: the empty tree is a prefix of every tree.
/// Any failure is [`Error::InconsistentLog`] (the two views cannot be shown to be one
/// history), except a proof over [`MAX_PROOF_HASHES`] long, which is [`Error::TooMany`].
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<()> {
    check_proof_length(proof)?;
    let inconsistent = |reason: String| Error::InconsistentLog { reason };
    let wrong_length =
        || inconsistent(format!("proof has wrong length: {} hashes for sizes {old_size} to {new_size}", proof.len()));
    if old_size > new_size {
        return Err(inconsistent(format!("tree shrank from {old_size} to {new_size} leaves")));
    }
    if old_size == new_size || old_size == 0 {
        if !proof.is_empty() {
            return Err(wrong_length());
        }
        let expected_old = if old_size == 0 { empty_root() } else { *new_root };
        if *old_root != expected_old {
            return Err(inconsistent(format!("old root mismatch at size {old_size}")));
        }
        return Ok(());
    }
    // When the old tree is a complete subtree, its root is the first node of the proof
    // path and the RFC omits it from the proof (step 2).
    let (first, rest) =
        if old_size.is_power_of_two() { (old_root, proof) } else { proof.split_first().ok_or_else(wrong_length)? };
    let (mut node, mut last) = (old_size - 1, new_size - 1);
    while node & 1 == 1 {
        node >>= 1;
        last >>= 1;
    }
    let (mut old_hash, mut new_hash) = (*first, *first);
    for sibling in rest {
        if last == 0 {
            return Err(wrong_length());
        }
        if node & 1 == 1 || node == last {
            old_hash = node_hash(sibling, &old_hash);
            new_hash = node_hash(sibling, &new_hash);
            while node & 1 == 0 && node != 0 {
                node >>= 1;
                last >>= 1;
            }
        } else {
            // Nodes right of the old tree's edge only contribute to the new root.
            new_hash = node_hash(&new_hash, sibling);
        }
        node >>= 1;
        last >>= 1;
    }
    if last != 0 {
        return Err(wrong_length());
    }
    if old_hash != *old_root {
        return Err(inconsistent(format!("old root mismatch at size {old_size}")));
    }
    if new_hash != *new_root {
        return Err(inconsistent(format!("new root mismatch at size {new_size}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The leaves of the classic Certificate Transparency Merkle tree tests.
    const CT_LEAVES: [&[u8]; 8] = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        b"\x50\x51\x52\x53\x54\x55\x56\x57",
        b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
    ];

    fn ct_tree() -> MerkleTree {
        MerkleTree::from_leaf_hashes(CT_LEAVES.iter().map(|leaf| leaf_hash(leaf)))
    }

    fn from_hex(text: &str) -> Hash {
        let bytes = hex::decode(text).expect("test hex");
        bytes.try_into().expect("32-byte test hash")
    }

    /// A tree of `n` distinct synthetic leaves.
    fn synthetic_leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    // ---- A direct transcription of RFC 6962 §2.1, used as the reference. -------------

    fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves {
            [] => empty_root(),
            [leaf] => *leaf,
            _ => {
                let k = split_point(leaves.len() as u64) as usize;
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    fn reference_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
        if leaves.len() <= 1 {
            return Vec::new();
        }
        let k = split_point(leaves.len() as u64) as usize;
        if m < k {
            let mut path = reference_path(m, &leaves[..k]);
            path.push(reference_root(&leaves[k..]));
            path
        } else {
            let mut path = reference_path(m - k, &leaves[k..]);
            path.push(reference_root(&leaves[..k]));
            path
        }
    }

    fn reference_subproof(m: usize, leaves: &[Hash], complete: bool) -> Vec<Hash> {
        let n = leaves.len();
        if m == n {
            return if complete { Vec::new() } else { vec![reference_root(leaves)] };
        }
        let k = split_point(n as u64) as usize;
        if m <= k {
            let mut proof = reference_subproof(m, &leaves[..k], complete);
            proof.push(reference_root(&leaves[k..]));
            proof
        } else {
            let mut proof = reference_subproof(m - k, &leaves[k..], false);
            proof.push(reference_root(&leaves[..k]));
            proof
        }
    }

    // ---- Known values. ---------------------------------------------------------------

    #[test]
    fn rfc6962_known_roots() {
        let tree = ct_tree();
        assert_eq!(empty_root(), from_hex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
        assert_eq!(
            tree.root_at(1).unwrap(),
            from_hex("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
        );
        assert_eq!(
            tree.root_at(7).unwrap(),
            from_hex("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c")
        );
        assert_eq!(tree.root(), from_hex("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"));
    }

    #[derive(serde::Deserialize)]
    struct MerkleVectors {
        leaves: Vec<String>,
        roots: Vec<SizedRoot>,
        inclusion: Vec<InclusionVector>,
        consistency: Vec<ConsistencyVector>,
    }

    #[derive(serde::Deserialize)]
    struct SizedRoot {
        size: u64,
        root: String,
    }

    #[derive(serde::Deserialize)]
    struct InclusionVector {
        index: u64,
        size: u64,
        proof: Vec<String>,
    }

    #[derive(serde::Deserialize)]
    struct ConsistencyVector {
        old: u64,
        new: u64,
        proof: Vec<String>,
    }

    fn hashes(texts: &[String]) -> Vec<Hash> {
        texts.iter().map(|text| from_hex(text)).collect()
    }

    #[test]
    fn reproduces_spec_vectors() {
        let vectors: MerkleVectors =
            serde_json::from_str(include_str!("../../../spec/vectors/log/merkle.json")).expect("merkle.json parses");
        let leaves: Vec<Vec<u8>> = vectors.leaves.iter().map(|leaf| hex::decode(leaf).expect("leaf hex")).collect();
        assert_eq!(leaves, CT_LEAVES.map(<[u8]>::to_vec));
        let tree = MerkleTree::from_leaf_hashes(leaves.iter().map(|leaf| leaf_hash(leaf)));

        assert_eq!(vectors.roots.len(), 8);
        for vector in &vectors.roots {
            assert_eq!(tree.root_at(vector.size).unwrap(), from_hex(&vector.root));
        }
        assert!(!vectors.inclusion.is_empty());
        for vector in &vectors.inclusion {
            let proof = hashes(&vector.proof);
            assert_eq!(tree.inclusion_proof(vector.index, vector.size).unwrap(), proof);
            let leaf = tree.leaf(vector.index).unwrap();
            let root = tree.root_at(vector.size).unwrap();
            verify_inclusion(&leaf, vector.index, vector.size, &proof, &root).unwrap();
        }
        assert!(!vectors.consistency.is_empty());
        for vector in &vectors.consistency {
            let proof = hashes(&vector.proof);
            assert_eq!(tree.consistency_proof(vector.old, vector.new).unwrap(), proof);
            let old_root = tree.root_at(vector.old).unwrap();
            let new_root = tree.root_at(vector.new).unwrap();
            verify_consistency(vector.old, vector.new, &old_root, &new_root, &proof).unwrap();
        }
    }

    // ---- Exhaustive agreement with the RFC. --------------------------------------------

    #[test]
    fn every_proof_up_to_70_leaves_matches_the_rfc_and_verifies() {
        let leaves = synthetic_leaves(70);
        let tree = MerkleTree::from_leaf_hashes(leaves.iter().copied());
        for size in 1..=70u64 {
            let prefix = &leaves[..size as usize];
            let root = tree.root_at(size).unwrap();
            assert_eq!(root, reference_root(prefix), "root at {size}");
            for index in 0..size {
                let proof = tree.inclusion_proof(index, size).unwrap();
                assert_eq!(proof, reference_path(index as usize, prefix), "path {index}/{size}");
                verify_inclusion(&leaves[index as usize], index, size, &proof, &root).unwrap();
            }
            for old in 0..=size {
                let proof = tree.consistency_proof(old, size).unwrap();
                if old != 0 && old != size {
                    let expected = reference_subproof(old as usize, prefix, true);
                    assert_eq!(proof, expected, "consistency {old}->{size}");
                }
                let old_root = tree.root_at(old).unwrap();
                verify_consistency(old, size, &old_root, &root, &proof).unwrap();
            }
        }
    }

    /// A tree with a floor answers exactly what the full tree answers, given the leaves
    /// `leaves_needed` names (a few blocks of `2^floor`), and refuses without them.
    #[test]
    fn a_tree_with_a_floor_matches_the_full_tree_given_the_leaves_it_names() {
        let leaves = synthetic_leaves(70);
        let full = MerkleTree::from_leaf_hashes(leaves.iter().copied());
        type Operation<'a> = &'a dyn Fn(&MerkleTree, &dyn LeafHashes) -> Result<Vec<Hash>>;
        let supply = |tree: &MerkleTree, operation: Operation<'_>| {
            let needed = tree.leaves_needed(|tree, leaves| operation(tree, leaves));
            let given: BTreeMap<u64, Hash> = needed.iter().map(|&i| (i, leaves[i as usize])).collect();
            (needed, operation(tree, &given))
        };
        for floor in 1..=4u32 {
            let block = 1u64 << floor;
            let mut tree = MerkleTree::with_floor(floor);
            for (n, leaf) in leaves.iter().enumerate() {
                tree.push(*leaf);
                let size = n as u64 + 1;
                assert_eq!(tree.root(), full.root_at(size).unwrap(), "floor {floor}, root at {size}");
                assert!(tree.stored_hashes() < (2 * size / block + 2 * block) as usize, "floor {floor}, {size}");
                for old in 0..=size {
                    let (needed, root) = supply(&tree, &|t, l| t.root_at_with(old, l).map(|root| vec![root]));
                    assert_eq!(root.unwrap(), vec![full.root_at(old).unwrap()], "floor {floor}, root {old} of {size}");
                    assert!(needed.len() as u64 <= block, "floor {floor}, root {old} of {size}: {needed:?}");
                    let (needed, proof) = supply(&tree, &|t, l| t.consistency_proof_with(old, size, l));
                    assert_eq!(proof.unwrap(), full.consistency_proof(old, size).unwrap(), "{floor}: {old}->{size}");
                    assert!(needed.len() as u64 <= 3 * block, "floor {floor}, {old}->{size}: {needed:?}");
                }
                for index in 0..size {
                    let (needed, proof) = supply(&tree, &|t, l| t.inclusion_proof_with(index, size, l));
                    assert_eq!(proof.unwrap(), full.inclusion_proof(index, size).unwrap(), "{floor}: {index}/{size}");
                    assert!(needed.len() as u64 <= 2 * block, "floor {floor}, {index}/{size}: {needed:?}");
                    if !needed.is_empty() {
                        assert!(matches!(tree.inclusion_proof(index, size), Err(Error::InvalidProof { .. })));
                    }
                }
            }
        }
    }

    #[test]
    fn incremental_roots_agree_with_root_at() {
        let mut tree = MerkleTree::new();
        assert_eq!(tree.root(), empty_root());
        assert!(tree.is_empty());
        for (i, leaf) in synthetic_leaves(130).into_iter().enumerate() {
            assert_eq!(tree.push(leaf), i as u64);
            assert_eq!(tree.leaf(i as u64), Some(leaf));
            assert_eq!(tree.root(), tree.root_at(tree.len()).unwrap());
        }
        let full = MerkleTree::from_leaf_hashes(synthetic_leaves(130));
        assert_eq!(full, tree);
        for size in 0..=130 {
            assert_eq!(tree.root_at(size).unwrap(), reference_root(&synthetic_leaves(size)));
        }
        assert_eq!(tree.leaf(130), None);
    }

    #[test]
    fn stores_about_two_hashes_per_leaf() {
        for n in [1u64, 2, 3, 7, 8, 1000, 1024, 4097] {
            let tree = MerkleTree::from_leaf_hashes(synthetic_leaves(n));
            assert!(tree.stored_hashes() < 2 * n as usize, "{n} leaves");
        }
    }

    // ---- Requests the tree cannot answer. ----------------------------------------------

    #[test]
    fn generation_rejects_impossible_requests() {
        let tree = ct_tree();
        assert!(matches!(tree.root_at(9), Err(Error::InvalidProof { .. })));
        assert!(matches!(tree.inclusion_proof(0, 9), Err(Error::InvalidProof { .. })));
        assert!(matches!(tree.inclusion_proof(5, 5), Err(Error::InvalidProof { .. })));
        assert!(matches!(tree.inclusion_proof(0, 0), Err(Error::InvalidProof { .. })));
        assert!(matches!(tree.consistency_proof(3, 9), Err(Error::InvalidProof { .. })));
        assert!(matches!(tree.consistency_proof(6, 5), Err(Error::InvalidProof { .. })));
        assert_eq!(tree.consistency_proof(0, 8).unwrap(), Vec::<Hash>::new());
        assert_eq!(tree.consistency_proof(8, 8).unwrap(), Vec::<Hash>::new());
    }

    // ---- Forged inclusion proofs. ------------------------------------------------------

    fn assert_invalid_proof(result: Result<()>, expect: &str) {
        match result {
            Err(Error::InvalidProof { reason }) => {
                assert!(reason.contains(expect), "{reason:?} lacks {expect:?}");
            }
            other => panic!("expected InvalidProof containing {expect:?}, got {other:?}"),
        }
    }

    #[test]
    fn forged_inclusion_proofs_are_rejected() {
        let leaves = synthetic_leaves(21);
        let tree = MerkleTree::from_leaf_hashes(leaves.iter().copied());
        let (index, size) = (6u64, 21u64);
        let leaf = leaves[index as usize];
        let root = tree.root_at(size).unwrap();
        let proof = tree.inclusion_proof(index, size).unwrap();
        verify_inclusion(&leaf, index, size, &proof, &root).unwrap();

        for i in 0..proof.len() {
            let mut forged = proof.clone();
            forged[i][7] ^= 0x01;
            assert_invalid_proof(verify_inclusion(&leaf, index, size, &forged, &root), "root mismatch");
        }
        let mut other_leaf = leaf;
        other_leaf[0] ^= 0x80;
        assert_invalid_proof(verify_inclusion(&other_leaf, index, size, &proof, &root), "root mismatch");
        let mut other_root = root;
        other_root[31] ^= 0x01;
        assert_invalid_proof(verify_inclusion(&leaf, index, size, &proof, &other_root), "root mismatch");
        // Index 7 takes the same path length, so only the root comparison catches it.
        assert_invalid_proof(verify_inclusion(&leaf, 7, size, &proof, &root), "root mismatch");
        assert_invalid_proof(verify_inclusion(&leaf, 4, size, &proof, &root), "root mismatch");
        // A size whose proof has another shape is caught by the length check.
        assert_invalid_proof(verify_inclusion(&leaf, index, 8, &proof, &root), "wrong length");
        assert_invalid_proof(verify_inclusion(&leaf, index, 64, &proof, &root), "wrong length");
        assert_invalid_proof(verify_inclusion(&leaf, index, size, &proof[..proof.len() - 1], &root), "wrong length");
        let mut extended = proof.clone();
        extended.push(root);
        assert_invalid_proof(verify_inclusion(&leaf, index, size, &extended, &root), "wrong length");
        // A size whose proof has the same shape (here any size in 17..=32) combines the
        // same hashes the same way, so it verifies: the proof binds the root, and the
        // signed checkpoint is what binds the size to the root.
        verify_inclusion(&leaf, index, 22, &proof, &root).unwrap();
        assert_invalid_proof(verify_inclusion(&leaf, size, size, &proof, &root), "beyond");
        assert_invalid_proof(verify_inclusion(&leaf, 0, 0, &[], &empty_root()), "beyond");
    }

    #[test]
    fn single_leaf_tree_needs_an_empty_proof() {
        let leaf = leaf_hash(b"only");
        verify_inclusion(&leaf, 0, 1, &[], &leaf).unwrap();
        assert_invalid_proof(verify_inclusion(&leaf, 0, 1, &[leaf], &leaf), "wrong length");
    }

    #[test]
    fn overlong_proofs_are_refused_before_hashing() {
        let leaf = leaf_hash(b"x");
        let proof = vec![leaf; MAX_PROOF_HASHES + 1];
        let too_many = Err(Error::TooMany { what: "proof hashes", max: MAX_PROOF_HASHES });
        assert_eq!(verify_inclusion(&leaf, 0, u64::MAX, &proof, &leaf), too_many);
        assert_eq!(verify_consistency(1, u64::MAX, &leaf, &leaf, &proof), too_many);
    }

    #[test]
    fn inclusion_at_the_top_of_the_u64_range_is_handled() {
        // No arithmetic may overflow for the largest sizes; an honest-length bogus proof
        // simply fails.
        let leaf = leaf_hash(b"x");
        let proof = vec![leaf; 64];
        assert_invalid_proof(verify_inclusion(&leaf, u64::MAX - 1, u64::MAX, &proof, &leaf), "");
        assert!(verify_consistency(u64::MAX - 1, u64::MAX, &leaf, &leaf, &proof).is_err());
    }

    // ---- Consistency failures. ---------------------------------------------------------

    fn assert_inconsistent(result: Result<()>, expect: &str) {
        match result {
            Err(Error::InconsistentLog { reason }) => {
                assert!(reason.contains(expect), "{reason:?} lacks {expect:?}");
            }
            other => panic!("expected InconsistentLog containing {expect:?}, got {other:?}"),
        }
    }

    #[test]
    fn forged_consistency_proofs_are_rejected() {
        let tree = MerkleTree::from_leaf_hashes(synthetic_leaves(29));
        let (old, new) = (11u64, 29u64);
        let old_root = tree.root_at(old).unwrap();
        let new_root = tree.root_at(new).unwrap();
        let proof = tree.consistency_proof(old, new).unwrap();
        verify_consistency(old, new, &old_root, &new_root, &proof).unwrap();

        for i in 0..proof.len() {
            let mut forged = proof.clone();
            forged[i][0] ^= 0x01;
            assert_inconsistent(verify_consistency(old, new, &old_root, &new_root, &forged), "root mismatch");
        }
        assert_inconsistent(
            verify_consistency(old, new, &old_root, &new_root, &proof[..proof.len() - 1]),
            "wrong length",
        );
        let mut extended = proof.clone();
        extended.push(new_root);
        assert_inconsistent(verify_consistency(old, new, &old_root, &new_root, &extended), "wrong length");
        assert_inconsistent(verify_consistency(old, new, &old_root, &new_root, &[]), "wrong length");
        assert_inconsistent(verify_consistency(new, old, &new_root, &old_root, &proof), "shrank");
        assert_inconsistent(verify_consistency(old, new, &new_root, &new_root, &proof), "old root mismatch");
        assert_inconsistent(verify_consistency(old, new, &old_root, &old_root, &proof), "new root mismatch");
    }

    #[test]
    fn power_of_two_old_size_uses_the_old_root_as_first_node() {
        let tree = MerkleTree::from_leaf_hashes(synthetic_leaves(13));
        let (old_root, new_root) = (tree.root_at(8).unwrap(), tree.root_at(13).unwrap());
        let proof = tree.consistency_proof(8, 13).unwrap();
        verify_consistency(8, 13, &old_root, &new_root, &proof).unwrap();
        let mut wrong_old = old_root;
        wrong_old[3] ^= 0x10;
        assert_inconsistent(verify_consistency(8, 13, &wrong_old, &new_root, &proof), "root mismatch");
    }

    #[test]
    fn equal_and_empty_old_sizes() {
        let tree = ct_tree();
        let root = tree.root();
        verify_consistency(8, 8, &root, &root, &[]).unwrap();
        assert_inconsistent(verify_consistency(8, 8, &root, &root, &[root]), "wrong length");
        let other = tree.root_at(7).unwrap();
        assert_inconsistent(verify_consistency(8, 8, &other, &root, &[]), "root mismatch");

        verify_consistency(0, 8, &empty_root(), &root, &[]).unwrap();
        verify_consistency(0, 0, &empty_root(), &empty_root(), &[]).unwrap();
        assert_inconsistent(verify_consistency(0, 8, &empty_root(), &root, &[root]), "wrong length");
        assert_inconsistent(verify_consistency(0, 8, &root, &root, &[]), "root mismatch");
    }

    #[test]
    fn rewritten_history_is_detected() {
        // Two logs that agree on sizes but differ in an early leaf: the second rewrote
        // leaf 2 and then kept appending. No proof from either can join them.
        let honest_leaves = synthetic_leaves(40);
        let mut forked_leaves = honest_leaves.clone();
        forked_leaves[2] = leaf_hash(b"rewritten");
        let honest = MerkleTree::from_leaf_hashes(honest_leaves);
        let forked = MerkleTree::from_leaf_hashes(forked_leaves);
        for (old, new) in [(5u64, 40u64), (3, 9), (4, 33), (12, 40), (40, 40)] {
            let old_root = honest.root_at(old).unwrap();
            let new_root = forked.root_at(new).unwrap();
            for proof in [forked.consistency_proof(old, new).unwrap(), honest.consistency_proof(old, new).unwrap()] {
                assert_inconsistent(verify_consistency(old, new, &old_root, &new_root, &proof), "mismatch");
            }
        }
        // Before the rewritten leaf the two logs agree, so there is nothing to detect.
        let proof = forked.consistency_proof(2, 40).unwrap();
        verify_consistency(2, 40, &honest.root_at(2).unwrap(), &forked.root(), &proof).unwrap();
    }

    #[test]
    fn known_ct_proof_prefixes() {
        // First bytes of the proofs in the Certificate Transparency reference tests, as a
        // cross-check that our ordering matches other implementations.
        let tree = ct_tree();
        let prefixes = |proof: Vec<Hash>| -> Vec<String> { proof.iter().map(|hash| hex::encode(&hash[..4])).collect() };
        assert_eq!(prefixes(tree.inclusion_proof(0, 8).unwrap()), ["96a296d2", "5f083f0a", "6b47aaf2"]);
        assert_eq!(prefixes(tree.inclusion_proof(5, 8).unwrap()), ["bc1a0643", "ca854ea1", "d37ee418"]);
        assert_eq!(prefixes(tree.inclusion_proof(2, 3).unwrap()), ["fac54203"]);
        assert_eq!(prefixes(tree.inclusion_proof(1, 5).unwrap()), ["6e340b9c", "5f083f0a", "bc1a0643"]);
        assert_eq!(prefixes(tree.consistency_proof(1, 8).unwrap()), ["96a296d2", "5f083f0a", "6b47aaf2"]);
        assert_eq!(prefixes(tree.consistency_proof(6, 8).unwrap()), ["0ebc5d34", "ca854ea1", "d37ee418"]);
        assert_eq!(prefixes(tree.consistency_proof(2, 5).unwrap()), ["5f083f0a", "bc1a0643"]);
    }
}
