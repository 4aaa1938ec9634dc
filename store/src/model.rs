//! The records the store keeps, as typed values (the database holds them as TEXT/BIGINT/BLOB).

use std::fmt;
use std::str::FromStr;

use ostracon_protocol::envelope::SignedEnvelope;
use ostracon_protocol::ids::{BareJid, IncidentId, Offender};
use ostracon_protocol::incident::Incident;
use ostracon_protocol::time::Timestamp;
use ostracon_protocol::xml::buddies::BuddyPresence;
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// Implements `as_str`, `Display` and `FromStr` for a fieldless enum.
macro_rules! text_enum {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every name, in declaration order (for help texts and errors).
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            /// The stored and wire name.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name),+ }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = StoreError;
            fn from_str(text: &str) -> Result<Self, StoreError> {
                match text {
                    $($name => Ok(Self::$variant),)+
                    other => Err(StoreError::Corrupt(format!("unknown {} {other:?}", stringify!($ty)))),
                }
            }
        }
    };
}

pub(crate) use text_enum;

/// What a published list entry asks consumers to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListAction {
    /// Refuse traffic.
    Block,
    /// Accept but restrict (e.g. no messages to strangers).
    Quarantine,
    /// Only watch.
    Observe,
}

text_enum!(ListAction { Block => "block", Quarantine => "quarantine", Observe => "observe" });

/// Which published list an entry belongs to (`kind=` on the HTTP API). CIDRs are on the IP list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListKind {
    /// IP addresses and CIDR blocks.
    Ip,
    /// Accounts.
    Jid,
    /// Servers.
    Domain,
}

text_enum!(ListKind { Ip => "ip", Jid => "jid", Domain => "domain" });

impl ListKind {
    /// Every list.
    pub const ALL: [Self; 3] = [Self::Ip, Self::Jid, Self::Domain];

    /// The list an offender goes on.
    pub fn of(offender: &Offender) -> Self {
        match offender {
            Offender::Ip(_) | Offender::Cidr(_) => Self::Ip,
            Offender::Jid(_) => Self::Jid,
            Offender::Domain(_) => Self::Domain,
        }
    }

    /// The stored `kind` values that belong to this list.
    pub fn entry_kinds(self) -> &'static [&'static str] {
        match self {
            Self::Ip => &["ip", "cidr"],
            Self::Jid => &["jid"],
            Self::Domain => &["domain"],
        }
    }
}

/// Where an incident came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IncidentOrigin {
    /// Submitted by this node's operator.
    Local,
    /// Received signed from a peer.
    Peer,
    /// Received without a signature (plain XEP-0268, e.g. from Metronome).
    Unsigned,
    /// A user's XEP-0377 report relayed by a server (mod_report_forward).
    #[serde(rename = "user-report")]
    UserReport,
}

text_enum!(IncidentOrigin { Local => "local", Peer => "peer", Unsigned => "unsigned", UserReport => "user-report" });

/// Which XEP-0268 verb brought an incident.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    /// "This happened."
    Report,
    /// "Please act on this" (to the offender's home server).
    Request,
    /// "This is what we did."
    Response,
}

text_enum!(Verb { Report => "report", Request => "request", Response => "response" });

/// What the node decided about an incident.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Applied to the lists.
    Accepted,
    /// Stored but not applied (the reason says why).
    Ignored,
    /// Waiting for the operator.
    Pending,
}

text_enum!(Decision { Accepted => "accepted", Ignored => "ignored", Pending => "pending" });

/// Who put an entry on the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntrySource {
    /// Accepted incidents.
    Incidents,
    /// The operator directly (a deny entry).
    Operator,
    /// The reputation engine: a domain entry for a server whose score fell below
    /// `domain_block_below` while it ignored our requests (spec/reputation.md).
    Reputation,
}

text_enum!(EntrySource { Incidents => "incidents", Operator => "operator", Reputation => "reputation" });

