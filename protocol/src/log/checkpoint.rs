//! Signed checkpoints: tree heads in the C2SP `tlog-checkpoint` format, signed as C2SP
//! `signed-note`s with Ed25519.
//!
//! This file owns the checkpoint text byte for byte: emitting it ([`Checkpoint::body`],
//! [`SignedCheckpoint::to_text`]), parsing it from untrusted input
//! ([`SignedCheckpoint::parse`]), signing and cosigning it, verifying one signer's line
//! ([`SignedCheckpoint::verify_signature`]), and checking that a newer checkpoint extends
//! an older one ([`verify_growth`]).
//!
//! ```text
//! <origin>
//! <tree size, decimal>
//! <root hash, base64>
//!
//! — <key name> <base64(key hash || Ed25519 signature)>
//! ```

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::error::{Error, Excerpt, Result};
use crate::limits::{MAX_CHECKPOINT_BYTES, MAX_CHECKPOINT_SIGNATURES};
use crate::log::merkle::{Hash, verify_consistency};

/// Every signature line starts with an em dash (U+2014) and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";
/// The signed-note signature type byte of plain Ed25519, hashed into the key hash so the
/// same key under another algorithm gets another key hash.
const ED25519_SIGNATURE_TYPE: u8 = 0x01;
/// Length of the key hash that starts every decoded signature.
const KEY_HASH_BYTES: usize = 4;

fn invalid(reason: impl Into<String>) -> Error {
    Error::InvalidCheckpoint { reason: reason.into() }
}

/// A tree head: the log's identity, its size and its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity, e.g. `ostracon.example/log`: non-empty, no control characters.
    pub origin: String,
    /// Number of leaves in the tree.
    pub size: u64,
    /// RFC 6962 root of the tree of `size` leaves.
    pub root: Hash,
}

impl Checkpoint {
    /// A checkpoint for the tree of `size` leaves with root `root`.
    pub fn new(origin: impl Into<String>, size: u64, root: Hash) -> Self {
        Self { origin: origin.into(), size, root }
    }

    /// The note text that signatures cover:
    /// `<origin>\n<size>\n<base64 root>\n`.
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, STANDARD.encode(self.root))
    }

    /// Signs this checkpoint as the log, under key name `name` (which should be the origin).
    ///
    /// Fails if the origin or the key name could not be parsed back, or if the note would
    /// exceed [`MAX_CHECKPOINT_BYTES`].
    pub fn sign(&self, name: &str, key: &SigningKey) -> Result<SignedCheckpoint> {
        check_origin(&self.origin)?;
        check_key_name(name)?;
        let body = self.body();
        let signature = NoteSignature::ed25519(name, key, &body);
        let signed = SignedCheckpoint { checkpoint: self.clone(), body, signatures: vec![signature] };
        signed.check_length()?;
        Ok(signed)
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// The signer's key name.
    pub name: String,
    /// The key hash (signed-note "key ID"), which with `name` identifies the key and the
    /// algorithm; see [`key_hash`].
    pub key_hash: [u8; 4],
    /// The signature bytes after the key hash: 64 bytes for Ed25519. Lines of other
    /// algorithms (e.g. timestamped witness cosignatures) are longer and are kept as is.
    pub sig: Vec<u8>,
}

impl NoteSignature {
    /// An Ed25519 signature of `body` by `key` under `name`.
    fn ed25519(name: &str, key: &SigningKey, body: &str) -> Self {
        Self {
            name: name.to_owned(),
            key_hash: key_hash(name, &key.verifying_key()),
            sig: key.sign(body.as_bytes()).to_bytes().to_vec(),
        }
    }

    /// The line as it appears in the note, newline included.
    fn line(&self) -> String {
        let mut raw = Vec::with_capacity(KEY_HASH_BYTES + self.sig.len());
        raw.extend_from_slice(&self.key_hash);
        raw.extend_from_slice(&self.sig);
        format!("{SIGNATURE_PREFIX}{} {}\n", self.name, STANDARD.encode(raw))
    }

