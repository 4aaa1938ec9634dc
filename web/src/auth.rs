//! Operator authentication: `Authorization: Bearer TOKEN`.
//!
//! Tokens are 32 random bytes (`ost_` + base64url). Only their SHA-256 is stored; a request's
//! token is hashed, looked up by hash, and the stored hash compared again in constant time.
//! A plain hash is enough because tokens are high-entropy: there is nothing to brute-force.

use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
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
    let record = token_record(state, token).await?;
    if !record.scope.allows(required) {
        return Err(ApiError::forbidden(format!("this token's scope is {}; {} is required", record.scope, required)));
    }
    Ok(record)
}

/// Header carrying a CrowdSec bouncer's key (its `api_key`).
pub const API_KEY_HEADER: &str = "x-api-key";

/// Checks a CrowdSec bouncer's `X-Api-Key`: a live token of scope `bouncer` exactly. An admin
/// token is refused too, so a bouncer's configuration file never holds one.
pub async fn authorize_bouncer(state: &AppState, headers: &HeaderMap) -> Result<TokenRecord, ApiError> {
    let token = headers
        .get(API_KEY_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|token| !token.is_empty() && token.len() <= 256)
        .ok_or_else(|| ApiError::forbidden("missing or malformed X-Api-Key"))?;
    let record = token_record(state, token).await.map_err(|e| match e.status {
        StatusCode::UNAUTHORIZED => ApiError::forbidden(e.message),
        _ => e,
    })?;
    if record.scope != Scope::Bouncer {
        return Err(ApiError::forbidden(format!("this token's scope is {}; bouncer is required", record.scope)));
    }
    Ok(record)
}

/// The live token record for `token`: looked up by hash, then the hash compared in constant time.
async fn token_record(state: &AppState, token: &str) -> Result<TokenRecord, ApiError> {
    token_record_by_hash(state, hash_token(token)).await
}

/// The live token record whose hash is `hash`, compared again in constant time.
pub(crate) async fn token_record_by_hash(state: &AppState, hash: [u8; 32]) -> Result<TokenRecord, ApiError> {
    let (record, stored) = state
        .ledger()
        .store()
        .token_by_hash(&hash)
        .await?
        .ok_or_else(|| ApiError::unauthorized("unknown or revoked token"))?;
    if !bool::from(stored.as_slice().ct_eq(&hash)) {
        return Err(ApiError::unauthorized("unknown or revoked token"));
    }
    Ok(record)
}

/// The scope an operator route requires, as a type.
pub trait RequiredScope: Send + Sync + 'static {
    /// The scope.
    const SCOPE: Scope;
}

/// Routes that submit incidents (fail2ban-style reporters).
#[derive(Debug)]
pub struct Submit;

impl RequiredScope for Submit {
    const SCOPE: Scope = Scope::Submit;
}

/// Routes that administer the node.
#[derive(Debug)]
pub struct Admin;

impl RequiredScope for Admin {
    const SCOPE: Scope = Scope::Admin;
}

/// Reading the per-peer metrics (a Prometheus scraper's token, or an admin's).
#[derive(Debug)]
pub struct Metrics;

impl RequiredScope for Metrics {
    const SCOPE: Scope = Scope::Metrics;
}

/// An authenticated operator whose token allows scope `S`.
///
/// It is extracted from the request's head only, and handlers take it as their first
/// argument: the token is checked before the path is parsed or any byte of the body is read,
/// so an unauthenticated client learns nothing from validation messages and costs no parsing.
#[derive(Debug)]
pub struct Operator<S>(pub TokenRecord, std::marker::PhantomData<S>);

impl<S: RequiredScope> Operator<S> {
    /// The operator a live token record stands for, if its scope allows `S`: for a signed-in
    /// page session, whose token was looked up when the session's cookie was read.
    pub(crate) fn from_record(record: TokenRecord) -> Result<Self, ApiError> {
        if !record.scope.allows(S::SCOPE) {
            return Err(ApiError::forbidden(format!(
                "this token's scope is {}; {} is required",
                record.scope,
                S::SCOPE
            )));
        }
        Ok(Self(record, std::marker::PhantomData))
    }
}

impl<S: RequiredScope> axum::extract::FromRequestParts<AppState> for Operator<S> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        authorize(state, &parts.headers, S::SCOPE).await.map(|token| Self(token, std::marker::PhantomData))
    }
}

/// A reader who may be the operator: public when the request has no `Authorization` header,
/// the operator when it carries a token allowing scope `S`. A header with a bad token is
/// refused (401/403), never served as public, so a typo does not silently hide the openings.
#[derive(Debug)]
pub struct Reader<S>(pub Option<TokenRecord>, std::marker::PhantomData<S>);

impl<S> Reader<S> {
    /// Whether the operator is reading.
    pub fn is_operator(&self) -> bool {
        self.0.is_some()
    }
}

impl<S: RequiredScope> axum::extract::FromRequestParts<AppState> for Reader<S> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if !parts.headers.contains_key(AUTHORIZATION) {
            return Ok(Self(None, std::marker::PhantomData));
        }
        authorize(state, &parts.headers, S::SCOPE).await.map(|token| Self(Some(token), std::marker::PhantomData))
    }
}
