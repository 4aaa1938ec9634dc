//! The signed envelope (`urn:x-ostracon:signed:0`) and provenance chains.
//!
//! A signature covers exact bytes: a fixed header (context, algorithm, key id, signer,
//! claim type, timestamp, nonce; one per line) followed by the claim's RFC 8785 canonical
//! JSON. The receiver checks the signature over the bytes it received *before* it parses the
//! claim, and never re-canonicalises. `spec/signing.md` gives the byte layout.
//!
//! Types carry the state of trust: remote data arrives as [`Unverified<T>`], and the only
//! way to a [`Verified<T>`] is [`Unverified::verify`], which checks every link of the chain,
//! the timestamp window and the caller's replay guard.
//!
//! A forwarded report keeps every earlier link and adds one: a `forward` claim naming the
//! hash of the link before it, signed by the forwarder. A receiver can thus check who first
//! issued a report and every hop it took.

use std::fmt;
use std::marker::PhantomData;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::canonical::to_canonical_json;
use crate::error::{Error, Excerpt, Result};
use crate::ids::{BareJid, KeyId};
use crate::keys::{ALG_ED25519, KeyResolver, NodeKey};
use crate::limits::{MAX_CHAIN_LINKS, MAX_NONCE_CHARS, MAX_PAYLOAD_BYTES, MIN_NONCE_CHARS};
use crate::time::Timestamp;

/// Our namespace for signed elements, and the context string that starts every signed message.
pub const SIGNED_NS: &str = "urn:x-ostracon:signed:0";

/// Claim type of a forwarding link.
pub const FORWARD_TYPE: &str = "forward";

/// Default accepted distance between a signature's timestamp and the verifier's clock.
pub const DEFAULT_WINDOW_SECS: i64 = 300;

/// Something that can be signed: a serialisable claim with a fixed type name.
pub trait Claim: Serialize + DeserializeOwned {
    /// The `typ` an envelope carrying this claim must declare.
    const TYPE: &'static str;

    /// Checks that the claim agrees with who signed it (for example that an incident's issuer
    /// is the signer's domain). Called after the signature verified.
    fn check_origin(&self, origin: &SignedEnvelope) -> Result<()> {
        let _ = origin;
        Ok(())
    }
}

/// A nonce: 16 to 64 characters of unpadded base64url, unique per signer.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nonce(String);

impl Nonce {
    /// Encodes random bytes drawn by the caller (16 bytes give 22 characters).
    pub fn from_bytes(bytes: &[u8; 16]) -> Self {
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Validates a nonce received from a peer.
    pub fn parse(text: &str) -> Result<Self> {
        let ok_chars = text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if (MIN_NONCE_CHARS..=MAX_NONCE_CHARS).contains(&text.len()) && ok_chars {
            Ok(Self(text.to_owned()))
        } else {
            Err(Error::InvalidValue { field: "nonce", value: Excerpt::new(text) })
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce({})", self.0)
    }
}

/// The caller's memory of nonces already accepted.
pub trait ReplayGuard {
    /// Returns `true` and remembers the pair if it is new, `false` if it was seen before.
    fn check_and_remember(&mut self, signer: &BareJid, nonce: &Nonce, ts: Timestamp) -> bool;
}

/// One signature over one claim: the unit carried in `<signed/>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedEnvelope {
    /// Signature algorithm; only `ed25519` is defined.
    pub alg: String,
    /// Which of the signer's keys signed.
    pub kid: KeyId,
    /// Who signed: the signing node's JID.
    pub signer: BareJid,
    /// The claim type (`incident-report`, `forward`, ...).
    pub typ: String,
    /// When it was signed.
    pub ts: Timestamp,
    /// Unique per signer, for replay protection.
    pub nonce: Nonce,
    /// The claim bytes exactly as signed.
    pub payload: Vec<u8>,
    /// The Ed25519 signature.
    pub signature: [u8; 64],
}

impl SignedEnvelope {
    /// Signs `claim` as `signer` with `key` at `ts`; the caller supplies time and nonce.
    pub fn sign<T: Claim>(claim: &T, key: &NodeKey, signer: &BareJid, ts: Timestamp, nonce: Nonce) -> Result<Self> {
        let payload = to_canonical_json(claim)?;
        Self::sign_bytes(T::TYPE, payload, key, signer, ts, nonce)
    }

