//! `ostracon verify URL`: checks a published list end to end, trusting nothing but the key.
//!
//! 1. The snapshot's detached signature verifies with the pinned key (or the key the node
//!    publishes at `/.well-known/ostracon`). A key pinned before a rotation is followed through
//!    the log's `key-rotated` leaves, each carrying the claim the retiring key signed for its
//!    successor: the key that signs now is trusted only if that chain reaches it.
//! 2. The current checkpoint is signed by the same key.
//! 3. Every log leaf up to that checkpoint is fetched; their Merkle root equals the signed
//!    root, and the root at the snapshot's size equals the root the snapshot names.
//! 4. Replaying the leaves up to the snapshot's size yields exactly the snapshot's entries.
//! 5. Given a saved checkpoint, the consistency proof shows the log only grew since.
//!
//! Any failure names what failed; the new checkpoint is saved only when everything holds.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ostracon_protocol::ids::Offender;
use ostracon_protocol::keys::{KeyRotation, PublicKey};
use ostracon_protocol::log::checkpoint::SignedCheckpoint;
use ostracon_protocol::log::merkle::{Hash, MerkleTree, leaf_hash, verify_consistency};
use ostracon_protocol::log::record::{AuditRecord, ListState};
use ostracon_protocol::log::seal::LogLeaf;
use ostracon_protocol::time::Timestamp;
use ostracon_store::model::ListKind;
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use crate::client::ApiClient;
use crate::error::ServerError;

/// What to verify.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// The node's base URL.
    pub url: String,
    /// Which list.
    pub list: ListKind,
    /// A checkpoint saved by an earlier run (read, then replaced on success).
    pub checkpoint_file: Option<PathBuf>,
    /// A pinned public key (base64); otherwise the node's published key is used.
    pub key: Option<String>,
    /// The largest log accepted (leaves).
    pub max_leaves: u64,
}

/// Default for [`VerifyOptions::max_leaves`]: 50 million leaves, 1.6 GB of leaf hashes.
pub const DEFAULT_MAX_LEAVES: u64 = 50_000_000;

/// What was verified.
#[derive(Clone, Debug)]
pub struct VerifyReport {
    /// Entries in the snapshot.
    pub entries: usize,
    /// The log size the snapshot reflects.
    pub snapshot_log_size: u64,
    /// The current signed log size.
    pub log_size: u64,
    /// The size of the saved checkpoint the log was shown to extend.
    pub grew_from: Option<u64>,
    /// The key that signed everything.
    pub key_id: String,
    /// The signed rotations followed from the pinned key to it, oldest first (`old -> new` ids).
    pub rotations: Vec<(String, String)>,
}

fn fail(message: impl Into<String>) -> ServerError {
    ServerError::Verify(message.into())
}

#[derive(Deserialize)]
struct SnapshotDocument {
    checkpoint: SnapshotCheckpoint,
    items: Vec<SnapshotItem>,
}

#[derive(Deserialize)]
struct SnapshotCheckpoint {
    origin: String,
    size: u64,
    root: String,
}

#[derive(Deserialize)]
struct SnapshotItem {
    value: String,
    action: String,
    expires: Option<Timestamp>,
    log_index: u64,
}

/// Parses `keyid="…", sig="…"`.
fn parse_signature_header(value: &str) -> Option<(String, [u8; 64])> {
    let mut keyid = None;
    let mut sig = None;
    for part in value.split(',') {
        let (name, quoted) = part.trim().split_once('=')?;
        let unquoted = quoted.trim_matches('"');
        match name {
            "keyid" => keyid = Some(unquoted.to_owned()),
            "sig" => sig = STANDARD.decode(unquoted).ok().and_then(|bytes| bytes.try_into().ok()),
            _ => {}
        }
    }
    Some((keyid?, sig?))
}

fn decode_hash(text: &str, what: &str) -> Result<Hash, ServerError> {
    STANDARD
        .decode(text)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| fail(format!("{what} is not a base64 SHA-256 hash")))
}

