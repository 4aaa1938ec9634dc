//! XEP-0275 scores: parse, emit, parse again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ostracon_protocol::xml::reputation::Score;
use ostracon_protocol::xml::{parse_bounded, to_string};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(element) = parse_bounded(text) else { return };
    let Ok(score) = Score::from_element(&element) else { return };
    let again = Score::from_element(&parse_bounded(&to_string(&score.to_element())).unwrap()).unwrap();
    assert_eq!(score, again);
});
