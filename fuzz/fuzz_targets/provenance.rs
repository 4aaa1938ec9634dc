//! Signed provenance elements: parse, emit, parse again (no keys: shape only).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ostracon_protocol::xml::{parse_bounded, signed, to_string};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(element) = parse_bounded(text) else { return };
    let Ok(links) = signed::from_element(&element) else { return };
    let again = signed::from_element(&parse_bounded(&to_string(&signed::to_element(&links))).unwrap()).unwrap();
    assert_eq!(links, again);
});
