//! The XEP-0114 component handshake: `<handshake>` carries lowercase hex SHA-1 of the
//! server's stream id followed by the shared secret.
//!
//! tokio-xmpp computes this itself when it connects; we keep it here so the spec's vector is
//! tested and so tooling (and our test harness) can check a server's expectations.

use sha1::{Digest as _, Sha1};

/// The handshake digest for `stream_id` and `secret`.
pub fn handshake_digest(stream_id: &str, secret: &str) -> String {
    let mut hasher = Sha1::new();
    hasher.update(stream_id.as_bytes());
    hasher.update(secret.as_bytes());
    hex::encode(hasher.finalize())
}
