//! The component stream at the byte level: raw bytes through rxml's raw parser (with the
//! node's token limit) into the node's `StreamAssembler`, after a valid header. Nothing may
//! panic or recurse on depth; every stanza built keeps the bounds; every refused stanza is
//! reported with bounded head values; stanzas serialise and parse back to themselves.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minidom::rxml::error::EndOrError;
use minidom::rxml::{Options, Parse as _, RawParser, WithOptions as _};
use ostracon_protocol::xml::stream::{StanzaLimits, StreamAssembler, StreamItem};
use ostracon_protocol::xml::{check_bounds, parse_bounded, to_string};

const HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
    xmlns:stream='http://etherx.jabber.org/streams' id='fuzz' from='example.org'>";

fuzz_target!(|data: &[u8]| {
    let options = Options { max_token_length: 520 * 1024, ..Options::default() };
    let mut parser = RawParser::with_options(options);
    let limits = StanzaLimits::default();
    let mut assembler = StreamAssembler::new(limits);
    let bytes: Vec<u8> = HEADER.iter().chain(data).copied().collect();
    let mut input = bytes.as_slice();
    loop {
        let event = match parser.parse(&mut input, false) {
            Ok(Some(event)) => event,
            Ok(None) | Err(EndOrError::NeedMoreData) | Err(EndOrError::Error(_)) => return,
        };
        let Ok(item) = assembler.push(event) else { return };
        match item {
            Some(StreamItem::Stanza(stanza)) => {
                for child in stanza.children() {
                    check_bounds(child).expect("a built stanza keeps the bounds");
                }
                let text = to_string(&stanza);
                if text.len() <= limits.max_bytes {
                    let again = parse_bounded(&text).expect("a built stanza serialises to XML that parses");
                    assert_eq!(again, stanza, "serialising and parsing changes nothing");
                }
            }
            Some(StreamItem::Refused(refused)) => {
                for value in [&refused.head.from, &refused.head.to, &refused.head.id, &refused.head.stanza_type] {
                    assert!(value.as_ref().is_none_or(|v| v.len() <= 3 * 1024));
                }
            }
            Some(StreamItem::Closed) => return,
            Some(StreamItem::Opened { .. }) | None => {}
        }
    }
});
