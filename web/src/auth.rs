//! Operator authentication: `Authorization: Bearer TOKEN`.
//!
//! Tokens are 32 random bytes (`ost_` + base64url). Only their SHA-256 is stored; a request's
//! token is hashed, looked up by hash, and the stored hash compared again in constant time.
//! A plain hash is enough because tokens are high-entropy: there is nothing to brute-force.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use ostracon_store::model::{Scope, TokenRecord};
use ostracon_store::traits::TokenStore as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::error::ApiError;
use crate::state::AppState;

/// Prefix of every token, so leaked tokens are recognisable by secret scanners.
pub const TOKEN_PREFIX: &str = "ost_";

/// The stored form of a token.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Makes a token from 32 random bytes drawn by the caller.
pub fn token_from_bytes(bytes: &[u8; 32]) -> String {
    use base64::Engine as _;
    format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Checks the request's bearer token and that its scope allows `required`.
pub async fn authorize(state: &AppState, headers: &HeaderMap, required: Scope) -> Result<TokenRecord, ApiError> {
    let header =
        headers.get(AUTHORIZATION).ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer token"))?;
    let token = header
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty() && token.len() <= 256)
        .ok_or_else(|| ApiError::unauthorized("malformed Authorization header; expected 'Bearer TOKEN'"))?;
    let hash = hash_token(token);
    let (record, stored) = state
        .ledger()
        .store()
        .token_by_hash(&hash)
        .await?
        .ok_or_else(|| ApiError::unauthorized("unknown or revoked token"))?;
    if !bool::from(stored.as_slice().ct_eq(&hash)) {
        return Err(ApiError::unauthorized("unknown or revoked token"));
    }
    if !record.scope.allows(required) {
        return Err(ApiError::forbidden(format!("this token's scope is {}; {} is required", record.scope, required)));
    }
    Ok(record)
}
