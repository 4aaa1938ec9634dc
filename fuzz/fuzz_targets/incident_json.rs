//! Incident claims as JSON: parse, validate, serialise canonically, parse again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ostracon_protocol::canonical::to_canonical_json;
use ostracon_protocol::incident::Incident;

fuzz_target!(|data: &[u8]| {
    let Ok(incident) = serde_json::from_slice::<Incident>(data) else { return };
    if incident.validate().is_err() {
        return;
    }
    let bytes = to_canonical_json(&incident).unwrap();
    let again: Incident = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(incident, again);
    assert_eq!(to_canonical_json(&again).unwrap(), bytes, "canonical form is a fixed point");
});
