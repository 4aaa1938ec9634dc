//! XEP-0060 requests of RTBL consumers: parse as a get and as a set; a subscriber prints and
//! parses back to itself and is always the sender, and the size an item is counted at is
//! the size it serialises to, whatever its id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ostracon_protocol::ids::BareJid;
use ostracon_protocol::xml::pubsub::{PubsubRequest, Subscriber, item_bytes, items_result};
use ostracon_protocol::xml::{parse_bounded, to_string};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(element) = parse_bounded(text) else { return };
    let from = BareJid::parse("conference.ops.example").unwrap();
    for iq_type in ["get", "set"] {
        match PubsubRequest::parse(&element, iq_type, &from) {
            Ok(PubsubRequest::Subscribe { jid, .. } | PubsubRequest::Unsubscribe { jid, .. }) => {
                assert_eq!(jid.bare(), &from);
                assert_eq!(Subscriber::parse(&jid.to_string()).unwrap(), jid);
            }
            Ok(PubsubRequest::Items { node }) => {
                let empty = to_string(&items_result(&node, [])).len();
                let one = to_string(&items_result(&node, [node.as_str()])).len();
                assert_eq!(one - empty, item_bytes(&node) + "></items>".len() - "/>".len());
            }
            Err(_) => {}
        }
    }
});
