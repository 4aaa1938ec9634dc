//! XEP-0267 Server Buddies (presence subscriptions between node JIDs) and the service
//! discovery we answer with: identity, features and XEP-0157 abuse addresses.

use minidom::Element;

use crate::envelope::SIGNED_NS;
use crate::error::{Error, Excerpt, Result};
use crate::ids::BareJid;
use crate::xml::keys::KEYS_NS;

use crate::xml::batch::BATCH_NS;
use crate::xml::reputation::REPUTATION_NS;
use crate::xml::xep0268::INCIDENT_NS;
use crate::xml::{element_with, required_attr, text_element};

/// XEP-0267's disco feature.
pub const SERVER_PRESENCE_FEATURE: &str = "urn:xmpp:server-presence";
/// XEP-0030 disco#info.
pub const DISCO_INFO_NS: &str = "http://jabber.org/protocol/disco#info";
/// XEP-0004 data forms.
pub const DATA_FORMS_NS: &str = "jabber:x:data";
/// XEP-0157's form type.
pub const SERVERINFO_FORM_TYPE: &str = "http://jabber.org/network/serverinfo";

/// Every feature our component advertises, sorted by bytes as XEP-0115 hashing wants.
///
/// `urn:xmpp:reporting:1` is deliberately absent: it announces XEP-0191 blocking-command
/// reports, which a component does not take; we accept relayed reports without advertising it.
pub const DISCO_FEATURES: &[&str] =
    &[DISCO_INFO_NS, BATCH_NS, KEYS_NS, SIGNED_NS, INCIDENT_NS, REPUTATION_NS, SERVER_PRESENCE_FEATURE];

/// The presence types a buddy relation is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuddyPresence {
    /// "May we be buddies?" (only ever sent on the operator's request).
    Subscribe,
    /// "Yes" (only after the operator approved, or explicit auto-approve).
    Subscribed,
    /// "We end it."
    Unsubscribe,
    /// "You are no longer our buddy."
    Unsubscribed,
}

impl BuddyPresence {
    /// The presence `type` attribute.
    pub fn as_type(self) -> &'static str {
        match self {
            Self::Subscribe => "subscribe",
            Self::Subscribed => "subscribed",
            Self::Unsubscribe => "unsubscribe",
            Self::Unsubscribed => "unsubscribed",
        }
    }

    /// Reads a presence `type`; other presence types are not buddy traffic.
    pub fn from_type(presence_type: &str) -> Option<Self> {
        match presence_type {
            "subscribe" => Some(Self::Subscribe),
            "subscribed" => Some(Self::Subscribed),
            "unsubscribe" => Some(Self::Unsubscribe),
            "unsubscribed" => Some(Self::Unsubscribed),
            _ => None,
        }
    }

    /// A presence stanza in `stanza_ns` (`jabber:component:accept` on a component stream).
    pub fn to_stanza(self, from: &BareJid, to: &BareJid, stanza_ns: &str) -> Element {
        element_with(
            "presence",
            stanza_ns,
            &[("from", &from.to_string()), ("to", &to.to_string()), ("type", self.as_type())],
        )
    }

    /// Reads a buddy presence: its kind, sender and recipient (bare). `None` for other presences.
    pub fn from_stanza(stanza: &Element) -> Result<Option<(Self, BareJid, BareJid)>> {
        if stanza.name() != "presence" {
            return Ok(None);
        }
        let Some(kind) = stanza.attr("type").and_then(Self::from_type) else {
            return Ok(None);
        };
        let from = BareJid::parse(required_attr(stanza, "presence", "from")?)?;
        let to = BareJid::parse(required_attr(stanza, "presence", "to")?)?;
        Ok(Some((kind, from, to)))
    }
}

/// What our disco#info answer says besides the features.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiscoInfo {
    /// The identity's human name.
    pub name: String,
    /// XEP-0157 `abuse-addresses` (URIs such as `xmpp:abuse@example.org`, `mailto:…`).
    pub abuse_addresses: Vec<String>,
    /// The `report-addresses` convention that mod_report_forward reads first.
    pub report_addresses: Vec<String>,
}

impl DiscoInfo {
    /// The `<query xmlns='http://jabber.org/protocol/disco#info'/>` of a result.
    pub fn to_element(&self) -> Element {
        let mut query = Element::bare("query", DISCO_INFO_NS);
        query.append_child(element_with(
            "identity",
            DISCO_INFO_NS,
            &[("category", "component"), ("type", "generic"), ("name", &self.name)],
        ));
        for feature in DISCO_FEATURES {
            query.append_child(element_with("feature", DISCO_INFO_NS, &[("var", feature)]));
        }
        if !self.abuse_addresses.is_empty() || !self.report_addresses.is_empty() {
            let mut form = element_with("x", DATA_FORMS_NS, &[("type", "result")]);
            form.append_child(form_field("FORM_TYPE", Some("hidden"), &[SERVERINFO_FORM_TYPE.to_owned()]));
            if !self.abuse_addresses.is_empty() {
                form.append_child(form_field("abuse-addresses", None, &self.abuse_addresses));
            }
            if !self.report_addresses.is_empty() {
                form.append_child(form_field("report-addresses", None, &self.report_addresses));
            }
            query.append_child(form);
        }
        query
    }

    /// Reads the features of a disco#info result (to check a peer speaks our protocol).
    pub fn features_of(query: &Element) -> Result<Vec<String>> {
        if !query.is("query", DISCO_INFO_NS) {
            return Err(Error::UnexpectedElement {
                name: Excerpt::new(query.name()),
                namespace: Excerpt::new(&query.ns()),
                expected: "a disco#info query",
            });
        }
        Ok(query
            .children()
            .filter(|c| c.is("feature", DISCO_INFO_NS))
            .filter_map(|c| c.attr("var"))
            .take(256)
            .map(str::to_owned)
            .collect())
    }
}

fn form_field(var: &str, field_type: Option<&str>, values: &[String]) -> Element {
    let mut field = element_with("field", DATA_FORMS_NS, &[("var", var)]);
    if let Some(field_type) = field_type {
        crate::xml::set_attr(&mut field, "type", field_type.to_owned());
    }
    for value in values {
        field.append_child(text_element("value", DATA_FORMS_NS, value.clone()));
    }
    field
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_sorted_and_unique() {
        let mut sorted = DISCO_FEATURES.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, DISCO_FEATURES);
    }

    #[test]
    fn disco_info_carries_features_and_abuse_addresses() {
        let info = DiscoInfo {
            name: "Ostracon".to_owned(),
            abuse_addresses: vec!["xmpp:abuse@example.org".to_owned()],
            report_addresses: vec![],
        };
        let query = info.to_element();
        assert_eq!(DiscoInfo::features_of(&query).unwrap(), DISCO_FEATURES);
        let text = crate::xml::to_string(&query);
        assert!(text.contains("abuse-addresses") && text.contains("xmpp:abuse@example.org"), "{text}");
        assert!(!text.contains("report-addresses"));
    }
}
