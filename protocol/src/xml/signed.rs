//! The XML form of a provenance chain: `<provenance xmlns='urn:x-ostracon:signed:0'>` holding
//! one `<signed/>` per link, origin first.
//!
//! ```xml
//! <provenance xmlns='urn:x-ostracon:signed:0'>
//!   <signed alg='ed25519' kid='…' signer='incidents.a.example' typ='incident-report'
//!           ts='2026-05-01T10:20:00Z' nonce='…'>
//!     <payload>base64 of the canonical JSON claim</payload>
//!     <sig>base64 of the 64-byte signature</sig>
//!   </signed>
//! </provenance>
//! ```

use minidom::Element;

use crate::envelope::{SIGNED_NS, SignedEnvelope};
use crate::error::{Error, Result};
use crate::limits::{MAX_CHAIN_LINKS, MAX_PAYLOAD_BYTES};
use crate::xml::{bounded_text, children_named, element_with, expect_element, required_attr, text_element};

/// Renders links as a `<provenance/>` element.
pub fn to_element(links: &[SignedEnvelope]) -> Element {
    let mut provenance = Element::bare("provenance", SIGNED_NS);
    for link in links {
        let kid = link.kid.to_string();
        let signer = link.signer.to_string();
        let ts = link.ts.to_string();
        let mut signed = element_with(
            "signed",
            SIGNED_NS,
            &[
                ("alg", &link.alg),
                ("kid", &kid),
                ("signer", &signer),
                ("typ", &link.typ),
                ("ts", &ts),
                ("nonce", link.nonce.as_str()),
            ],
        );
        signed.append_child(text_element("payload", SIGNED_NS, b64(&link.payload)));
        signed.append_child(text_element("sig", SIGNED_NS, b64(&link.signature)));
        provenance.append_child(signed);
    }
    provenance
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Parses a `<provenance/>` element into links, validating each header field. Signatures are
/// not checked here: wrap the result in [`crate::Unverified`] and verify it.
pub fn from_element(provenance: &Element) -> Result<Vec<SignedEnvelope>> {
    expect_element(provenance, "provenance", SIGNED_NS, "<provenance xmlns='urn:x-ostracon:signed:0'/>")?;
    let signed: Vec<&Element> = children_named(provenance, "signed", SIGNED_NS).take(MAX_CHAIN_LINKS + 1).collect();
    if signed.len() > MAX_CHAIN_LINKS {
        return Err(Error::TooMany { what: "provenance links", max: MAX_CHAIN_LINKS });
    }
    if signed.is_empty() {
        return Err(Error::Missing { element: "provenance", what: "signed" });
    }
    signed.into_iter().map(parse_signed).collect()
}

fn parse_signed(signed: &Element) -> Result<SignedEnvelope> {
    let payload =
        signed.get_child("payload", SIGNED_NS).ok_or(Error::Missing { element: "signed", what: "payload" })?;
    let sig = signed.get_child("sig", SIGNED_NS).ok_or(Error::Missing { element: "signed", what: "sig" })?;
    let max_b64 = MAX_PAYLOAD_BYTES.div_ceil(3) * 4 + 64;
    SignedEnvelope::from_parts(
        required_attr(signed, "signed", "alg")?,
        required_attr(signed, "signed", "kid")?,
        required_attr(signed, "signed", "signer")?,
        required_attr(signed, "signed", "typ")?,
        required_attr(signed, "signed", "ts")?,
        required_attr(signed, "signed", "nonce")?,
        &bounded_text(payload, "signed payload", max_b64)?,
        &bounded_text(sig, "sig", 128)?,
    )
}
