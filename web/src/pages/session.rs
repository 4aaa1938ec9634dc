//! Signed-in sessions for the operator pages, and the CSRF tokens their forms carry.
//!
//! A session is 32 random bytes in an `HttpOnly`, `SameSite=Strict` cookie; the node keeps
//! only its SHA-256, with the hash of the token that signed in and the session's CSRF token.
//! Every request looks the token up again, so revoking it ends its sessions at once.
//! The table is in memory and bounded: a restart signs everyone out, which is the safe way
//! round. The sign-in form, which has no session yet, carries a CSRF token that must match a
//! cookie of its own (the double-submit pattern), so another site cannot sign a browser in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use axum::http::{HeaderMap, HeaderValue, header};
use ostracon_protocol::time::Timestamp;
use ostracon_store::ratelimit::{Limiter, Rate};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::ratelimit::bucket_key;

/// The session cookie.
pub(crate) const SESSION_COOKIE: &str = "ostracon_session";

/// The cookie the sign-in form's CSRF token must match.
pub(crate) const SIGN_IN_COOKIE: &str = "ostracon_sign_in";

/// How long a session lasts from sign-in: a working day.
pub(crate) const SESSION_SECS: i64 = 8 * 3600;

/// Most sessions held at once; past it the one closest to expiry goes first.
const MAX_SESSIONS: usize = 10_000;

/// Sign-in attempts per client address: a burst of 10, then one every 6 seconds.
const SIGN_INS_PER_SECOND: f64 = 1.0 / 6.0;
const SIGN_IN_BURST: f64 = 10.0;

/// Clients whose sign-in attempts are counted individually.
const MAX_SIGN_IN_CLIENTS: usize = 100_000;

struct Session {
    token_hash: [u8; 32],
    csrf: String,
    expires: Timestamp,
}

/// What a live session gives a page: whose token, and the CSRF token its forms carry.
#[derive(Clone, Debug)]
pub(crate) struct SessionView {
    pub(crate) token_hash: [u8; 32],
    pub(crate) csrf: String,
}

/// The session table and the sign-in limiter.
pub(crate) struct Sessions {
    table: Mutex<HashMap<[u8; 32], Session>>,
    sign_ins: Limiter<IpAddr>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            table: Mutex::new(HashMap::new()),
            sign_ins: Limiter::new(Rate::new(SIGN_INS_PER_SECOND, SIGN_IN_BURST), MAX_SIGN_IN_CLIENTS),
        }
    }
}

impl Sessions {
    /// Takes one sign-in attempt for `client`; on refusal, the seconds to wait.
    pub(crate) fn attempt_sign_in(&self, client: IpAddr, now: Instant) -> Result<(), u64> {
        self.sign_ins.check(&bucket_key(client), now).map_err(|wait| wait.as_secs_f64().ceil().max(1.0) as u64)
    }

    /// Opens a session for a token; returns the cookie value. `session` and `csrf` are 32
    /// random bytes each, drawn by the caller.
    pub(crate) fn open(&self, token_hash: [u8; 32], session: [u8; 32], csrf: [u8; 32], now: Timestamp) -> String {
        let mut table = self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if table.len() >= MAX_SESSIONS {
            table.retain(|_, s| s.expires > now);
        }
        if table.len() >= MAX_SESSIONS
            && let Some(oldest) = table.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k)
        {
            table.remove(&oldest);
        }
        let cookie = hex::encode(session);
        table.insert(
            Sha256::digest(cookie.as_bytes()).into(),
            Session { token_hash, csrf: hex::encode(csrf), expires: now.plus_secs(SESSION_SECS) },
        );
        cookie
    }

    /// The live session a request's cookie names.
    pub(crate) fn find(&self, headers: &HeaderMap, now: Timestamp) -> Option<SessionView> {
        let cookie = cookie(headers, SESSION_COOKIE)?;
        let key: [u8; 32] = Sha256::digest(cookie.as_bytes()).into();
        let mut table = self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match table.get(&key) {
            Some(session) if session.expires > now => {
                Some(SessionView { token_hash: session.token_hash, csrf: session.csrf.clone() })
            }
            Some(_) => {
                table.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends the session a request's cookie names.
    pub(crate) fn close(&self, headers: &HeaderMap) {
        if let Some(cookie) = cookie(headers, SESSION_COOKIE) {
            let key: [u8; 32] = Sha256::digest(cookie.as_bytes()).into();
            self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&key);
        }
    }
}

/// True if a form's CSRF token is the expected one (constant time).
pub(crate) fn csrf_matches(expected: &str, given: Option<&str>) -> bool {
    given.is_some_and(|given| !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(given.as_bytes())))
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .filter(|value| value.len() <= 128)
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Strict`, `Path=/`, `Secure` when the page was
/// served over TLS; `max_age` 0 removes the cookie.
pub(crate) fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    // Names and values are ours: hex and fixed names, always valid header text.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn a_session_lives_until_it_expires_or_closes_and_the_table_is_bounded() {
        let sessions = Sessions::default();
        let now = Timestamp::from_unix(1_000_000).unwrap();
        let cookie = sessions.open([1; 32], [2; 32], [3; 32], now);
        let headers = with_cookie(&format!("other=x; {SESSION_COOKIE}={cookie}"));
        let found = sessions.find(&headers, now.plus_secs(10)).unwrap();
        assert_eq!((found.token_hash, found.csrf.as_str()), ([1; 32], hex::encode([3; 32]).as_str()));
        assert!(sessions.find(&headers, now.plus_secs(SESSION_SECS)).is_none(), "expired");
        let cookie = sessions.open([1; 32], [4; 32], [3; 32], now);
        let headers = with_cookie(&format!("{SESSION_COOKIE}={cookie}"));
        sessions.close(&headers);
        assert!(sessions.find(&headers, now).is_none(), "closed");
        assert!(sessions.find(&with_cookie(&format!("{SESSION_COOKIE}=guess")), now).is_none());

        for n in 0..MAX_SESSIONS + 5 {
            let mut id = [0_u8; 32];
            id[..8].copy_from_slice(&(n as u64).to_le_bytes());
            sessions.open([1; 32], id, [3; 32], now.plus_secs(n as i64));
        }
        assert_eq!(sessions.table.lock().unwrap().len(), MAX_SESSIONS);
    }

    #[test]
    fn csrf_needs_the_exact_token() {
        assert!(csrf_matches("abc", Some("abc")));
        assert!(!csrf_matches("abc", Some("abd")));
        assert!(!csrf_matches("abc", None));
        assert!(!csrf_matches("", Some("")));
    }

    #[test]
    fn sign_ins_are_limited_per_client() {
        let sessions = Sessions::default();
        let (client, other, now) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap(), Instant::now());
        for _ in 0..10 {
            assert!(sessions.attempt_sign_in(client, now).is_ok());
        }
        assert!(sessions.attempt_sign_in(client, now).is_err());
        assert!(sessions.attempt_sign_in(other, now).is_ok());
    }
}
