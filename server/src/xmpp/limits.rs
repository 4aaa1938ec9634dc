//! Rate limits on what peers send us: every stanza kind, per sender (its bare JID, so a new
//! resource is not a new allowance) and per registrable domain (so new subdomains or accounts
//! on one server are not either). Checks are O(1) and the tables are bounded
//! (`ostracon_store::ratelimit`).

use std::sync::Arc;
use std::time::Instant;

use ostracon_protocol::ids::BareJid;
use ostracon_protocol::xml::stream::{Gate, Head};
use ostracon_store::ratelimit::{Limiter, Rate};
use ostracon_store::reputation::registrable;

/// Senders and domains remembered per table.
const TRACKED: usize = 20_000;

/// What a stanza asks of us, for its rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Traffic {
    /// Any stanza (disco, keys, pings, presence, messages, answers).
    Any,
    /// An XEP-0268 report, request, response or inquiry: each may verify a signature and
    /// write a transaction.
    Incident,
    /// A buddy request from a peer: each may add a row and a key fetch.
    Subscribe,
    /// An RTBL request: a subscription row, or an `items` answer of up to one full stanza.
    Pubsub,
}

/// The rates, per sender and per domain.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SenderRates {
    /// Any stanza from one bare JID.
    pub any_per_jid: Rate,
    /// Any stanza from one domain.
    pub any_per_domain: Rate,
    /// Incident stanzas from one bare JID.
    pub incidents_per_jid: Rate,
    /// Incident stanzas from one domain.
    pub incidents_per_domain: Rate,
    /// Buddy requests from one domain.
    pub subscribes_per_domain: Rate,
    /// RTBL requests from one domain (a server asks twice at start-up, and on each reload).
    pub pubsub_per_domain: Rate,
    /// RTBL requests from everyone together, so many domains cannot together make us send
    /// full lists without pause.
    pub pubsub_total: Rate,
}

impl Default for SenderRates {
    fn default() -> Self {
        Self {
            any_per_jid: Rate::new(100.0, 500.0),
            any_per_domain: Rate::new(200.0, 1_000.0),
            incidents_per_jid: Rate::new(20.0, 100.0),
            incidents_per_domain: Rate::new(40.0, 200.0),
            subscribes_per_domain: Rate::new(0.1, 5.0),
            pubsub_per_domain: Rate::new(0.5, 20.0),
            pubsub_total: Rate::new(10.0, 50.0),
        }
    }
}

/// The limiters.
#[derive(Debug)]
pub struct SenderLimits {
    any_jid: Limiter<BareJid>,
    any_domain: Limiter<String>,
    incident_jid: Limiter<BareJid>,
    incident_domain: Limiter<String>,
    subscribe_domain: Limiter<String>,
    pubsub_domain: Limiter<String>,
    pubsub_total: Limiter<()>,
}

impl SenderLimits {
    /// Limiters at `rates`.
    pub fn new(rates: SenderRates) -> Self {
        Self {
            any_jid: Limiter::new(rates.any_per_jid, TRACKED),
            any_domain: Limiter::new(rates.any_per_domain, TRACKED),
            incident_jid: Limiter::new(rates.incidents_per_jid, TRACKED),
            incident_domain: Limiter::new(rates.incidents_per_domain, TRACKED),
            subscribe_domain: Limiter::new(rates.subscribes_per_domain, TRACKED),
            pubsub_domain: Limiter::new(rates.pubsub_per_domain, TRACKED),
            pubsub_total: Limiter::new(rates.pubsub_total, 1),
        }
    }

    /// True if `sender` may send one more stanza of this kind at `now`; takes the tokens.
    pub fn admit(&self, sender: &BareJid, traffic: Traffic, now: Instant) -> bool {
        let domain = registrable(sender.domain().as_str()).to_owned();
        let admitted = match traffic {
            Traffic::Any => self.any_jid.check(sender, now).and_then(|()| self.any_domain.check(&domain, now)),
            Traffic::Incident => {
                self.incident_jid.check(sender, now).and_then(|()| self.incident_domain.check(&domain, now))
            }
            Traffic::Subscribe => self.subscribe_domain.check(&domain, now),
            Traffic::Pubsub => self.pubsub_domain.check(&domain, now).and_then(|()| self.pubsub_total.check(&(), now)),
        };
        admitted.is_ok()
    }
}

/// The stream's gate: a stanza whose sender is over its rate for any stanza is refused at its
/// head, before its tree is built. Answers to our requests pass (they go to their waiters, and
/// limiting them would throttle our own deliveries), and so does what has no usable `from`
/// (the node drops and counts it).
pub fn gate(limits: Arc<SenderLimits>) -> Gate {
    Box::new(move |head: &Head| {
        if head.name == "iq" && matches!(head.stanza_type.as_deref(), Some("result" | "error")) {
            return true;
        }
        let Some(sender) = head.from.as_deref().and_then(|from| BareJid::parse(from).ok()) else { return true };
        limits.admit(&sender, Traffic::Any, Instant::now())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_refuses_a_sender_over_its_rate_but_never_answers_to_our_requests() {
        let limits =
            Arc::new(SenderLimits::new(SenderRates { any_per_jid: Rate::new(1.0, 2.0), ..SenderRates::default() }));
        let gate = gate(limits);
        let head = |stanza_type: &str| Head {
            name: "iq".into(),
            from: Some("incidents.flood.example/r1".into()),
            stanza_type: Some(stanza_type.into()),
            ..Head::default()
        };
        assert!(gate(&head("set")) && gate(&head("set")));
        assert!(!gate(&head("get")), "the burst of 2 is spent");
        assert!(gate(&head("result")) && gate(&head("error")), "answers pass");
    }

    #[test]
    fn resources_and_subdomains_share_their_allowance() {
        let limits = SenderLimits::new(SenderRates {
            incidents_per_jid: Rate::new(1.0, 2.0),
            incidents_per_domain: Rate::new(1.0, 3.0),
            ..SenderRates::default()
        });
        let now = Instant::now();
        // A resource is dropped by the bare JID: both count against one bucket.
        let one = BareJid::parse("incidents.evil.example/1").unwrap();
        let two = BareJid::parse("incidents.evil.example/2").unwrap();
        assert!(limits.admit(&one, Traffic::Incident, now));
        assert!(limits.admit(&two, Traffic::Incident, now));
        assert!(!limits.admit(&one, Traffic::Incident, now), "the JID's burst of 2 is spent");
        // Another component of the same domain: its own JID bucket, the domain's third token.
        let other = BareJid::parse("x.evil.example").unwrap();
        assert!(limits.admit(&other, Traffic::Incident, now));
        let more = BareJid::parse("y.evil.example").unwrap();
        assert!(!limits.admit(&more, Traffic::Incident, now), "the domain's burst of 3 is spent");
        assert!(limits.admit(&BareJid::parse("incidents.honest.example").unwrap(), Traffic::Incident, now));
    }
}
