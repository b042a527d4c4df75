//! DPoP proof verification (RFC 9449 §4.3), the check the front runs on every
//! authenticated request next to the lease. Single use of `jti` is the
//! broker's job (it owns the replay cache): the verified `jti` and `iat` are
//! returned for it.

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::b64::b64url_encode;
use super::htu::{HtuError, expected_htu, normalize_htu};
use super::jwk::{EcPublicJwk, JwkError};
use super::jws::{ALG_ES256, CompactJws, JoseHeader};
use crate::error::ErrorCode;

pub const DPOP_TYP: &str = "dpop+jwt";
/// Oldest accepted `iat`, in seconds before now.
pub const DPOP_MAX_AGE_SECONDS: i64 = 60;
/// Newest accepted `iat`, in seconds after now (clock skew).
pub const DPOP_MAX_FUTURE_SECONDS: i64 = 5;
/// How long the broker must remember a `jti` (covers the whole iat window with margin).
pub const DPOP_JTI_REPLAY_WINDOW_SECONDS: u64 = 180;
/// Refused before any decoding; a real proof is about 600 bytes.
pub const MAX_DPOP_PROOF_BYTES: usize = 4 * 1024;
pub const MAX_DPOP_JTI_CHARS: usize = 128;

/// What a verified proof tells the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopClaims {
    pub jti: String,
    pub iat: i64,
    pub htm: String,
    /// Normalised.
    pub htu: String,
    /// Thumbprint of the proof key (equal to the expected one).
    pub jkt: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    #[error("DPoP proof larger than {MAX_DPOP_PROOF_BYTES} bytes")]
    HeaderTooLarge,
    #[error("DPoP proof is not a well-formed compact JWS")]
    Malformed,
    #[error("DPoP typ must be dpop+jwt")]
    TypInvalid,
    #[error("DPoP alg {0:?} is not allowed (ES256 only)")]
    AlgNotAllowed(String),
    #[error("DPoP header has a crit member")]
    CritUnsupported,
    #[error("DPoP header has no jwk")]
    JwkMissing,
    #[error("DPoP jwk carries private key material")]
    JwkPrivate,
    #[error("DPoP jwk is not a public EC P-256 key: {0}")]
    JwkInvalid(JwkError),
    #[error("DPoP key thumbprint does not match the bound key")]
    JktMismatch,
    #[error("DPoP signature does not verify")]
    SignatureInvalid,
    #[error("DPoP claim {0} missing or mistyped")]
    ClaimMissing(&'static str),
    #[error("DPoP jti is not an identifier of at most {MAX_DPOP_JTI_CHARS} safe characters")]
    JtiInvalid,
    #[error("DPoP htm does not match the request method")]
    HtmMismatch,
    #[error("DPoP htu does not match the request URI")]
    HtuMismatch,
    #[error("DPoP iat is older than {DPOP_MAX_AGE_SECONDS} s")]
    IatStale,
    #[error("DPoP iat is more than {DPOP_MAX_FUTURE_SECONDS} s in the future")]
    IatFuture,
    #[error("DPoP ath missing")]
    AthMissing,
    #[error("DPoP ath does not match the access token")]
    AthMismatch,
}

impl DpopError {
    /// Stable, per-variant reason sent as `deny_reason` and logged.
    pub fn deny_reason(&self) -> &'static str {
        match self {
            DpopError::HeaderTooLarge => "dpop_header_too_large",
            DpopError::Malformed => "dpop_malformed",
            DpopError::TypInvalid => "dpop_typ_invalid",
            DpopError::AlgNotAllowed(_) => "dpop_alg_not_allowed",
            DpopError::CritUnsupported => "dpop_crit_unsupported",
            DpopError::JwkMissing => "dpop_jwk_missing",
            DpopError::JwkPrivate => "dpop_jwk_private",
            DpopError::JwkInvalid(_) => "dpop_jwk_invalid",
            DpopError::JktMismatch => "dpop_jkt_mismatch",
            DpopError::SignatureInvalid => "dpop_signature_invalid",
            DpopError::ClaimMissing(_) => "dpop_claim_missing",
            DpopError::JtiInvalid => "dpop_jti_invalid",
            DpopError::HtmMismatch => "dpop_htm_mismatch",
            DpopError::HtuMismatch => "dpop_htu_mismatch",
            DpopError::IatStale => "dpop_iat_stale",
            DpopError::IatFuture => "dpop_iat_future",
            DpopError::AthMissing => "dpop_ath_missing",
            DpopError::AthMismatch => "dpop_ath_mismatch",
        }
    }

    /// Always `invalid_dpop` (401); the detail is in `deny_reason()`.
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode::InvalidDpop
    }

    /// `error_code()` as its wire string.
    pub fn code(&self) -> &'static str {
        self.error_code().as_str()
    }
}