    /// Parses one signature line (without its newline).
    fn parse_line(line: &str) -> Result<Self> {
        let rest = line
            .strip_prefix(SIGNATURE_PREFIX)
            .ok_or_else(|| invalid("signature line does not start with an em dash and a space"))?;
        let (name, encoded) =
            rest.split_once(' ').ok_or_else(|| invalid("signature line has no space between name and signature"))?;
        check_key_name(name)?;
        let raw = STANDARD.decode(encoded).map_err(|_| Error::InvalidBase64 { what: "checkpoint signature" })?;
        // The key hash plus at least one byte of signature, as signed-note requires.
        match raw.split_first_chunk::<KEY_HASH_BYTES>() {
            Some((key_hash, sig)) if !sig.is_empty() => {
                Ok(Self { name: name.to_owned(), key_hash: *key_hash, sig: sig.to_vec() })
            }
            _ => Err(invalid(format!("signature from {} is too short", Excerpt::new(name)))),
        }
    }
}

/// A checkpoint with one or more signature lines.
///
/// The fields are private so the signed body, the parsed checkpoint and the signature lines
/// cannot drift apart: a value is built only by [`Checkpoint::sign`] or
/// [`SignedCheckpoint::parse`] and grows only by [`SignedCheckpoint::cosign`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The tree head the body states.
    checkpoint: Checkpoint,
    /// The exact signed text, final newline included (and any extension lines).
    body: String,
    /// The signature lines in note order; no two share a key name and key hash.
    signatures: Vec<NoteSignature>,
}

impl SignedCheckpoint {
    /// Parses a signed checkpoint note from untrusted text.
    ///
    /// This checks the syntax only; call [`Self::verify_signature`] with the keys you trust
    /// before believing anything in it. Refused: more than [`MAX_CHECKPOINT_BYTES`] bytes,
    /// more than [`MAX_CHECKPOINT_SIGNATURES`] signature lines, control characters other
    /// than newline, no blank line before the signatures, no signature, an empty body line,
    /// an empty origin, a size that is not canonical decimal, a root that is not the padded
    /// base64 of 32 bytes, a malformed signature line, or two lines with the same key name
    /// and key hash.
    pub fn parse(text: &str) -> Result<Self> {
        if text.len() > MAX_CHECKPOINT_BYTES {
            return Err(Error::TooLarge { what: "checkpoint", len: text.len(), max: MAX_CHECKPOINT_BYTES });
        }
        if text.chars().any(|c| c < ' ' && c != '\n') {
            return Err(invalid("control character in note"));
        }
        // signed-note: the text ends at the last blank line, and includes its final newline.
        let (body_lines, signature_block) =
            text.rsplit_once("\n\n").ok_or_else(|| invalid("missing blank line before the signatures"))?;
        if signature_block.is_empty() {
            return Err(invalid("no signature lines"));
        }
        let lines =
            signature_block.strip_suffix('\n').ok_or_else(|| invalid("signature lines must end with a newline"))?;
        let body = format!("{body_lines}\n");
        let checkpoint = parse_body(&body)?;

        let mut signatures: Vec<NoteSignature> = Vec::new();
        for line in lines.split('\n') {
            if signatures.len() == MAX_CHECKPOINT_SIGNATURES {
                return Err(Error::TooMany { what: "checkpoint signatures", max: MAX_CHECKPOINT_SIGNATURES });
            }
            let signature = NoteSignature::parse_line(line)?;
            if signatures.iter().any(|seen| seen.name == signature.name && seen.key_hash == signature.key_hash) {
                return Err(invalid(format!(
                    "two signatures from {} with the same key hash",
                    Excerpt::new(&signature.name)
                )));
            }
            signatures.push(signature);
        }
        Ok(Self { checkpoint, body, signatures })
    }

    /// The tree head this note states (not yet trusted unless a signature was verified).
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The signature lines in note order, including those of unknown signers.
    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// The exact signed text, final newline included.
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The extension lines after the root, if any (opaque; not produced by Ostracon).
    pub fn extension_lines(&self) -> impl Iterator<Item = &str> {
        self.body.lines().skip(3)
    }

    /// The whole note: the body, a blank line and every signature line.
    ///
    /// For a parsed note this is the parsed text exactly, because parsing accepts only the
    /// canonical encodings.
    pub fn to_text(&self) -> String {
        let mut text = self.body.clone();
        text.push('\n');
        for signature in &self.signatures {
            text.push_str(&signature.line());
        }
        text
    }

