//! Reading the XEP-0114 stream under bounds, one stanza at a time.
//!
//! Prosody relays component stanzas of up to 512 KiB and checks no depth, so the bounds of
//! `protocol::limits` are applied here, event by event, while the stream is read: a stanza
//! that grows past a bound stops being built at once, the rest of it is read and thrown away
//! (only its depth is counted), and what its head said (name, `from`, `id`, `type`) comes out
//! as a [`Refused`] the node can answer. Nothing on this path recurses on the peer's depth:
//! the tree under construction never gets deeper than the bound, so building it, dropping
//! it and serialising it stay shallow.
//!
//! Every byte is counted from the parser's own event metrics, not by serialising again.

use std::collections::BTreeMap;

use minidom::Element;
use minidom::tree_builder::TreeBuilder;
use ostracon_protocol::limits::{MAX_XML_BYTES, MAX_XML_DEPTH, MAX_XML_ELEMENTS};
use rxml::{AsyncRawReader, Options, RawEvent};
use tokio::io::{AsyncRead, BufReader};

use crate::error::ServerError;

/// The stream namespace (`stream:stream`, `stream:error`).
pub const STREAM_NS: &str = "http://etherx.jabber.org/streams";

/// The largest single token (name, attribute value, text chunk) the parser buffers. Prosody
/// relays nothing longer than its 512 KiB stanza cap, so any token it sends fits, and the
/// stanza's own byte bound refuses it with an answer instead of a broken stream.
const MAX_TOKEN_BYTES: usize = 520 * 1024;
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
}

