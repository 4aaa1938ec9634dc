//! The IODEF 1.0 (RFC 5070) `Incident` element as XEP-0268 uses it, mapped to [`Incident`].
//!
//! Emitting follows the XEP's own style (`category='ext-category' ext-category='xmpp'`,
//! `type='ext-type' ext-type='spam'`). Parsing is lenient: it accepts RFC 5070 `ext-value`
//! forms and the XEP's `ext-*` forms, and what Metronome's `mod_incidents_handling` writes
//! (every `Address` as `ext-category`, IPs included; `Counter type='ext-type'`; an empty
//! `RelatedActivity`; offsets without a colon; local ids that are not UUIDs; the reporter's
//! `jid` in the IODEF namespace), a missing `dtype`, nested `EventData` and missing optional
//! parts. Every value it does read must be valid, every count is bounded, and what must be
//! there once (`IncidentID`, `Incident`) is refused when it is there twice.

use std::collections::BTreeSet;

use minidom::Element;

use crate::error::{Error, Result};
use crate::ids::{BareJid, Cidr, Domain, IncidentId, Offender, parse_ip};
use crate::incident::{Action, Category, Evidence, HistoryItem, Incident, Severity, Status};
use crate::limits::{
    MAX_DESCRIPTION_CHARS, MAX_EVIDENCE, MAX_HISTORY, MAX_OFFENDERS, MAX_SAMPLE_CHARS, MAX_SHORT_TEXT_CHARS,
};
use crate::time::Timestamp;
use crate::xml::{
    bounded_text, children_named, element_with, expect_element, lang, required_attr, set_attr, set_lang, text_element,
};

/// The IODEF 1.0 namespace.
pub const IODEF_NS: &str = "urn:ietf:params:xml:ns:iodef-1.0";
/// XEP-0268's JID slot, also used by mod_report_forward.
pub const JID_NS: &str = "urn:xmpp:jid:0";

/// Most bytes read from any one IODEF text node (descriptions are bounded again in characters).
const MAX_FIELD_BYTES: usize = MAX_DESCRIPTION_CHARS * 4;

/// `Incident@purpose` values XEP-0268 uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Informing (reports and inquiries).
    Reporting,
    /// Asking for or describing mitigation (requests and responses).
    Mitigation,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::Reporting => "reporting",
            Self::Mitigation => "mitigation",
        }
    }
}

fn iodef(name: &str) -> Element {
    Element::bare(name, IODEF_NS)
}

fn iodef_text(name: &str, text: impl Into<String>) -> Element {
    text_element(name, IODEF_NS, text)
}

fn incident_id_element(name: &str, id: &IncidentId) -> Element {
    let mut element = iodef_text(name, id.uuid().hyphenated().to_string());
    set_attr(&mut element, "name", id.issuer().as_str());
    element
}

/// IODEF `Impact@type` for a category, in the XEP's style: RFC values where they exist,
/// `ext-type` otherwise.
fn impact_type(category: Category) -> (&'static str, Option<&'static str>) {
    match category {
        Category::Dos => ("dos", None),
        Category::Other => ("unknown", None),
        other => ("ext-type", Some(other.as_str())),
    }
}

fn additional(meaning: &'static str, dtype: &'static str, value: impl Into<String>) -> Element {
    let mut element = iodef_text("AdditionalData", value);
    set_attr(&mut element, "dtype", dtype);
    set_attr(&mut element, "meaning", meaning);
    element
}

fn action_attrs(element: &mut Element, action: Action) {
    if action.is_iodef_native() {
        set_attr(element, "action", action.as_str());
    } else {
        set_attr(element, "action", "ext-value");
        set_attr(element, "ext-action", action.as_str());
    }
}