    fn sign_bytes(
        typ: &str,
        payload: Vec<u8>,
        key: &NodeKey,
        signer: &BareJid,
        ts: Timestamp,
        nonce: Nonce,
    ) -> Result<Self> {
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(Error::TooLarge { what: "signed payload", len: payload.len(), max: MAX_PAYLOAD_BYTES });
        }
        let mut envelope = Self {
            alg: ALG_ED25519.to_owned(),
            kid: key.key_id(),
            signer: signer.clone(),
            typ: typ.to_owned(),
            ts,
            nonce,
            payload,
            signature: [0; 64],
        };
        envelope.signature = key.sign(&envelope.signing_input());
        Ok(envelope)
    }

    /// The exact bytes the signature covers (see `spec/signing.md`).
    ///
    /// Every header field is validated to contain no newline, so the layout is unambiguous.
    pub fn signing_input(&self) -> Vec<u8> {
        let header = format!(
            "{SIGNED_NS}\n{}\n{}\n{}\n{}\n{}\n{}\n",
            self.alg, self.kid, self.signer, self.typ, self.ts, self.nonce.0
        );
        let mut bytes = Vec::with_capacity(header.len() + self.payload.len());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&self.payload);
        bytes
    }

    /// SHA-256 over the signing input and the signature: what the next link of a chain names.
    pub fn link_hash(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.signing_input());
        hasher.update(self.signature);
        hasher.finalize().into()
    }

    /// Checks the fields a peer controls before any cryptography runs.
    pub fn check_shape(&self) -> Result<()> {
        if self.payload.len() > MAX_PAYLOAD_BYTES {
            return Err(Error::TooLarge { what: "signed payload", len: self.payload.len(), max: MAX_PAYLOAD_BYTES });
        }
        if self.typ.is_empty()
            || self.typ.len() > 64
            || !self.typ.bytes().all(|b| b.is_ascii_lowercase() || b == b'-' || b.is_ascii_digit())
        {
            return Err(Error::InvalidValue { field: "typ", value: Excerpt::new(&self.typ) });
        }
        if self.alg != ALG_ED25519 {
            return Err(Error::UnsupportedAlgorithm { alg: Excerpt::new(&self.alg) });
        }
        Ok(())
    }

    /// Verifies this one signature with the caller's keys. Does not look at time or replay.
    fn verify_signature(&self, keys: &impl KeyResolver) -> Result<()> {
        self.check_shape()?;
        let key = keys.resolve(&self.signer, &self.kid).ok_or_else(|| Error::UnknownKey {
            signer: Excerpt::new(&self.signer.to_string()),
            kid: Excerpt::new(self.kid.as_str()),
        })?;
        if key.verify(&self.signing_input(), &self.signature) {
            Ok(())
        } else {
            Err(Error::BadSignature {
                signer: Excerpt::new(&self.signer.to_string()),
                kid: Excerpt::new(self.kid.as_str()),
            })
        }
    }

    /// Parses the payload as `T`. Only called on verified bytes.
    fn parse_claim<T: Claim>(&self) -> Result<T> {
        let text = std::str::from_utf8(&self.payload).map_err(|_| Error::InvalidUtf8 { what: "signed payload" })?;
        serde_json::from_str(text).map_err(|error| Error::InvalidJson { what: T::TYPE, reason: error.to_string() })
    }
}

/// The JSON form of an envelope (HTTP and storage): binary fields in standard base64.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeJson {
    alg: String,
    kid: KeyId,
    signer: BareJid,
    typ: String,
    ts: Timestamp,
    nonce: String,
    payload: String,
    sig: String,
}

impl Serialize for SignedEnvelope {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        EnvelopeJson {
            alg: self.alg.clone(),
            kid: self.kid.clone(),
            signer: self.signer.clone(),
            typ: self.typ.clone(),
            ts: self.ts,
            nonce: self.nonce.0.clone(),
            payload: STANDARD.encode(&self.payload),
            sig: STANDARD.encode(self.signature),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SignedEnvelope {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let json = EnvelopeJson::deserialize(deserializer)?;
        Self::from_parts(
            &json.alg,
            &json.kid.to_string(),
            &json.signer.to_string(),
            &json.typ,
            &json.ts.to_string(),
            &json.nonce,
            &json.payload,
            &json.sig,
        )
        .map_err(serde::de::Error::custom)
    }
}

impl SignedEnvelope {
    /// Builds an envelope from its textual parts (XML attributes or JSON fields), validating each.
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        alg: &str,
        kid: &str,
        signer: &str,
        typ: &str,
        ts: &str,
        nonce: &str,
        payload_b64: &str,
        sig_b64: &str,
    ) -> Result<Self> {
        // Base64 grows 4/3; refuse before decoding so an oversized payload costs nothing.
        let max_b64 = MAX_PAYLOAD_BYTES.div_ceil(3) * 4;
        if payload_b64.len() > max_b64 {
            return Err(Error::TooLarge {
                what: "signed payload",
                len: payload_b64.len() / 4 * 3,
                max: MAX_PAYLOAD_BYTES,
            });
        }
        let payload = STANDARD.decode(payload_b64.trim()).map_err(|_| Error::InvalidBase64 { what: "payload" })?;
        if sig_b64.len() > 128 {
            return Err(Error::InvalidBase64 { what: "sig" });
        }
        let signature: [u8; 64] = STANDARD
            .decode(sig_b64.trim())
            .map_err(|_| Error::InvalidBase64 { what: "sig" })?
            .try_into()
            .map_err(|_| Error::InvalidValue { field: "sig", value: Excerpt::new("not 64 bytes") })?;
        let envelope = Self {
            alg: alg.to_owned(),
            kid: KeyId::parse(kid)?,
            signer: BareJid::parse(signer)?,
            typ: typ.to_owned(),
            ts: Timestamp::parse_canonical(ts)?,
            nonce: Nonce::parse(nonce)?,
            payload,
            signature,
        };
        // A signer with a resource would change between signing and verifying; refuse it.
        if envelope.signer.to_string() != signer {
            return Err(Error::InvalidJid {
                value: Excerpt::new(signer),
                reason: "signer must be a normalised bare JID",
            });
        }
        envelope.check_shape()?;
        Ok(envelope)
    }
}