/// How deliveries to one peer are going, from its outbox rows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PeerDelivery {
    /// `ok`, `queued`, `retrying` or `unreachable` (see [`PeerDelivery::status`]).
    pub status: &'static str,
    /// Items waiting to be delivered.
    pub pending: u64,
    /// When the oldest of them was queued.
    pub oldest_pending_at: Option<Timestamp>,
    /// The most attempts any waiting item has had.
    pub attempts: u64,
    /// Items given up on (undelivered past the outbox's horizon).
    pub failed: u64,
    /// When the peer last answered a delivery (a presence, sent without an answer, does not count).
    pub last_delivered_at: Option<Timestamp>,
    /// The last delivery error still standing (on a waiting or failed item).
    pub last_error: Option<String>,
}

impl PeerDelivery {
    /// Failed attempts after which a peer that took nothing since counts as unreachable.
    pub const UNREACHABLE_AFTER_ATTEMPTS: u64 = 2;

    /// `unreachable` when its oldest waiting item failed repeatedly and nothing was delivered
    /// since it was queued; `retrying` when an item failed; `queued` when items wait;
    /// otherwise `ok`.
    pub fn status(&self) -> &'static str {
        let delivered_since = match (self.last_delivered_at, self.oldest_pending_at) {
            (Some(delivered), Some(oldest)) => delivered >= oldest,
            _ => false,
        };
        match self.pending {
            0 if self.failed > 0 && self.last_delivered_at.is_none() => "unreachable",
            0 => "ok",
            _ if self.attempts >= Self::UNREACHABLE_AFTER_ATTEMPTS && !delivered_since => "unreachable",
            _ if self.attempts > 0 => "retrying",
            _ => "queued",
        }
    }
}

/// What an accepted incident does to our lists now: "accepted" alone does not say whether it
/// listed anything or only waits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IncidentEffect {
    /// Offenders it is a reason of a live entry for.
    pub listed: u64,
    /// Offenders it waits for a quorum for (candidates with weight).
    pub waiting: u64,
    /// Listings the brake holds for the operator.
    pub held: u64,
}

/// A stored incident with what the node did with it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IncidentRecord {
    /// Position in arrival order (paging cursor).
    pub seq: i64,
    /// The incident as received or submitted (for signed ones: the verified claim).
    pub incident: Incident,
    /// Local, peer or unsigned.
    pub origin: IncidentOrigin,
    /// The provenance chain of signed incidents, origin first.
    pub provenance: Option<Vec<SignedEnvelope>>,
    /// Whether it is to be shared with peers.
    pub share: bool,
    /// Accepted, ignored or pending.
    pub decision: Decision,
    /// Why it was ignored or is pending.
    pub decision_reason: Option<String>,
    /// When this node stored it.
    pub received_at: Timestamp,
    /// When it last changed (e.g. retracted).
    pub updated_at: Timestamp,
    /// The audit leaf recording the decision.
    pub log_index: u64,
    /// Report, request or response.
    pub verb: Verb,
    /// The peer that sent it, or that a local response answers.
    pub counterpart: Option<String>,
}

/// One published list entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EntryRecord {
    /// Database id.
    pub id: i64,
    /// What is listed.
    pub offender: Offender,
    /// What consumers should do.
    pub action: ListAction,
    /// Incidents or the operator.
    pub source: EntrySource,
    /// First time it was ever listed.
    pub first_seen: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// When it drops off the list (`None`: until removed).
    pub expires_at: Option<Timestamp>,
    /// How many times it has been listed (drives repeat-offender TTLs).
    pub listings: u32,
    /// Whether it is on the list now.
    pub active: bool,
    /// The audit leaf of its last change.
    pub log_index: u64,
}

