//! XEP-0377 reports in the mod_report_forward shape: parse, emit, parse again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ostracon_protocol::ids::BareJid;
use ostracon_protocol::xml::reporting::ForwardedReport;
use ostracon_protocol::xml::{parse_bounded, to_string};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(element) = parse_bounded(text) else { return };
    let Ok(Some(report)) = ForwardedReport::from_message(&element) else { return };
    let to = BareJid::parse("incidents.ops.example").unwrap();
    let emitted = to_string(&report.to_message(&to, "id", "jabber:client"));
    let mut again = ForwardedReport::from_message(&parse_bounded(&emitted).unwrap()).unwrap().unwrap();
    again.report.legacy = report.report.legacy;
    assert_eq!(report, again);
});
