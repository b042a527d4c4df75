//! Leases: ES256 JWTs the signer issues and the front verifies on every
//! authenticated request. A lease binds a principal, its scopes and budgets to
//! one DPoP key (`cnf.jkt`) and one revocation epoch. The epoch is compared by
//! the broker, which owns the current value; this module only exposes it.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use super::jwk::{EcPublicJwk, JwkError};
use super::jwks::LeaseJwks;
use super::jws::{ALG_ES256, CompactJws, JoseHeader};
use crate::error::ErrorCode;

pub const LEASE_ISSUER: &str = "latchgate";
pub const LEASE_AUDIENCE: &str = "latchgate";
pub const LEASE_DEFAULT_TTL_SECONDS: u64 = 300;
pub const LEASE_MAX_TTL_SECONDS: u64 = 3600;
/// Clock skew tolerated on `iat`/`nbf`/`exp` between signer and front.
pub const LEASE_LEEWAY_SECONDS: i64 = 5;
/// Refused before any decoding: a lease we issue is well under 1 KiB.
pub const MAX_LEASE_BYTES: usize = 8 * 1024;

/// Proof-of-possession confirmation (RFC 7800 / RFC 9449 §6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// RFC 7638 thumbprint of the client's DPoP public key.
    pub jkt: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseBudgets {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_calls: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd_cents: Option<u64>,
}

/// `aud` may legally be a string or an array (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn contains(&self, wanted: &str) -> bool {
        match self {
            Audience::One(a) => a == wanted,
            Audience::Many(all) => all.iter().any(|a| a == wanted),
        }
    }
}

/// The lease claims. Every member is required on verification except
/// `budgets`; both `scope` (RFC 8693 style, space separated) and `scopes`
/// (array) are carried so SDKs reading either agree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseClaims {
    pub iss: String,
    pub aud: Audience,
    /// The principal the lease was issued to.
    pub sub: String,
    pub jti: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub scope: String,
    pub scopes: Vec<String>,
    pub cnf: Confirmation,
    /// Session id; budgets and approvals are tracked per session.
    pub sid: String,
    /// Revocation epoch at issuance; the broker refuses anything older than current.
    pub epoch: u64,
    #[serde(default)]
    pub budgets: LeaseBudgets,
}

/// What the broker decided to put in a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseParams {
    pub principal: String,
    pub scopes: Vec<String>,
    pub dpop_jkt: String,
    pub session_id: String,
    pub epoch: u64,
    pub budgets: LeaseBudgets,
    /// Requested lifetime; `None` or 0 means the default, capped at the maximum.
    pub ttl_seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scope name {0:?} is empty or contains whitespace")]
pub struct InvalidScopeName(pub String);

/// Lifetime actually granted for a requested one.
pub fn clamp_lease_ttl(requested: Option<u64>) -> u64 {
    match requested {
        None | Some(0) => LEASE_DEFAULT_TTL_SECONDS,
        Some(t) => t.min(LEASE_MAX_TTL_SECONDS),
    }
}

impl LeaseClaims {
    /// Claims for a new lease issued at `now` (Unix seconds) with a fresh `jti`.
    pub fn new(params: LeaseParams, now: i64) -> Result<LeaseClaims, InvalidScopeName> {
        if let Some(bad) = params.scopes.iter().find(|s| s.is_empty() || s.chars().any(char::is_whitespace)) {
            return Err(InvalidScopeName(bad.clone()));
        }
        let ttl = clamp_lease_ttl(params.ttl_seconds) as i64;
        Ok(LeaseClaims {
            iss: LEASE_ISSUER.into(),
            aud: Audience::One(LEASE_AUDIENCE.into()),
            sub: params.principal,
            jti: uuid::Uuid::new_v4().to_string(),
            iat: now,
            nbf: now,
            exp: now.saturating_add(ttl),
            scope: params.scopes.join(" "),
            scopes: params.scopes,
            cnf: Confirmation { jkt: params.dpop_jkt },
            sid: params.session_id,
            epoch: params.epoch,
            budgets: params.budgets,
        })
    }

