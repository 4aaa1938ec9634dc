//! The XEP-0114 stream as parser events turned into stanzas under bounds, one event at a time.
//!
//! Prosody relays component stanzas of up to 512 KiB and checks no depth, so the bounds of
//! [`crate::limits`] are applied here while the stream is read: a stanza that grows past a
//! bound stops being built at once, the rest of it is read and thrown away (only its depth is
//! counted), and what its head said (name, `from`, `id`, `type`) comes out as a [`Refused`]
//! the node can answer. Nothing here recurses on the peer's depth: the tree under
//! construction never gets deeper than the bound, so building it, dropping it and serialising
//! it stay shallow.
//!
//! [`StreamAssembler`] does no I/O: the node feeds it the events of rxml's raw parser as they
//! arrive from the socket, and the `stream` fuzz target feeds it raw bytes the same way.

use std::collections::BTreeMap;

use minidom::Element;
use minidom::rxml::RawEvent;
use minidom::tree_builder::TreeBuilder;

use crate::error::{Error, Excerpt, Result};
use crate::limits::{MAX_XML_BYTES, MAX_XML_DEPTH, MAX_XML_ELEMENTS};

/// The stream namespace (`stream:stream`, `stream:error`).
pub const STREAM_NS: &str = "http://etherx.jabber.org/streams";

/// Longest `id` (or `from`, `to`, `type`) kept from the head of a refused stanza; longer ones
/// are not echoed back, and the stanza is dropped unanswered.
const MAX_HEAD_VALUE_BYTES: usize = 3 * 1024;

/// The bounds a stanza must keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StanzaLimits {
    /// Bytes of one stanza, as read.
    pub max_bytes: usize,
    /// Nesting below the stanza element (the stanza's child is at depth 1).
    pub max_depth: usize,
    /// Elements in one stanza, the stanza element included.
    pub max_elements: usize,
}

impl Default for StanzaLimits {
    /// The protocol's bounds: a stanza's payload obeys what `check_bounds` checks.
    fn default() -> Self {
        Self { max_bytes: MAX_XML_BYTES, max_depth: MAX_XML_DEPTH, max_elements: MAX_XML_ELEMENTS + 1 }
    }
}

/// Which bound a refused stanza broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// More bytes than `max_bytes`.
    Size,
    /// Deeper than `max_depth`.
    Depth,
    /// More elements than `max_elements`.
    Elements,
    /// Not namespace-well-formed (an undeclared prefix).
    Namespace,
    /// Refused at its head by the caller's gate (its sender is over its rate), so it was
    /// never built.
    Rate,
}

impl Bound {
    /// A label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Size => "size",
            Self::Depth => "depth",
            Self::Elements => "elements",
            Self::Namespace => "namespace",
            Self::Rate => "rate",
        }
    }
}

/// What the head of a refused stanza said; values too long to echo are `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Head {
    /// The element name (`iq`, `message`, `presence`, or anything else).
    pub name: String,
    /// `from`.
    pub from: Option<String>,
    /// `to`.
    pub to: Option<String>,
    /// `id`.
    pub id: Option<String>,
    /// `type`.
    pub stanza_type: Option<String>,
}

/// A stanza that broke a bound: what is known of it to answer or count it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// Its head.
    pub head: Head,
    /// The bound it broke.
    pub bound: Bound,
}

/// One item of the stream.
#[derive(Debug)]
pub enum StreamItem {
    /// The server's `stream:stream` header, with its `id`.
    Opened {
        /// The stream id (the component handshake hashes it); None when the server sent none,
        /// as Prosody does just before refusing the stream with a `stream:error`.
        id: Option<String>,
    },
    /// A stanza within bounds, built.
    Stanza(Element),
    /// A stanza over a bound, read to its end and discarded.
    Refused(Refused),
    /// The server closed the stream.
    Closed,
}

/// The stanza being read.
struct Partial {
    /// The tree under construction; `None` once a bound broke.
    builder: Option<TreeBuilder>,
    head: Head,
    broke: Option<Bound>,
    /// Open elements, the stanza element included.
    depth: usize,
    elements: usize,
    bytes: usize,
}

