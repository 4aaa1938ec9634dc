//! Per-client rate limits: a token bucket per client address (IPv6 clients by /64, so
//! rotating addresses inside one allocation does not multiply the allowance), kept in the
//! store's bounded limiter (O(1) per check, least recently seen clients evicted first).

use std::net::{IpAddr, Ipv6Addr};
use std::time::Instant;

use ostracon_store::ratelimit::{Limiter, Rate};

/// Most clients tracked individually.
const MAX_CLIENTS: usize = 100_000;

/// A per-client limiter.
#[derive(Debug)]
pub struct RateLimiter(Limiter<IpAddr>);

impl RateLimiter {
    /// `per_second` sustained requests with bursts of `burst`. A rate of 0 disables limiting.
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self(Limiter::new(Rate::new(f64::from(per_second), f64::from(burst)), MAX_CLIENTS))
    }

    /// Takes one token for `client` at `now`; on refusal returns the seconds until one is available.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), u64> {
        self.0.check(&bucket_key(client), now).map_err(|wait| wait.as_secs_f64().ceil().max(1.0) as u64)
    }
}

/// The key of a client: IPv4-mapped IPv6 as IPv4, IPv6 by its /64.
pub(crate) fn bucket_key(client: IpAddr) -> IpAddr {
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
