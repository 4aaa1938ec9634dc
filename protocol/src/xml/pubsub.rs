//! The XEP-0060 subset an RTBL consumer speaks: `subscribe`, `unsubscribe` and `items`
//! requests, and the answers and `#event` notifications they expect, with no payloads.
//!
//! ```xml
//! <pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='muc_bans_sha256' jid='conference.example.org'/></pubsub>
//! <pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='muc_bans_sha256'/></pubsub>
//! <event xmlns='http://jabber.org/protocol/pubsub#event'><items node='muc_bans_sha256'><item id='…'/></items></event>
//! <event xmlns='http://jabber.org/protocol/pubsub#event'><items node='muc_bans_sha256'><retract id='…'/></items></event>
//! ```
//!
//! Prosody's and ejabberd's modules read only the item ids, so items carry no payload, and
//! every size here is the exact size of the serialised element (see [`ITEM_OVERHEAD_BYTES`]),
//! so a caller can fill a stanza up to a byte budget without serialising it twice.

use std::fmt;

use minidom::Element;

use crate::error::{Error, Excerpt, Result};
use crate::ids::BareJid;
use crate::limits::MAX_JID_PART_BYTES;
use crate::xml::{element_with, required_attr};

/// XEP-0060 requests and results.
pub const PUBSUB_NS: &str = "http://jabber.org/protocol/pubsub";
/// XEP-0060 notifications.
pub const PUBSUB_EVENT_NS: &str = "http://jabber.org/protocol/pubsub#event";

/// Longest JID: three parts and their separators (RFC 7622 §3.1).
const MAX_JID_BYTES: usize = 3 * MAX_JID_PART_BYTES + 2;

/// Longest node name accepted in a request (ours are far shorter).
const MAX_NODE_BYTES: usize = 256;

/// Bytes `<item id=''/>` adds to its id when serialised (`<item id='` and `'/>`).
pub const ITEM_OVERHEAD_BYTES: usize = 13;

/// Bytes one item with this id takes in a serialised `<items/>`: ids are hex, domains or
/// CIDR blocks, none of which needs escaping, and an id that would is counted as escaped.
pub fn item_bytes(id: &str) -> usize {
    let escaped: usize = id
        .chars()
        .map(|c| match c {
            '&' => 5,
            '<' | '>' => 4,
            // rxml writes quotes as numeric references: `&#34;`, `&#39;`.
            '"' | '\'' => 5,
            c => c.len_utf8(),
        })
        .sum();
    escaped + ITEM_OVERHEAD_BYTES
}

/// Who subscribes: a bare JID (Prosody subscribes its MUC host) or a full one (ejabberd
/// subscribes `vhost/rtbl-<node>`, and its hook accepts events only at that resource).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Subscriber {
    bare: BareJid,
    resource: Option<String>,
}

impl Subscriber {
    /// Parses a JID, keeping its resource (checked as RFC 7622 requires).
    pub fn parse(text: &str) -> Result<Self> {
        if text.len() > MAX_JID_BYTES {
            return Err(Error::TooLarge { what: "subscriber JID", len: text.len(), max: MAX_JID_BYTES });
        }
        let bare = BareJid::parse(text)?;
        let resource = text.split_once('/').map(|(_, resource)| resource.to_owned());
        Ok(Self { bare, resource })
    }

    /// The bare JID.
    pub fn bare(&self) -> &BareJid {
        &self.bare
    }
}

impl fmt::Display for Subscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.resource {
            Some(resource) => write!(f, "{}/{resource}", self.bare),
            None => write!(f, "{}", self.bare),
        }
    }
}

/// A request an RTBL consumer sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PubsubRequest {
    /// `<subscribe node jid/>` in an IQ set.
    Subscribe {
        /// The node.
        node: String,
        /// Who is subscribed (the `jid` attribute).
        jid: Subscriber,
    },
    /// `<unsubscribe node jid/>` in an IQ set.
    Unsubscribe {
        /// The node.
        node: String,
        /// Who is unsubscribed.
        jid: Subscriber,
    },
    /// `<items node/>` in an IQ get: every item of the node.
    Items {
        /// The node.
        node: String,
    },
}