enum State {
    /// Before the header's `>`: its namespace declarations and id so far.
    Header { opened: bool, id: Option<String> },
    /// Between stanzas.
    Open,
    /// Inside one.
    Stanza(Box<Partial>),
    /// After `</stream:stream>`.
    Closed,
}

/// Decides at a stanza's head (its attributes read, no child yet) whether it is built at all.
pub type Gate = Box<dyn Fn(&Head) -> bool + Send + Sync>;

/// Turns the events of one component stream into stream items.
pub struct StreamAssembler {
    limits: StanzaLimits,
    gate: Option<Gate>,
    /// Namespace declarations of the stream header, which every stanza inherits.
    prefixes: BTreeMap<Option<String>, String>,
    state: State,
}

impl StreamAssembler {
    /// An assembler expecting a stream header first.
    pub fn new(limits: StanzaLimits) -> Self {
        Self { limits, gate: None, prefixes: BTreeMap::new(), state: State::Header { opened: false, id: None } }
    }

    /// An assembler that asks `gate` about each stanza at its head: a stanza it refuses is read
    /// to its end without being built and comes out refused for [`Bound::Rate`], so a flood
    /// costs the parse of its bytes and no tree.
    pub fn with_gate(limits: StanzaLimits, gate: Gate) -> Self {
        Self { gate: Some(gate), ..Self::new(limits) }
    }

    /// Takes the next parser event; returns an item when one is complete.
    pub fn push(&mut self, event: RawEvent) -> Result<Option<StreamItem>> {
        match &mut self.state {
            State::Header { opened, id } => match event {
                RawEvent::XmlDeclaration(..) => Ok(None),
                RawEvent::ElementHeadOpen(_, (prefix, name)) if !*opened => {
                    if name.as_str() != "stream" || prefix.as_ref().is_none_or(|p| p.as_str() != "stream") {
                        return Err(not_a_stream(name.as_str()));
                    }
                    *opened = true;
                    Ok(None)
                }
                RawEvent::Attribute(_, (prefix, name), value) if *opened => {
                    match (prefix.as_ref().map(|p| p.as_str()), name.as_str()) {
                        (None, "xmlns") => {
                            self.prefixes.insert(None, value);
                        }
                        (Some("xmlns"), declared) => {
                            self.prefixes.insert(Some(declared.to_owned()), value);
                        }
                        (None, "id") => *id = Some(value),
                        _ => {}
                    }
                    Ok(None)
                }
                RawEvent::ElementHeadClose(_) if *opened => {
                    if self.prefixes.get(&Some("stream".to_owned())).map(String::as_str) != Some(STREAM_NS) {
                        return Err(not_a_stream("stream:stream with another stream namespace"));
                    }
                    let id = id.take().filter(|id| !id.is_empty());
                    self.state = State::Open;
                    Ok(Some(StreamItem::Opened { id }))
                }
                _ => Err(Error::Missing { element: "stream:stream", what: "a complete header" }),
            },
            State::Open => match event {
                RawEvent::ElementHeadOpen(..) => {
                    let mut stanza = Partial {
                        builder: Some(TreeBuilder::new().with_prefixes_stack(vec![self.prefixes.clone().into()])),
                        head: Head::default(),
                        broke: None,
                        depth: 0,
                        elements: 0,
                        bytes: 0,
                    };
                    stanza.take(event, &self.limits);
                    self.state = State::Stanza(Box::new(stanza));
                    Ok(None)
                }
                RawEvent::ElementFoot(_) => {
                    self.state = State::Closed;
                    Ok(Some(StreamItem::Closed))
                }
                // Whitespace between stanzas (keepalives).
                _ => Ok(None),
            },
            State::Stanza(stanza) => {
                let head_closes = stanza.depth == 1 && matches!(event, RawEvent::ElementHeadClose(_));
                let closed = stanza.take(event, &self.limits);
                if head_closes && stanza.broke.is_none() && self.gate.as_ref().is_some_and(|gate| !gate(&stanza.head)) {
                    stanza.break_bound(Bound::Rate);
                }
                if !closed {
                    return Ok(None);
                }
                let State::Stanza(done) = std::mem::replace(&mut self.state, State::Open) else {
                    unreachable!("the state was a stanza a moment ago")
                };
                Ok(Some(done.finish()))
            }
            State::Closed => Ok(Some(StreamItem::Closed)),
        }
    }
}

