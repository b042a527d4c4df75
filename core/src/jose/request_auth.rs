//! Authentication of one agent request: `Authorization: DPoP <lease>` plus a
//! `DPoP: <proof>` header. The front runs it to refuse early (before any IPC);
//! the broker runs the very same check again because it never trusts a
//! lower-privileged peer's word about who is calling.

use super::{DpopClaims, DpopVerifier, LeaseClaims, LeaseVerifier};
use crate::error::{ApiError, ErrorCode};

/// What a successful check establishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub lease: LeaseClaims,
    pub proof: DpopClaims,
}

/// The two headers as received (`None` = absent).
#[derive(Debug, Clone, Copy)]
pub struct AuthHeaders<'a> {
    pub authorization: Option<&'a str>,
    pub dpop: Option<&'a str>,
}

/// The lease from `Authorization: DPoP <lease>`; the scheme is case-insensitive (RFC 9110 §11.1).
pub fn dpop_access_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    let token = token.trim_start();
    (scheme.eq_ignore_ascii_case("DPoP") && !token.is_empty() && !token.contains(' ')).then_some(token)
}

/// Verify lease then proof for `method` on `path`. Each failure is the wire
/// error with its own `deny_reason`.
pub fn authenticate(
    leases: &LeaseVerifier,
    dpop: &DpopVerifier,
    headers: AuthHeaders<'_>,
    method: &str,
    path: &str,
    now: i64,
) -> Result<Authenticated, ApiError> {
    let (Some(authorization), Some(proof)) = (headers.authorization, headers.dpop) else {
        let missing = if headers.authorization.is_none() { "authorization_missing" } else { "dpop_missing" };
        return Err(ApiError::new(ErrorCode::MissingAuthHeader).with_deny_reason(missing));
    };
    let token = dpop_access_token(authorization).ok_or_else(|| {
        ApiError::new(ErrorCode::MissingAuthHeader)
            .with_deny_reason("authorization_not_dpop")
            .with_remediation("send `Authorization: DPoP <lease_jwt>` with a `DPoP` proof header")
    })?;
    let lease =
        leases.verify(token, now).map_err(|e| ApiError::new(e.error_code()).with_deny_reason(e.deny_reason()))?;
    let proof = dpop
        .verify(proof, method, path, token, &lease.cnf.jkt, now)
        .map_err(|e| ApiError::new(e.error_code()).with_deny_reason(e.deny_reason()))?;
    Ok(Authenticated { lease, proof })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpop_scheme_is_case_insensitive_and_bearer_is_not_dpop() {
        assert_eq!(dpop_access_token("DPoP abc"), Some("abc"));
        assert_eq!(dpop_access_token("dpop  abc"), Some("abc"));
        assert_eq!(dpop_access_token("Bearer abc"), None);
        assert_eq!(dpop_access_token("DPoP"), None);
        assert_eq!(dpop_access_token("DPoP a b"), None);
    }

    #[test]
    fn missing_headers_are_missing_auth_header() {
        let leases = LeaseVerifier::default();
        let dpop = DpopVerifier::new("http://localhost:3000").unwrap();
        let none = AuthHeaders { authorization: None, dpop: None };
        let e = authenticate(&leases, &dpop, none, "GET", "/x", 0).unwrap_err();
        assert_eq!((e.code, e.deny_reason.as_deref()), (ErrorCode::MissingAuthHeader, Some("authorization_missing")));
        let no_proof = AuthHeaders { authorization: Some("DPoP x"), dpop: None };
        let e = authenticate(&leases, &dpop, no_proof, "GET", "/x", 0).unwrap_err();
        assert_eq!(e.deny_reason.as_deref(), Some("dpop_missing"));
        let bearer = AuthHeaders { authorization: Some("Bearer x"), dpop: Some("p") };
        let e = authenticate(&leases, &dpop, bearer, "GET", "/x", 0).unwrap_err();
        assert_eq!(e.deny_reason.as_deref(), Some("authorization_not_dpop"));
        let unknown = AuthHeaders { authorization: Some("DPoP a.b.c"), dpop: Some("p") };
        let e = authenticate(&leases, &dpop, unknown, "GET", "/x", 0).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidLease);
    }
}