impl PubsubRequest {
    /// Parses the `<pubsub/>` child of an IQ of `iq_type`, sent from `from`.
    ///
    /// XEP-0060 §6.1.3.2 and §6.2.3.3: the `jid` of a subscription must be the sender's own
    /// bare JID or one of its full JIDs, so nobody subscribes a third party to a flood.
    pub fn parse(pubsub: &Element, iq_type: &str, from: &BareJid) -> Result<Self> {
        crate::xml::expect_element(pubsub, "pubsub", PUBSUB_NS, "<pubsub xmlns='http://jabber.org/protocol/pubsub'/>")?;
        let mut children = pubsub.children();
        let (Some(child), None) = (children.next(), children.next()) else {
            return Err(Error::InvalidValue {
                field: "pubsub",
                value: Excerpt::new("a request carries exactly one subscribe, unsubscribe or items element"),
            });
        };
        let node = required_attr(child, "pubsub request", "node")?;
        if node.len() > MAX_NODE_BYTES {
            return Err(Error::TooLarge { what: "pubsub node name", len: node.len(), max: MAX_NODE_BYTES });
        }
        let node = node.to_owned();
        let subscriber = |child: &Element| -> Result<Subscriber> {
            let jid = Subscriber::parse(required_attr(child, "subscription", "jid")?)?;
            if jid.bare() != from {
                return Err(Error::InvalidJid {
                    value: Excerpt::new(&jid.to_string()),
                    reason: "a subscription's jid must be the sender's own",
                });
            }
            Ok(jid)
        };
        match (child.name(), iq_type) {
            ("subscribe", "set") if child.ns() == PUBSUB_NS => Ok(Self::Subscribe { jid: subscriber(child)?, node }),
            ("unsubscribe", "set") if child.ns() == PUBSUB_NS => {
                Ok(Self::Unsubscribe { jid: subscriber(child)?, node })
            }
            ("items", "get") if child.ns() == PUBSUB_NS => Ok(Self::Items { node }),
            _ => Err(Error::UnexpectedElement {
                name: Excerpt::new(child.name()),
                namespace: Excerpt::new(&child.ns()),
                expected: "<subscribe/> or <unsubscribe/> in a set, <items/> in a get",
            }),
        }
    }
}

/// The answer to a subscribe (`subscribed`) or an unsubscribe (`none`).
pub fn subscription_result(node: &str, jid: &Subscriber, subscribed: bool) -> Element {
    let state = if subscribed { "subscribed" } else { "none" };
    let mut pubsub = Element::bare("pubsub", PUBSUB_NS);
    pubsub.append_child(element_with(
        "subscription",
        PUBSUB_NS,
        &[("node", node), ("jid", &jid.to_string()), ("subscription", state)],
    ));
    pubsub
}

/// `<items node><item id/>…</items>` in `namespace`.
fn items<'a>(namespace: &str, node: &str, ids: impl IntoIterator<Item = &'a str>) -> Element {
    let mut items = element_with("items", namespace, &[("node", node)]);
    for id in ids {
        items.append_child(element_with("item", namespace, &[("id", id)]));
    }
    items
}

/// The answer to an items request: `<pubsub><items node>` with one payload-less item per id.
pub fn items_result<'a>(node: &str, ids: impl IntoIterator<Item = &'a str>) -> Element {
    let mut pubsub = Element::bare("pubsub", PUBSUB_NS);
    pubsub.append_child(items(PUBSUB_NS, node, ids));
    pubsub
}

/// A notification that these items were published.
pub fn items_event<'a>(node: &str, ids: impl IntoIterator<Item = &'a str>) -> Element {
    let mut event = Element::bare("event", PUBSUB_EVENT_NS);
    event.append_child(items(PUBSUB_EVENT_NS, node, ids));
    event
}