/// What memory keeps of one listed entry beside the lookup index: enough to publish it in
/// every snapshot format and to explain it, without the database. 40 bytes; times are Unix
/// seconds, as the database keeps them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Database id.
    pub id: i64,
    /// The audit leaf of its last change.
    pub log_index: u64,
    first_seen: i64,
    /// [`Listed::NO_EXPIRY`] when it stays until removed.
    expires: i64,
    /// How many times it has been listed.
    pub listings: u32,
    /// What consumers should do.
    pub action: ListAction,
    /// Who put it on the list.
    pub source: EntrySource,
}

impl Listed {
    /// `expires` of an entry that stays until removed (no real expiry is this early).
    const NO_EXPIRY: i64 = i64::MIN;

    /// The row of an active entry.
    pub fn new(
        id: i64,
        action: ListAction,
        source: EntrySource,
        first_seen: Timestamp,
        expires: Option<Timestamp>,
        listings: u32,
        log_index: u64,
    ) -> Self {
        let expires = expires.map_or(Self::NO_EXPIRY, Timestamp::unix);
        Self { id, log_index, first_seen: first_seen.unix(), expires, listings, action, source }
    }

    /// First time it was ever listed.
    pub fn first_seen(&self) -> Timestamp {
        // Made from a `Timestamp`, so always in range.
        Timestamp::from_unix(self.first_seen).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// When it drops off the list (`None`: until removed).
    pub fn expires(&self) -> Option<Timestamp> {
        if self.expires == Self::NO_EXPIRY { None } else { Timestamp::from_unix(self.expires) }
    }
}

impl From<&EntryRecord> for Listed {
    fn from(entry: &EntryRecord) -> Self {
        Self::new(
            entry.id,
            entry.action,
            entry.source,
            entry.first_seen,
            entry.expires_at,
            entry.listings,
            entry.log_index,
        )
    }
}

/// Why an entry is listed: one contributing incident.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EntryReason {
    /// The incident.
    pub incident_id: IncidentId,
    /// Who reported it.
    pub reporter: BareJid,
    /// Its weight in thousandths (the operator's own reports weigh 1000).
    pub weight_milli: i64,
    /// When it was added.
    pub added_at: Timestamp,
}

/// Add or remove, in the change feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOp {
    /// Listed, or its action or expiry changed.
    Add,
    /// Delisted (a tombstone).
    Remove,
}

text_enum!(ChangeOp { Add => "add", Remove => "remove" });

/// One row of the change feed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ListChange {
    /// The cursor.
    pub seq: i64,
    /// Add or remove.
    pub op: ChangeOp,
    /// The list.
    pub list: ListKind,
    /// What.
    pub offender: Offender,
    /// For adds.
    pub action: Option<ListAction>,
    /// For adds.
    pub expires_at: Option<Timestamp>,
    /// When.
    pub at: Timestamp,
    /// The audit leaf.
    pub log_index: u64,
}

/// An operator allow entry: never listed, whoever reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AllowEntry {
    /// What is allowed.
    pub offender: Offender,
    /// Why.
    pub note: String,
    /// When.
    pub created_at: Timestamp,
    /// The audit leaf.
    pub log_index: u64,
}

/// What an operator token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Submit incidents and read them.
    Submit,
    /// Everything.
    Admin,
    /// Read `/metrics` with the per-peer numbers, and nothing else (a Prometheus scraper).
    Metrics,
    /// Read the CrowdSec-compatible decision stream, and nothing else (a firewall bouncer's
    /// `api_key`; each key keeps its own stream position).
    Bouncer,
}

text_enum!(Scope { Submit => "submit", Admin => "admin", Metrics => "metrics", Bouncer => "bouncer" });

impl Scope {
    /// True if a token with this scope may do what `required` needs: an admin token anything,
    /// any other only its own.
    pub fn allows(self, required: Self) -> bool {
        self == Self::Admin || self == required
    }
}

/// A stored operator token (only its hash is stored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenRecord {
    /// Database id.
    pub id: i64,
    /// A name for the operator.
    pub name: String,
    /// What it may do.
    pub scope: Scope,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
}

