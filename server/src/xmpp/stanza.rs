//! Building stanzas: the component namespace, attributes, IQ answers and error answers.
//!
//! Every stanza the node sends is a `minidom::Element` made here, in the stream's namespace.

use minidom::Element;
use minidom::rxml::{Namespace, NcName};
use ostracon_protocol::xml::errors::StanzaError;

/// The namespace of component stanzas (XEP-0114).
pub const STANZA_NS: &str = "jabber:component:accept";

/// An attribute's value, owned.
pub fn attr(element: &Element, name: &str) -> Option<String> {
    element.attr(name).map(str::to_owned)
}

/// Sets an unqualified attribute.
pub fn set(element: &mut Element, name: &'static str, value: &str) {
    element.set_attr(
        Namespace::NONE,
        NcName::try_from(name).expect("static attribute names are valid"),
        value.to_owned(),
    );
}

/// A stanza element in the stream's namespace with the given attributes.
pub fn stanza(name: &str, attrs: &[(&'static str, &str)]) -> Element {
    let mut element = Element::bare(name, STANZA_NS);
    for (key, value) in attrs {
        set(&mut element, key, value);
    }
    element
}

/// An IQ `result` from `from` to `to` for `id`, with an optional payload.
pub fn iq_result(from: &str, to: &str, id: &str, payload: Option<Element>) -> Element {
    let mut iq = stanza("iq", &[("type", "result"), ("from", from), ("to", to), ("id", id)]);
    if let Some(payload) = payload {
        iq.append_child(payload);
    }
    iq
}

/// An IQ `error` from `from` to `to` for `id`.
pub fn iq_error(from: &str, to: &str, id: &str, error: &StanzaError) -> Element {
    let mut iq = stanza("iq", &[("type", "error"), ("from", from), ("to", to), ("id", id)]);
    iq.append_child(error.to_element(STANZA_NS));
    iq
}
