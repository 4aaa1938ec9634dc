//! Our key exchange (`urn:x-ostracon:keys:0`): how a node asks a peer for its public keys
//! while a buddy relation is being approved, and how a peer announces a rotation.
//!
//! ```xml
//! <iq type='get'><keys xmlns='urn:x-ostracon:keys:0'/></iq>
//! <iq type='result'><keys xmlns='urn:x-ostracon:keys:0'>
//!   <key kid='…' alg='ed25519' valid-from='2026-05-01T00:00:00Z'>base64</key>
//! </keys></iq>
//! <iq type='set'><rotation xmlns='urn:x-ostracon:keys:0'><provenance …/></rotation></iq>
//! ```

use minidom::Element;

use crate::envelope::{SIGNED_NS, Unverified};
use crate::error::{Error, Result};
use crate::ids::KeyId;
use crate::keys::{KeyRotation, PublicKey, PublishedKey};
use crate::limits::MAX_PUBLISHED_KEYS;
use crate::time::Timestamp;
use crate::xml::{
    bounded_text, check_bounds, children_named, expect_element, required_attr, set_attr, signed, text_element,
};

/// Our key-exchange namespace (also a disco feature).
pub const KEYS_NS: &str = "urn:x-ostracon:keys:0";

/// The empty `<keys/>` of a query.
pub fn keys_query() -> Element {
    Element::bare("keys", KEYS_NS)
}

/// Renders a `<keys/>` result.
pub fn keys_to_element(keys: &[PublishedKey]) -> Element {
    let mut element = Element::bare("keys", KEYS_NS);
    for key in keys {
        let mut child = text_element("key", KEYS_NS, key.key.to_base64());
        set_attr(&mut child, "kid", key.kid.to_string());
        set_attr(&mut child, "alg", key.alg.clone());
        set_attr(&mut child, "valid-from", key.valid_from.to_string());
        if let Some(until) = key.valid_until {
            set_attr(&mut child, "valid-until", until.to_string());
        }
        element.append_child(child);
    }
    element
}

/// Parses a `<keys/>` result; every key's id must match its bytes.
pub fn keys_from_element(element: &Element) -> Result<Vec<PublishedKey>> {
    check_bounds(element)?;
    expect_element(element, "keys", KEYS_NS, "<keys xmlns='urn:x-ostracon:keys:0'/>")?;
    let children: Vec<&Element> = children_named(element, "key", KEYS_NS).take(MAX_PUBLISHED_KEYS + 1).collect();
    if children.len() > MAX_PUBLISHED_KEYS {
        return Err(Error::TooMany { what: "published keys", max: MAX_PUBLISHED_KEYS });
    }
    children
        .into_iter()
        .map(|child| {
            let key = PublishedKey {
                kid: KeyId::parse(required_attr(child, "key", "kid")?)?,
                alg: required_attr(child, "key", "alg")?.to_owned(),
                key: PublicKey::from_base64(&bounded_text(child, "key", 64)?)?,
                valid_from: Timestamp::parse(required_attr(child, "key", "valid-from")?)?,
                valid_until: child.attr("valid-until").map(Timestamp::parse).transpose()?,
            };
            key.validate()?;
            Ok(key)
        })
        .collect()
}

/// Renders a rotation announcement.
pub fn rotation_to_element(rotation: &Unverified<KeyRotation>) -> Element {
    let mut element = Element::bare("rotation", KEYS_NS);
    element.append_child(signed::to_element(rotation.links()));
    element
}

/// Parses a rotation announcement into an unverified claim.
pub fn rotation_from_element(element: &Element) -> Result<Unverified<KeyRotation>> {
    check_bounds(element)?;
    expect_element(element, "rotation", KEYS_NS, "<rotation xmlns='urn:x-ostracon:keys:0'/>")?;
    let provenance =
        element.get_child("provenance", SIGNED_NS).ok_or(Error::Missing { element: "rotation", what: "provenance" })?;
    Unverified::new(signed::from_element(provenance)?)
}