/// Runs every check; on success saves the new checkpoint to `checkpoint_file`.
pub async fn verify(options: &VerifyOptions) -> Result<VerifyReport, ServerError> {
    let client = ApiClient::new(&options.url, None)?;

    let well_known = client.json(Method::GET, "/.well-known/ostracon", None).await?;
    let domain = well_known["domain"].as_str().ok_or_else(|| fail("/.well-known/ostracon has no domain"))?.to_owned();
    let published: Vec<PublicKey> = well_known["keys"]
        .as_array()
        .map(|keys| {
            keys.iter().filter_map(|k| k["key"].as_str()).filter_map(|k| PublicKey::from_base64(k).ok()).collect()
        })
        .unwrap_or_default();

    let path = format!("/v1/blocklist?kind={}&format=json", options.list.as_str());
    let snapshot = client.raw(Method::GET, &path, None).await?;
    if !snapshot.status.is_success() {
        return Err(fail(format!("GET {path} answered {}", snapshot.status)));
    }
    let header = snapshot
        .headers
        .get(ostracon_web::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| fail("the snapshot carries no Ostracon-Signature header"))?;
    let (key_id, signature) =
        parse_signature_header(header).ok_or_else(|| fail("malformed Ostracon-Signature header"))?;
    let signing_key = published.iter().find(|k| k.key_id().as_str() == key_id).copied();
    // With a pinned key that no longer signs, the published key with the signer's id is used
    // for now, and trusted at the end only if the signed rotations lead to it from the pin.
    let (key, pinned) = match &options.key {
        Some(pinned) => {
            let pinned = PublicKey::from_base64(pinned).map_err(|e| fail(format!("--key: {e}")))?;
            if pinned.key_id().as_str() == key_id {
                (pinned, None)
            } else {
                let current = signing_key.ok_or_else(|| {
                    fail(format!(
                        "the snapshot is signed by key {key_id}, not by the pinned key {}, and the node publishes no key {key_id}",
                        pinned.key_id()
                    ))
                })?;
                (current, Some(pinned))
            }
        }
        None => (signing_key.ok_or_else(|| fail(format!("the node publishes no key with id {key_id}")))?, None),
    };
    let mut chain = pinned.map(RotationChain::from);
    if !key.verify(&snapshot.body, &signature) {
        return Err(fail(
            "snapshot signature does not verify: the list was altered after signing or signed by another key",
        ));
    }
    let document: SnapshotDocument =
        serde_json::from_slice(&snapshot.body).map_err(|e| fail(format!("snapshot is not the expected JSON: {e}")))?;

    let note_text = client.raw(Method::GET, "/v1/log/checkpoint", None).await?;
    let note = SignedCheckpoint::parse(&String::from_utf8_lossy(&note_text.body))
        .map_err(|e| fail(format!("checkpoint: {e}")))?;
    note.verify_signature(&domain, key.verifying_key()).map_err(|e| fail(format!("checkpoint signature: {e}")))?;
    let checkpoint = note.checkpoint().clone();
    if checkpoint.origin != document.checkpoint.origin {
        return Err(fail(format!(
            "the snapshot names log {:?} but the checkpoint is for {:?}",
            document.checkpoint.origin, checkpoint.origin
        )));
    }
    let snapshot_size = document.checkpoint.size;
    if snapshot_size > checkpoint.size {
        return Err(fail(format!(
            "the snapshot reflects log size {snapshot_size}, beyond the signed size {}",
            checkpoint.size
        )));
    }

    // Fetch every leaf up to the signed size, keeping only its hash, and replay the leaves up
    // to the snapshot's size as they arrive: memory stays at 32 bytes per leaf plus the list.
    if checkpoint.size > options.max_leaves {
        return Err(fail(format!(
            "the log has {} leaves, more than this run accepts ({}; see --max-leaves)",
            checkpoint.size, options.max_leaves
        )));
    }
    let mut hashes: Vec<Hash> = Vec::with_capacity(usize::try_from(checkpoint.size.min(1 << 20)).unwrap_or(0));
    let mut state = ListState::new();
    let mut unreadable = None;
    while (hashes.len() as u64) < checkpoint.size {
        let start = hashes.len() as u64;
        let page =
            client.json(Method::GET, &format!("/v1/log/entries?start={start}&end={}", checkpoint.size), None).await?;
        let entries = page["entries"].as_array().ok_or_else(|| fail("log entries page has no entries"))?;
        if entries.is_empty() {
            return Err(fail(format!("the log stops at {start} leaves but its checkpoint says {}", checkpoint.size)));
        }
        for (offset, entry) in entries.iter().enumerate() {
            let index = start + offset as u64;
            if entry["index"].as_u64() != Some(index) || index >= checkpoint.size {
                return Err(fail(format!("log entry {index} came back out of order or beyond the checkpoint")));
            }
            let leaf = entry["leaf"]
                .as_str()
                .and_then(|b| STANDARD.decode(b).ok())
                .ok_or_else(|| fail("log entry without base64 leaf"))?;
            // An unreadable leaf is reported after the root check: a leaf that does not hash
            // into the signed root is an altered log, whatever it says.
            let wanted = (index < snapshot_size && unreadable.is_none()) || chain.is_some();
            match wanted.then(|| LogLeaf::from_leaf(&leaf)) {
                // A sealed leaf is checked like any other (it hashes into the root) and never
                // changes a list, whether its opening is kept or erased.
                Some(Ok(record)) => {
                    if index < snapshot_size && unreadable.is_none() {
                        state.apply_leaf(index, &record);
                    }
                    if let (Some(chain), LogLeaf::Open(rotation)) = (chain.as_mut(), &record) {
                        chain.follow(index, rotation)?;
                    }
                }
                Some(Err(error)) if index < snapshot_size && unreadable.is_none() => {
                    unreadable = Some(format!("log leaf {index}: {error}"));
                }
                _ => {}
            }
            hashes.push(leaf_hash(&leaf));
        }
    }
    let tree = MerkleTree::from_leaf_hashes(hashes);
    if tree.root() != checkpoint.root {
        return Err(fail("the log's entries do not hash to the signed checkpoint root: the log was altered"));
    }
    let snapshot_root = decode_hash(&document.checkpoint.root, "snapshot checkpoint root")?;
    if tree.root_at(snapshot_size).map_err(|e| fail(e.to_string()))? != snapshot_root {
        return Err(fail(format!(
            "the root the snapshot names is not the log's root at size {snapshot_size}: the snapshot is not in this log"
        )));
    }

    if let Some(unreadable) = unreadable {
        return Err(fail(unreadable));
    }
    let rotations = match chain {
        Some(chain) if chain.current != key => {
            return Err(fail(format!(
                "the node signs with key {key_id}, but no rotation signed in its log leads there from the pinned key {} \
                 (the chain reaches {})",
                chain.pinned.key_id(),
                chain.current.key_id()
            )));
        }
        Some(chain) => chain.steps,
        None => Vec::new(),
    };
    // The replayed log up to the snapshot, compared entry by entry.
    let expected: BTreeMap<String, (String, Option<Timestamp>, u64)> = state
        .entries()
        .iter()
        .filter(|(offender, _)| ListKind::of(offender) == options.list)
        .map(|(offender, entry): (&Offender, _)| {
            (offender.to_string(), (entry.action.clone(), entry.expires, entry.log_index))
        })
        .collect();
    let mut published_entries = BTreeMap::new();
    for item in &document.items {
        if published_entries.insert(item.value.clone(), (item.action.clone(), item.expires, item.log_index)).is_some() {
            return Err(fail(format!("the snapshot lists {} twice", item.value)));
        }
    }
    for (value, entry) in &published_entries {
        match expected.get(value) {
            None => {
                return Err(fail(format!(
                    "the snapshot lists {value}, which the log does not list at size {snapshot_size}"
                )));
            }
            Some(logged) if logged != entry => {
                return Err(fail(format!(
                    "the snapshot's entry for {value} differs from the log (action, expiry or log index)"
                )));
            }
            Some(_) => {}
        }
    }
    if let Some(missing) = expected.keys().find(|value| !published_entries.contains_key(*value)) {
        return Err(fail(format!("the log lists {missing} at size {snapshot_size} but the snapshot omits it")));
    }

    // The log only grew since the saved checkpoint.
    let mut grew_from = None;
    if let Some(file) = &options.checkpoint_file
        && file.exists()
    {
        let saved_text =
            std::fs::read_to_string(file).map_err(|source| ServerError::Io { path: file.clone(), source })?;
        let saved = SignedCheckpoint::parse(&saved_text)
            .map_err(|e| fail(format!("saved checkpoint {}: {e}", file.display())))?;
        // A checkpoint saved before a key rotation is signed by a key the node now lists as retired.
        let signed_by_known_key = std::iter::once(&key)
            .chain(published.iter())
            .any(|candidate| saved.verify_signature(&domain, candidate.verifying_key()).is_ok());
        if !signed_by_known_key {
            return Err(fail(format!(
                "saved checkpoint {} is not signed by any key the node publishes",
                file.display()
            )));
        }
        let old = saved.checkpoint();
        if old.origin != checkpoint.origin {
            return Err(fail(format!("the saved checkpoint is for log {:?}, not {:?}", old.origin, checkpoint.origin)));
        }
        if old.size > checkpoint.size {
            return Err(fail(format!(
                "the log shrank from {} to {} leaves since the saved checkpoint",
                old.size, checkpoint.size
            )));
        }
        let proof_page = client
            .json(Method::GET, &format!("/v1/log/proof/consistency?old={}&new={}", old.size, checkpoint.size), None)
            .await?;
        let proof: Vec<Hash> = proof_page["hashes"]
            .as_array()
            .ok_or_else(|| fail("consistency proof has no hashes"))?
            .iter()
            .map(|h: &Value| decode_hash(h.as_str().unwrap_or_default(), "consistency proof hash"))
            .collect::<Result<_, _>>()?;
        verify_consistency(old.size, checkpoint.size, &old.root, &checkpoint.root, &proof).map_err(|e| {
            fail(format!("the log is not an extension of the saved checkpoint (a fork or a rewrite): {e}"))
        })?;
        grew_from = Some(old.size);
    }
    if let Some(file) = &options.checkpoint_file {
        let temporary = file.with_extension("tmp");
        std::fs::write(&temporary, note.to_text())
            .map_err(|source| ServerError::Io { path: temporary.clone(), source })?;
        std::fs::rename(&temporary, file).map_err(|source| ServerError::Io { path: file.clone(), source })?;
    }
    Ok(VerifyReport {
        entries: published_entries.len(),
        snapshot_log_size: snapshot_size,
        log_size: checkpoint.size,
        grew_from,
        key_id,
        rotations,
    })
}