    /// Adds (or refreshes) a signature line by `key` under `name`, e.g. a buddy's
    /// cosignature that vouches it saw this tree head (split-view protection).
    ///
    /// A line with the same name and key hash is replaced, so cosigning twice is harmless.
    /// Fails, leaving the note unchanged, if the name is invalid or the note would exceed
    /// [`MAX_CHECKPOINT_SIGNATURES`] or [`MAX_CHECKPOINT_BYTES`].
    pub fn cosign(&mut self, name: &str, key: &SigningKey) -> Result<()> {
        check_key_name(name)?;
        let fresh = NoteSignature::ed25519(name, key, &self.body);
        let mut cosigned = self.clone();
        match cosigned.signatures.iter_mut().find(|line| line.name == fresh.name && line.key_hash == fresh.key_hash) {
            Some(line) => *line = fresh,
            None => cosigned.signatures.push(fresh),
        }
        if cosigned.signatures.len() > MAX_CHECKPOINT_SIGNATURES {
            return Err(Error::TooMany { what: "checkpoint signatures", max: MAX_CHECKPOINT_SIGNATURES });
        }
        cosigned.check_length()?;
        *self = cosigned;
        Ok(())
    }

    /// Verifies the signature line of the key `key` under `name`.
    ///
    /// Lines of other keys are ignored, as signed-note requires; a line that matches the
    /// name and key hash but does not verify (strict RFC 8032 checks) is an error.
    pub fn verify_signature(&self, name: &str, key: &VerifyingKey) -> Result<()> {
        let expected = key_hash(name, key);
        let line =
            self.signatures.iter().find(|line| line.name == name && line.key_hash == expected).ok_or_else(|| {
                invalid(format!("no signature from {} with key hash {}", Excerpt::new(name), hex::encode(expected)))
            })?;
        let bytes: [u8; 64] = line.sig.as_slice().try_into().map_err(|_| {
            invalid(format!(
                "signature from {} is {} bytes, not an Ed25519 signature",
                Excerpt::new(name),
                line.sig.len()
            ))
        })?;
        key.verify_strict(self.body.as_bytes(), &Signature::from_bytes(&bytes))
            .map_err(|_| invalid(format!("signature from {} does not verify", Excerpt::new(name))))
    }

    /// Fails if the note text is over [`MAX_CHECKPOINT_BYTES`], so we never emit a note
    /// that we (or anyone using our limits) would refuse to parse.
    fn check_length(&self) -> Result<()> {
        let len = self.to_text().len();
        if len > MAX_CHECKPOINT_BYTES {
            return Err(Error::TooLarge { what: "checkpoint", len, max: MAX_CHECKPOINT_BYTES });
        }
        Ok(())
    }
}

/// The signed-note key hash of an Ed25519 key:
/// the first 4 bytes of `SHA-256(name || "\n" || 0x01 || public key)`.
pub fn key_hash(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let digest: [u8; 32] = Sha256::new()
        .chain_update(name.as_bytes())
        .chain_update(b"\n")
        .chain_update([ED25519_SIGNATURE_TYPE])
        .chain_update(key.as_bytes())
        .finalize()
        .into();
    let [a, b, c, d, ..] = digest;
    [a, b, c, d]
}

/// Checks that `new` extends `old`: same origin, no fewer leaves, and `proof` is a valid
/// consistency proof from `old.root` to `new.root`.
///
/// Verify both checkpoints' signatures first; this only relates their contents.
/// Every failure means the two views cannot be one history: [`Error::InconsistentLog`]
/// (or [`Error::TooMany`] for an overlong proof).
pub fn verify_growth(old: &Checkpoint, new: &Checkpoint, proof: &[Hash]) -> Result<()> {
    if old.origin != new.origin {
        return Err(Error::InconsistentLog {
            reason: format!("origin changed from {} to {}", Excerpt::new(&old.origin), Excerpt::new(&new.origin)),
        });
    }
    if new.size < old.size {
        return Err(Error::InconsistentLog { reason: format!("log shrank from {} to {} leaves", old.size, new.size) });
    }
    verify_consistency(old.size, new.size, &old.root, &new.root, proof)
}

/// A checkpoint origin must be a non-empty line.
fn check_origin(origin: &str) -> Result<()> {
    if origin.is_empty() {
        return Err(invalid("empty origin"));
    }
    if origin.chars().any(char::is_control) {
        return Err(invalid(format!("control character in origin {}", Excerpt::new(origin))));
    }
    Ok(())
}

/// signed-note: key names are non-empty, with no Unicode space and no `+`.
fn check_key_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(invalid("empty key name"));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control() || c == '+') {
        return Err(invalid(format!("invalid key name {}", Excerpt::new(name))));
    }
    Ok(())
}

