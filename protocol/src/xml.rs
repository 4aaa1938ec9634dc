//! XML forms of everything we exchange over XMPP, and bounded XML parsing.
//!
//! Submodules map one specification each: [`iodef`] (the IODEF 1.0 `Incident` XEP-0268 carries),
//! [`xep0268`] (report, inquiry, request, response), [`signed`] (our envelope),
//! [`reputation`] (XEP-0275), [`buddies`] (XEP-0267 and disco), [`reporting`] (XEP-0377 and the
//! mod_report_forward shape), [`keys`] (our key exchange), [`batch`] (several reports in one IQ), [`pubsub`] (the XEP-0060 subset RTBL consumers speak) and [`errors`] (error conditions).
//!
//! Prosody does not bound depth, element count or rate on component traffic, so every parser
//! here first runs [`check_bounds`] on the element it is given, and [`parse_bounded`] refuses
//! oversized or deep text before building a tree at all.

pub mod batch;
pub mod buddies;
pub mod errors;
pub mod iodef;
pub mod keys;
pub mod pubsub;
pub mod reporting;
pub mod reputation;
pub mod signed;
pub mod stream;
pub mod xep0268;

use minidom::Element;
use minidom::rxml::{Namespace, NcName, RawEvent, RawReader};
use minidom::tree_builder::TreeBuilder;

use crate::error::{Error, Excerpt, Result};
use crate::limits::{MAX_XML_BYTES, MAX_XML_DEPTH, MAX_XML_ELEMENTS};

/// The XML namespace of `xml:lang`.
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// Parses XML text into an element, refusing it early when it is too large, too deep or has
/// too many elements. DTDs, entities and processing instructions are refused by the parser.
pub fn parse_bounded(text: &str) -> Result<Element> {
    if text.len() > MAX_XML_BYTES {
        return Err(Error::TooLarge { what: "XML text", len: text.len(), max: MAX_XML_BYTES });
    }
    let mut reader = RawReader::new(text.as_bytes());
    let mut builder = TreeBuilder::new();
    let mut elements = 0usize;
    loop {
        let event = reader.read().map_err(|error| Error::Xml { reason: error.to_string() })?;
        let Some(event) = event else {
            return Err(Error::Xml { reason: "document ended before the root element closed".to_owned() });
        };
        if matches!(event, RawEvent::ElementHeadOpen(..)) {
            elements += 1;
            if elements > MAX_XML_ELEMENTS {
                return Err(Error::TooMany { what: "XML elements", max: MAX_XML_ELEMENTS });
            }
            if builder.depth() >= MAX_XML_DEPTH {
                return Err(Error::TooDeep { max: MAX_XML_DEPTH });
            }
        }
        builder.process_event(event).map_err(|error| Error::Xml { reason: error.to_string() })?;
        if let Some(root) = builder.root.take() {
            return Ok(root);
        }
    }
}

/// Checks depth and element count of an element that was parsed elsewhere (tokio-xmpp).
///
/// Iterative, so a hostile 10,000-deep element cannot overflow our stack here.
pub fn check_bounds(root: &Element) -> Result<()> {
    let mut stack = vec![(root, 1usize)];
    let mut elements = 0usize;
    while let Some((element, depth)) = stack.pop() {
        elements += 1;
        if elements > MAX_XML_ELEMENTS {
            return Err(Error::TooMany { what: "XML elements", max: MAX_XML_ELEMENTS });
        }
        if depth > MAX_XML_DEPTH {
            return Err(Error::TooDeep { max: MAX_XML_DEPTH });
        }
        stack.extend(element.children().map(|child| (child, depth + 1)));
    }
    Ok(())
}