/// Renders an incident as an IODEF `<Incident/>`.
pub fn to_iodef(incident: &Incident, purpose: Purpose) -> Element {
    let mut root = iodef("Incident");
    set_attr(&mut root, "purpose", purpose.as_str());
    root.append_child(incident_id_element("IncidentID", &incident.id));
    if let Some(related) = &incident.related {
        let mut activity = iodef("RelatedActivity");
        activity.append_child(incident_id_element("IncidentID", related));
        root.append_child(activity);
    }
    root.append_child(iodef_text("StartTime", incident.start.to_string()));
    if let Some(end) = incident.end {
        root.append_child(iodef_text("EndTime", end.to_string()));
    }
    root.append_child(iodef_text("ReportTime", incident.reported.to_string()));
    if !incident.description.is_empty() {
        let mut description = iodef_text("Description", incident.description.clone());
        set_lang(&mut description, "en");
        root.append_child(description);
    }

    let mut assessment = iodef("Assessment");
    let (kind, ext) = impact_type(incident.category);
    let mut impact = element_with(
        "Impact",
        IODEF_NS,
        &[("severity", incident.severity.as_str()), ("completion", "succeeded"), ("type", kind)],
    );
    if let Some(ext) = ext {
        set_attr(&mut impact, "ext-type", ext);
    }
    assessment.append_child(impact);
    root.append_child(assessment);

    let mut contact = element_with("Contact", IODEF_NS, &[("role", "creator"), ("type", "organization")]);
    contact.append_child(iodef_text("ContactName", incident.reporter.to_string()));
    let mut data = element_with("AdditionalData", IODEF_NS, &[("dtype", "xml")]);
    data.append_child(text_element("jid", JID_NS, incident.reporter.to_string()));
    contact.append_child(data);
    root.append_child(contact);

    let mut event = iodef("EventData");
    if !incident.offenders.is_empty() {
        let mut node = iodef("Node");
        for offender in &incident.offenders {
            node.append_child(offender_element(offender));
        }
        let mut system = element_with("System", IODEF_NS, &[("category", "source")]);
        system.append_child(node);
        let mut flow = iodef("Flow");
        flow.append_child(system);
        event.append_child(flow);
    }
    if let Some(action) = incident.action {
        let mut expectation = iodef("Expectation");
        action_attrs(&mut expectation, action);
        event.append_child(expectation);
    }
    let samples: Vec<&String> = incident
        .evidence
        .iter()
        .filter_map(|item| match item {
            Evidence::Sample(text) => Some(text),
            Evidence::Sha256(_) => None,
        })
        .collect();
    if !samples.is_empty() {
        let mut record_data = iodef("RecordData");
        for sample in samples {
            let mut item = iodef_text("RecordItem", sample.clone());
            set_attr(&mut item, "dtype", "string");
            record_data.append_child(item);
        }
        let mut record = iodef("Record");
        record.append_child(record_data);
        event.append_child(record);
    }
    if event.children().next().is_some() {
        root.append_child(event);
    }

    if !incident.history.is_empty() {
        let mut history = iodef("History");
        for entry in &incident.history {
            let mut item = iodef("HistoryItem");
            action_attrs(&mut item, entry.action);
            item.append_child(iodef_text("DateTime", entry.at.to_string()));
            if !entry.note.is_empty() {
                item.append_child(iodef_text("Description", entry.note.clone()));
            }
            history.append_child(item);
        }
        root.append_child(history);
    }

    root.append_child(additional("status", "string", incident.status.as_str()));
    for item in &incident.evidence {
        if let Evidence::Sha256(hex) = item {
            root.append_child(additional("sha256", "string", hex.clone()));
        }
    }
    if let Some(expires) = incident.expires {
        root.append_child(additional("expires", "date-time", expires.to_string()));
    }
    root
}

fn offender_element(offender: &Offender) -> Element {
    match offender {
        Offender::Jid(jid) => {
            let mut element = iodef_text("Address", jid.to_string());
            set_attr(&mut element, "category", "ext-category");
            set_attr(&mut element, "ext-category", "xmpp");
            element
        }
        Offender::Domain(domain) => iodef_text("NodeName", domain.to_string()),
        Offender::Ip(ip) => {
            let mut element = iodef_text("Address", ip.to_string());
            set_attr(&mut element, "category", if ip.is_ipv4() { "ipv4-addr" } else { "ipv6-addr" });
            element
        }
        Offender::Cidr(cidr) => {
            let mut element = iodef_text("Address", cidr.to_string());
            set_attr(&mut element, "category", if cidr.net().addr().is_ipv4() { "ipv4-net" } else { "ipv6-net" });
            element
        }
    }
}

/// Reads the `IncidentID` of an IODEF incident (all an XEP-0268 inquiry needs). There must be
/// exactly one: two would leave it to us which incident is meant.
pub fn incident_id_from_iodef(root: &Element) -> Result<IncidentId> {
    expect_element(root, "Incident", IODEF_NS, "<Incident xmlns='urn:ietf:params:xml:ns:iodef-1.0'/>")?;
    let mut ids = children_named(root, "IncidentID", IODEF_NS);
    let id = ids.next().ok_or(Error::Missing { element: "Incident", what: "IncidentID" })?;
    if ids.next().is_some() {
        return Err(Error::Ambiguous { element: "Incident", what: "IncidentID" });
    }
    parse_incident_id(id)
}

fn parse_incident_id(element: &Element) -> Result<IncidentId> {
    let issuer = required_attr(element, "IncidentID", "name")?;
    IncidentId::from_parts(issuer, &bounded_text(element, "IncidentID", 128)?)
}