    /// `expires_at` for the `POST /v1/leases` answer (RFC 3339, UTC).
    pub fn expires_at_rfc3339(&self) -> String {
        time::OffsetDateTime::from_unix_timestamp(self.exp)
            .ok()
            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
            .unwrap_or_default()
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    #[error("lease is larger than {MAX_LEASE_BYTES} bytes")]
    TooLarge,
    #[error("lease is not a well-formed compact JWS")]
    Malformed,
    #[error("lease alg {0:?} is not ES256")]
    AlgNotAllowed(String),
    #[error("lease typ {0:?} is not JWT")]
    TypInvalid(String),
    #[error("lease header has a crit member")]
    CritUnsupported,
    #[error("lease header has no kid")]
    KidMissing,
    #[error("lease kid is not a known lease key")]
    UnknownKid,
    #[error("lease signature does not verify")]
    SignatureInvalid,
    #[error("lease claims are missing or mistyped")]
    ClaimsInvalid,
    #[error("lease iss is not latchgate")]
    IssuerMismatch,
    #[error("lease aud does not include latchgate")]
    AudienceMismatch,
    #[error("lease expired")]
    Expired,
    #[error("lease not valid yet (nbf)")]
    NotYetValid,
    #[error("lease issued in the future (iat)")]
    IssuedInFuture,
    #[error("lease lifetime exceeds the maximum")]
    LifetimeTooLong,
    #[error("lease scope and scopes disagree")]
    ScopeInconsistent,
}

impl LeaseError {
    /// Stable, per-variant reason sent as `deny_reason` and logged.
    pub fn deny_reason(&self) -> &'static str {
        match self {
            LeaseError::TooLarge => "lease_too_large",
            LeaseError::Malformed => "lease_malformed",
            LeaseError::AlgNotAllowed(_) => "lease_alg_not_allowed",
            LeaseError::TypInvalid(_) => "lease_typ_invalid",
            LeaseError::CritUnsupported => "lease_crit_unsupported",
            LeaseError::KidMissing => "lease_kid_missing",
            LeaseError::UnknownKid => "lease_unknown_kid",
            LeaseError::SignatureInvalid => "lease_signature_invalid",
            LeaseError::ClaimsInvalid => "lease_claims_invalid",
            LeaseError::IssuerMismatch => "lease_iss_mismatch",
            LeaseError::AudienceMismatch => "lease_aud_mismatch",
            LeaseError::Expired => "lease_expired",
            LeaseError::NotYetValid => "lease_not_yet_valid",
            LeaseError::IssuedInFuture => "lease_iat_future",
            LeaseError::LifetimeTooLong => "lease_lifetime_too_long",
            LeaseError::ScopeInconsistent => "lease_scope_inconsistent",
        }
    }

    /// The wire error code: `lease_expired` for an expired lease, else `invalid_lease`.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            LeaseError::Expired => ErrorCode::LeaseExpired,
            _ => ErrorCode::InvalidLease,
        }
    }

    /// `error_code()` as its wire string.
    pub fn code(&self) -> &'static str {
        self.error_code().as_str()
    }
}

/// Leases remembered as verified, per verifier (see [`LeaseVerifier::verify`]).
const MAX_VERIFIED_LEASES: usize = 4096;

/// Verifies leases against the signer's lease public keys (several during a
/// rotation), selected by `kid`.
///
/// A lease whose signature verified is remembered (by its exact compact
/// text) so that later requests with the same lease skip the ES256 check;
/// its time claims are checked again on every use, so a remembered lease
/// stops working the second it expires. The memory belongs to this set of
/// keys: a verifier built from a rotated JWKS starts empty, and
/// [`LeaseVerifier::add_key`] forgets everything. Revocation (the epoch) and
/// proof replay are not checked here at all: the broker checks them on every
/// request.
#[derive(Debug, Default)]
pub struct LeaseVerifier {
    keys: HashMap<String, [u8; 65]>,
    verified: Mutex<HashMap<String, LeaseClaims>>,
}

impl Clone for LeaseVerifier {
    /// Same keys, nothing remembered.
    fn clone(&self) -> Self {
        LeaseVerifier { keys: self.keys.clone(), verified: Mutex::default() }
    }
}

impl LeaseVerifier {
    /// [`LeaseVerifier::from_jwks`] of a JWKS document given as JSON text.
    pub fn from_jwks_json(jwks_json: &str) -> Result<LeaseVerifier, String> {
        let jwks: LeaseJwks = serde_json::from_str(jwks_json).map_err(|e| format!("lease JWKS: {e}"))?;
        LeaseVerifier::from_jwks(&jwks).map_err(|e| format!("lease JWKS key: {e}"))
    }

    /// Trust the keys of a lease JWKS; each `kid` must equal its key's thumbprint.
    pub fn from_jwks(jwks: &LeaseJwks) -> Result<LeaseVerifier, JwkError> {
        let mut verifier = LeaseVerifier::default();
        for key in &jwks.keys {
            let jwk = key.public_jwk()?;
            if jwk.thumbprint() != key.kid {
                return Err(JwkError::KidMismatch);
            }
            verifier.keys.insert(key.kid.clone(), jwk.uncompressed_point()?);
        }
        Ok(verifier)
    }

    /// Trust one key under its thumbprint kid.
    pub fn add_key(&mut self, jwk: &EcPublicJwk) -> Result<String, JwkError> {
        let kid = jwk.thumbprint();
        self.keys.insert(kid.clone(), jwk.uncompressed_point()?);
        self.verified.get_mut().unwrap_or_else(PoisonError::into_inner).clear();
        Ok(kid)
    }

    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Check a lease at `now` (Unix seconds). The signature is checked before
    /// the claims are decoded, so unauthenticated JSON is never interpreted.
    /// A lease this verifier already verified skips the header and signature
    /// checks (same bytes, same keys: same outcome) but not the claims checks.
    pub fn verify(&self, lease_jwt: &str, now: i64) -> Result<LeaseClaims, LeaseError> {
        if lease_jwt.len() > MAX_LEASE_BYTES {
            return Err(LeaseError::TooLarge);
        }
        if let Some(claims) = self.remembered(lease_jwt) {
            check_claims(&claims, now)?;
            return Ok(claims);
        }
        let claims = self.verify_signed(lease_jwt)?;
        check_claims(&claims, now)?;
        self.remember(lease_jwt, &claims, now);
        Ok(claims)
    }

