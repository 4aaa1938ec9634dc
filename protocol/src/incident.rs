//! The incident model: what an XEP-0268 report, request or response says, independent of XML.
//!
//! The same struct is the signed JSON claim (see [`crate::envelope`]) and is mapped to and
//! from the IODEF 1.0 `<Incident/>` that XEP-0268 carries (see [`crate::xml::iodef`]).
//! [`Incident::validate`] enforces the bounds in [`crate::limits`] on every path in.

use serde::{Deserialize, Serialize};

use crate::envelope::{Claim, SignedEnvelope};
use crate::error::{Error, Excerpt, Result};
use crate::ids::{BareJid, IncidentId, Offender};
use crate::limits::{
    MAX_DESCRIPTION_CHARS, MAX_EVIDENCE, MAX_HISTORY, MAX_OFFENDERS, MAX_SAMPLE_CHARS, MAX_SHORT_TEXT_CHARS,
};
use crate::time::Timestamp;

/// Implements `as_str` and `parse` for a fieldless enum from one table of names.
macro_rules! named_enum {
    ($ty:ident, $field:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// Every wire name, in declaration order (for help texts and errors).
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name),+ }
            }

            /// Parses a wire name.
            pub fn parse(text: &str) -> Result<Self> {
                match text { $($name => Ok(Self::$variant),)+ _ => Err(Error::InvalidValue { field: $field, value: Excerpt::new(text) }) }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = Error;
            fn from_str(text: &str) -> Result<Self> {
                Self::parse(text)
            }
        }
    };
}

/// What kind of abuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// Unsolicited messages.
    Spam,
    /// Harassment and other abuse of users.
    Abuse,
    /// Stanza floods.
    Flood,
    /// Denial of service against the server.
    Dos,
    /// Mass or scripted account registration.
    RegistrationAbuse,
    /// Join floods, raids and spam in group chats.
    MucAbuse,
    /// Password guessing.
    BruteForce,
    /// Anything else.
    Other,
}

named_enum!(Category, "category", {
    Spam => "spam", Abuse => "abuse", Flood => "flood", Dos => "dos",
    RegistrationAbuse => "registration-abuse", MucAbuse => "muc-abuse", BruteForce => "brute-force", Other => "other",
});

impl Category {
    /// Maps an XEP-0377 reason URI (`urn:xmpp:reporting:spam`, ...) onto a category.
    pub fn from_reporting_reason(reason: &str) -> Self {
        match reason {
            "urn:xmpp:reporting:spam" => Self::Spam,
            "urn:xmpp:reporting:abuse" => Self::Abuse,
            _ => Self::Other,
        }
    }
}

/// IODEF `Impact@severity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
}

named_enum!(Severity, "severity", { Low => "low", Medium => "medium", High => "high" });

/// Where an incident stands. XEP-0268 mentions new/updated/resolved but defines no attribute;
/// we add `retracted` for reports withdrawn by their issuer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// First report.
    New,
    /// A revision of an earlier report with the same id.
    Updated,
    /// The abuse stopped or was dealt with.
    Resolved,
    /// The issuer withdraws the report; its effects must be undone.
    Retracted,
}

named_enum!(Status, "status", { New => "new", Updated => "updated", Resolved => "resolved", Retracted => "retracted" });

/// An action asked for (IODEF `Expectation@action`) or taken (`HistoryItem@action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Look into it.
    Investigate,
    /// Block the offending hosts.
    BlockHost,
    /// Block the offending networks.
    BlockNetwork,
    /// Rate-limit the offending hosts.
    RateLimitHost,
    /// Disable the offending accounts (an IODEF `ext-value`).
    DisableAccount,
    /// Contact the site the abuse came from.
    ContactSourceSite,
    /// Nothing.
    Nothing,
    /// Something else, described in text.
    Other,
}

named_enum!(Action, "action", {
    Investigate => "investigate", BlockHost => "block-host", BlockNetwork => "block-network",
    RateLimitHost => "rate-limit-host", DisableAccount => "disable-account",
    ContactSourceSite => "contact-source-site", Nothing => "nothing", Other => "other",
});

impl Action {
    /// True for the values RFC 5070 defines; others travel as `ext-value`.
    pub fn is_iodef_native(self) -> bool {
        !matches!(self, Self::DisableAccount)
    }
}

/// Evidence: a digest of something the reporter holds, or a short sample of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Evidence {
    /// Lowercase hex SHA-256 of the evidence (a message body, a log excerpt).
    Sha256(String),
    /// A short excerpt.
    Sample(String),
}

