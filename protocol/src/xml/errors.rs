//! Error conditions on the wire: which RFC 6120 stanza error and which of our application
//! conditions (`urn:x-ostracon:errors:0`) answer each failure, so peers can tell a forged
//! signature from a rate limit without parsing English.

use minidom::Element;

use crate::error::Error;
use crate::xml::{element_with, text_element};

/// RFC 6120 stanza error conditions.
pub const STANZAS_NS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
/// Our application-specific conditions.
pub const ERRORS_NS: &str = "urn:x-ostracon:errors:0";

/// One error answer: RFC 6120 type and condition plus our application condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StanzaError {
    /// `cancel`, `modify`, `auth` or `wait`.
    pub error_type: &'static str,
    /// The RFC 6120 defined condition.
    pub condition: &'static str,
    /// Our application condition.
    pub app_condition: Option<&'static str>,
    /// Human-readable text (never contains secrets; bounded by the error's excerpts).
    pub text: String,
}

impl StanzaError {
    /// A sender that is not a buddy (XEP-0268 and XEP-0275 say `forbidden`).
    pub fn not_buddy() -> Self {
        Self {
            error_type: "auth",
            condition: "forbidden",
            app_condition: Some("not-buddy"),
            text: "not a buddy of this node".to_owned(),
        }
    }

    /// A sender over its rate limit.
    pub fn rate_limited() -> Self {
        Self {
            error_type: "wait",
            condition: "resource-constraint",
            app_condition: Some("rate-limited"),
            text: "rate limited; retry later".to_owned(),
        }
    }

    /// An incident id we do not know (Metronome's answer too).
    pub fn unknown_incident() -> Self {
        Self {
            error_type: "cancel",
            condition: "item-not-found",
            app_condition: Some("unknown-incident"),
            text: "no such incident".to_owned(),
        }
    }

    /// No score for the subject (XEP-0275).
    pub fn no_score() -> Self {
        Self {
            error_type: "cancel",
            condition: "item-not-found",
            app_condition: None,
            text: "no score for this subject".to_owned(),
        }
    }

    /// Maps a protocol error to the answer a peer gets.
    pub fn from_error(error: &Error) -> Self {
        let (error_type, condition, app_condition) = match error {
            Error::BadSignature { .. } => ("modify", "not-acceptable", "bad-signature"),
            Error::UnknownKey { .. } => ("auth", "not-authorized", "unknown-key"),
            Error::UnsupportedAlgorithm { .. } => ("modify", "not-acceptable", "unsupported-algorithm"),
            Error::TimestampOutsideWindow { .. } => ("modify", "not-acceptable", "bad-timestamp"),
            Error::Replay { .. } => ("cancel", "conflict", "replay"),
            Error::BrokenChain { .. } => ("modify", "not-acceptable", "broken-chain"),
            Error::SignerMismatch { .. } => ("auth", "forbidden", "signer-mismatch"),
            Error::WrongClaimType { .. } => ("modify", "not-acceptable", "wrong-claim-type"),
            Error::TooLarge { .. } | Error::TooMany { .. } | Error::TooDeep { .. } => {
                ("modify", "policy-violation", "too-large")
            }
            _ => ("modify", "bad-request", "malformed"),
        };
        Self { error_type, condition, app_condition: Some(app_condition), text: error.to_string() }
    }

    /// The `<error/>` element, in the stanza namespace of the stream.
    pub fn to_element(&self, stanza_ns: &str) -> Element {
        let mut error = element_with("error", stanza_ns, &[("type", self.error_type)]);
        // RFC 6120 §8.3.2: defined condition, then text, then the application condition.
        error.append_child(Element::bare(self.condition, STANZAS_NS));
        if !self.text.is_empty() {
            error.append_child(text_element("text", STANZAS_NS, self.text.clone()));
        }
        if let Some(app) = self.app_condition {
            error.append_child(Element::bare(app, ERRORS_NS));
        }
        error
    }

    /// Reads the defined and application conditions of a received `<error/>`.
    pub fn conditions_of(error: &Element) -> (Option<String>, Option<String>) {
        let defined =
            error.children().find(|c| c.ns() == STANZAS_NS && c.name() != "text").map(|c| c.name().to_owned());
        let app = error.children().find(|c| c.ns() == ERRORS_NS).map(|c| c.name().to_owned());
        (defined, app)
    }
}
