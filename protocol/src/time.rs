//! The one timestamp type of the protocol: UTC, whole seconds, written `YYYY-MM-DDTHH:MM:SSZ`.
//!
//! Signed claims must have exactly one textual form per instant, so sub-second precision and
//! offsets other than `Z` are dropped when a value enters the protocol. Parsing accepts any
//! RFC 3339 time (peers such as Metronome send offsets and fractions) and normalises it.
//! Nothing here reads the clock: callers pass `now`.

use std::fmt;

use chrono::{DateTime, Datelike as _, SecondsFormat, TimeZone, Timelike as _, Utc};
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

    /// The canonical text, `YYYY-MM-DDTHH:MM:SSZ`, as bytes, written digit by digit: a
    /// snapshot writes two per entry, a million entries at a time, and chrono's formatter
    /// allocates each. `None` outside the years 0000-9999, whose text is longer.
    pub fn canonical_bytes(self) -> Option<[u8; 20]> {
        let (date, time) = (self.0.date_naive(), self.0.time());
        let year = u32::try_from(date.year()).ok().filter(|year| *year <= 9999)?;
        let mut text = *b"0000-00-00T00:00:00Z";
        let mut digits = |at: usize, width: usize, mut value: u32| {
            for slot in text[at..at + width].iter_mut().rev() {
                // A digit: `value % 10` is below 10.
                *slot = b'0' + u8::try_from(value % 10).unwrap_or(0);
                value /= 10;
            }
        };
        digits(0, 4, year);
        digits(5, 2, date.month());
        digits(8, 2, date.day());
        digits(11, 2, time.hour());
        digits(14, 2, time.minute());
        digits(17, 2, time.second());
        Some(text)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.canonical_bytes() {
            // ASCII digits and separators.
            Some(text) => f.write_str(std::str::from_utf8(&text).unwrap_or_default()),
            None => f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Secs, true)),
        }
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

    #[test]
    fn the_canonical_text_is_chronos_at_every_range_edge() {
        let chrono_text = |ts: Timestamp| ts.datetime().to_rfc3339_opts(SecondsFormat::Secs, true);
        // Year 0000, the epoch, leap days, the last second of 9999, and beyond either end.
        let edges = [-62_167_219_200, -1, 0, 951_782_400, 1_709_164_799, 4_107_542_400, 253_402_300_799];
        let spread = (0..2_000).map(|n: i64| n * 126_751_223 - 62_167_219_200);
        for secs in edges.into_iter().chain(spread).chain([-62_167_219_201, 253_402_300_800]) {
            let Some(ts) = Timestamp::from_unix(secs) else { continue };
            assert_eq!(ts.to_string(), chrono_text(ts), "{secs}");
            assert_eq!(ts.canonical_bytes().is_some(), (-62_167_219_200..=253_402_300_799).contains(&secs), "{secs}");
        }
    }
}
