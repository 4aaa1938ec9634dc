//! XEP-0275 Entity Reputation: `<score xmlns='urn:xmpp:reputation:0' jid='…' num='…'/>`.
//!
//! A query carries only `jid`; a result carries `num` in [-100, 100]. Out-of-range numbers
//! are refused, not clamped: a rater that sends them is broken or lying.

use minidom::Element;

use crate::error::{Error, Excerpt, Result};
use crate::ids::BareJid;
use crate::xml::{check_bounds, element_with, expect_element, required_attr, set_attr};

/// The XEP-0275 namespace (also its disco feature).
pub const REPUTATION_NS: &str = "urn:xmpp:reputation:0";

/// Lowest and highest score.
pub const SCORE_RANGE: std::ops::RangeInclusive<i8> = -100..=100;

/// A reputation query or answer about one subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Score {
    /// The subject (a user or a server).
    pub jid: BareJid,
    /// The score, present in results.
    pub num: Option<i8>,
}

impl Score {
    /// A query about `jid`.
    pub fn query(jid: BareJid) -> Self {
        Self { jid, num: None }
    }

    /// An answer; refuses numbers outside [-100, 100].
    pub fn answer(jid: BareJid, num: i64) -> Result<Self> {
        let num = i8::try_from(num)
            .ok()
            .filter(|n| SCORE_RANGE.contains(n))
            .ok_or_else(|| Error::InvalidValue { field: "score num", value: Excerpt::new(&num.to_string()) })?;
        Ok(Self { jid, num: Some(num) })
    }

    /// Renders the element.
    pub fn to_element(&self) -> Element {
        let mut element = element_with("score", REPUTATION_NS, &[("jid", &self.jid.to_string())]);
        if let Some(num) = self.num {
            set_attr(&mut element, "num", num.to_string());
        }
        element
    }

    /// Parses the element.
    pub fn from_element(element: &Element) -> Result<Self> {
        check_bounds(element)?;
        expect_element(element, "score", REPUTATION_NS, "<score xmlns='urn:xmpp:reputation:0'/>")?;
        let jid = BareJid::parse(required_attr(element, "score", "jid")?)?;
        match element.attr("num") {
            None => Ok(Self::query(jid)),
            Some(text) => {
                let num: i64 = text
                    .trim()
                    .parse()
                    .map_err(|_| Error::InvalidValue { field: "score num", value: Excerpt::new(text) })?;
                Self::answer(jid, num)
            }
        }
    }
}
