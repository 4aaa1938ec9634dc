//! XEP-0377 user reports (`urn:xmpp:reporting:1` and legacy `:0`) and the message shape in
//! which Prosody's mod_report_forward relays them between servers:
//!
//! ```xml
//! <message from='reporting-server' to='our-node' id='…'>
//!   <body>SPAM/ABUSE REPORT …</body>
//!   <report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'>
//!     <text xml:lang='en'>…</text>
//!     <jid xmlns='urn:xmpp:jid:0'>reported@example.org</jid>
//!   </report>
//!   <forwarded xmlns='urn:xmpp:forward:0'>
//!     <delay xmlns='urn:xmpp:delay' stamp='…'/>
//!     <message xmlns='jabber:client' …>the reported message</message>
//!   </forwarded>
//! </message>
//! ```

use minidom::Element;

use crate::error::{Error, Excerpt, Result};
use crate::ids::BareJid;
use crate::incident::{Category, check_text};
use crate::limits::MAX_SHORT_TEXT_CHARS;
use crate::time::Timestamp;
use crate::xml::iodef::JID_NS;
use crate::xml::{bounded_text, check_bounds, element_with, required_attr, set_attr, text_element};

/// XEP-0377 current namespace.
pub const REPORTING_NS: &str = "urn:xmpp:reporting:1";
/// XEP-0377 0.2 namespace, still sent by older clients through Prosody.
pub const REPORTING_LEGACY_NS: &str = "urn:xmpp:reporting:0";
/// XEP-0297 forwarding.
pub const FORWARD_NS: &str = "urn:xmpp:forward:0";
/// XEP-0203 delayed delivery.
pub const DELAY_NS: &str = "urn:xmpp:delay";
/// XEP-0359 stanza ids.
pub const SID_NS: &str = "urn:xmpp:sid:0";

/// Reason URI for spam.
pub const REASON_SPAM: &str = "urn:xmpp:reporting:spam";
/// Reason URI for abuse.
pub const REASON_ABUSE: &str = "urn:xmpp:reporting:abuse";

/// Most texts and stanza ids kept from one report.
const MAX_REPORT_ITEMS: usize = 16;

/// A user's report about a JID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserReport {
    /// The reason URI as sent.
    pub reason: String,
    /// The reason mapped onto our categories.
    pub category: Category,
    /// The user's words.
    pub texts: Vec<String>,
    /// XEP-0359 ids `(by, id)` of the reported messages.
    pub stanza_ids: Vec<(String, String)>,
    /// The user allows forwarding to the offender's server.
    pub report_origin: bool,
    /// The user allows forwarding to third parties (blocklists such as ours).
    pub third_party: bool,
    /// Sent in the legacy `:0` namespace.
    pub legacy: bool,
}

impl UserReport {
    /// A report with a reason and nothing else.
    pub fn new(reason: &str) -> Self {
        Self {
            reason: reason.to_owned(),
            category: Category::from_reporting_reason(reason),
            texts: Vec::new(),
            stanza_ids: Vec::new(),
            report_origin: false,
            third_party: false,
            legacy: false,
        }
    }

    /// Parses `<report/>` in either namespace.
    pub fn from_element(report: &Element) -> Result<Self> {
        check_bounds(report)?;
        let legacy = report.is("report", REPORTING_LEGACY_NS);
        if !legacy && !report.is("report", REPORTING_NS) {
            return Err(Error::UnexpectedElement {
                name: Excerpt::new(report.name()),
                namespace: Excerpt::new(&report.ns()),
                expected: "<report xmlns='urn:xmpp:reporting:1'/>",
            });
        }
        let namespace = if legacy { REPORTING_LEGACY_NS } else { REPORTING_NS };
        let reason = match report.attr("reason") {
            Some(reason) => reason.to_owned(),
            // Legacy 0.2 form: <spam/> or <abuse/> children.
            None if legacy && report.has_child("spam", namespace) => REASON_SPAM.to_owned(),
            None if legacy && report.has_child("abuse", namespace) => REASON_ABUSE.to_owned(),
            None => {
                return Err(Error::Missing { element: "report", what: "reason" });
            }
        };
        if reason.len() > 256 {
            return Err(Error::TooLarge { what: "report reason", len: reason.len(), max: 256 });
        }
        let mut parsed = Self::new(&reason);
        parsed.legacy = legacy;
        for child in report.children() {
            if child.is("text", namespace) && parsed.texts.len() < MAX_REPORT_ITEMS {
                let text = bounded_text(child, "report text", MAX_SHORT_TEXT_CHARS * 4)?;
                check_text("report text", &text, MAX_SHORT_TEXT_CHARS)?;
                parsed.texts.push(text);
            } else if child.is("stanza-id", SID_NS) && parsed.stanza_ids.len() < MAX_REPORT_ITEMS {
                let by = required_attr(child, "stanza-id", "by")?;
                let id = required_attr(child, "stanza-id", "id")?;
                if by.len() > 3 * 1024 || id.len() > 256 {
                    return Err(Error::TooLarge { what: "stanza-id", len: by.len() + id.len(), max: 256 });
                }
                parsed.stanza_ids.push((by.to_owned(), id.to_owned()));
            } else if child.is("report-origin", namespace) {
                parsed.report_origin = true;
            } else if child.is("third-party", namespace) {
                parsed.third_party = true;
            }
        }
        Ok(parsed)
    }

