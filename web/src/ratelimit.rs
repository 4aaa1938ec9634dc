//! Per-client rate limits: a token bucket per client address (IPv6 clients by /64, so
//! rotating addresses inside one allocation does not multiply the allowance).
//!
//! Memory is bounded: when the table is full, buckets that have refilled completely (idle
//! clients) are dropped; if none are, new clients share one overflow bucket.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::Instant;

/// Most clients tracked individually.
const MAX_CLIENTS: usize = 100_000;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// A keyed token-bucket limiter.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl RateLimiter {
    /// `per_second` sustained requests with bursts of `burst`. A rate of 0 disables limiting.
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self { per_second: f64::from(per_second), burst: f64::from(burst.max(1)), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `client` at `now`; on refusal returns the seconds until one is available.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), u64> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let key = bucket_key(client);
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&key) {
            let refill_secs = self.burst / self.per_second;
            buckets.retain(|_, bucket| now.duration_since(bucket.updated).as_secs_f64() < refill_secs);
        }
        let key = if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&key) {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            key
        };
        let bucket = buckets.entry(key).or_insert(Bucket { tokens: self.burst, updated: now });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / self.per_second).ceil() as u64)
        }
    }
}

fn bucket_key(client: IpAddr) -> IpAddr {
    match ostracon_protocol::ids::canonical_ip(client) {
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            IpAddr::V6(Ipv6Addr::new(segments[0], segments[1], segments[2], segments[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn allows_a_burst_then_refills_at_the_rate() {
        let limiter = RateLimiter::new(2, 3);
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let start = Instant::now();
        for _ in 0..3 {
            limiter.check(client, start).unwrap();
        }
        assert_eq!(limiter.check(client, start), Err(1));
        limiter.check(client, start + Duration::from_millis(500)).unwrap();
        // Another client is not affected.
        limiter.check("192.0.2.2".parse().unwrap(), start).unwrap();
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let limiter = RateLimiter::new(1, 1);
        let start = Instant::now();
        limiter.check("2001:db8::1".parse().unwrap(), start).unwrap();
        assert!(limiter.check("2001:db8::2".parse().unwrap(), start).is_err());
        limiter.check("2001:db8:0:1::1".parse().unwrap(), start).unwrap();
    }

    #[test]
    fn zero_rate_disables() {
        let limiter = RateLimiter::new(0, 0);
        for _ in 0..1000 {
            limiter.check("192.0.2.1".parse().unwrap(), Instant::now()).unwrap();
        }
    }
}
