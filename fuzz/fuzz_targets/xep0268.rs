//! XEP-0268 wrappers with IODEF: parse, emit, parse again, and the two parses must agree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ostracon_protocol::xml::xep0268::IncidentPayload;
use ostracon_protocol::xml::{parse_bounded, to_string};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(element) = parse_bounded(text) else { return };
    let Ok(payload) = IncidentPayload::from_element(&element) else { return };
    let emitted = to_string(&payload.to_element());
    let again = IncidentPayload::from_element(&parse_bounded(&emitted).expect("our output parses"))
        .expect("our output is accepted");
    assert_eq!(payload, again);
});