/// The claim of a forwarding link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forward {
    /// Position of this link in the chain (the origin is 0, the first forward 1).
    pub hop: usize,
    /// Hex SHA-256 link hash of the link before.
    pub prev: String,
}

impl Claim for Forward {
    const TYPE: &'static str = FORWARD_TYPE;
}

/// What the verifier needs besides keys and the replay guard.
#[derive(Clone, Copy, Debug)]
pub struct VerifyPolicy {
    /// The verifier's clock.
    pub now: Timestamp,
    /// Accepted distance between the last link's timestamp and `now`, in seconds.
    pub window_secs: i64,
    /// Most links accepted (1 = no forwarding).
    pub max_links: usize,
}

impl VerifyPolicy {
    /// The defaults of `spec/signing.md` at time `now`.
    pub fn at(now: Timestamp) -> Self {
        Self { now, window_secs: DEFAULT_WINDOW_SECS, max_links: MAX_CHAIN_LINKS }
    }
}

/// A claim of type `T` with its provenance chain, not yet verified: its content cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unverified<T> {
    links: Vec<SignedEnvelope>,
    claim: PhantomData<fn() -> T>,
}

impl<T: Claim> Unverified<T> {
    /// Wraps received links (origin first); refuses empty and overlong chains.
    pub fn new(links: Vec<SignedEnvelope>) -> Result<Self> {
        if links.is_empty() {
            return Err(Error::Missing { element: "provenance", what: "signed" });
        }
        if links.len() > MAX_CHAIN_LINKS {
            return Err(Error::TooMany { what: "provenance links", max: MAX_CHAIN_LINKS });
        }
        Ok(Self { links, claim: PhantomData })
    }

    /// The links as received, for logging and for re-emitting. The payloads stay unread.
    pub fn links(&self) -> &[SignedEnvelope] {
        &self.links
    }

    /// Who claims to have signed first.
    pub fn claimed_origin(&self) -> &BareJid {
        &self.links[0].signer
    }

    /// Who claims to have signed last (the peer that delivered it).
    pub fn claimed_last_signer(&self) -> &BareJid {
        &self.links[self.links.len() - 1].signer
    }

    /// Verifies every link, then the time window and replay on the last link, then parses the claim.
    ///
    /// Order matters: nothing is parsed and no nonce is remembered until every signature holds,
    /// so forged traffic can neither reach the JSON parser nor fill the replay cache.
    pub fn verify(
        self,
        keys: &impl KeyResolver,
        replay: &mut impl ReplayGuard,
        policy: &VerifyPolicy,
    ) -> Result<Verified<T>> {
        let value = self.verify_chain(keys, policy)?;
        let last = &self.links[self.links.len() - 1];
        let skew = last.ts.abs_diff_secs(policy.now);
        if skew > policy.window_secs.unsigned_abs() {
            return Err(Error::TimestampOutsideWindow {
                ts: last.ts.to_string(),
                now: policy.now.to_string(),
                window_secs: policy.window_secs,
            });
        }
        if !replay.check_and_remember(&last.signer, &last.nonce, last.ts) {
            return Err(Error::Replay {
                signer: Excerpt::new(&last.signer.to_string()),
                nonce: Excerpt::new(last.nonce.as_str()),
            });
        }
        Ok(Verified { value, links: self.links })
    }

