//! A bounded replay cache: `(signer, nonce)` pairs seen within the timestamp window.
//!
//! Entries older than twice the window are dropped (their timestamps would be refused
//! anyway), and the cache never holds more than `capacity` pairs: when full, the oldest go
//! first. Only envelopes whose signatures verified are ever remembered.

use std::collections::{BTreeMap, BTreeSet};

use ostracon_protocol::envelope::{Nonce, ReplayGuard};
use ostracon_protocol::ids::BareJid;
use ostracon_protocol::time::Timestamp;

/// The cache.
#[derive(Debug)]
pub struct ReplayCache {
    seen: BTreeSet<(String, String)>,
    by_time: BTreeMap<(i64, String, String), ()>,
    window_secs: i64,
    capacity: usize,
}

impl ReplayCache {
    /// A cache for signatures accepted within `window_secs`, holding at most `capacity` pairs.
    pub fn new(window_secs: i64, capacity: usize) -> Self {
        Self { seen: BTreeSet::new(), by_time: BTreeMap::new(), window_secs, capacity: capacity.max(1) }
    }

    /// Pairs held.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    fn evict_before(&mut self, cutoff: i64) {
        while let Some(((ts, signer, nonce), ())) = self.by_time.first_key_value() {
            if *ts >= cutoff && self.seen.len() < self.capacity {
                break;
            }
            let key = (signer.clone(), nonce.clone());
            let _ = self.by_time.pop_first();
            self.seen.remove(&key);
        }
    }
}

impl ReplayGuard for ReplayCache {
    fn check_and_remember(&mut self, signer: &BareJid, nonce: &Nonce, ts: Timestamp) -> bool {
        self.evict_before(ts.unix() - 2 * self.window_secs);
        let key = (signer.to_string(), nonce.as_str().to_owned());
        if self.seen.contains(&key) {
            return false;
        }
        self.by_time.insert((ts.unix(), key.0.clone(), key.1.clone()), ());
        self.seen.insert(key);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_repeats_and_stays_bounded() {
        let mut cache = ReplayCache::new(300, 3);
        let signer = BareJid::parse("incidents.a.example").unwrap();
        let at = Timestamp::from_unix(1_800_000_000).unwrap();
        let nonce = |n: u8| Nonce::from_bytes(&[n; 16]);
        assert!(cache.check_and_remember(&signer, &nonce(1), at));
        assert!(!cache.check_and_remember(&signer, &nonce(1), at));
        assert!(cache.check_and_remember(&signer, &nonce(2), at));
        assert!(cache.check_and_remember(&signer, &nonce(3), at));
        assert!(cache.check_and_remember(&signer, &nonce(4), at));
        assert!(cache.len() <= 3);
        // Much later, old pairs are gone.
        assert!(cache.check_and_remember(&signer, &nonce(5), at.plus_secs(10_000)));
        assert_eq!(cache.len(), 1);
    }
}