#[derive(Deserialize)]
struct ProofClaims {
    jti: Option<String>,
    htm: Option<String>,
    htu: Option<String>,
    iat: Option<serde_json::Number>,
    ath: Option<String>,
}

/// `base64url(SHA-256(access_token))`, the `ath` a proof must carry.
pub fn access_token_hash(access_token: &str) -> String {
    b64url_encode(Sha256::digest(access_token.as_bytes()))
}

/// Verify a DPoP proof for one request.
///
/// `expected_htu` is the absolute URI the gate serves the request under
/// (`public_base_url` + path, see [`expected_htu`]); it is normalised here.
/// `access_token` is what follows `DPoP ` in `Authorization` (the lease, or an
/// operator's api key). `expected_jkt` is the thumbprint the token binds.
/// `now` is Unix seconds.
pub fn verify_dpop_proof(
    proof: &str,
    expected_htm: &str,
    expected_htu: &str,
    access_token: &str,
    expected_jkt: &str,
    now: i64,
) -> Result<DpopClaims, DpopError> {
    let wanted_htu = normalize_htu(expected_htu).map_err(|_| DpopError::HtuMismatch)?;
    verify_against_normalized_htu(proof, expected_htm, &wanted_htu, access_token, expected_jkt, now)
}

fn verify_against_normalized_htu(
    proof: &str,
    expected_htm: &str,
    wanted_htu: &str,
    access_token: &str,
    expected_jkt: &str,
    now: i64,
) -> Result<DpopClaims, DpopError> {
    if proof.len() > MAX_DPOP_PROOF_BYTES {
        return Err(DpopError::HeaderTooLarge);
    }
    let jws = CompactJws::split(proof).map_err(|_| DpopError::Malformed)?;
    let header: JoseHeader = jws.header().map_err(|_| DpopError::Malformed)?;
    if !header.typ.as_deref().is_some_and(|t| t.eq_ignore_ascii_case(DPOP_TYP)) {
        return Err(DpopError::TypInvalid);
    }
    if header.alg != ALG_ES256 {
        return Err(DpopError::AlgNotAllowed(header.alg));
    }
    if header.crit.is_some() {
        return Err(DpopError::CritUnsupported);
    }
    let (jwk, point) = match EcPublicJwk::from_value_with_point(header.jwk.as_ref().ok_or(DpopError::JwkMissing)?) {
        Ok(parsed) => parsed,
        Err(JwkError::PrivateKeyMaterial) => return Err(DpopError::JwkPrivate),
        Err(other) => return Err(DpopError::JwkInvalid(other)),
    };
    // Cheap binding check before the costly signature check.
    let jkt = jwk.thumbprint();
    if jkt != expected_jkt {
        return Err(DpopError::JktMismatch);
    }
    if !jws.verify_es256(&point) {
        return Err(DpopError::SignatureInvalid);
    }
    let claims: ProofClaims = jws.payload().map_err(|_| DpopError::Malformed)?;

    let jti = claims.jti.ok_or(DpopError::ClaimMissing("jti"))?;
    if !is_acceptable_jti(&jti) {
        return Err(DpopError::JtiInvalid);
    }
    let htm = claims.htm.ok_or(DpopError::ClaimMissing("htm"))?;
    if htm != expected_htm {
        return Err(DpopError::HtmMismatch);
    }
    let htu = claims.htu.ok_or(DpopError::ClaimMissing("htu"))?;
    // The normal form is a fixed point of normalisation, so an exact match
    // (what well-behaved clients send) needs no parse.
    if htu != wanted_htu && normalize_htu(&htu).ok().as_deref() != Some(wanted_htu) {
        return Err(DpopError::HtuMismatch);
    }
    let iat = numeric_date(claims.iat.as_ref()).ok_or(DpopError::ClaimMissing("iat"))?;
    if iat < now.saturating_sub(DPOP_MAX_AGE_SECONDS) {
        return Err(DpopError::IatStale);
    }
    if iat > now.saturating_add(DPOP_MAX_FUTURE_SECONDS) {
        return Err(DpopError::IatFuture);
    }
    let ath = claims.ath.ok_or(DpopError::AthMissing)?;
    if ath != access_token_hash(access_token) {
        return Err(DpopError::AthMismatch);
    }
    Ok(DpopClaims { jti, iat, htm, htu: wanted_htu.to_owned(), jkt })
}