    /// Verifies signatures and chain structure only: for re-reading links this node verified
    /// and stored earlier, where the time window and replay check were already applied.
    pub fn verify_stored(self, keys: &impl KeyResolver, policy: &VerifyPolicy) -> Result<Verified<T>> {
        let value = self.verify_chain(keys, policy)?;
        Ok(Verified { value, links: self.links })
    }

    fn verify_chain(&self, keys: &impl KeyResolver, policy: &VerifyPolicy) -> Result<T> {
        if self.links.len() > policy.max_links.min(MAX_CHAIN_LINKS) {
            return Err(Error::TooMany { what: "provenance links", max: policy.max_links.min(MAX_CHAIN_LINKS) });
        }
        for link in &self.links {
            link.verify_signature(keys)?;
        }
        let origin = &self.links[0];
        if origin.typ != T::TYPE {
            return Err(Error::WrongClaimType { expected: T::TYPE, found: Excerpt::new(&origin.typ) });
        }
        for (index, pair) in self.links.windows(2).enumerate() {
            let (before, link) = (&pair[0], &pair[1]);
            let position = index + 1;
            if link.typ != FORWARD_TYPE {
                return Err(Error::BrokenChain { link: position, reason: "a later link is not a forward" });
            }
            let forward: Forward = link.parse_claim()?;
            if forward.hop != position {
                return Err(Error::BrokenChain { link: position, reason: "hop number does not match position" });
            }
            if forward.prev != hex::encode(before.link_hash()) {
                return Err(Error::BrokenChain { link: position, reason: "does not name the link before it" });
            }
            if self.links[..position].iter().any(|earlier| earlier.signer == link.signer) {
                return Err(Error::BrokenChain { link: position, reason: "signer appears twice (a loop)" });
            }
            if link.ts.unix() + policy.window_secs < before.ts.unix() {
                return Err(Error::BrokenChain { link: position, reason: "forwarded before it was signed" });
            }
        }
        for link in &self.links {
            if link.ts.unix() > policy.now.unix().saturating_add(policy.window_secs) {
                return Err(Error::TimestampOutsideWindow {
                    ts: link.ts.to_string(),
                    now: policy.now.to_string(),
                    window_secs: policy.window_secs,
                });
            }
        }
        let claim: T = origin.parse_claim()?;
        claim.check_origin(origin)?;
        Ok(claim)
    }
}

/// A claim whose every signature was checked. Only [`Unverified::verify`] makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified<T> {
    value: T,
    links: Vec<SignedEnvelope>,
}

impl<T: Claim> Verified<T> {
    /// The verified claim.
    pub fn value(&self) -> &T {
        &self.value
    }

    /// Takes the claim and the links.
    pub fn into_parts(self) -> (T, Vec<SignedEnvelope>) {
        (self.value, self.links)
    }

    /// The whole provenance chain, origin first.
    pub fn links(&self) -> &[SignedEnvelope] {
        &self.links
    }

    /// Who issued the claim.
    pub fn origin(&self) -> &BareJid {
        &self.links[0].signer
    }

    /// Who delivered it to us (the last signer).
    pub fn last_signer(&self) -> &BareJid {
        &self.links[self.links.len() - 1].signer
    }

    /// Number of forwards the claim has taken.
    pub fn hops(&self) -> usize {
        self.links.len() - 1
    }

    /// Adds our forwarding link, keeping every earlier one.
    ///
    /// Refuses when the chain is full or we already appear in it, which prevents loops.
    pub fn forward(&self, key: &NodeKey, signer: &BareJid, ts: Timestamp, nonce: Nonce) -> Result<Unverified<T>> {
        let hop = self.links.len();
        if hop >= MAX_CHAIN_LINKS {
            return Err(Error::TooMany { what: "provenance links", max: MAX_CHAIN_LINKS });
        }
        if self.links.iter().any(|link| &link.signer == signer) {
            return Err(Error::BrokenChain { link: hop, reason: "signer appears twice (a loop)" });
        }
        let before = &self.links[hop - 1];
        let claim = Forward { hop, prev: hex::encode(before.link_hash()) };
        let link = SignedEnvelope::sign(&claim, key, signer, ts, nonce)?;
        let mut links = self.links.clone();
        links.push(link);
        Unverified::new(links)
    }
}

/// Signs `claim` as the origin of a new chain.
pub fn sign<T: Claim>(
    claim: &T,
    key: &NodeKey,
    signer: &BareJid,
    ts: Timestamp,
    nonce: Nonce,
) -> Result<Unverified<T>> {
    Unverified::new(vec![SignedEnvelope::sign(claim, key, signer, ts, nonce)?])
}