    fn remembered(&self, lease_jwt: &str) -> Option<LeaseClaims> {
        self.verified.lock().unwrap_or_else(PoisonError::into_inner).get(lease_jwt).cloned()
    }

    /// Only leases that passed every check are remembered; when the memory is
    /// full, expired ones are dropped first, then everything.
    fn remember(&self, lease_jwt: &str, claims: &LeaseClaims, now: i64) {
        let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if verified.len() >= MAX_VERIFIED_LEASES {
            verified.retain(|_, c| now < c.exp.saturating_add(LEASE_LEEWAY_SECONDS));
            if verified.len() >= MAX_VERIFIED_LEASES {
                verified.clear();
            }
        }
        verified.insert(lease_jwt.to_owned(), claims.clone());
    }

    /// Header, key and signature checks; the claims as signed.
    fn verify_signed(&self, lease_jwt: &str) -> Result<LeaseClaims, LeaseError> {
        let jws = CompactJws::split(lease_jwt).map_err(|_| LeaseError::Malformed)?;
        let header: JoseHeader = jws.header().map_err(|_| LeaseError::Malformed)?;
        if header.alg != ALG_ES256 {
            return Err(LeaseError::AlgNotAllowed(header.alg));
        }
        if let Some(typ) = header.typ
            && !typ.eq_ignore_ascii_case("JWT")
        {
            return Err(LeaseError::TypInvalid(typ));
        }
        if header.crit.is_some() {
            return Err(LeaseError::CritUnsupported);
        }
        let kid = header.kid.ok_or(LeaseError::KidMissing)?;
        let point = self.keys.get(&kid).ok_or(LeaseError::UnknownKid)?;
        if !jws.verify_es256(point) {
            return Err(LeaseError::SignatureInvalid);
        }
        jws.payload().map_err(|_| LeaseError::ClaimsInvalid)
    }
}

fn check_claims(claims: &LeaseClaims, now: i64) -> Result<(), LeaseError> {
    if claims.iss != LEASE_ISSUER {
        return Err(LeaseError::IssuerMismatch);
    }
    if !claims.aud.contains(LEASE_AUDIENCE) {
        return Err(LeaseError::AudienceMismatch);
    }
    if claims.sub.is_empty() || claims.jti.is_empty() || claims.sid.is_empty() || claims.cnf.jkt.is_empty() {
        return Err(LeaseError::ClaimsInvalid);
    }
    if now >= claims.exp.saturating_add(LEASE_LEEWAY_SECONDS) {
        return Err(LeaseError::Expired);
    }
    if claims.nbf > now.saturating_add(LEASE_LEEWAY_SECONDS) {
        return Err(LeaseError::NotYetValid);
    }
    if claims.iat > now.saturating_add(LEASE_LEEWAY_SECONDS) {
        return Err(LeaseError::IssuedInFuture);
    }
    if claims.exp.saturating_sub(claims.iat) > LEASE_MAX_TTL_SECONDS as i64 {
        return Err(LeaseError::LifetimeTooLong);
    }
    if claims.scope.split(' ').filter(|s| !s.is_empty()).ne(claims.scopes.iter().map(String::as_str)) {
        return Err(LeaseError::ScopeInconsistent);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_defaults_and_is_capped() {
        assert_eq!(clamp_lease_ttl(None), 300);
        assert_eq!(clamp_lease_ttl(Some(0)), 300);
        assert_eq!(clamp_lease_ttl(Some(60)), 60);
        assert_eq!(clamp_lease_ttl(Some(86_400)), 3600);
    }

    #[test]
    fn scope_names_with_spaces_are_refused() {
        let params = LeaseParams {
            principal: "alice".into(),
            scopes: vec!["a b".into()],
            dpop_jkt: "x".into(),
            session_id: "s".into(),
            epoch: 0,
            budgets: LeaseBudgets::default(),
            ttl_seconds: None,
        };
        assert!(LeaseClaims::new(params, 0).is_err());
    }

    #[test]
    fn expires_at_is_rfc3339() {
        let params = LeaseParams {
            principal: "alice".into(),
            scopes: vec!["read".into()],
            dpop_jkt: "x".into(),
            session_id: "s".into(),
            epoch: 0,
            budgets: LeaseBudgets::default(),
            ttl_seconds: Some(300),
        };
        let claims = LeaseClaims::new(params, 1_700_000_000).unwrap();
        assert_eq!(claims.expires_at_rfc3339(), "2023-11-14T22:18:20Z");
    }
}
