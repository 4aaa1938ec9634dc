//! RFC 8785 (JSON Canonicalization Scheme) bytes: the exact bytes a signature covers.
//!
//! We canonicalise only when *signing*. A receiver verifies the bytes it was given and
//! parses those same bytes; it never re-serialises and re-checks, because two JSON
//! libraries can disagree on a float or an escape and a signature must not depend on that.

use serde::Serialize;

use crate::error::{Error, Result};

/// Serialises `value` as RFC 8785 canonical JSON.
pub fn to_canonical_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    serde_jcs::to_vec(value).map_err(|error| Error::InvalidJson { what: "claim", reason: error.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors from RFC 8785 (and a few of our own) in `spec/vectors/jcs.json`.
    #[test]
    fn matches_the_rfc_8785_vectors() {
        let vectors: serde_json::Value = serde_json::from_str(include_str!("../../spec/vectors/jcs.json")).unwrap();
        let cases = vectors["cases"].as_array().unwrap();
        assert!(cases.len() >= 4);
        for case in cases {
            let input: serde_json::Value = serde_json::from_str(case["input"].as_str().unwrap()).unwrap();
            let expected = case["canonical"].as_str().unwrap();
            let got = to_canonical_json(&input).unwrap();
            assert_eq!(String::from_utf8(got).unwrap(), expected, "{}", case["name"]);
        }
    }
}
