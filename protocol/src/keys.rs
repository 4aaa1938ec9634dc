//! Ed25519 node keys, public keys, key ids and operator-facing fingerprints.
//!
//! A node signs with one [`NodeKey`] at a time; peers pin its [`PublicKey`]s by [`KeyId`]
//! when a buddy relation is approved. The crate never fetches keys: callers hand a
//! [`KeyResolver`] to verification.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256, Sha512};

use crate::error::{Error, Excerpt, Result};
use crate::ids::{BareJid, KeyId};
use crate::time::Timestamp;

/// The only signature algorithm of protocol version 0.
pub const ALG_ED25519: &str = "ed25519";

/// A node's private signing key. `Debug` never shows the secret.
#[derive(Clone)]
pub struct NodeKey(SigningKey);

impl NodeKey {
    /// Builds the key from its 32-byte seed (drawn by the caller: this crate has no randomness).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// The 32-byte seed, for the caller to store (the server writes it to a 0600 file).
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The id of the public half.
    pub fn key_id(&self) -> KeyId {
        self.public().key_id()
    }

    /// Signs exact bytes.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }

    /// Signs a message handed over in chunks, exactly as [`NodeKey::sign`] signs their
    /// concatenation. Ed25519 hashes the message twice: the first pass reads the chunks as the
    /// iterator yields them (a producer on another thread can still be writing the rest), and
    /// `each` sees each chunk then, once, in order; the second pass reads the chunks kept.
    pub fn sign_chunks<C: AsRef<[u8]>>(
        &self,
        chunks: impl IntoIterator<Item = C>,
        each: impl FnMut(&[u8]),
    ) -> Result<[u8; 64]> {
        use ed25519_dalek::hazmat::{ExpandedSecretKey, raw_sign_byupdate};
        // Expanded from this key and checked against its own public half: the pairing the
        // hazmat warning is about cannot go wrong here.
        let expanded = ExpandedSecretKey::from(&self.0.to_bytes());
        let source = RefCell::new(Some(chunks.into_iter()));
        let (kept, each) = (RefCell::new(Vec::new()), RefCell::new(each));
        let update = |digest: &mut Sha512| {
            let first_pass = source.borrow_mut().take();
            match first_pass {
                Some(chunks) => {
                    for chunk in chunks {
                        digest.update(chunk.as_ref());
                        (each.borrow_mut())(chunk.as_ref());
                        kept.borrow_mut().push(chunk);
                    }
                }
                None => kept.borrow().iter().for_each(|chunk| digest.update(chunk.as_ref())),
            }
            Ok(())
        };
        raw_sign_byupdate::<Sha512, _>(&expanded, update, &self.0.verifying_key())
            .map(|signature| signature.to_bytes())
            .map_err(|_| Error::SigningFailed { what: "a chunked message" })
    }

    /// The dalek key, for the checkpoint signer.
    pub fn signing_key(&self) -> &SigningKey {
        &self.0
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeKey({})", self.key_id())
    }
}

/// An Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Parses 32 raw bytes; refuses points that are not valid keys.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::InvalidValue { field: "public key", value: Excerpt::new("not 32 bytes") })?;
        VerifyingKey::from_bytes(&array)
            .map(Self)
            .map_err(|_| Error::InvalidValue { field: "public key", value: Excerpt::new("not a valid Ed25519 point") })
    }

    /// Parses standard padded base64 of the 32 raw bytes.
    pub fn from_base64(text: &str) -> Result<Self> {
        if text.len() > 64 {
            return Err(Error::TooLarge { what: "public key", len: text.len(), max: 64 });
        }
        let bytes = STANDARD.decode(text.trim()).map_err(|_| Error::InvalidBase64 { what: "public key" })?;
        Self::from_bytes(&bytes)
    }

    /// Standard padded base64 of the 32 raw bytes.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0.as_bytes())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// First 16 bytes of SHA-256 over the raw key, in hex.
    pub fn key_id(&self) -> KeyId {
        let digest = Sha256::digest(self.0.as_bytes());
        KeyId::from_digest_prefix(&digest[..16])
    }

    /// The full SHA-256 of the raw key in groups of four hex digits, for operators to compare aloud.
    pub fn fingerprint(&self) -> String {
        let hex = hex::encode(Sha256::digest(self.0.as_bytes()));
        hex.as_bytes().chunks(4).map(|group| String::from_utf8_lossy(group).into_owned()).collect::<Vec<_>>().join(" ")
    }

    /// Verifies a signature over exact bytes (strict: rejects malleable and small-order forms).
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        self.0.verify_strict(message, &Signature::from_bytes(signature)).is_ok()
    }

    /// The dalek key, for the checkpoint verifier.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.0
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.key_id())
    }
}

impl Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::from_base64(&text).map_err(serde::de::Error::custom)
    }
}

/// Where verification finds the public key for a (signer, key id) pair.
///
/// The server implements it over the keys it pinned for each buddy.
pub trait KeyResolver {
    /// The trusted key, or `None` if this signer has no such key.
    fn resolve(&self, signer: &BareJid, kid: &KeyId) -> Option<PublicKey>;
}

/// A simple in-memory key ring.
#[derive(Clone, Debug, Default)]
pub struct KeyRing(BTreeMap<(BareJid, KeyId), PublicKey>);

