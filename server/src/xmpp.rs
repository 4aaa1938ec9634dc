//! The node on the XMPP network: an XEP-0114 component of the operator's server.
//!
//! - [`connection`]: the component stream, with keepalive, reconnection with backoff and
//!   jitter, and a status for `/healthz`;
//! - [`node`]: what the component answers (disco, keys, XEP-0268 reports, XEP-0267
//!   presence) and the outbox worker that delivers queued stanzas and confirms them;
//! - [`replay`]: the bounded replay cache for signed envelopes.
//!
//! Stanzas travel as `minidom::Element`s between the two halves, so [`node`] is tested
//! without a server, and the connection knows nothing of our protocol.

pub mod connection;
pub mod group_commit;
pub mod node;
pub mod replay;