fn not_a_stream(found: &str) -> Error {
    Error::UnexpectedElement {
        name: Excerpt::new(found),
        namespace: Excerpt::new(STREAM_NS),
        expected: "a stream:stream header",
    }
}

impl Partial {
    /// Takes one event of the stanza; true when the stanza element closed.
    fn take(&mut self, event: RawEvent, limits: &StanzaLimits) -> bool {
        self.bytes += event.metrics().len();
        let mut closed = false;
        match &event {
            RawEvent::ElementHeadOpen(_, (_, name)) => {
                if self.depth == 0 {
                    self.head.name = name.as_str().to_owned();
                }
                self.depth += 1;
                self.elements += 1;
                if self.depth > limits.max_depth + 1 {
                    self.break_bound(Bound::Depth);
                }
                if self.elements > limits.max_elements {
                    self.break_bound(Bound::Elements);
                }
            }
            // Only the stanza element's own head has attributes at depth 1.
            RawEvent::Attribute(_, (None, name), value) if self.depth == 1 => {
                let kept = (value.len() <= MAX_HEAD_VALUE_BYTES).then(|| value.clone());
                match name.as_str() {
                    "from" => self.head.from = kept,
                    "to" => self.head.to = kept,
                    "id" => self.head.id = kept,
                    "type" => self.head.stanza_type = kept,
                    _ => {}
                }
            }
            RawEvent::ElementFoot(_) => {
                self.depth -= 1;
                closed = self.depth == 0;
            }
            _ => {}
        }
        if self.bytes > limits.max_bytes {
            self.break_bound(Bound::Size);
        }
        if let Some(builder) = self.builder.as_mut()
            && builder.process_event(event).is_err()
        {
            self.break_bound(Bound::Namespace);
        }
        closed
    }

    fn break_bound(&mut self, bound: Bound) {
        if self.broke.is_none() {
            self.broke = Some(bound);
        }
        // Dropped while shallow: the bound stopped its growth.
        self.builder = None;
    }

