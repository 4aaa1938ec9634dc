//! The node on the XMPP network: an XEP-0114 component of the operator's server.
//!
//! - [`stream`] reads the component stream under bounds, stanza by stanza;
//! - [`connection`] owns the link: handshake, keepalive, reconnection with backoff and
//!   jitter, and the state and counters for `/healthz` and `/metrics`;
//! - [`node`] holds the component's state and dispatches each stanza to the file that owns
//!   it: [`intake`], [`handshake`], [`trust`], [`score`], [`rtbl`] (the XEP-0060 RTBL service), with [`iq`] for the answers we wait
//!   for, [`limits`] for rates, [`delivery`] for the outbox, [`group_commit`] for storing
//!   received incidents, [`replay`] for the replay cache and [`stanza`] for building stanzas.
//!
//! Stanzas travel as `minidom::Element`s between the link and the node, so the node is
//! tested without a server, and the connection knows nothing of our protocol.

pub mod connection;
mod delivery;
pub mod group_commit;
mod handshake;
mod intake;
pub mod iq;
pub mod limits;
pub mod node;
pub mod replay;
mod rtbl;
mod score;
pub mod stanza;
pub mod stream;
mod trust;
