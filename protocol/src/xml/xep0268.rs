//! XEP-0268 Incident Handling (`urn:xmpp:incident:2`): the four wrappers around one IODEF
//! `Incident`, optionally carrying our signed provenance chain.
//!
//! | element | IQ type | meaning |
//! |---|---|---|
//! | `<report/>` | set | "this happened" |
//! | `<inquiry/>` | get | "what do you know about this id?" (answered later by a report) |
//! | `<request/>` | get | "please act" (to the offender's home server) |
//! | `<response/>` | set | "this is what we did" |
//!
//! When a `<provenance/>` is present, the signed claim is authoritative and the IODEF is a
//! rendering for peers that do not verify; a peer without one (Metronome) is unsigned.

use minidom::Element;

use crate::envelope::{SIGNED_NS, Unverified};
use crate::error::{Error, Excerpt, Result};
use crate::ids::IncidentId;
use crate::incident::{Incident, ReportClaim, RequestClaim, ResponseClaim};
use crate::xml::iodef::{IODEF_NS, Purpose, from_iodef, incident_id_from_iodef, to_iodef};
use crate::xml::{check_bounds, signed};

/// The XEP-0268 namespace.
pub const INCIDENT_NS: &str = "urn:xmpp:incident:2";

/// One XEP-0268 payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IncidentPayload {
    /// `<report/>` (IQ set).
    Report {
        /// The IODEF content.
        incident: Incident,
        /// Our signed claim, if the sender signs.
        signed: Option<Unverified<ReportClaim>>,
    },
    /// `<inquiry/>` (IQ get): only the id matters.
    Inquiry {
        /// The incident asked about.
        id: IncidentId,
    },
    /// `<request/>` (IQ get).
    Request {
        /// The IODEF content.
        incident: Incident,
        /// Our signed claim, if the sender signs.
        signed: Option<Unverified<RequestClaim>>,
    },
    /// `<response/>` (IQ set).
    Response {
        /// The IODEF content.
        incident: Incident,
        /// Our signed claim, if the sender signs.
        signed: Option<Unverified<ResponseClaim>>,
    },
}

impl IncidentPayload {
    /// The wrapper element's name.
    pub fn element_name(&self) -> &'static str {
        match self {
            Self::Report { .. } => "report",
            Self::Inquiry { .. } => "inquiry",
            Self::Request { .. } => "request",
            Self::Response { .. } => "response",
        }
    }

    /// The IQ type XEP-0268 assigns (`request` is a get, as the XEP says, though it asks for action).
    pub fn iq_type(&self) -> &'static str {
        match self {
            Self::Report { .. } | Self::Response { .. } => "set",
            Self::Inquiry { .. } | Self::Request { .. } => "get",
        }
    }

    /// The incident id, whichever the wrapper.
    pub fn incident_id(&self) -> &IncidentId {
        match self {
            Self::Report { incident, .. } | Self::Request { incident, .. } | Self::Response { incident, .. } => {
                &incident.id
            }
            Self::Inquiry { id } => id,
        }
    }

    /// Renders the wrapper with its IODEF incident and, if signed, the provenance chain.
    pub fn to_element(&self) -> Element {
        let mut wrapper = Element::bare(self.element_name(), INCIDENT_NS);
        match self {
            Self::Report { incident, signed } => {
                wrapper.append_child(to_iodef(incident, Purpose::Reporting));
                if let Some(signed) = signed {
                    wrapper.append_child(signed::to_element(signed.links()));
                }
            }
            Self::Request { incident, signed } => {
                wrapper.append_child(to_iodef(incident, Purpose::Mitigation));
                if let Some(signed) = signed {
                    wrapper.append_child(signed::to_element(signed.links()));
                }
            }
            Self::Response { incident, signed } => {
                wrapper.append_child(to_iodef(incident, Purpose::Mitigation));
                if let Some(signed) = signed {
                    wrapper.append_child(signed::to_element(signed.links()));
                }
            }
            Self::Inquiry { id } => {
                wrapper.append_child(inquiry_incident(id));
            }
        }
        wrapper
    }

    /// Parses a wrapper element (the IQ's child), bounding it first.
    pub fn from_element(wrapper: &Element) -> Result<Self> {
        check_bounds(wrapper)?;
        if wrapper.ns() != INCIDENT_NS {
            return Err(Error::UnexpectedElement {
                name: Excerpt::new(wrapper.name()),
                namespace: Excerpt::new(&wrapper.ns()),
                expected: "an element in urn:xmpp:incident:2",
            });
        }
        let mut incidents = wrapper.children().filter(|child| child.is("Incident", IODEF_NS));
        let wrapper_name = match wrapper.name() {
            "inquiry" => "inquiry",
            "request" => "request",
            "response" => "response",
            _ => "report",
        };
        let incident_element = incidents.next().ok_or(Error::Missing { element: wrapper_name, what: "Incident" })?;
        if incidents.next().is_some() {
            return Err(Error::Ambiguous { element: wrapper_name, what: "Incident" });
        }
        let links = wrapper.get_child("provenance", SIGNED_NS).map(signed::from_element).transpose()?;
        match wrapper.name() {
            "report" => Ok(Self::Report {
                incident: from_iodef(incident_element)?,
                signed: links.map(Unverified::new).transpose()?,
            }),
            "request" => Ok(Self::Request {
                incident: from_iodef(incident_element)?,
                signed: links.map(Unverified::new).transpose()?,
            }),
            "response" => Ok(Self::Response {
                incident: from_iodef(incident_element)?,
                signed: links.map(Unverified::new).transpose()?,
            }),
            "inquiry" => Ok(Self::Inquiry { id: incident_id_from_iodef(incident_element)? }),
            other => Err(Error::UnexpectedElement {
                name: Excerpt::new(other),
                namespace: Excerpt::new(INCIDENT_NS),
                expected: "report, inquiry, request or response",
            }),
        }
    }
}

/// The minimal incident of an inquiry, as the XEP's example has it: just the id.
fn inquiry_incident(id: &IncidentId) -> Element {
    let mut incident = Element::bare("Incident", IODEF_NS);
    crate::xml::set_attr(&mut incident, "purpose", "reporting");
    let mut id_element = crate::xml::text_element("IncidentID", IODEF_NS, id.uuid().hyphenated().to_string());
    crate::xml::set_attr(&mut id_element, "name", id.issuer().as_str());
    incident.append_child(id_element);
    incident
}
