//! The IQs we send and the answers we wait for.
//!
//! **Invariant:** an answer reaches a waiter only if it comes from the bare JID we asked and
//! carries the id we drew for that request: 128 random bits, so no one can guess an id from
//! one they saw. Anything else is dropped and counted; a stranger cannot answer for a peer.

use std::collections::HashMap;
use std::sync::Mutex;

use minidom::Element;
use ostracon_protocol::ids::BareJid;
use tokio::sync::oneshot;

/// Waiters for IQ answers, by (whom we asked, id).
#[derive(Debug, Default)]
pub struct Requests {
    pending: Mutex<HashMap<(BareJid, String), oneshot::Sender<Element>>>,
}

/// An id for a request: 128 bits of the environment's randomness, as hex.
pub fn request_id(random: &[u8; 32]) -> String {
    format!("ost-{}", hex::encode(&random[..16]))
}

impl Requests {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(BareJid, String), oneshot::Sender<Element>>> {
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for the answer of `to` to the request `id`.
    pub fn register(&self, to: &BareJid, id: &str) -> oneshot::Receiver<Element> {
        let (tx, rx) = oneshot::channel();
        self.lock().insert((to.clone(), id.to_owned()), tx);
        rx
    }

    /// Stops waiting (the request timed out or was answered).
    pub fn forget(&self, to: &BareJid, id: &str) {
        self.lock().remove(&(to.clone(), id.to_owned()));
    }

    /// Hands an IQ `result` or `error` to its waiter; false when none waits for it from that
    /// sender (a late answer, or one forged by someone we did not ask).
    pub fn answer(&self, iq: Element) -> bool {
        let Some(from) = iq.attr("from").and_then(|from| BareJid::parse(from).ok()) else { return false };
        let Some(id) = iq.attr("id") else { return false };
        let waiter = self.lock().remove(&(from, id.to_owned()));
        waiter.is_some_and(|waiter| waiter.send(iq).is_ok())
    }

    /// Fails every waiter (the link came back: answers to what was sent before may be lost).
    pub fn reset(&self) -> usize {
        let waiting: Vec<_> = self.lock().drain().collect();
        waiting.len()
    }

    /// Requests waiting for an answer.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when none waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(from: &str, id: &str) -> Element {
        format!("<iq xmlns='jabber:component:accept' type='result' from='{from}' id='{id}'/>").parse().unwrap()
    }

    #[test]
    fn ids_carry_128_random_bits() {
        let id = request_id(&[0xab; 32]);
        assert_eq!(id, format!("ost-{}", "ab".repeat(16)));
        assert_ne!(request_id(&[1; 32]), request_id(&[2; 32]));
    }

    #[tokio::test]
    async fn only_the_peer_asked_can_answer() {
        let requests = Requests::default();
        let peer = BareJid::parse("incidents.a.test").unwrap();
        let mut waiter = requests.register(&peer, "ost-1");
        assert!(!requests.answer(answer("incidents.evil.test", "ost-1")), "a stranger's answer is dropped");
        assert!(!requests.answer(answer("incidents.a.test", "ost-2")), "an id we never sent is dropped");
        assert!(waiter.try_recv().is_err(), "still waiting");
        assert!(requests.answer(answer("incidents.a.test/any", "ost-1")), "the peer answers, from any resource");
        assert_eq!(waiter.await.unwrap().attr("from"), Some("incidents.a.test/any"));
        assert!(!requests.answer(answer("incidents.a.test", "ost-1")), "a second answer finds no waiter");
        assert!(requests.is_empty());
    }
}