/// Serialises an element (with its namespace declarations) to text.
pub fn to_string(element: &Element) -> String {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail for I/O reasons; minidom only fails on invalid names,
    // which our builders never produce.
    if element.write_to(&mut out).is_err() {
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}

/// An attribute name. Our names are static and valid, so failure is a programming error.
fn ncname(name: &'static str) -> NcName {
    NcName::try_from(name).expect("attribute names in this crate are valid NCNames")
}

/// Sets an attribute (no namespace).
pub(crate) fn set_attr(element: &mut Element, name: &'static str, value: impl Into<String>) {
    element.set_attr(Namespace::NONE, ncname(name), value.into());
}

/// Sets `xml:lang`.
pub(crate) fn set_lang(element: &mut Element, lang: &str) {
    element.set_attr(Namespace::XML, ncname("lang"), lang.to_owned());
}

/// Reads `xml:lang`.
pub(crate) fn lang(element: &Element) -> Option<&str> {
    element.attr_ns(XML_NS, "lang")
}

/// A new element with text content.
pub(crate) fn text_element(name: &str, namespace: &str, text: impl Into<String>) -> Element {
    let mut element = Element::bare(name, namespace);
    element.append_text(text.into());
    element
}

/// A new element with attributes.
pub(crate) fn element_with(name: &str, namespace: &str, attrs: &[(&'static str, &str)]) -> Element {
    let mut element = Element::bare(name, namespace);
    for (attr, value) in attrs {
        set_attr(&mut element, attr, *value);
    }
    element
}

/// Fails unless `element` is `<name xmlns=namespace>`.
pub(crate) fn expect_element(element: &Element, name: &str, namespace: &str, expected: &'static str) -> Result<()> {
    if element.is(name, namespace) {
        Ok(())
    } else {
        Err(Error::UnexpectedElement {
            name: Excerpt::new(element.name()),
            namespace: Excerpt::new(&element.ns()),
            expected,
        })
    }
}

/// A required attribute.
pub(crate) fn required_attr<'a>(
    element: &'a Element,
    element_name: &'static str,
    attr: &'static str,
) -> Result<&'a str> {
    element.attr(attr).ok_or(Error::Missing { element: element_name, what: attr })
}

/// Text content bounded to `max` bytes before it is collected.
pub(crate) fn bounded_text(element: &Element, what: &'static str, max: usize) -> Result<String> {
    let len: usize = element.texts().map(str::len).sum();
    if len > max {
        return Err(Error::TooLarge { what, len, max });
    }
    Ok(element.text())
}

/// Children of `element` named `name` in `namespace`.
pub(crate) fn children_named<'a>(
    element: &'a Element,
    name: &'a str,
    namespace: &'a str,
) -> impl Iterator<Item = &'a Element> + 'a {
    element.children().filter(move |child| child.is(name, namespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_deep_nesting_before_building_it() {
        let depth = 10_000;
        let text = format!("{}{}", "<a xmlns='x'>".repeat(depth), "</a>".repeat(depth));
        assert_eq!(parse_bounded(&text), Err(Error::TooDeep { max: MAX_XML_DEPTH }));
        let ok = format!("{}{}", "<a xmlns='x'>".repeat(MAX_XML_DEPTH), "</a>".repeat(MAX_XML_DEPTH));
        assert!(parse_bounded(&ok).is_ok());
    }

    #[test]
    fn check_bounds_refuses_deep_trees_built_elsewhere() {
        let mut element = Element::bare("a", "x");
        for _ in 0..MAX_XML_DEPTH {
            let mut parent = Element::bare("a", "x");
            parent.append_child(element);
            element = parent;
        }
        assert_eq!(check_bounds(&element), Err(Error::TooDeep { max: MAX_XML_DEPTH }));
    }

    #[test]
    fn refuses_oversized_text_and_too_many_elements() {
        let big = format!("<a xmlns='x'>{}</a>", "x".repeat(MAX_XML_BYTES));
        assert!(matches!(parse_bounded(&big), Err(Error::TooLarge { .. })));
        let many = format!("<a xmlns='x'>{}</a>", "<b/>".repeat(MAX_XML_ELEMENTS + 1));
        assert!(matches!(parse_bounded(&many), Err(Error::TooMany { .. })));
    }

    #[test]
    fn refuses_malformed_xml_and_entities() {
        assert!(matches!(parse_bounded("<a xmlns='x'>"), Err(Error::Xml { .. })));
        assert!(matches!(parse_bounded("<a xmlns='x'></b>"), Err(Error::Xml { .. })));
        let dtd = "<!DOCTYPE a [<!ENTITY e 'boom'>]><a xmlns='x'>&e;</a>";
        assert!(matches!(parse_bounded(dtd), Err(Error::Xml { .. })));
    }
}