/// Following a pinned key through the log's signed rotations, in log order.
struct RotationChain {
    pinned: PublicKey,
    current: PublicKey,
    steps: Vec<(String, String)>,
}

impl From<PublicKey> for RotationChain {
    fn from(pinned: PublicKey) -> Self {
        Self { pinned, current: pinned, steps: Vec::new() }
    }
}

impl RotationChain {
    /// Takes the step `record` offers if it rotates the current key. A rotation of the current
    /// key whose proof the current key did not sign is a forgery: verification stops there.
    fn follow(&mut self, index: u64, record: &AuditRecord) -> Result<(), ServerError> {
        let AuditRecord::KeyRotated { old, new, proof, at } = record else { return Ok(()) };
        if old != self.current.key_id().as_str() {
            return Ok(());
        }
        let Some(proof) = proof else {
            return Err(fail(format!(
                "log leaf {index} rotates the pinned chain's key {old} to {new} without the old key's signed claim \
                 (a node from before rotations were logged with it): pin the current key instead"
            )));
        };
        let successor = KeyRotation::follow(proof, &self.current, *at)
            .map_err(|e| fail(format!("log leaf {index}: the rotation of key {old} is not signed by it: {e}")))?;
        if successor.key_id().as_str() != new {
            return Err(fail(format!(
                "log leaf {index} names new key {new}, but its signed claim names {}",
                successor.key_id()
            )));
        }
        self.steps.push((old.clone(), new.clone()));
        self.current = successor;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ostracon_protocol::envelope::{Nonce, sign};
    use ostracon_protocol::ids::BareJid;
    use ostracon_protocol::keys::{NodeKey, PublishedKey};

    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix(1_800_000_000 + secs).unwrap()
    }

