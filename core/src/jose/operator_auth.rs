//! Authentication of one operator request on the admin socket:
//! `Authorization: DPoP <api_key>` plus a `DPoP` proof whose key thumbprint is
//! the `dpop_jkt` bound to that api key in `[operator_credentials.NAME]`, and
//! whose `ath` is the hash of the api key. The front runs it to refuse early;
//! the broker runs it again (it never trusts the front's verdict) and then
//! records the proof's `jti` for single use.
//!
//! The api key is compared in constant time against every configured key, so
//! neither the position of a match nor the length of a common prefix shows in
//! the timing.

use super::{AuthHeaders, DpopClaims, DpopVerifier, dpop_access_token};
use crate::config::OperatorCredential;
use crate::error::{ApiError, ErrorCode};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use subtle::ConstantTimeEq;

/// What a successful operator check establishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorAuthenticated {
    /// The credential's name (`[operator_credentials.NAME]`).
    pub operator: String,
    /// The thumbprint the proof was bound to (the credential's `dpop_jkt`).
    pub jkt: String,
    pub proof: DpopClaims,
}

fn refused(deny_reason: &str, remediation: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidOperatorToken).with_deny_reason(deny_reason).with_remediation(remediation)
}

/// The credential whose api key equals `token`, found without early exit.
fn find_credential<'a>(
    credentials: &'a BTreeMap<String, OperatorCredential>,
    token: &str,
) -> Option<(&'a String, &'a OperatorCredential)> {
    let wanted = Sha256::digest(token.as_bytes());
    let mut found = None;
    for (name, credential) in credentials {
        // Hashing first gives equal-length inputs; an empty key never matches.
        let candidate = Sha256::digest(credential.api_key.as_bytes());
        let equal: bool = candidate.ct_eq(&wanted).into();
        if equal && !credential.api_key.is_empty() && found.is_none() {
            found = Some((name, credential));
        }
    }
    found
}