    /// Renders `<report xmlns='urn:xmpp:reporting:1'/>` (never the legacy form).
    pub fn to_element(&self) -> Element {
        let mut report = element_with("report", REPORTING_NS, &[("reason", &self.reason)]);
        for (by, id) in &self.stanza_ids {
            report.append_child(element_with("stanza-id", SID_NS, &[("by", by), ("id", id)]));
        }
        for text in &self.texts {
            let mut element = text_element("text", REPORTING_NS, text.clone());
            crate::xml::set_lang(&mut element, "en");
            report.append_child(element);
        }
        if self.report_origin {
            report.append_child(Element::bare("report-origin", REPORTING_NS));
        }
        if self.third_party {
            report.append_child(Element::bare("third-party", REPORTING_NS));
        }
        report
    }
}

/// A report relayed by a server in the mod_report_forward shape.
#[derive(Clone, Debug, PartialEq)]
pub struct ForwardedReport {
    /// The server that relayed it (the message's `from`).
    pub relayed_by: BareJid,
    /// The reported account.
    pub reported: BareJid,
    /// The report itself.
    pub report: UserReport,
    /// The human-readable body, if any.
    pub body: Option<String>,
    /// When the reported message was sent (from the `<delay/>`), if forwarded.
    pub message_sent: Option<Timestamp>,
    /// The reported message's body, if forwarded.
    pub message_body: Option<String>,
}

impl ForwardedReport {
    /// Parses a `<message/>` stanza in the mod_report_forward shape. `None` if it carries no report.
    pub fn from_message(message: &Element) -> Result<Option<Self>> {
        check_bounds(message)?;
        if message.name() != "message" {
            return Ok(None);
        }
        let Some(report_element) = message
            .children()
            .find(|child| child.is("report", REPORTING_NS) || child.is("report", REPORTING_LEGACY_NS))
        else {
            return Ok(None);
        };
        let report = UserReport::from_element(report_element)?;
        let reported = report_element
            .get_child("jid", JID_NS)
            .ok_or(Error::Missing { element: "report", what: "jid (urn:xmpp:jid:0)" })?;
        let reported = BareJid::parse(bounded_text(reported, "reported jid", 3 * 1024)?.trim())?;
        let relayed_by = BareJid::parse(required_attr(message, "message", "from")?)?;
        let body = message
            .children()
            .find(|child| child.name() == "body")
            .map(|body| bounded_text(body, "body", 16 * 1024))
            .transpose()?;
        let forwarded = message.get_child("forwarded", FORWARD_NS);
        let message_sent = forwarded
            .and_then(|f| f.get_child("delay", DELAY_NS))
            .and_then(|delay| delay.attr("stamp"))
            .map(Timestamp::parse)
            .transpose()?;
        let message_body = forwarded
            .and_then(|f| f.children().find(|c| c.name() == "message"))
            .and_then(|m| m.children().find(|c| c.name() == "body"))
            .map(|body| bounded_text(body, "forwarded body", 16 * 1024))
            .transpose()?;
        Ok(Some(Self { relayed_by, reported, report, body, message_sent, message_body }))
    }

    /// Renders the message as mod_report_forward sends it (stanzas in `stanza_ns`).
    pub fn to_message(&self, to: &BareJid, id: &str, stanza_ns: &str) -> Element {
        let mut message = element_with(
            "message",
            stanza_ns,
            &[("from", &self.relayed_by.to_string()), ("to", &to.to_string()), ("id", id)],
        );
        if let Some(body) = &self.body {
            message.append_child(text_element("body", stanza_ns, body.clone()));
        }
        let mut report = self.report.to_element();
        report.append_child(text_element("jid", JID_NS, self.reported.to_string()));
        message.append_child(report);
        if self.message_sent.is_some() || self.message_body.is_some() {
            let mut forwarded = Element::bare("forwarded", FORWARD_NS);
            if let Some(sent) = self.message_sent {
                forwarded.append_child(element_with("delay", DELAY_NS, &[("stamp", &sent.to_string())]));
            }
            let mut original = element_with("message", "jabber:client", &[("from", &self.reported.to_string())]);
            set_attr(&mut original, "type", "chat");
            if let Some(body) = &self.message_body {
                original.append_child(text_element("body", "jabber:client", body.clone()));
            }
            forwarded.append_child(original);
            message.append_child(forwarded);
        }
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{parse_bounded, to_string};

    /// Found by the `xep0377` fuzz target: a forwarded message without a valid `<delay/>` lost its body.
    #[test]
    fn forwarded_body_without_delay_round_trips() {
        let text = "<message xmlns='jabber:client' from='home.example'>\
            <report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'>\
            <jid xmlns='urn:xmpp:jid:0'>spammer@bad.example</jid></report>\
            <forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:dela{' stamp='2026-05-04T09:00:00Z'/>\
            <message xmlns='jabber:client'><body>buy now</body></message></forwarded></message>";
        let report = ForwardedReport::from_message(&parse_bounded(text).unwrap()).unwrap().unwrap();
        assert_eq!(report.message_sent, None);
        assert_eq!(report.message_body.as_deref(), Some("buy now"));
        let to = BareJid::parse("incidents.ops.example").unwrap();
        let again = ForwardedReport::from_message(
            &parse_bounded(&to_string(&report.to_message(&to, "1", "jabber:client"))).unwrap(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(again, report);
    }
}