impl Bound {
    /// A label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Size => "size",
            Self::Depth => "depth",
            Self::Elements => "elements",
            Self::Namespace => "namespace",
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
pub enum Inbound {
    /// A stanza within bounds, built.
    Stanza(Element),
    /// A stanza over a bound, read to its end and discarded.
    Refused(Refused),
}

/// The end of the stream without a stream error.
const CLOSED: ServerError = ServerError::StreamClosed { condition: None };

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

/// Reads stanzas from one component stream.
pub struct StanzaReader<R> {
    reader: AsyncRawReader<BufReader<R>>,
    /// Namespace declarations of the stream header, which every stanza inherits.
    prefixes: BTreeMap<Option<String>, String>,
    limits: StanzaLimits,
    /// Bytes read since the reader was made.
    bytes_read: u64,
}

impl<R: AsyncRead + Unpin> StanzaReader<R> {
    /// A reader over `io`; call [`Self::read_header`] first.
    pub fn new(io: R, limits: StanzaLimits) -> Self {
        let options = Options { max_token_length: MAX_TOKEN_BYTES, ..Options::default() };
        Self {
            reader: AsyncRawReader::with_options(BufReader::new(io), options),
            prefixes: BTreeMap::new(),
            limits,
            bytes_read: 0,
        }
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    async fn event(&mut self) -> Result<RawEvent, ServerError> {
        let event = self.reader.read().await.map_err(ServerError::Stream)?.ok_or(CLOSED)?;
        self.bytes_read += event.metrics().len() as u64;
        Ok(event)
    }

    /// Reads the server's `stream:stream` header and returns its `id`.
    pub async fn read_header(&mut self) -> Result<String, ServerError> {
        let mut id = None;
        loop {
            match self.event().await? {
                RawEvent::XmlDeclaration(..) => {}
                RawEvent::ElementHeadOpen(_, (prefix, name)) => {
                    if name.as_str() != "stream" || prefix.as_ref().is_none_or(|p| p.as_str() != "stream") {
                        return Err(ServerError::StreamHeader("the root element is not stream:stream"));
                    }
                }
                RawEvent::Attribute(_, (prefix, name), value) => {
                    match (prefix.as_ref().map(|p| p.as_str()), name.as_str()) {
                        (None, "xmlns") => {
                            self.prefixes.insert(None, value);
                        }
                        (Some("xmlns"), prefix) => {
                            self.prefixes.insert(Some(prefix.to_owned()), value);
                        }
                        (None, "id") => id = Some(value),
                        _ => {}
                    }
                }
                RawEvent::ElementHeadClose(_) => break,
                RawEvent::Text(..) | RawEvent::ElementFoot(_) => {
                    return Err(ServerError::StreamHeader("the header is incomplete"));
                }
            }
        }
        if self.prefixes.get(&Some("stream".to_owned())).map(String::as_str) != Some(STREAM_NS) {
            return Err(ServerError::StreamHeader("the stream prefix is not the stream namespace"));
        }
        id.filter(|id| !id.is_empty()).ok_or(ServerError::StreamHeader("the header has no id"))
    }

    /// The next stanza (or refused stanza); `StreamClosed` when the server ends the stream.
    /// Whitespace between stanzas (keepalives) is read and skipped.
    pub async fn next(&mut self) -> Result<Inbound, ServerError> {
        let mut partial: Option<Partial> = None;
        loop {
            let event = self.event().await?;
            let Some(stanza) = partial.as_mut() else {
                match event {
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
                        partial = Some(stanza);
                    }
                    RawEvent::ElementFoot(_) => return Err(CLOSED),
                    _ => {}
                }
                continue;
            };
            if stanza.take(event, &self.limits) {
                let done = partial.take().expect("a stanza was being read");
                return Ok(done.finish());
            }
        }
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

    fn finish(self) -> Inbound {
        match (self.broke, self.builder.and_then(|mut builder| builder.root.take())) {
            (None, Some(element)) => Inbound::Stanza(element),
            (broke, _) => Inbound::Refused(Refused { head: self.head, bound: broke.unwrap_or(Bound::Namespace) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::stanza::STANZA_NS;
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
        xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='incidents.b.test'>";

    fn reader(text: String) -> StanzaReader<std::io::Cursor<Vec<u8>>> {
        StanzaReader::new(std::io::Cursor::new(text.into_bytes()), StanzaLimits::default())
    }

    fn nested(depth: usize) -> String {
        format!("<iq type='set' id='deep' from='x.test'>{}{}</iq>", "<a>".repeat(depth), "</a>".repeat(depth))
    }

    #[tokio::test]
    async fn reads_the_header_and_stanzas_in_the_streams_namespace() {
        let mut reader =
            reader(format!("{HEADER} <iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>\n</stream:stream>"));
        assert_eq!(reader.read_header().await.unwrap(), "s1");
        let Inbound::Stanza(iq) = reader.next().await.unwrap() else { panic!("a stanza") };
        assert_eq!((iq.name(), iq.ns().as_str(), iq.attr("id")), ("iq", STANZA_NS, Some("1")));
        assert_eq!(iq.children().next().unwrap().ns(), "urn:xmpp:ping");
        assert!(matches!(reader.next().await, Err(ServerError::StreamClosed { condition: None })));
        assert!(reader.bytes_read() > 100);
    }

    #[tokio::test]
    async fn a_hundred_thousand_levels_are_refused_with_their_head_and_the_stream_goes_on() {
        let text = format!("{HEADER}{}<iq type='get' id='after'/>", nested(100_000));
        let mut reader = reader(text);
        reader.read_header().await.unwrap();
        let Inbound::Refused(refused) = reader.next().await.unwrap() else { panic!("refused") };
        assert_eq!(refused.bound, Bound::Depth);
        assert_eq!((refused.head.name.as_str(), refused.head.id.as_deref()), ("iq", Some("deep")));
        assert_eq!(refused.head.from.as_deref(), Some("x.test"));
        let Inbound::Stanza(next) = reader.next().await.unwrap() else { panic!("the next stanza") };
        assert_eq!(next.attr("id"), Some("after"));
    }

    #[tokio::test]
    async fn depth_at_the_bound_is_built_and_one_more_is_refused() {
        let limits = StanzaLimits::default();
        let mut reader = reader(format!("{HEADER}{}{}", nested(limits.max_depth), nested(limits.max_depth + 1)));
        reader.read_header().await.unwrap();
        assert!(matches!(reader.next().await.unwrap(), Inbound::Stanza(_)));
        let Inbound::Refused(refused) = reader.next().await.unwrap() else { panic!("refused") };
        assert_eq!(refused.bound, Bound::Depth);
    }

    #[tokio::test]
    async fn size_and_element_count_are_bounded_while_reading() {
        let big = format!("<message from='x.test' id='m'><body>{}</body></message>", "x".repeat(MAX_XML_BYTES));
        let many = format!("<iq type='set' id='many'>{}</iq>", "<a/>".repeat(MAX_XML_ELEMENTS + 1));
        let mut reader = reader(format!("{HEADER}{big}{many}"));
        reader.read_header().await.unwrap();
        let Inbound::Refused(refused) = reader.next().await.unwrap() else { panic!("refused") };
        assert_eq!((refused.bound, refused.head.name.as_str()), (Bound::Size, "message"));
        let Inbound::Refused(refused) = reader.next().await.unwrap() else { panic!("refused") };
        assert_eq!((refused.bound, refused.head.id.as_deref()), (Bound::Elements, Some("many")));
    }

    #[tokio::test]
    async fn an_undeclared_prefix_is_refused_not_fatal_and_long_ids_are_not_kept() {
        let long_id = "i".repeat(MAX_HEAD_VALUE_BYTES + 1);
        let text = format!("{HEADER}<iq type='get' id='{long_id}'><p:x/></iq><iq type='get' id='ok'/>");
        let mut reader = reader(text);
        reader.read_header().await.unwrap();
        let Inbound::Refused(refused) = reader.next().await.unwrap() else { panic!("refused") };
        assert_eq!((refused.bound, refused.head.id), (Bound::Namespace, None));
        assert!(matches!(reader.next().await.unwrap(), Inbound::Stanza(_)));
    }

    #[tokio::test]
    async fn a_stream_that_is_not_a_component_stream_is_an_error() {
        let mut html = reader("<html><body/></html>".to_owned());
        assert!(matches!(html.read_header().await, Err(ServerError::StreamHeader(_))));
        let mut no_id = reader("<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>".to_owned());
        assert!(matches!(no_id.read_header().await, Err(ServerError::StreamHeader(_))));
    }
}