/// Verify an operator's api key and proof for `method` on `path`.
pub fn authenticate_operator(
    credentials: &BTreeMap<String, OperatorCredential>,
    dpop: &DpopVerifier,
    headers: AuthHeaders<'_>,
    method: &str,
    path: &str,
    now: i64,
) -> Result<OperatorAuthenticated, ApiError> {
    let (Some(authorization), Some(proof)) = (headers.authorization, headers.dpop) else {
        let missing = if headers.authorization.is_none() { "authorization_missing" } else { "dpop_missing" };
        return Err(ApiError::new(ErrorCode::MissingAuthHeader)
            .with_deny_reason(missing)
            .with_remediation("send `Authorization: DPoP <api_key>` with a `DPoP` proof signed by the operator key"));
    };
    let token = dpop_access_token(authorization).ok_or_else(|| {
        ApiError::new(ErrorCode::MissingAuthHeader)
            .with_deny_reason("authorization_not_dpop")
            .with_remediation("send `Authorization: DPoP <api_key>` with a `DPoP` proof header")
    })?;
    let (name, credential) = find_credential(credentials, token).ok_or_else(|| {
        refused("operator_key_unknown", "use an api_key from [operator_credentials] (latchgate config add-operator)")
    })?;
    // Fail closed: an api key bound to no DPoP key is never enough on its own.
    let jkt = credential.dpop_jkt.as_deref().filter(|j| !j.is_empty()).ok_or_else(|| {
        refused(
            "operator_key_unbound",
            "this credential has no dpop_jkt; recreate it with latchgate config add-operator",
        )
    })?;
    let proof = dpop
        .verify(proof, method, path, token, jkt, now)
        .map_err(|e| ApiError::new(e.error_code()).with_deny_reason(e.deny_reason()))?;
    Ok(OperatorAuthenticated { operator: name.clone(), jkt: jkt.to_owned(), proof })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::{
        access_token_hash, es256_key_from_pkcs8, es256_public_jwk, generate_es256_pkcs8, sign_es256_jws,
    };

    const BASE: &str = "http://localhost:3000";

    struct Key {
        pair: ring::signature::EcdsaKeyPair,
        jwk: serde_json::Value,
        jkt: String,
    }

    fn key() -> Key {
        let pair = es256_key_from_pkcs8(&generate_es256_pkcs8().unwrap()).unwrap();
        let jwk = es256_public_jwk(&pair).unwrap();
        Key { jkt: jwk.thumbprint(), jwk: jwk.to_value(), pair }
    }

    fn proof(key: &Key, method: &str, path: &str, token: &str, now: i64) -> String {
        let header = serde_json::json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.jwk});
        let claims = serde_json::json!({
            "jti": uuid::Uuid::new_v4().to_string(), "htm": method, "htu": format!("{BASE}{path}"),
            "iat": now, "ath": access_token_hash(token),
        });
        sign_es256_jws(&header.to_string(), &claims.to_string(), &key.pair).unwrap()
    }

    fn credentials(entries: &[(&str, &str, Option<&str>)]) -> BTreeMap<String, OperatorCredential> {
        entries
            .iter()
            .map(|(name, api_key, jkt)| {
                ((*name).into(), OperatorCredential { api_key: (*api_key).into(), dpop_jkt: jkt.map(Into::into) })
            })
            .collect()
    }

    fn check(
        creds: &BTreeMap<String, OperatorCredential>,
        authorization: Option<&str>,
        dpop: Option<&str>,
        now: i64,
    ) -> Result<OperatorAuthenticated, ApiError> {
        let verifier = DpopVerifier::new(BASE).unwrap();
        authenticate_operator(creds, &verifier, AuthHeaders { authorization, dpop }, "GET", "/v1/admin/status", now)
    }

    #[test]
    fn bound_key_with_a_matching_proof_names_the_operator() {
        let (alice, bob) = (key(), key());
        let creds = credentials(&[("alice", "ak-alice", Some(&alice.jkt)), ("bob", "ak-bob", Some(&bob.jkt))]);
        let p = proof(&bob, "GET", "/v1/admin/status", "ak-bob", 1000);
        let ok = check(&creds, Some("DPoP ak-bob"), Some(&p), 1000).unwrap();
        assert_eq!((ok.operator.as_str(), ok.jkt.as_str()), ("bob", bob.jkt.as_str()));
    }

    #[test]
    fn another_operators_proof_key_is_refused() {
        let (alice, bob) = (key(), key());
        let creds = credentials(&[("alice", "ak-alice", Some(&alice.jkt)), ("bob", "ak-bob", Some(&bob.jkt))]);
        // Alice's api key with Bob's DPoP key.
        let p = proof(&bob, "GET", "/v1/admin/status", "ak-alice", 1000);
        let e = check(&creds, Some("DPoP ak-alice"), Some(&p), 1000).unwrap_err();
        assert_eq!((e.code, e.deny_reason.as_deref()), (ErrorCode::InvalidDpop, Some("dpop_jkt_mismatch")));
    }

    #[test]
    fn unknown_or_unbound_keys_and_missing_headers_are_refused() {
        let alice = key();
        let creds = credentials(&[("alice", "ak-alice", Some(&alice.jkt)), ("legacy", "ak-legacy", None)]);
        let p = proof(&alice, "GET", "/v1/admin/status", "ak-wrong", 1000);
        let e = check(&creds, Some("DPoP ak-wrong"), Some(&p), 1000).unwrap_err();
        assert_eq!((e.code, e.deny_reason.as_deref()), (ErrorCode::InvalidOperatorToken, Some("operator_key_unknown")));
        let p = proof(&alice, "GET", "/v1/admin/status", "ak-legacy", 1000);
        let e = check(&creds, Some("DPoP ak-legacy"), Some(&p), 1000).unwrap_err();
        assert_eq!(e.deny_reason.as_deref(), Some("operator_key_unbound"));
        let e = check(&creds, Some("DPoP ak-alice"), None, 1000).unwrap_err();
        assert_eq!((e.code, e.deny_reason.as_deref()), (ErrorCode::MissingAuthHeader, Some("dpop_missing")));
        let e = check(&creds, Some("Bearer ak-alice"), Some(&p), 1000).unwrap_err();
        assert_eq!(e.deny_reason.as_deref(), Some("authorization_not_dpop"));
    }

    #[test]
    fn proof_must_carry_the_api_key_hash_and_the_route() {
        let alice = key();
        let creds = credentials(&[("alice", "ak-alice", Some(&alice.jkt))]);
        let p = proof(&alice, "GET", "/v1/admin/status", "something-else", 1000);
        let e = check(&creds, Some("DPoP ak-alice"), Some(&p), 1000).unwrap_err();
        assert_eq!(e.deny_reason.as_deref(), Some("dpop_ath_mismatch"));
        let p = proof(&alice, "GET", "/v1/admin/drain", "ak-alice", 1000);
        let e = check(&creds, Some("DPoP ak-alice"), Some(&p), 1000).unwrap_err();
        assert_eq!(e.deny_reason.as_deref(), Some("dpop_htu_mismatch"));
    }

    #[test]
    fn empty_api_key_never_matches() {
        let alice = key();
        let creds = credentials(&[("blank", "", Some(&alice.jkt))]);
        assert!(find_credential(&creds, "").is_none());
    }
}
