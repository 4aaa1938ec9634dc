//! Keyed token-bucket rate limits with bounded memory and O(1) work per check.
//!
//! Both edges use it: HTTP clients by address, XMPP senders by bare JID and by domain. The
//! table is split into shards, each behind its own lock and each a least-recently-used map of
//! fixed capacity, so a check locks one shard for a constant-time lookup and, when the shard
//! is full, a constant-time eviction of its least recently seen key. No check ever scans the
//! table or clears it: a flood of new keys only evicts idle ones.
//!
//! Time is a parameter (`now`), so tests drive refills without sleeping.

use std::hash::{BuildHasher, Hash};
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;

/// A sustained rate and the burst allowed on top of it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// Tokens added per second (0: no limit).
    pub per_second: f64,
    /// Bucket size: the most taken at once after a quiet spell.
    pub burst: f64,
}

impl Rate {
    /// `per_second` sustained with bursts of `burst`.
    pub fn new(per_second: f64, burst: f64) -> Self {
        Self { per_second, burst: burst.max(1.0) }
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Shards per limiter: enough that concurrent checks rarely meet on one lock.
const SHARDS: usize = 16;

/// A token-bucket limiter keyed by `K`, holding at most about `capacity` keys.
#[derive(Debug)]
pub struct Limiter<K: Hash + Eq> {
    rate: Rate,
    shards: Vec<Mutex<LruCache<K, Bucket>>>,
    /// Keyed per process, so no one can aim keys at one shard.
    hasher: std::collections::hash_map::RandomState,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// A limiter at `rate` remembering about `capacity` keys.
    pub fn new(rate: Rate, capacity: usize) -> Self {
        let per_shard = NonZeroUsize::new(capacity.div_ceil(SHARDS).max(1)).unwrap_or(NonZeroUsize::MIN);
        Self {
            rate,
            shards: (0..SHARDS).map(|_| Mutex::new(LruCache::new(per_shard))).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Takes one token for `key` at `now`; when none is left, says how long until one is.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let rate = self.rate;
        if rate.per_second <= 0.0 {
            return Ok(());
        }
        let shard = &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS];
        let mut shard = shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let bucket = shard.get_or_insert_mut(key.clone(), || Bucket { tokens: rate.burst, updated: now });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate.per_second).min(rate.burst);
        bucket.updated = bucket.updated.max(now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate.per_second))
        }
    }

    /// Keys remembered now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()).sum()
    }

    /// True when no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_refills_at_the_rate() {
        let limiter = Limiter::new(Rate::new(2.0, 3.0), 100);
        let start = Instant::now();
        for _ in 0..3 {
            limiter.check(&"a", start).unwrap();
        }
        assert_eq!(limiter.check(&"a", start), Err(Duration::from_millis(500)));
        limiter.check(&"a", start + Duration::from_millis(500)).unwrap();
        limiter.check(&"b", start).unwrap();
    }

    #[test]
    fn memory_stays_bounded_and_a_flood_of_new_keys_evicts_only_idle_ones() {
        let limiter = Limiter::new(Rate::new(1.0, 1.0), 64);
        let start = Instant::now();
        limiter.check(&u32::MAX, start).unwrap();
        for key in 0..100_000u32 {
            let _ = limiter.check(&key, start);
            // The busy key is seen between any two new keys, so it is never the least recent
            // of its shard: it is never evicted, and stays limited.
            assert!(limiter.check(&u32::MAX, start).is_err(), "a busy key is never forgotten");
        }
        assert!(limiter.len() <= 64 + SHARDS);
    }

    #[test]
    fn zero_rate_disables() {
        let limiter = Limiter::new(Rate::new(0.0, 0.0), 10);
        for _ in 0..1_000 {
            limiter.check(&1, Instant::now()).unwrap();
        }
    }
}
