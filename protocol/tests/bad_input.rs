//! Every case in `spec/vectors/bad/cases.json` must be refused with its named error variant,
//! never accepted and never a panic.

mod support;

use ostracon_protocol::Error;
use ostracon_protocol::envelope::Nonce;
use ostracon_protocol::ids::{BareJid, Cidr, Domain, IncidentId, KeyId, parse_ip};
use ostracon_protocol::keys::PublicKey;
use ostracon_protocol::time::Timestamp;
use ostracon_protocol::xml::reporting::ForwardedReport;
use ostracon_protocol::xml::reputation::Score;
use ostracon_protocol::xml::xep0268::IncidentPayload;
use ostracon_protocol::xml::{batch, parse_bounded};
use serde_json::Value;
use support::read_vector;

fn input_text(input: &Value) -> String {
    match input {
        Value::String(text) => text.clone(),
        Value::Object(spec) => {
            let part = |key: &str| spec.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
            let times = spec["times"].as_u64().unwrap() as usize;
            format!("{}{}{}", part("prefix"), part("unit").repeat(times), part("suffix"))
        }
        other => panic!("bad input spec {other}"),
    }
}

fn run(parser: &str, text: &str) -> Result<(), Error> {
    match parser {
        "jid" => BareJid::parse(text).map(drop),
        "domain" => Domain::parse(text).map(drop),
        "ip" => parse_ip(text).map(drop),
        "cidr" => Cidr::parse(text).map(drop),
        "incident-id" => IncidentId::parse(text).map(drop),
        "key-id" => KeyId::parse(text).map(drop),
        "nonce" => Nonce::parse(text).map(drop),
        "timestamp" => Timestamp::parse(text).map(drop),
        "public-key" => PublicKey::from_base64(text).map(drop),
        "xep0268" => IncidentPayload::from_element(&parse_bounded(text)?).map(drop),
        "xep0275" => Score::from_element(&parse_bounded(text)?).map(drop),
        "batch" => batch::wrappers_of(&parse_bounded(text)?).map(drop),
        "xep0377" => ForwardedReport::from_message(&parse_bounded(text)?).map(|report| {
            assert!(report.is_some(), "no report found");
        }),
        other => panic!("unknown parser {other}"),
    }
}

#[test]
fn every_bad_input_vector_is_refused_with_its_error() {
    let vectors: Value = serde_json::from_str(&read_vector("bad/cases.json")).unwrap();
    let cases = vectors["cases"].as_array().unwrap();
    assert!(cases.len() >= 60);
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let expected = case["error"].as_str().unwrap();
        let text = input_text(&case["input"]);
        match run(case["parser"].as_str().unwrap(), &text) {
            Ok(()) => failures.push(format!("{name}: accepted")),
            Err(error) => {
                let debug = format!("{error:?}");
                if !debug.starts_with(expected) {
                    failures.push(format!("{name}: expected {expected}, got {debug}"));
                }
                // Messages stay short however large the input was.
                assert!(error.to_string().len() < 400, "{name}: message too long");
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_valid_twin_of_each_xml_case_is_accepted() {
    // Guards the cases above: the same builders without the defect parse fine, so each
    // refusal is due to the defect and not to a broken template.
    let good = "<report xmlns='urn:xmpp:incident:2'><Incident xmlns='urn:ietf:params:xml:ns:iodef-1.0' purpose='reporting'><IncidentID name='ops.example'>0f6c1c52-7d3e-4e0a-9a51-2b1f4a7e9c10</IncidentID><ReportTime>2026-05-01T10:20:00Z</ReportTime><EventData><Flow><System category='source'><Node><Address category='ipv4-addr'>192.0.2.30</Address><Address category='ipv4-net'>192.0.2.0/24</Address><NodeName>bad.example</NodeName></Node></System></Flow></EventData></Incident></report>";
    run("xep0268", good).unwrap();
    run("xep0275", "<score xmlns='urn:xmpp:reputation:0' jid='bad.example' num='100'/>").unwrap();
    let wrappers = format!("<batch xmlns='urn:x-ostracon:batch:0'>{}</batch>", good.repeat(32));
    run("batch", &wrappers).unwrap();
    run("xep0275", "<score xmlns='urn:xmpp:reputation:0' jid='bad.example' num='-100'/>").unwrap();
    run("jid", &format!("{}@example.org", "a".repeat(1023))).unwrap();
    run("domain", &format!("{}.example", "a".repeat(63))).unwrap();
}