/// What an outbox row asks the XMPP side to do.
///
/// Stored as three columns (`kind`, `reference`, `payload`); [`OutboxJob::columns`] and
/// [`OutboxJob::from_columns`] are the only places that know the mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutboxJob {
    /// Deliver a stored incident as a signed XEP-0268 report.
    Report { incident: IncidentId },
    /// Ask a peer to act on a local incident (signed XEP-0268 request).
    Request { incident: IncidentId },
    /// Answer a request (signed XEP-0268 response).
    Response { incident: IncidentId },
    /// Forward a buddy's signed report to another buddy, adding our link.
    Forward { incident: IncidentId },
    /// Ask a peer what it knows about an incident (XEP-0268 inquiry).
    Inquiry { incident: IncidentId },
    /// A presence stanza of the XEP-0267 handshake.
    Presence { presence: BuddyPresence },
    /// Fetch the peer's keys and pin them (approving it too when `approve`, by auto-approve).
    FetchKeys { approve: bool },
    /// Check that a peer the operator asked for answers as an incident node (disco#info), so
    /// a wrong or unreachable JID shows as a delivery error instead of waiting forever.
    Probe,
    /// Ask a buddy its XEP-0275 score for a subject.
    ScoreQuery { subject: BareJid },
    /// Announce our key rotation: the signed claim's links.
    Rotation { old_kid: String, links: Vec<SignedEnvelope> },
}

impl OutboxJob {
    /// The stored `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Report { .. } => "report",
            Self::Request { .. } => "request",
            Self::Response { .. } => "response",
            Self::Forward { .. } => "forward",
            Self::Inquiry { .. } => "inquiry",
            Self::Presence { .. } => "presence",
            Self::FetchKeys { .. } => "fetch-keys",
            Self::Probe => "probe",
            Self::ScoreQuery { .. } => "score-query",
            Self::Rotation { .. } => "rotation",
        }
    }

    /// The stored (`kind`, `reference`, `payload`).
    pub fn columns(&self) -> Result<(&'static str, String, String), StoreError> {
        let (reference, payload) = match self {
            Self::Report { incident }
            | Self::Request { incident }
            | Self::Response { incident }
            | Self::Forward { incident }
            | Self::Inquiry { incident } => (incident.to_string(), String::new()),
            Self::Presence { presence } => (String::new(), presence.as_type().to_owned()),
            Self::FetchKeys { approve } => (String::new(), if *approve { "approve" } else { "" }.to_owned()),
            Self::Probe => (String::new(), String::new()),
            Self::ScoreQuery { subject } => (subject.to_string(), String::new()),
            Self::Rotation { old_kid, links } => (
                old_kid.clone(),
                serde_json::to_string(links).map_err(|e| StoreError::Corrupt(format!("rotation links: {e}")))?,
            ),
        };
        Ok((self.kind(), reference, payload))
    }

    /// Reads the stored columns back.
    pub fn from_columns(kind: &str, reference: &str, payload: &str) -> Result<Self, StoreError> {
        let incident =
            || IncidentId::parse(reference).map_err(|e| StoreError::Corrupt(format!("outbox reference: {e}")));
        Ok(match kind {
            "report" => Self::Report { incident: incident()? },
            "request" => Self::Request { incident: incident()? },
            "response" => Self::Response { incident: incident()? },
            "forward" => Self::Forward { incident: incident()? },
            "inquiry" => Self::Inquiry { incident: incident()? },
            "presence" => Self::Presence {
                presence: BuddyPresence::from_type(payload)
                    .ok_or_else(|| StoreError::Corrupt(format!("outbox presence type {payload:?}")))?,
            },
            "fetch-keys" => Self::FetchKeys { approve: payload == "approve" },
            "probe" => Self::Probe,
            "score-query" => Self::ScoreQuery {
                subject: BareJid::parse(reference).map_err(|e| StoreError::Corrupt(format!("outbox subject: {e}")))?,
            },
            "rotation" => Self::Rotation {
                old_kid: reference.to_owned(),
                links: serde_json::from_str(payload)
                    .map_err(|e| StoreError::Corrupt(format!("outbox rotation links: {e}")))?,
            },
            other => return Err(StoreError::Corrupt(format!("unknown outbox kind {other:?}"))),
        })
    }
}

