//! The one timestamp type of the protocol: UTC, whole seconds, written `YYYY-MM-DDTHH:MM:SSZ`.
//!
//! Signed claims must have exactly one textual form per instant, so sub-second precision and
//! offsets other than `Z` are dropped when a value enters the protocol. Parsing accepts any
//! RFC 3339 time (peers such as Metronome send offsets and fractions) and normalises it.
//! Nothing here reads the clock: callers pass `now`.

use std::fmt;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Excerpt, Result};

/// An instant in UTC with one-second resolution.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// 1970-01-01T00:00:00Z.
    pub const UNIX_EPOCH: Self = Self(DateTime::UNIX_EPOCH);

    /// Seconds since the Unix epoch; `None` if out of chrono's range.
    pub fn from_unix(secs: i64) -> Option<Self> {
        Utc.timestamp_opt(secs, 0).single().map(Self)
    }

    /// Truncates a chrono time to whole seconds.
    pub fn from_datetime(at: DateTime<Utc>) -> Self {
        // Cannot fail: the truncated value is within range of the original.
        Self::from_unix(at.timestamp()).unwrap_or(Self(at))
    }

    /// Parses RFC 3339 leniently (any offset, optional fraction) and normalises to UTC seconds.
    /// An offset without its colon (`+0200`, ISO 8601's basic form) is accepted too: Metronome
    /// writes its XEP-0268 times with `%z`.
    pub fn parse(text: &str) -> Result<Self> {
        let trimmed = text.trim();
        if trimmed.len() > 64 {
            return Err(Error::InvalidTimestamp { value: Excerpt::new(text) });
        }
        DateTime::parse_from_rfc3339(trimmed)
            .or_else(|_| DateTime::parse_from_str(trimmed, "%Y-%m-%dT%H:%M:%S%.f%z"))
            .map(|at| Self::from_datetime(at.with_timezone(&Utc)))
            .map_err(|_| Error::InvalidTimestamp { value: Excerpt::new(text) })
    }

    /// Parses only the canonical form, as required inside signed envelope headers.
    pub fn parse_canonical(text: &str) -> Result<Self> {
        let parsed = Self::parse(text)?;
        if parsed.to_string() == text { Ok(parsed) } else { Err(Error::InvalidTimestamp { value: Excerpt::new(text) }) }
    }

    /// Seconds since the Unix epoch.
    pub fn unix(self) -> i64 {
        self.0.timestamp()
    }

    /// The chrono value, for arithmetic in callers.
    pub fn datetime(self) -> DateTime<Utc> {
        self.0
    }

    /// This instant plus `secs` seconds (saturating at the ends of the range).
    pub fn plus_secs(self, secs: i64) -> Self {
        Self::from_unix(self.unix().saturating_add(secs)).unwrap_or(self)
    }

    /// Absolute distance between two instants in seconds.
    pub fn abs_diff_secs(self, other: Self) -> u64 {
        self.unix().abs_diff(other.unix())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Secs, true))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse_canonical(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_offsets_and_fractions() {
        let ts = Timestamp::parse("2026-05-01T12:00:00.999+02:00").unwrap();
        assert_eq!(ts.to_string(), "2026-05-01T10:00:00Z");
    }

    #[test]
    fn canonical_form_is_strict() {
        assert!(Timestamp::parse_canonical("2026-05-01T10:00:00Z").is_ok());
        assert!(Timestamp::parse_canonical("2026-05-01T10:00:00+00:00").is_err());
        assert!(Timestamp::parse_canonical("2026-05-01T10:00:00.5Z").is_err());
        assert!(Timestamp::parse("yesterday").is_err());
    }
}
