//! The route handlers, one module per resource, and the helpers they share.

pub(crate) mod blocklist;
pub(crate) mod decisions;
pub(crate) mod held;
pub(crate) mod history;
pub(crate) mod incidents;
pub(crate) mod keys;
pub(crate) mod lists;
pub(crate) mod log;
pub(crate) mod lookup;
pub(crate) mod meta;
pub(crate) mod peers;
pub(crate) mod reputation;
pub(crate) mod status;
pub(crate) mod tokens;
pub(crate) mod waiting;

use ostracon_protocol::ids::{BareJid, Offender};
use ostracon_protocol::time::Timestamp;

use crate::error::ApiError;

/// A weight as every route shows it: a decimal, where 1.0 is one full reporter (the store
/// keeps thousandths, so sums are exact).
pub(crate) fn weight(milli: i64) -> f64 {
    milli as f64 / 1000.0
}

/// Parses an optional `peer` filter (a JID), refusing a bad one with 422 `invalid_jid`.
pub(crate) fn peer_filter(peer: Option<&str>) -> Result<Option<BareJid>, ApiError> {
    peer.map(|text| BareJid::parse(text).map_err(|e| ApiError::invalid("invalid_jid", e.to_string()))).transpose()
}

/// Parses offenders, naming the first one that is invalid.
pub(crate) fn offender_list(values: &[String]) -> Result<Vec<Offender>, ApiError> {
    values
        .iter()
        .enumerate()
        .map(|(index, value)| {
            Offender::parse(value)
                .map_err(|e| ApiError::invalid("invalid_offender", format!("offenders[{index}]: {e}")))
        })
        .collect()
}

/// Parses one offender.
pub(crate) fn offender(value: &str) -> Result<Offender, ApiError> {
    Offender::parse(value).map_err(|e| ApiError::invalid("invalid_offender", e.to_string()))
}

/// Parses an RFC 3339 time field.
pub(crate) fn parse_time(field: &str, text: &str) -> Result<Timestamp, ApiError> {
    Timestamp::parse(text)
        .map_err(|_| ApiError::invalid("invalid_time", format!("{field}: {text:?} is not an RFC 3339 time")))
}