/// What was done about an incident (XEP-0268 responses).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryItem {
    /// The action taken.
    pub action: Action,
    /// When.
    pub at: Timestamp,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// One incident as a node reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incident {
    /// Issuer domain and UUID.
    pub id: IncidentId,
    /// The reporting node (for signed claims, the signer).
    pub reporter: BareJid,
    /// Lifecycle state.
    pub status: Status,
    /// Kind of abuse.
    pub category: Category,
    /// How bad.
    pub severity: Severity,
    /// Who or what did it.
    pub offenders: Vec<Offender>,
    /// When the abuse began.
    pub start: Timestamp,
    /// When it ended, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Timestamp>,
    /// When this report was written.
    pub reported: Timestamp,
    /// What happened, in words.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Digests and samples.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Evidence>,
    /// What the reporter asks the receiver to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// After this, consumers should drop entries derived from the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Timestamp>,
    /// An incident this one answers or follows from (IODEF `RelatedActivity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub related: Option<IncidentId>,
    /// Actions taken (responses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryItem>,
}

impl Incident {
    /// Checks every bound and cross-field rule; all parse paths call it.
    pub fn validate(&self) -> Result<()> {
        if self.offenders.len() > MAX_OFFENDERS {
            return Err(Error::TooMany { what: "offenders", max: MAX_OFFENDERS });
        }
        if self.evidence.len() > MAX_EVIDENCE {
            return Err(Error::TooMany { what: "evidence items", max: MAX_EVIDENCE });
        }
        if self.history.len() > MAX_HISTORY {
            return Err(Error::TooMany { what: "history items", max: MAX_HISTORY });
        }
        check_text("description", &self.description, MAX_DESCRIPTION_CHARS)?;
        for item in &self.evidence {
            match item {
                Evidence::Sha256(hex) => {
                    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                        return Err(Error::InvalidValue { field: "evidence sha256", value: Excerpt::new(hex) });
                    }
                }
                Evidence::Sample(text) => check_text("evidence sample", text, MAX_SAMPLE_CHARS)?,
            }
        }
        for item in &self.history {
            check_text("history note", &item.note, MAX_SHORT_TEXT_CHARS)?;
        }
        if self.end.is_some_and(|end| end < self.start) {
            return Err(Error::InvalidValue { field: "end", value: Excerpt::new("before start") });
        }
        if self.expires.is_some_and(|expires| expires <= self.start) {
            return Err(Error::InvalidValue { field: "expires", value: Excerpt::new("not after start") });
        }
        Ok(())
    }
}

/// Refuses text over `max` characters or containing control characters other than newline and tab.
pub(crate) fn check_text(what: &'static str, text: &str, max: usize) -> Result<()> {
    let len = text.chars().count();
    if len > max {
        return Err(Error::TooLarge { what, len, max });
    }
    if text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(Error::InvalidValue { field: what, value: Excerpt::new("contains control characters") });
    }
    Ok(())
}

/// Checks that a signed incident claim was issued by its signer.
fn check_issuer(incident: &Incident, origin: &SignedEnvelope) -> Result<()> {
    incident.validate()?;
    if incident.id.issuer() != origin.signer.domain() || incident.reporter != origin.signer {
        return Err(Error::SignerMismatch {
            signer: Excerpt::new(&origin.signer.to_string()),
            claimed: Excerpt::new(&incident.id.to_string()),
        });
    }
    Ok(())
}

/// Declares a signed claim type wrapping an [`Incident`], one per XEP-0268 verb, so a signed
/// report cannot be replayed as a request or a response.
macro_rules! incident_claim {
    ($(#[$doc:meta])* $name:ident, $typ:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Incident);

        impl Claim for $name {
            const TYPE: &'static str = $typ;

            fn check_origin(&self, origin: &SignedEnvelope) -> Result<()> {
                check_issuer(&self.0, origin)
            }
        }
    };
}

incident_claim!(
    /// A signed XEP-0268 report: "this happened".
    ReportClaim,
    "incident-report"
);
incident_claim!(
    /// A signed XEP-0268 request: "please act on this" (sent to the offender's home server).
    RequestClaim,
    "incident-request"
);
incident_claim!(
    /// A signed XEP-0268 response: "this is what we did" (its `related` names the request).
    ResponseClaim,
    "incident-response"
);
