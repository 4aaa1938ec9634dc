//! Shared helpers for the protocol's integration tests: vector files, keys, a replay guard.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ostracon_protocol::envelope::{Nonce, ReplayGuard};
use ostracon_protocol::ids::BareJid;
use ostracon_protocol::keys::NodeKey;
use ostracon_protocol::time::Timestamp;

/// `spec/vectors` at the repository root.
pub fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec/vectors")
}

/// Reads a vector file.
pub fn read_vector(relative: &str) -> String {
    let path = vectors_dir().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Compares `actual` with the vector file; with `UPDATE_VECTORS=1` rewrites the file instead
/// (then review the diff: the file is the specification, not a copy of the code's output).
pub fn check_vector(relative: &str, actual: &str) {
    let path = vectors_dir().join(relative);
    if std::env::var_os("UPDATE_VECTORS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {} (run with UPDATE_VECTORS=1 to create it): {e}", path.display()));
    assert_eq!(actual, expected, "output differs from {}", path.display());
}

/// Files directly in a vector subdirectory with the given extension, sorted.
pub fn vector_files(dir: &str, extension: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(vectors_dir().join(dir))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(extension))
        .map(|name| format!("{dir}/{name}"))
        .collect();
    names.sort();
    names
}

/// A deterministic key from one repeated byte.
pub fn key(byte: u8) -> NodeKey {
    NodeKey::from_seed(&[byte; 32])
}

/// A JID from text.
pub fn jid(text: &str) -> BareJid {
    BareJid::parse(text).unwrap()
}

/// A timestamp from RFC 3339 text.
pub fn ts(text: &str) -> Timestamp {
    Timestamp::parse(text).unwrap()
}

/// A nonce from one repeated byte.
pub fn nonce(byte: u8) -> Nonce {
    Nonce::from_bytes(&[byte; 16])
}

/// A replay guard that remembers everything.
#[derive(Default)]
pub struct SeenNonces(pub BTreeSet<(String, String)>);

impl ReplayGuard for SeenNonces {
    fn check_and_remember(&mut self, signer: &BareJid, nonce: &Nonce, _ts: Timestamp) -> bool {
        self.0.insert((signer.to_string(), nonce.as_str().to_owned()))
    }
}