/// Parses the checkpoint body (final newline included) into the tree head.
fn parse_body(body: &str) -> Result<Checkpoint> {
    let text = body.strip_suffix('\n').ok_or_else(|| invalid("body must end with a newline"))?;
    let mut lines = text.split('\n');
    let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next()) else {
        return Err(invalid("body needs an origin, a size and a root hash"));
    };
    // Extension lines are opaque, but must not be empty (tlog-checkpoint).
    if lines.any(str::is_empty) {
        return Err(invalid("empty line in body"));
    }
    check_origin(origin)?;
    Ok(Checkpoint { origin: origin.to_owned(), size: parse_size(size)?, root: parse_root(root)? })
}

/// A tree size: ASCII decimal with no sign and no leading zero, within `u64`.
fn parse_size(text: &str) -> Result<u64> {
    let canonical =
        !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && (text == "0" || !text.starts_with('0'));
    if !canonical {
        return Err(invalid(format!("tree size {} is not canonical decimal", Excerpt::new(text))));
    }
    text.parse().map_err(|_| invalid(format!("tree size {} does not fit 64 bits", Excerpt::new(text))))
}

/// A root hash: padded standard base64 of exactly 32 bytes.
fn parse_root(text: &str) -> Result<Hash> {
    // The STANDARD engine accepts only canonical padded input, so one root has one text.
    let bytes = STANDARD.decode(text).map_err(|_| Error::InvalidBase64 { what: "checkpoint root hash" })?;
    let len = bytes.len();
    bytes.try_into().map_err(|_| invalid(format!("root hash is {len} bytes, not 32")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::merkle::{MerkleTree, leaf_hash};

    const ORIGIN: &str = "ostracon.example/log";

    fn log_key() -> SigningKey {
        let mut seed = [0u8; 32];
        for (byte, value) in seed.iter_mut().zip(1u8..) {
            *byte = value;
        }
        SigningKey::from_bytes(&seed)
    }

    fn other_key(fill: u8) -> SigningKey {
        SigningKey::from_bytes(&[fill; 32])
    }

    fn tree(n: u64) -> MerkleTree {
        MerkleTree::from_leaf_hashes((0..n).map(|i| leaf_hash(format!("record {i}").as_bytes())))
    }

    fn checkpoint_of(tree: &MerkleTree) -> Checkpoint {
        Checkpoint::new(ORIGIN, tree.len(), tree.root())
    }

    fn signed(size: u64) -> SignedCheckpoint {
        checkpoint_of(&tree(size)).sign(ORIGIN, &log_key()).unwrap()
    }

    fn assert_invalid(result: Result<SignedCheckpoint>, expect: &str) {
        match result {
            Err(Error::InvalidCheckpoint { reason }) => {
                assert!(reason.contains(expect), "{reason:?} lacks {expect:?}");
            }
            other => panic!("expected InvalidCheckpoint containing {expect:?}, got {other:?}"),
        }
    }

    fn assert_verify_fails(result: Result<()>, expect: &str) {
        match result {
            Err(Error::InvalidCheckpoint { reason }) => {
                assert!(reason.contains(expect), "{reason:?} lacks {expect:?}");
            }
            other => panic!("expected InvalidCheckpoint containing {expect:?}, got {other:?}"),
        }
    }

    /// A syntactically valid line from a signer we know nothing about.
    fn foreign_line(name: &str, sig_len: usize) -> String {
        let raw = vec![0xAB; KEY_HASH_BYTES + sig_len];
        format!("{SIGNATURE_PREFIX}{name} {}\n", STANDARD.encode(raw))
    }

    // ---- Vectors. ----------------------------------------------------------------------

    #[derive(serde::Deserialize)]
    struct Signer {
        seed: String,
        key_name: String,
        public_key: String,
        key_hash: String,
    }

    #[derive(serde::Deserialize)]
    struct CheckpointVector {
        log: Signer,
        cosigner: Signer,
        origin: String,
        size: u64,
        root: String,
        body: String,
        signed_note: String,
        cosigned_note: String,
    }

    fn signer_key(signer: &Signer) -> SigningKey {
        let seed: [u8; 32] = hex::decode(&signer.seed).unwrap().try_into().unwrap();
        let key = SigningKey::from_bytes(&seed);
        assert_eq!(hex::encode(key.verifying_key().as_bytes()), signer.public_key);
        assert_eq!(hex::encode(key_hash(&signer.key_name, &key.verifying_key())), signer.key_hash);
        key
    }

    #[test]
    fn reproduces_spec_vector() {
        let vector: CheckpointVector = serde_json::from_str(include_str!("../../../spec/vectors/log/checkpoint.json"))
            .expect("checkpoint.json parses");
        let log = signer_key(&vector.log);
        assert_eq!(log.to_bytes(), log_key().to_bytes());
        let cosigner = signer_key(&vector.cosigner);
        let root: Hash = hex::decode(&vector.root).unwrap().try_into().unwrap();
        let checkpoint = Checkpoint::new(vector.origin.as_str(), vector.size, root);
        assert_eq!(checkpoint.body(), vector.body);

        let mut note = checkpoint.sign(&vector.log.key_name, &log).unwrap();
        assert_eq!(note.to_text(), vector.signed_note);
        note.cosign(&vector.cosigner.key_name, &cosigner).unwrap();
        assert_eq!(note.to_text(), vector.cosigned_note);

        let parsed = SignedCheckpoint::parse(&vector.cosigned_note).unwrap();
        assert_eq!(parsed, note);
        assert_eq!(parsed.checkpoint(), &checkpoint);
        parsed.verify_signature(&vector.log.key_name, &log.verifying_key()).unwrap();
        parsed.verify_signature(&vector.cosigner.key_name, &cosigner.verifying_key()).unwrap();
    }

    // ---- Round trips and signatures. ---------------------------------------------------

    #[test]
    fn round_trips_through_text() {
        for size in [0u64, 1, 7, 1000] {
            let note = signed(size);
            let text = note.to_text();
            let parsed = SignedCheckpoint::parse(&text).unwrap();
            assert_eq!(parsed, note);
            assert_eq!(parsed.to_text(), text);
            assert_eq!(parsed.checkpoint().size, size);
            assert_eq!(parsed.body(), note.checkpoint().body());
            assert_eq!(parsed.extension_lines().count(), 0);
            parsed.verify_signature(ORIGIN, &log_key().verifying_key()).unwrap();
        }
        assert_eq!(signed(0).checkpoint().root, crate::log::merkle::empty_root());
    }

    #[test]
    fn tampered_root_or_size_fails_verification() {
        let note = signed(8);
        let text = note.to_text();
        let key = log_key().verifying_key();

        let mut root = note.checkpoint().root;
        root[0] ^= 0x01;
        let old_root = STANDARD.encode(note.checkpoint().root);
        let tampered = text.replacen(&old_root, &STANDARD.encode(root), 1);
        assert_ne!(tampered, text);
        let parsed = SignedCheckpoint::parse(&tampered).unwrap();
        assert_eq!(parsed.checkpoint().root, root);
        assert_verify_fails(parsed.verify_signature(ORIGIN, &key), "does not verify");

        let tampered = text.replacen("\n8\n", "\n9\n", 1);
        assert_ne!(tampered, text);
        let parsed = SignedCheckpoint::parse(&tampered).unwrap();
        assert_eq!(parsed.checkpoint().size, 9);
        assert_verify_fails(parsed.verify_signature(ORIGIN, &key), "does not verify");
    }

    #[test]
    fn tampered_signature_fails_verification() {
        let mut note = signed(3);
        note.signatures[0].sig[10] ^= 0x01;
        let parsed = SignedCheckpoint::parse(&note.to_text()).unwrap();
        assert_verify_fails(parsed.verify_signature(ORIGIN, &log_key().verifying_key()), "does not verify");
    }

    #[test]
    fn other_keys_and_names_are_not_accepted() {
        let note = signed(5);
        let stranger = other_key(0x42);
        // Signed by someone else under the log's name: the key hash does not match.
        let forged = checkpoint_of(&tree(5)).sign(ORIGIN, &stranger).unwrap();
        let forged = SignedCheckpoint::parse(&forged.to_text()).unwrap();
        assert_verify_fails(forged.verify_signature(ORIGIN, &log_key().verifying_key()), "no signature");
        assert_verify_fails(note.verify_signature("other.example/log", &log_key().verifying_key()), "no signature");
        assert_verify_fails(note.verify_signature(ORIGIN, &stranger.verifying_key()), "no signature");
    }

    #[test]
    fn a_matching_line_of_the_wrong_length_fails() {
        // A line claiming the log's name and key hash must verify, whatever its length.
        let note = signed(2);
        let key = log_key().verifying_key();
        let hash = key_hash(ORIGIN, &key);
        let mut raw = hash.to_vec();
        raw.extend_from_slice(&[0u8; 72]);
        let text = format!("{}\n{SIGNATURE_PREFIX}{ORIGIN} {}\n", note.body(), STANDARD.encode(raw));
        let parsed = SignedCheckpoint::parse(&text).unwrap();
        assert_verify_fails(parsed.verify_signature(ORIGIN, &key), "not an Ed25519 signature");
    }

    #[test]
    fn cosign_adds_a_second_verifiable_signature() {
        let mut note = signed(12);
        let buddy = other_key(0x07);
        note.cosign("buddy.example/witness", &buddy).unwrap();
        assert_eq!(note.signatures().len(), 2);
        let parsed = SignedCheckpoint::parse(&note.to_text()).unwrap();
        parsed.verify_signature(ORIGIN, &log_key().verifying_key()).unwrap();
        parsed.verify_signature("buddy.example/witness", &buddy.verifying_key()).unwrap();
        assert_verify_fails(
            parsed.verify_signature("buddy.example/witness", &other_key(0x08).verifying_key()),
            "no signature",
        );

        // Cosigning again replaces the line instead of duplicating it.
        note.cosign("buddy.example/witness", &buddy).unwrap();
        assert_eq!(note.signatures().len(), 2);
        assert_eq!(SignedCheckpoint::parse(&note.to_text()).unwrap(), parsed);

        let refused = note.cosign("bad name", &buddy);
        assert!(matches!(refused, Err(Error::InvalidCheckpoint { .. })), "{refused:?}");
        assert_eq!(note.signatures().len(), 2);
    }

    #[test]
    fn cosign_respects_the_signature_limit() {
        let mut note = signed(1);
        for i in 1..MAX_CHECKPOINT_SIGNATURES {
            note.cosign(&format!("w{i}.example"), &other_key(i as u8)).unwrap();
        }
        assert_eq!(note.signatures().len(), MAX_CHECKPOINT_SIGNATURES);
        let before = note.clone();
        assert_eq!(
            note.cosign("one-too-many.example", &other_key(0xEE)),
            Err(Error::TooMany { what: "checkpoint signatures", max: MAX_CHECKPOINT_SIGNATURES })
        );
        assert_eq!(note, before);
        SignedCheckpoint::parse(&note.to_text()).unwrap();
    }

    #[test]
    fn unknown_signers_are_kept_and_ignored() {
        let note = signed(4);
        let mut text = note.to_text();
        // A timestamped witness cosignature is 8 + 64 bytes after the key hash.
        text.push_str(&foreign_line("witness.example/w1", 72));
        text.push_str(&foreign_line(ORIGIN, 64));
        let parsed = SignedCheckpoint::parse(&text).unwrap();
        assert_eq!(parsed.signatures().len(), 3);
        assert_eq!(parsed.to_text(), text);
        parsed.verify_signature(ORIGIN, &log_key().verifying_key()).unwrap();
    }

    #[test]
    fn extension_lines_are_kept_and_signed() {
        let body = format!("{}extension one\nextension two\n", signed(3).checkpoint().body());
        let key = log_key();
        let line = NoteSignature::ed25519(ORIGIN, &key, &body).line();
        let text = format!("{body}\n{line}");
        let parsed = SignedCheckpoint::parse(&text).unwrap();
        assert_eq!(parsed.extension_lines().collect::<Vec<_>>(), ["extension one", "extension two"]);
        assert_eq!(parsed.to_text(), text);
        parsed.verify_signature(ORIGIN, &key.verifying_key()).unwrap();
        // The extension lines are covered by the signature.
        let tampered = text.replacen("extension two", "extension 2", 1);
        let tampered = SignedCheckpoint::parse(&tampered).unwrap();
        assert_verify_fails(tampered.verify_signature(ORIGIN, &key.verifying_key()), "does not verify");
    }

    // ---- Signing refuses what parsing would refuse. ------------------------------------

    #[test]
    fn sign_refuses_unparseable_notes() {
        let key = log_key();
        let root = tree(1).root();
        for origin in ["", "a\nb", "tab\there"] {
            assert_invalid(Checkpoint::new(origin, 1, root).sign(ORIGIN, &key), "origin");
        }
        for name in ["", "has space", "plus+sign", "no\u{2003}em-space"] {
            assert_invalid(Checkpoint::new(ORIGIN, 1, root).sign(name, &key), "key name");
        }
        let huge = Checkpoint::new("o".repeat(MAX_CHECKPOINT_BYTES), 1, root);
        assert!(matches!(huge.sign(ORIGIN, &key), Err(Error::TooLarge { what: "checkpoint", .. })));
    }

    // ---- Parsing untrusted text. -------------------------------------------------------

    /// A valid note whose body is replaced; the signature will not verify, but parsing
    /// must fail or succeed on syntax alone.
    fn with_body(body: &str) -> String {
        format!("{body}\n{}", foreign_line(ORIGIN, 64))
    }

    fn root_b64() -> String {
        STANDARD.encode(tree(3).root())
    }

    #[test]
    fn parse_accepts_a_minimal_note() {
        let parsed = SignedCheckpoint::parse(&with_body(&format!("o\n0\n{}\n", root_b64()))).unwrap();
        assert_eq!(parsed.checkpoint().origin, "o");
        assert_eq!(parsed.checkpoint().size, 0);
        let max = SignedCheckpoint::parse(&with_body(&format!("o\n{}\n{}\n", u64::MAX, root_b64()))).unwrap();
        assert_eq!(max.checkpoint().size, u64::MAX);
    }

    #[test]
    fn parse_rejects_oversized_text() {
        // Valid in every other way: the extension line is what makes it too large.
        let padding = "x".repeat(MAX_CHECKPOINT_BYTES);
        let text = with_body(&format!("o\n1\n{}\n{padding}\n", root_b64()));
        assert!(matches!(
            SignedCheckpoint::parse(&text),
            Err(Error::TooLarge { what: "checkpoint", max: MAX_CHECKPOINT_BYTES, .. })
        ));
        // Just under the limit parses.
        let overhead = text.len() - padding.len();
        let short = &padding[..MAX_CHECKPOINT_BYTES - overhead];
        let text = with_body(&format!("o\n1\n{}\n{short}\n", root_b64()));
        assert_eq!(text.len(), MAX_CHECKPOINT_BYTES);
        SignedCheckpoint::parse(&text).unwrap();
    }

    #[test]
    fn parse_rejects_too_many_signature_lines() {
        let body = format!("o\n1\n{}\n", root_b64());
        let mut text = format!("{body}\n");
        for i in 0..MAX_CHECKPOINT_SIGNATURES {
            text.push_str(&foreign_line(&format!("w{i}"), 64));
        }
        assert_eq!(SignedCheckpoint::parse(&text).unwrap().signatures().len(), MAX_CHECKPOINT_SIGNATURES);
        text.push_str(&foreign_line("one-more", 64));
        assert!(text.len() < MAX_CHECKPOINT_BYTES);
        assert_eq!(
            SignedCheckpoint::parse(&text),
            Err(Error::TooMany { what: "checkpoint signatures", max: MAX_CHECKPOINT_SIGNATURES })
        );
    }

    #[test]
    fn parse_rejects_malformed_structure() {
        let body = format!("o\n1\n{}\n", root_b64());
        let line = foreign_line(ORIGIN, 64);
        assert_invalid(SignedCheckpoint::parse(&format!("{body}{line}")), "missing blank line");
        assert_invalid(SignedCheckpoint::parse(&format!("{body}\n")), "no signature lines");
        assert_invalid(SignedCheckpoint::parse(&format!("{body}\n{}", line.trim_end())), "end with a newline");
        assert_invalid(SignedCheckpoint::parse(&format!("{body}\n{line}\n")), "no signature lines");
        assert_invalid(SignedCheckpoint::parse(&format!("{body}\r\n{line}")), "control character");
        assert_invalid(SignedCheckpoint::parse(&with_body("o\n1\n")), "origin, a size and a root");
        assert_invalid(SignedCheckpoint::parse(&with_body(&format!("\n1\n{}\n", root_b64()))), "empty origin");
        assert_invalid(SignedCheckpoint::parse(&with_body(&format!("{body}ext\n\nmore\n"))), "empty line in body");
        assert_invalid(SignedCheckpoint::parse(&format!("{body}\n{line}{line}")), "same key hash");
    }

    #[test]
    fn parse_rejects_non_canonical_sizes() {
        for size in ["007", "00", "+7", "-1", "7 ", " 7", "0x10", "", "18446744073709551616", "٣"] {
            let text = with_body(&format!("o\n{size}\n{}\n", root_b64()));
            let expect = if size == "18446744073709551616" { "fit 64 bits" } else { "canonical" };
            assert_invalid(SignedCheckpoint::parse(&text), expect);
        }
    }

    #[test]
    fn parse_rejects_bad_root_hashes() {
        let unpadded = "A".repeat(43);
        // 43 characters carry 258 bits; the 2 bits past the 32 bytes must be zero.
        let trailing_bits = format!("{}B=", "A".repeat(42));
        assert_eq!(STANDARD.encode([0u8; 32]), format!("{unpadded}="));
        for bad in ["!!!!", &unpadded, "not base64 at all", &trailing_bits] {
            let text = with_body(&format!("o\n1\n{bad}\n"));
            assert_eq!(
                SignedCheckpoint::parse(&text),
                Err(Error::InvalidBase64 { what: "checkpoint root hash" }),
                "{bad:?}"
            );
        }
        let short = STANDARD.encode([0u8; 31]);
        assert_invalid(SignedCheckpoint::parse(&with_body(&format!("o\n1\n{short}\n"))), "not 32");
    }

    #[test]
    fn parse_rejects_malformed_signature_lines() {
        let body = format!("o\n1\n{}\n", root_b64());
        let encoded = STANDARD.encode([7u8; 68]);
        let cases = [
            (format!("- {ORIGIN} {encoded}\n"), "em dash"),
            (format!("\u{2014}{ORIGIN} {encoded}\n"), "em dash"),
            (format!("{SIGNATURE_PREFIX}{ORIGIN}\n"), "no space"),
            (format!("{SIGNATURE_PREFIX} {encoded}\n"), "empty key name"),
            (format!("{SIGNATURE_PREFIX}a+b {encoded}\n"), "invalid key name"),
            (format!("{SIGNATURE_PREFIX}{ORIGIN} {}\n", STANDARD.encode([7u8; 4])), "too short"),
            (format!("{SIGNATURE_PREFIX}{ORIGIN} {}\n", STANDARD.encode([7u8; 2])), "too short"),
            (format!("{SIGNATURE_PREFIX}{ORIGIN} \n"), "too short"),
        ];
        for (line, expect) in cases {
            assert_invalid(SignedCheckpoint::parse(&format!("{body}\n{line}")), expect);
        }
        for encoded in ["@@@@", "AAAAAAA", &format!("{encoded} extra")] {
            let text = format!("{body}\n{SIGNATURE_PREFIX}{ORIGIN} {encoded}\n");
            assert_eq!(
                SignedCheckpoint::parse(&text),
                Err(Error::InvalidBase64 { what: "checkpoint signature" }),
                "{encoded:?}"
            );
        }
    }

    // ---- Growth between two checkpoints. -----------------------------------------------

    fn assert_inconsistent(result: Result<()>, expect: &str) {
        match result {
            Err(Error::InconsistentLog { reason }) => {
                assert!(reason.contains(expect), "{reason:?} lacks {expect:?}");
            }
            other => panic!("expected InconsistentLog containing {expect:?}, got {other:?}"),
        }
    }

    #[test]
    fn growth_is_verified() {
        let log = tree(30);
        let old = Checkpoint::new(ORIGIN, 11, log.root_at(11).unwrap());
        let new = checkpoint_of(&log);
        let proof = log.consistency_proof(11, 30).unwrap();
        verify_growth(&old, &new, &proof).unwrap();
        verify_growth(&new, &new, &[]).unwrap();

        let renamed = Checkpoint::new("elsewhere.example/log", new.size, new.root);
        assert_inconsistent(verify_growth(&old, &renamed, &proof), "origin changed");
        // Shrinking is caught before the proof is looked at.
        assert_inconsistent(verify_growth(&new, &old, &proof), "shrank");
        assert_inconsistent(verify_growth(&new, &old, &[]), "shrank");
    }

    #[test]
    fn a_forked_log_fails_growth() {
        let honest = tree(30);
        // The same log, but leaf 1 was rewritten after the consumer saw size 11.
        let forked = MerkleTree::from_leaf_hashes((0..30u64).map(|i| {
            let record = if i == 1 { "rewritten".to_owned() } else { format!("record {i}") };
            leaf_hash(record.as_bytes())
        }));
        let old = Checkpoint::new(ORIGIN, 11, honest.root_at(11).unwrap());
        let new = checkpoint_of(&forked);
        let proof = forked.consistency_proof(11, 30).unwrap();
        assert_inconsistent(verify_growth(&old, &new, &proof), "mismatch");
        let same_size = Checkpoint::new(ORIGIN, 11, forked.root_at(11).unwrap());
        assert_inconsistent(verify_growth(&old, &same_size, &[]), "mismatch");
    }
}