/// RFC 7519 NumericDate: an integer or a fractional number of seconds.
fn numeric_date(value: Option<&serde_json::Number>) -> Option<i64> {
    let value = value?;
    if let Some(i) = value.as_i64() {
        return Some(i);
    }
    let f = value.as_f64()?;
    // The range check keeps the cast exact and rejects NaN/inf spellings.
    (f.is_finite() && f.abs() < 1e15).then(|| f.floor() as i64)
}

/// UUIDs and similar random identifiers: 1..=128 URL-safe characters. Other
/// characters are refused so a jti is always safe as a cache key and in logs.
fn is_acceptable_jti(jti: &str) -> bool {
    !jti.is_empty()
        && jti.len() <= MAX_DPOP_JTI_CHARS
        && jti.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

/// Per-gate DPoP checker: knows `public_base_url`, builds the expected `htu`
/// from the request path.
#[derive(Debug, Clone)]
pub struct DpopVerifier {
    public_base_url: String,
}

impl DpopVerifier {
    pub fn new(public_base_url: &str) -> Result<DpopVerifier, HtuError> {
        // Validate once so a bad config fails at start, not per request.
        expected_htu(public_base_url, "/")?;
        Ok(DpopVerifier { public_base_url: public_base_url.to_owned() })
    }

    pub fn expected_htu(&self, path: &str) -> Result<String, HtuError> {
        expected_htu(&self.public_base_url, path)
    }

    /// Verify a proof for `method` on `path` (the request target; any query is ignored).
    pub fn verify(
        &self,
        proof: &str,
        method: &str,
        path: &str,
        access_token: &str,
        expected_jkt: &str,
        now: i64,
    ) -> Result<DpopClaims, DpopError> {
        let htu = self.expected_htu(path).map_err(|_| DpopError::HtuMismatch)?;
        verify_against_normalized_htu(proof, method, &htu, access_token, expected_jkt, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jti_charset_and_length_are_bounded() {
        assert!(is_acceptable_jti("8f14e45f-ceea-467f-a0e6-3c1f6e2a7d4b"));
        assert!(!is_acceptable_jti(""));
        assert!(!is_acceptable_jti(&"a".repeat(129)));
        assert!(is_acceptable_jti(&"a".repeat(128)));
        assert!(!is_acceptable_jti("a b"));
        assert!(!is_acceptable_jti("a\nb"));
    }

    #[test]
    fn fractional_iat_is_floored() {
        let n: serde_json::Number = serde_json::from_str("1700000000.9").unwrap();
        assert_eq!(numeric_date(Some(&n)), Some(1_700_000_000));
        let n: serde_json::Number = serde_json::from_str("1e300").unwrap();
        assert_eq!(numeric_date(Some(&n)), None);
    }

    #[test]
    fn access_token_hash_is_rfc9449_example() {
        // RFC 9449 §7.1: the access token and its ath from the spec's example.
        let token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
        assert_eq!(access_token_hash(token), "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo");
    }
}
