//! Signed checkpoints (signed notes): parse, print, parse again; printing is exact.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ostracon_protocol::log::checkpoint::SignedCheckpoint;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(note) = SignedCheckpoint::parse(text) else { return };
    let printed = note.to_text();
    assert_eq!(printed, text, "parse accepts only the canonical form");
    let again = SignedCheckpoint::parse(&printed).unwrap();
    assert_eq!(note.checkpoint(), again.checkpoint());
});