    /// A `key-rotated` leaf from `old` to `new`, its proof signed by `signer`.
    fn rotation(old: &NodeKey, new: &NodeKey, signer: &NodeKey) -> AuditRecord {
        let claim = KeyRotation { old_kid: old.key_id(), new_key: PublishedKey::new(new.public(), at(0)) };
        let jid = BareJid::parse("incidents.node.example").unwrap();
        let signed = sign(&claim, signer, &jid, at(0), Nonce::from_bytes(&[1; 16]));
        let proof = signed.map(|s| Box::new(s.links()[0].clone())).ok();
        AuditRecord::KeyRotated { at: at(0), old: old.key_id().to_string(), new: new.key_id().to_string(), proof }
    }

    #[test]
    fn the_chain_takes_only_rotations_the_current_key_signed() {
        let (first, second, third) =
            (NodeKey::from_seed(&[1; 32]), NodeKey::from_seed(&[2; 32]), NodeKey::from_seed(&[3; 32]));
        let mut chain = RotationChain::from(first.public());
        // A rotation of some other key is not a step of this chain.
        chain.follow(0, &rotation(&third, &second, &third)).unwrap();
        assert_eq!(chain.current, first.public());
        chain.follow(1, &rotation(&first, &second, &first)).unwrap();
        assert_eq!((chain.current, chain.steps.len()), (second.public(), 1));

        // A hostile log rotates the chain's key to its own, signed by its own key: refused.
        let attacker = NodeKey::from_seed(&[4; 32]);
        let forged = chain.follow(2, &rotation(&second, &attacker, &attacker)).unwrap_err();
        assert!(forged.to_string().contains("not signed by it"), "{forged}");
        // A proof that names another successor than the leaf does: refused.
        let AuditRecord::KeyRotated { at, old, proof, .. } = rotation(&second, &third, &second) else { unreachable!() };
        let swapped = AuditRecord::KeyRotated { at, old, new: attacker.key_id().to_string(), proof };
        assert!(chain.follow(3, &swapped).unwrap_err().to_string().contains("its signed claim names"));
        // A rotation of the chain's key without any proof: refused, not skipped.
        let AuditRecord::KeyRotated { at, old, new, .. } = rotation(&second, &third, &second) else { unreachable!() };
        let bare = AuditRecord::KeyRotated { at, old, new, proof: None };
        assert!(chain.follow(4, &bare).unwrap_err().to_string().contains("without the old key's signed claim"));
        assert_eq!(chain.current, second.public(), "no refused step moved the chain");
    }
}
