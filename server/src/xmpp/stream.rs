//! Reading the XEP-0114 stream from the socket: rxml's raw parser turns bytes into events as
//! they arrive, and `protocol::xml::stream::StreamAssembler` turns events into stanzas under
//! bounds (see there). Every byte is counted from the parser's own event metrics, never by
//! serialising again.

use minidom::Element;
use ostracon_protocol::xml::stream::{Gate, Refused, STREAM_NS, StanzaLimits, StreamAssembler, StreamItem};
use rxml::{AsyncRawReader, Options};
use tokio::io::{AsyncRead, BufReader};

use super::connection::stream_error_condition;
use crate::error::ServerError;

/// The largest single token (name, attribute value, text chunk) the parser buffers. Prosody
/// relays nothing longer than its 512 KiB stanza cap, so any token it sends fits, and the
/// stanza's own byte bound refuses it with an answer instead of a broken stream.
const MAX_TOKEN_BYTES: usize = 520 * 1024;

/// One item for the node.
#[derive(Debug)]
pub enum Inbound {
    /// A stanza within bounds, built.
    Stanza(Element),
    /// A stanza over a bound, read to its end and discarded.
    Refused(Refused),
}

/// The end of the stream without a stream error.
const CLOSED: ServerError = ServerError::StreamClosed { condition: None };

/// Reads stanzas from one component stream.
pub struct StanzaReader<R> {
    reader: AsyncRawReader<BufReader<R>>,
    assembler: StreamAssembler,
    /// Bytes read since the reader was made.
    bytes_read: u64,
}

impl<R: AsyncRead + Unpin> StanzaReader<R> {
    /// A reader over `io`; call [`Self::read_header`] first.
    pub fn new(io: R, limits: StanzaLimits) -> Self {
        Self::with_assembler(io, StreamAssembler::new(limits))
    }

    /// A reader that asks `gate` about each stanza at its head (see `StreamAssembler::with_gate`).
    pub fn with_gate(io: R, limits: StanzaLimits, gate: Gate) -> Self {
        Self::with_assembler(io, StreamAssembler::with_gate(limits, gate))
    }

    fn with_assembler(io: R, assembler: StreamAssembler) -> Self {
        let options = Options { max_token_length: MAX_TOKEN_BYTES, ..Options::default() };
        Self { reader: AsyncRawReader::with_options(BufReader::new(io), options), assembler, bytes_read: 0 }
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    async fn item(&mut self) -> Result<StreamItem, ServerError> {
        loop {
            let event = self.reader.read().await.map_err(ServerError::Stream)?.ok_or(CLOSED)?;
            self.bytes_read += event.metrics().len() as u64;
            if let Some(item) = self.assembler.push(event)? {
                return Ok(item);
            }
        }
    }

    /// Reads the server's `stream:stream` header and returns its `id`. A header without one
    /// comes before a refusal (Prosody's `host-unknown` for a component it does not serve):
    /// that refusal is the error.
    pub async fn read_header(&mut self) -> Result<String, ServerError> {
        match self.item().await? {
            StreamItem::Opened { id: Some(id) } => Ok(id),
            StreamItem::Opened { id: None } => match self.item().await? {
                StreamItem::Stanza(error) if error.name() == "error" && error.ns() == STREAM_NS => {
                    Err(ServerError::HandshakeRefused { condition: stream_error_condition(&error) })
                }
                _ => Err(ServerError::StreamHeader("the stream header has no id")),
            },
            _ => Err(ServerError::StreamHeader("the stream did not start with a header")),
        }
    }

    /// The next stanza (or refused stanza); `StreamClosed` when the server ends the stream.
    pub async fn next(&mut self) -> Result<Inbound, ServerError> {
        match self.item().await? {
            StreamItem::Stanza(element) => Ok(Inbound::Stanza(element)),
            StreamItem::Refused(refused) => Ok(Inbound::Refused(refused)),
            StreamItem::Closed => Err(CLOSED),
            StreamItem::Opened { .. } => Err(ServerError::StreamHeader("a second stream header")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
        xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='incidents.b.test'>";

    #[tokio::test]
    async fn reads_stanzas_from_a_socket_and_counts_every_byte() {
        let deep =
            format!("<iq type='set' id='deep' from='x.test'>{}{}</iq>", "<a>".repeat(100_000), "</a>".repeat(100_000));
        let text = format!("{HEADER} {deep}<iq type='get' id='1'/></stream:stream>");
        let length = text.len() as u64;
        let mut reader = StanzaReader::new(std::io::Cursor::new(text.into_bytes()), StanzaLimits::default());
        assert_eq!(reader.read_header().await.unwrap(), "s1");
        assert!(matches!(reader.next().await.unwrap(), Inbound::Refused(_)));
        assert!(matches!(reader.next().await.unwrap(), Inbound::Stanza(_)));
        assert!(matches!(reader.next().await, Err(ServerError::StreamClosed { condition: None })));
        assert_eq!(reader.bytes_read(), length);
    }

    #[tokio::test]
    async fn a_stream_that_is_not_a_component_stream_is_an_error() {
        let mut html =
            StanzaReader::new(std::io::Cursor::new(b"<html><body/></html>".to_vec()), StanzaLimits::default());
        assert!(html.read_header().await.is_err());
    }
}