/// An outgoing stanza waiting for delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxItem {
    /// Database id.
    pub id: i64,
    /// The peer JID.
    pub peer: BareJid,
    /// What to do.
    pub job: OutboxJob,
    /// When it was queued.
    pub created_at: Timestamp,
    /// When to try next.
    pub next_attempt_at: Timestamp,
    /// Attempts so far.
    pub attempts: u32,
    /// `pending`, `delivered`, `failed` or `cancelled`.
    pub state: String,
    /// The last error, if any.
    pub last_error: Option<String>,
}

/// Parses a stored offender (`kind` + `value`).
pub fn offender_from_row(kind: &str, value: &str) -> Result<Offender, StoreError> {
    let parsed = match kind {
        "ip" => ostracon_protocol::ids::parse_ip(value).map(Offender::Ip),
        "cidr" => ostracon_protocol::ids::Cidr::parse(value).map(Offender::Cidr),
        "jid" => BareJid::parse(value).map(Offender::Jid),
        "domain" => ostracon_protocol::ids::Domain::parse(value).map(Offender::Domain),
        other => return Err(StoreError::Corrupt(format!("unknown entry kind {other:?}"))),
    };
    parsed.map_err(|error| StoreError::Corrupt(error.to_string()))
}

/// Converts stored unix seconds.
pub fn ts_from_row(secs: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_unix(secs).ok_or_else(|| StoreError::Corrupt(format!("timestamp {secs} out of range")))
}

/// Where a buddy relation stands (XEP-0267).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerState {
    /// We asked them (sent `subscribe`); waiting for their operator.
    Requested,
    /// They asked us; waiting for our operator.
    Pending,
    /// Mutual, keys pinned.
    Buddy,
    /// Ended by either side.
    Revoked,
}

text_enum!(PeerState { Requested => "requested", Pending => "pending", Buddy => "buddy", Revoked => "revoked" });

/// How far we act on a peer's reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trust {
    /// Store and show, never list.
    Observe,
    /// List what they report.
    Accept,
    /// List what they report and act on their requests without asking.
    AutoApply,
}

text_enum!(Trust { Observe => "observe", Accept => "accept", AutoApply => "auto-apply" });

/// A peer node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerRecord {
    /// Its component JID.
    pub jid: BareJid,
    /// Relation state.
    pub state: PeerState,
    /// Our trust in it.
    pub trust: Trust,
    /// Its pinned keys (empty until the relation is approved).
    pub keys: Vec<ostracon_protocol::keys::PublishedKey>,
    /// When we first heard of it.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_unreachable_when_its_oldest_item_keeps_failing_and_nothing_got_through() {
        let at = |secs: i64| Timestamp::from_unix(1_800_000_000 + secs);
        let waiting = PeerDelivery { pending: 1, oldest_pending_at: at(0), ..PeerDelivery::default() };
        assert_eq!(waiting.status(), "queued");
        assert_eq!(PeerDelivery { attempts: 1, ..waiting.clone() }.status(), "retrying");
        let failing = PeerDelivery { attempts: 2, ..waiting.clone() };
        assert_eq!(failing.status(), "unreachable");
        // Something else reached it since: a slow item, not a dead peer.
        assert_eq!(PeerDelivery { last_delivered_at: at(5), ..failing.clone() }.status(), "retrying");
        assert_eq!(PeerDelivery { last_delivered_at: at(5), ..PeerDelivery::default() }.status(), "ok");
        assert_eq!(PeerDelivery { failed: 3, ..PeerDelivery::default() }.status(), "unreachable", "only given up on");
    }
}