fn parse_time(element: Option<&Element>, what: &'static str) -> Result<Option<Timestamp>> {
    element.map(|element| Timestamp::parse(&bounded_text(element, what, 64)?)).transpose()
}

/// Reads the action of an `Expectation` or `HistoryItem`, accepting `ext-value` and `ext-*` forms.
fn parse_action(element: &Element) -> Action {
    let raw = element.attr("action").unwrap_or("other");
    let name = if raw.starts_with("ext-") { element.attr("ext-action").unwrap_or("other") } else { raw };
    Action::parse(name).unwrap_or(Action::Other)
}

fn parse_category(impact: Option<&Element>) -> Category {
    let Some(impact) = impact else {
        return Category::Other;
    };
    let raw = impact.attr("type").unwrap_or("unknown");
    let name = if raw.starts_with("ext-") { impact.attr("ext-type").unwrap_or("other") } else { raw };
    Category::parse(name).unwrap_or(Category::Other)
}

/// Collects offenders from every `System category='source'` under (possibly nested) `EventData`.
struct OffenderCollector {
    offenders: Vec<Offender>,
    seen: BTreeSet<Offender>,
}

impl OffenderCollector {
    fn push(&mut self, offender: Offender) -> Result<()> {
        if self.seen.insert(offender.clone()) {
            if self.offenders.len() == MAX_OFFENDERS {
                return Err(Error::TooMany { what: "offenders", max: MAX_OFFENDERS });
            }
            self.offenders.push(offender);
        }
        Ok(())
    }

    fn node(&mut self, node: &Element) -> Result<()> {
        for child in node.children() {
            if child.is("NodeName", IODEF_NS) {
                let name = bounded_text(child, "NodeName", 1024)?;
                self.push(Offender::Domain(Domain::parse(name.trim())?))?;
            } else if child.is("Address", IODEF_NS) {
                let text = bounded_text(child, "Address", 3 * 1024)?;
                let text = text.trim();
                // Metronome writes every address as `ext-category` and names the real
                // category in `ext-category`, IPs included.
                let category = match child.attr("category").unwrap_or("") {
                    ext if ext.starts_with("ext-") => child.attr("ext-category").unwrap_or(""),
                    category => category,
                };
                let offender = match category {
                    "ipv4-addr" | "ipv6-addr" => {
                        let ip = parse_ip(text)?;
                        check_family(category, ip.is_ipv4(), text)?;
                        Some(Offender::Ip(ip))
                    }
                    "ipv4-net" | "ipv6-net" => {
                        let cidr = Cidr::parse(text)?;
                        check_family(category, cidr.net().addr().is_ipv4(), text)?;
                        Some(Offender::Cidr(cidr))
                    }
                    "xmpp" | "jid" => Some(Offender::from_jid(BareJid::parse(text)?)),
                    // Other address kinds (MAC, ASN, e-mail, ...) are not ours to act on.
                    _ => None,
                };
                if let Some(offender) = offender {
                    self.push(offender)?;
                }
            }
        }
        Ok(())
    }
}

/// Refuses an IPv6 value under an `ipv4-*` category and the reverse.
fn check_family(category: &str, is_ipv4: bool, text: &str) -> Result<()> {
    if category.starts_with("ipv4") == is_ipv4 {
        Ok(())
    } else {
        Err(Error::InvalidValue {
            field: "Address category",
            value: crate::error::Excerpt::new(&format!("{category}: {text}")),
        })
    }
}