    fn finish(self) -> StreamItem {
        match (self.broke, self.builder.and_then(|mut builder| builder.root.take())) {
            (None, Some(element)) => StreamItem::Stanza(element),
            (broke, _) => StreamItem::Refused(Refused { head: self.head, bound: broke.unwrap_or(Bound::Namespace) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use minidom::rxml::error::EndOrError;
    use minidom::rxml::{Parse as _, RawParser};

    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
        xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='incidents.b.test'>";

    /// Feeds `text` through rxml's raw parser into an assembler and collects the items (a
    /// stream still open at the end of `text` just has no more).
    fn items(text: &str) -> Result<Vec<StreamItem>> {
        let mut parser = RawParser::default();
        let mut assembler = StreamAssembler::new(StanzaLimits::default());
        let mut input = text.as_bytes();
        let mut items = Vec::new();
        loop {
            match parser.parse(&mut input, false) {
                Ok(Some(event)) => items.extend(assembler.push(event)?),
                Ok(None) | Err(EndOrError::NeedMoreData) => return Ok(items),
                Err(error) => return Err(Error::Xml { reason: format!("{error:?}") }),
            }
        }
    }

    fn nested(depth: usize) -> String {
        format!("<iq type='set' id='deep' from='x.test'>{}{}</iq>", "<a>".repeat(depth), "</a>".repeat(depth))
    }

    fn refused(item: &StreamItem) -> &Refused {
        match item {
            StreamItem::Refused(refused) => refused,
            other => panic!("expected a refused stanza, got {other:?}"),
        }
    }

    #[test]
    fn reads_the_header_and_stanzas_in_the_streams_namespace() {
        let text = format!("{HEADER} <iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>\n</stream:stream>");
        let items = items(&text).unwrap();
        assert!(matches!(&items[0], StreamItem::Opened { id } if id.as_deref() == Some("s1")));
        let StreamItem::Stanza(iq) = &items[1] else { panic!("a stanza") };
        assert_eq!((iq.name(), iq.ns().as_str(), iq.attr("id")), ("iq", "jabber:component:accept", Some("1")));
        assert_eq!(iq.children().next().unwrap().ns(), "urn:xmpp:ping");
        assert!(matches!(items[2], StreamItem::Closed));
    }

    #[test]
    fn a_hundred_thousand_levels_are_refused_with_their_head_and_the_stream_goes_on() {
        let items = items(&format!("{HEADER}{}<iq type='get' id='after'/>", nested(100_000))).unwrap();
        let first = refused(&items[1]);
        assert_eq!(first.bound, Bound::Depth);
        assert_eq!((first.head.name.as_str(), first.head.id.as_deref()), ("iq", Some("deep")));
        assert_eq!(first.head.from.as_deref(), Some("x.test"));
        assert!(matches!(&items[2], StreamItem::Stanza(next) if next.attr("id") == Some("after")));
    }

    #[test]
    fn depth_at_the_bound_is_built_and_one_more_is_refused() {
        let limits = StanzaLimits::default();
        let items = items(&format!("{HEADER}{}{}", nested(limits.max_depth), nested(limits.max_depth + 1))).unwrap();
        assert!(matches!(items[1], StreamItem::Stanza(_)));
        assert_eq!(refused(&items[2]).bound, Bound::Depth);
    }

    #[test]
    fn size_and_element_count_are_bounded_while_reading() {
        let big = format!("<message from='x.test' id='m'><body>{}</body></message>", "x".repeat(MAX_XML_BYTES));
        let many = format!("<iq type='set' id='many'>{}</iq>", "<a/>".repeat(MAX_XML_ELEMENTS + 1));
        let items = items(&format!("{HEADER}{big}{many}")).unwrap();
        assert_eq!((refused(&items[1]).bound, refused(&items[1]).head.name.as_str()), (Bound::Size, "message"));
        assert_eq!((refused(&items[2]).bound, refused(&items[2]).head.id.as_deref()), (Bound::Elements, Some("many")));
    }

    #[test]
    fn an_undeclared_prefix_is_refused_not_fatal_and_long_ids_are_not_kept() {
        let long_id = "i".repeat(MAX_HEAD_VALUE_BYTES + 1);
        let items =
            items(&format!("{HEADER}<iq type='get' id='{long_id}'><p:x/></iq><iq type='get' id='ok'/>")).unwrap();
        assert_eq!((refused(&items[1]).bound, refused(&items[1]).head.id.clone()), (Bound::Namespace, None));
        assert!(matches!(items[2], StreamItem::Stanza(_)));
    }

    #[test]
    fn a_stanza_the_gate_refuses_is_never_built() {
        let gate: Gate = Box::new(|head: &Head| head.from.as_deref() != Some("flood.test"));
        let mut assembler = StreamAssembler::with_gate(StanzaLimits::default(), gate);
        let mut parser = RawParser::default();
        let text =
            format!("{HEADER}<iq type='set' id='f' from='flood.test'><a/></iq><iq type='get' id='ok' from='x.test'/>");
        let mut input = text.as_bytes();
        let mut items = Vec::new();
        while let Ok(Some(event)) = parser.parse(&mut input, false) {
            items.extend(assembler.push(event).unwrap());
        }
        assert_eq!(refused(&items[1]).bound, Bound::Rate);
        assert_eq!(refused(&items[1]).head.id.as_deref(), Some("f"));
        assert!(matches!(&items[2], StreamItem::Stanza(ok) if ok.attr("id") == Some("ok")));
    }

    #[test]
    fn a_stream_that_is_not_a_component_stream_is_an_error() {
        assert!(items("<html><body/></html>").is_err());
        assert!(items("<stream:stream xmlns:stream='urn:not-streams'>").is_err());
        // A header without an id is read (the refusal that follows is the server's answer).
        let opened = items("<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>").unwrap();
        assert!(matches!(&opened[0], StreamItem::Opened { id: None }));
    }
}
