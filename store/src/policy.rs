//! Listing rules: which action an incident asks for, how long an entry stays listed, and how
//! repeat offenders get longer TTLs (as fail2ban's `bantime.increment` does).
//!
//! Everything takes `now` as a parameter so expiry and escalation are testable without waiting.

use ostracon_protocol::incident::{Action, Severity};
use ostracon_protocol::time::Timestamp;

use crate::model::ListAction;

/// Listing parameters (the `[lists]` section of the configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListingPolicy {
    /// TTL of a first listing for a low-severity incident (seconds).
    pub base_ttl_low_secs: i64,
    /// ... medium severity.
    pub base_ttl_medium_secs: i64,
    /// ... high severity.
    pub base_ttl_high_secs: i64,
    /// Each relisting multiplies the TTL by this factor.
    pub escalation_factor: i64,
    /// No TTL (computed or requested) exceeds this.
    pub max_ttl_secs: i64,
    /// How long tombstones stay in the change feed (seconds).
    pub tombstone_horizon_secs: i64,
}

impl Default for ListingPolicy {
    fn default() -> Self {
        const HOUR: i64 = 3_600;
        const DAY: i64 = 24 * HOUR;
        Self {
            base_ttl_low_secs: 6 * HOUR,
            base_ttl_medium_secs: DAY,
            base_ttl_high_secs: 3 * DAY,
            escalation_factor: 2,
            max_ttl_secs: 90 * DAY,
            tombstone_horizon_secs: 7 * DAY,
        }
    }
}

impl ListingPolicy {
    /// The TTL for the `listing`-th listing (1 = first) of an offender at `severity`.
    pub fn ttl_secs(&self, severity: Severity, listing: u32) -> i64 {
        let base = match severity {
            Severity::Low => self.base_ttl_low_secs,
            Severity::Medium => self.base_ttl_medium_secs,
            Severity::High => self.base_ttl_high_secs,
        };
        let mut ttl = base;
        for _ in 1..listing {
            ttl = ttl.saturating_mul(self.escalation_factor.max(1));
            if ttl >= self.max_ttl_secs {
                break;
            }
        }
        ttl.min(self.max_ttl_secs)
    }

    /// When an entry listed now should expire: the incident's own expiry if it names one (capped
    /// at the maximum TTL), else the escalated TTL.
    pub fn expiry(&self, now: Timestamp, requested: Option<Timestamp>, severity: Severity, listing: u32) -> Timestamp {
        let cap = now.plus_secs(self.max_ttl_secs);
        match requested {
            Some(requested) => requested.min(cap),
            None => now.plus_secs(self.ttl_secs(severity, listing)),
        }
    }

    /// The list action an incident's requested action implies.
    pub fn action_for(requested: Option<Action>) -> ListAction {
        match requested {
            Some(Action::Investigate | Action::Nothing | Action::ContactSourceSite) => ListAction::Observe,
            Some(Action::RateLimitHost) => ListAction::Quarantine,
            _ => ListAction::Block,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeat_offenders_get_longer_ttls_up_to_the_cap() {
        let policy = ListingPolicy::default();
        assert_eq!(policy.ttl_secs(Severity::Medium, 1), 86_400);
        assert_eq!(policy.ttl_secs(Severity::Medium, 2), 2 * 86_400);
        assert_eq!(policy.ttl_secs(Severity::Medium, 4), 8 * 86_400);
        assert_eq!(policy.ttl_secs(Severity::Medium, 60), 90 * 86_400);
        assert_eq!(policy.ttl_secs(Severity::High, 1), 3 * 86_400);
    }

    #[test]
    fn requested_expiry_is_capped() {
        let policy = ListingPolicy::default();
        let now = Timestamp::from_unix(1_800_000_000).unwrap();
        let far = now.plus_secs(10 * 365 * 86_400);
        assert_eq!(policy.expiry(now, Some(far), Severity::Low, 1), now.plus_secs(90 * 86_400));
        assert_eq!(policy.expiry(now, Some(now.plus_secs(60)), Severity::Low, 1), now.plus_secs(60));
        assert_eq!(policy.expiry(now, None, Severity::Low, 1), now.plus_secs(6 * 3_600));
    }
}