/// Parses an IODEF `<Incident/>` into the model, leniently (see the module docs).
pub fn from_iodef(root: &Element) -> Result<Incident> {
    let id = incident_id_from_iodef(root)?;
    let related = match root.get_child("RelatedActivity", IODEF_NS).and_then(|a| a.get_child("IncidentID", IODEF_NS)) {
        Some(element) => Some(parse_incident_id(element)?),
        None => None,
    };
    let detect = parse_time(root.get_child("DetectTime", IODEF_NS), "DetectTime")?;
    let start = parse_time(root.get_child("StartTime", IODEF_NS), "StartTime")?;
    let end = parse_time(root.get_child("EndTime", IODEF_NS), "EndTime")?;
    let reported = parse_time(root.get_child("ReportTime", IODEF_NS), "ReportTime")?;
    let reported = reported.or(start).or(detect).ok_or(Error::Missing { element: "Incident", what: "ReportTime" })?;
    let start = start.or(detect).unwrap_or(reported);

    // Prefer an English description, else the first.
    let descriptions: Vec<&Element> = children_named(root, "Description", IODEF_NS).collect();
    let description = descriptions
        .iter()
        .find(|d| lang(d).is_some_and(|l| l.starts_with("en")))
        .or(descriptions.first())
        .map(|d| bounded_text(d, "Description", MAX_FIELD_BYTES))
        .transpose()?
        .unwrap_or_default();

    let impact = root.get_child("Assessment", IODEF_NS).and_then(|a| a.get_child("Impact", IODEF_NS));
    let category = parse_category(impact);
    let severity =
        impact.and_then(|i| i.attr("severity")).and_then(|s| Severity::parse(s).ok()).unwrap_or(Severity::Medium);

    // The XEP puts the reporter's JID in `urn:xmpp:jid:0`; Metronome leaves it in the IODEF
    // namespace, and sometimes empty.
    let jids = children_named(root, "Contact", IODEF_NS)
        .flat_map(|contact| children_named(contact, "AdditionalData", IODEF_NS))
        .flat_map(|data| data.children().filter(|c| c.name() == "jid" && (c.ns() == JID_NS || c.ns() == IODEF_NS)));
    let mut reporter = None;
    for jid in jids {
        let text = bounded_text(jid, "jid", 3 * 1024)?;
        if !text.trim().is_empty() {
            reporter = Some(BareJid::parse(text.trim())?);
            break;
        }
    }
    let reporter = reporter.unwrap_or_else(|| BareJid::from_domain(id.issuer().clone()));

    let mut collector = OffenderCollector { offenders: Vec::new(), seen: BTreeSet::new() };
    let mut evidence = Vec::new();
    let mut action = None;
    // EventData may nest; walk it with an explicit stack (depth is bounded by check_bounds).
    let mut events: Vec<&Element> = children_named(root, "EventData", IODEF_NS).collect();
    while let Some(event) = events.pop() {
        events.extend(children_named(event, "EventData", IODEF_NS));
        for flow in children_named(event, "Flow", IODEF_NS) {
            for system in children_named(flow, "System", IODEF_NS) {
                if system.attr("category") == Some("source") {
                    for node in children_named(system, "Node", IODEF_NS) {
                        collector.node(node)?;
                    }
                }
            }
        }
        if action.is_none() {
            action = event.get_child("Expectation", IODEF_NS).map(parse_action);
        }
        for record in children_named(event, "Record", IODEF_NS) {
            for data in children_named(record, "RecordData", IODEF_NS) {
                for item in children_named(data, "RecordItem", IODEF_NS) {
                    if evidence.len() == MAX_EVIDENCE {
                        return Err(Error::TooMany { what: "evidence items", max: MAX_EVIDENCE });
                    }
                    evidence.push(Evidence::Sample(bounded_text(item, "RecordItem", MAX_SAMPLE_CHARS * 4)?));
                }
            }
        }
    }

    let mut history = Vec::new();
    if let Some(element) = root.get_child("History", IODEF_NS) {
        for item in children_named(element, "HistoryItem", IODEF_NS) {
            if history.len() == MAX_HISTORY {
                return Err(Error::TooMany { what: "history items", max: MAX_HISTORY });
            }
            let at = parse_time(item.get_child("DateTime", IODEF_NS), "DateTime")?
                .ok_or(Error::Missing { element: "HistoryItem", what: "DateTime" })?;
            let note = item
                .get_child("Description", IODEF_NS)
                .map(|d| bounded_text(d, "HistoryItem Description", MAX_SHORT_TEXT_CHARS * 4))
                .transpose()?
                .unwrap_or_default();
            history.push(HistoryItem { action: parse_action(item), at, note });
        }
    }

    let mut status = Status::New;
    let mut expires = None;
    for data in children_named(root, "AdditionalData", IODEF_NS) {
        match data.attr("meaning") {
            Some("status") => status = Status::parse(bounded_text(data, "status", 32)?.trim())?,
            Some("expires") => expires = Some(Timestamp::parse(&bounded_text(data, "expires", 64)?)?),
            Some("sha256") => {
                if evidence.len() == MAX_EVIDENCE {
                    return Err(Error::TooMany { what: "evidence items", max: MAX_EVIDENCE });
                }
                evidence.push(Evidence::Sha256(bounded_text(data, "sha256", 128)?.trim().to_ascii_lowercase()));
            }
            _ => {}
        }
    }

    let incident = Incident {
        id,
        reporter,
        status,
        category,
        severity,
        offenders: collector.offenders,
        start,
        end,
        reported,
        description,
        evidence,
        action,
        expires,
        related,
        history,
    };
    incident.validate()?;
    Ok(incident)
}