/// A notification that one item was retracted: one per event, because ejabberd before 25.07
/// reads only the first retract of an event.
pub fn retract_event(node: &str, id: &str) -> Element {
    let mut items = element_with("items", PUBSUB_EVENT_NS, &[("node", node)]);
    items.append_child(element_with("retract", PUBSUB_EVENT_NS, &[("id", id)]));
    let mut event = Element::bare("event", PUBSUB_EVENT_NS);
    event.append_child(items);
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{parse_bounded, to_string};

    fn parse(xml: &str, iq_type: &str, from: &str) -> Result<PubsubRequest> {
        PubsubRequest::parse(&parse_bounded(xml).unwrap(), iq_type, &BareJid::parse(from).unwrap())
    }

    #[test]
    fn prosody_and_ejabberd_requests_parse() {
        let prosody = parse(
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe jid='conference.localhost' node='muc_bans_sha256'/></pubsub>",
            "set",
            "conference.localhost",
        )
        .unwrap();
        let PubsubRequest::Subscribe { node, jid } = prosody else { panic!("{prosody:?}") };
        assert_eq!((node.as_str(), jid.to_string().as_str()), ("muc_bans_sha256", "conference.localhost"));
        let ejabberd = parse(
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe jid='victim.test/rtbl-ejabberd@host' node='muc_bans_sha256'/></pubsub>",
            "set",
            "victim.test/rtbl-ejabberd@host",
        )
        .unwrap();
        let PubsubRequest::Subscribe { jid, .. } = ejabberd else { panic!("{ejabberd:?}") };
        assert_eq!(jid.to_string(), "victim.test/rtbl-ejabberd@host", "the full JID is kept: events go there");
        assert_eq!(
            parse(
                "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='spam_source_ips'/></pubsub>",
                "get",
                "x.example"
            )
            .unwrap(),
            PubsubRequest::Items { node: "spam_source_ips".into() }
        );
    }

    #[test]
    fn a_subscription_for_someone_else_or_a_malformed_request_is_refused() {
        let other = parse(
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe jid='victim.example' node='muc_bans_sha256'/></pubsub>",
            "set",
            "attacker.example",
        );
        assert!(matches!(other, Err(Error::InvalidJid { .. })), "{other:?}");
        for (xml, iq_type) in [
            ("<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='n'/></pubsub>", "set"),
            ("<pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='n' jid='a.example'/></pubsub>", "get"),
            ("<pubsub xmlns='http://jabber.org/protocol/pubsub'><items/></pubsub>", "get"),
            ("<pubsub xmlns='http://jabber.org/protocol/pubsub'/>", "get"),
            ("<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='n'/><items node='m'/></pubsub>", "get"),
            ("<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><items node='n'/></pubsub>", "get"),
        ] {
            assert!(parse(xml, iq_type, "a.example").is_err(), "{xml} as {iq_type}");
        }
        let long =
            format!("<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='{}'/></pubsub>", "n".repeat(300));
        assert!(matches!(parse(&long, "get", "a.example"), Err(Error::TooLarge { .. })));
    }

    #[test]
    fn item_sizes_are_the_serialised_sizes() {
        let ids = ["76dac190", "bücher.example", "192.0.2.0/24", "a&b", "<'\">"];
        let empty = to_string(&items_result("muc_bans_sha256", [])).len();
        let full = to_string(&items_result("muc_bans_sha256", ids)).len();
        // An element with children closes with </items> instead of />: 7 bytes more, once.
        assert_eq!(full - empty, ids.iter().map(|id| item_bytes(id)).sum::<usize>() + "></items>".len() - "/>".len());
    }

    #[test]
    fn a_retract_event_carries_one_retract() {
        let text = to_string(&retract_event("muc_bans_sha256", "abc"));
        assert_eq!(
            text,
            "<event xmlns='http://jabber.org/protocol/pubsub#event'><items node='muc_bans_sha256'><retract id='abc'/></items></event>"
        );
    }
}
