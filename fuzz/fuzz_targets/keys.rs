//! Published keys: parse, emit, parse again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ostracon_protocol::xml::keys::{keys_from_element, keys_to_element};
use ostracon_protocol::xml::{parse_bounded, to_string};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(element) = parse_bounded(text) else { return };
    let Ok(keys) = keys_from_element(&element) else { return };
    let again = keys_from_element(&parse_bounded(&to_string(&keys_to_element(&keys))).unwrap()).unwrap();
    assert_eq!(keys, again);
});