impl KeyRing {
    /// An empty ring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts `key` for `signer`.
    pub fn insert(&mut self, signer: BareJid, key: PublicKey) {
        self.0.insert((signer, key.key_id()), key);
    }
}

impl KeyResolver for KeyRing {
    fn resolve(&self, signer: &BareJid, kid: &KeyId) -> Option<PublicKey> {
        self.0.get(&(signer.clone(), kid.clone())).copied()
    }
}

/// A key as published at `/.well-known/ostracon` and in the keys IQ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedKey {
    /// Key id (derived from `key`; checked on parse).
    pub kid: KeyId,
    /// Always [`ALG_ED25519`].
    pub alg: String,
    /// The public key, base64.
    pub key: PublicKey,
    /// From when signatures by this key are valid.
    pub valid_from: Timestamp,
    /// Until when, if the key was rotated out or retired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<Timestamp>,
}

impl PublishedKey {
    /// Describes `key` as valid from `valid_from`.
    pub fn new(key: PublicKey, valid_from: Timestamp) -> Self {
        Self { kid: key.key_id(), alg: ALG_ED25519.to_owned(), key, valid_from, valid_until: None }
    }

    /// Checks that the id matches the key and the algorithm is known.
    pub fn validate(&self) -> Result<()> {
        if self.alg != ALG_ED25519 {
            return Err(Error::UnsupportedAlgorithm { alg: Excerpt::new(&self.alg) });
        }
        if self.key.key_id() != self.kid {
            return Err(Error::InvalidValue { field: "kid", value: Excerpt::new(self.kid.as_str()) });
        }
        if self.valid_until.is_some_and(|until| until < self.valid_from) {
            return Err(Error::InvalidValue { field: "valid_until", value: Excerpt::new("before valid_from") });
        }
        Ok(())
    }

    /// True if the key may sign at `at`.
    pub fn is_valid_at(&self, at: Timestamp) -> bool {
        self.valid_from <= at && self.valid_until.is_none_or(|until| at < until)
    }
}

/// A key rotation: the old key vouches for the new one. Signed (typ `key-rotation`) by the old key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRotation {
    /// The key being retired; must be the key that signed this claim.
    pub old_kid: KeyId,
    /// Its successor.
    pub new_key: PublishedKey,
}

impl KeyRotation {
    /// The successor of `from` that `proof` names, if `from` signed it: the step a reader who
    /// pinned `from` takes to trust the key that signs now. `now` bounds how far in the future
    /// the claim may be dated; an old claim stays valid (it is history, not a fresh message).
    pub fn follow(proof: &crate::envelope::SignedEnvelope, from: &PublicKey, now: Timestamp) -> Result<PublicKey> {
        let mut ring = KeyRing::new();
        ring.insert(proof.signer.clone(), *from);
        let policy = crate::envelope::VerifyPolicy { max_links: 1, ..crate::envelope::VerifyPolicy::at(now) };
        let verified = crate::envelope::Unverified::<Self>::new(vec![proof.clone()])?.verify_stored(&ring, &policy)?;
        Ok(verified.value().new_key.key)
    }
}

impl crate::envelope::Claim for KeyRotation {
    const TYPE: &'static str = "key-rotation";

    fn check_origin(&self, origin: &crate::envelope::SignedEnvelope) -> Result<()> {
        self.new_key.validate()?;
        if origin.kid != self.old_kid {
            return Err(Error::SignerMismatch {
                signer: Excerpt::new(origin.kid.as_str()),
                claimed: Excerpt::new(self.old_kid.as_str()),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_signed_in_chunks_has_the_signature_of_the_whole() {
        let key = NodeKey::from_seed(&[9; 32]);
        let message: Vec<u8> = (0..10_000u32).map(|n| (n * 7 % 251) as u8).collect();
        for size in [1, 7, 4096, 10_000, 20_000] {
            let mut seen = Vec::new();
            let signature = key.sign_chunks(message.chunks(size), |chunk| seen.extend_from_slice(chunk)).unwrap();
            assert_eq!((signature, &seen), (key.sign(&message), &message), "chunks of {size}");
        }
        let empty = key.sign_chunks(std::iter::empty::<&[u8]>(), |_| {}).unwrap();
        assert_eq!(empty, key.sign(b""));
        assert!(key.public().verify(&message, &key.sign_chunks([&message[..5], &message[5..]], |_| {}).unwrap()));
    }

    #[test]
    fn key_id_and_fingerprint_are_derived_from_the_key() {
        let key = NodeKey::from_seed(&[7; 32]);
        let public = key.public();
        assert_eq!(key.key_id().as_str().len(), 32);
        assert_eq!(public.fingerprint().split(' ').count(), 16);
        assert_eq!(PublicKey::from_base64(&public.to_base64()).unwrap(), public);
        assert!(!format!("{key:?}").contains(&hex::encode([7u8; 32])));
    }

    #[test]
    fn bad_public_keys_are_refused() {
        assert!(matches!(PublicKey::from_base64("!!!"), Err(Error::InvalidBase64 { .. })));
        assert!(PublicKey::from_bytes(&[1; 31]).is_err());
        let forged = PublishedKey {
            kid: NodeKey::from_seed(&[1; 32]).key_id(),
            ..PublishedKey::new(NodeKey::from_seed(&[2; 32]).public(), Timestamp::from_unix(0).unwrap())
        };
        assert!(forged.validate().is_err());
    }
}
