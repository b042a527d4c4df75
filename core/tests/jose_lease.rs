//! Leases: what the front accepts on every request, and every forged,
//! expired or mis-issued lease it refuses.

mod jose_support;

use jose_support::*;
use latchgate_core::error::ErrorCode;
use latchgate_core::jose::{
    EcSigningJwk, JwkError, LEASE_MAX_TTL_SECONDS, LeaseError, LeaseJwks, LeaseVerifier, b64url_encode,
    lease::MAX_LEASE_BYTES,
};
use serde_json::{Value, json};

fn refused_with(verifier: &LeaseVerifier, lease: &str, now: i64, reason: &str) -> LeaseError {
    let err = verifier.verify(lease, now).unwrap_err();
    assert_eq!(err.deny_reason(), reason, "{err}");
    assert_eq!(err.error_code().http_status(), 401);
    err
}

#[test]
fn lease_from_the_signer_verifies_and_exposes_binding_scopes_and_epoch() {
    let issuer = Issuer::new();
    let agent = EcKey::generate();
    let lease = issuer.lease(&agent.jkt(), NOW);
    let claims = issuer.verifier().verify(&lease, NOW + 10).unwrap();
    assert_eq!(claims.sub, "agent-alice");
    assert_eq!(claims.cnf.jkt, agent.jkt());
    assert_eq!(claims.epoch, 7);
    assert_eq!(claims.sid, "sess-1");
    assert_eq!(claims.scope, "echo:run files:read");
    assert_eq!(claims.scopes, vec!["echo:run", "files:read"]);
    assert_eq!(claims.budgets.max_calls, Some(10));
    assert_eq!(claims.exp - claims.iat, 300);
    assert!(claims.has_scope("echo:run") && !claims.has_scope("echo"));
}

#[test]
fn expired_lease_is_refused_as_lease_expired() {
    let issuer = Issuer::new();
    let lease = issuer.lease("jkt", NOW);
    let err = refused_with(&issuer.verifier(), &lease, NOW + 300 + 5, "lease_expired");
    assert_eq!(err.error_code(), ErrorCode::LeaseExpired);
    assert_eq!(err.code(), "lease_expired");
    // Within the skew allowance it still holds.
    issuer.verifier().verify(&lease, NOW + 304).unwrap();
}

#[test]
fn lease_signed_by_an_unknown_key_is_refused() {
    let gate = Issuer::new();
    let rogue = Issuer::new();
    let lease = rogue.lease("jkt", NOW);
    let err = refused_with(&gate.verifier(), &lease, NOW, "lease_unknown_kid");
    assert_eq!(err.error_code(), ErrorCode::InvalidLease);
    assert_eq!(err.code(), "invalid_lease");
    // Same lease re-headed with the gate's kid: the signature gives it away.
    let claims = serde_json::to_value(rogue.claims("jkt", NOW)).unwrap();
    let forged = rogue.key.sign(&json!({"alg": "ES256", "typ": "JWT", "kid": gate.kid()}), &claims);
    refused_with(&gate.verifier(), &forged, NOW, "lease_signature_invalid");
}

#[test]
fn lease_without_kid_is_refused() {
    let issuer = Issuer::new();
    let claims = serde_json::to_value(issuer.claims("jkt", NOW)).unwrap();
    let lease = issuer.key.sign(&json!({"alg": "ES256", "typ": "JWT"}), &claims);
    refused_with(&issuer.verifier(), &lease, NOW, "lease_kid_missing");
}

#[test]
fn tampered_lease_payload_is_refused() {
    let issuer = Issuer::new();
    let lease = issuer.lease("jkt", NOW);
    let mut parts: Vec<String> = lease.split('.').map(str::to_owned).collect();
    let mut claims = serde_json::to_value(issuer.claims("jkt", NOW)).unwrap();
    claims["scopes"] = json!(["admin"]);
    claims["scope"] = "admin".into();
    parts[1] = b64url_encode(claims.to_string());
    refused_with(&issuer.verifier(), &parts.join("."), NOW, "lease_signature_invalid");
}

#[test]
fn lease_with_alg_none_or_hs256_is_refused() {
    let issuer = Issuer::new();
    let claims = serde_json::to_value(issuer.claims("jkt", NOW)).unwrap();
    let none = assemble(&json!({"alg": "none", "kid": issuer.kid()}), &claims, b"");
    refused_with(&issuer.verifier(), &none, NOW, "lease_alg_not_allowed");
    let point = issuer.key.jwk.uncompressed_point().unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(issuer.kid());
    let hs = jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(&point)).unwrap();
    refused_with(&issuer.verifier(), &hs, NOW, "lease_alg_not_allowed");
}

#[test]
fn dpop_proof_presented_as_a_lease_is_refused() {
    let issuer = Issuer::new();
    let claims = serde_json::to_value(issuer.claims("jkt", NOW)).unwrap();
    let lease = issuer.key.sign(&json!({"alg": "ES256", "typ": "dpop+jwt", "kid": issuer.kid()}), &claims);
    refused_with(&issuer.verifier(), &lease, NOW, "lease_typ_invalid");
}

fn signed_with(issuer: &Issuer, edit: impl FnOnce(&mut Value)) -> String {
    let mut claims = serde_json::to_value(issuer.claims("jkt", NOW)).unwrap();
    edit(&mut claims);
    issuer.sign_value(&claims)
}

#[test]
fn lease_for_another_issuer_or_audience_is_refused() {
    let issuer = Issuer::new();
    let v = issuer.verifier();
    refused_with(&v, &signed_with(&issuer, |c| c["iss"] = "someone-else".into()), NOW, "lease_iss_mismatch");
    refused_with(&v, &signed_with(&issuer, |c| c["aud"] = "other-api".into()), NOW, "lease_aud_mismatch");
    refused_with(&v, &signed_with(&issuer, |c| c["aud"] = json!(["a", "b"])), NOW, "lease_aud_mismatch");
    v.verify(&signed_with(&issuer, |c| c["aud"] = json!(["x", "latchgate"])), NOW).unwrap();
}

#[test]
fn lease_not_yet_valid_or_issued_in_the_future_is_refused() {
    let issuer = Issuer::new();
    let v = issuer.verifier();
    refused_with(&v, &signed_with(&issuer, |c| c["nbf"] = (NOW + 60).into()), NOW, "lease_not_yet_valid");
    refused_with(&v, &signed_with(&issuer, |c| c["iat"] = (NOW + 60).into()), NOW, "lease_iat_future");
}

#[test]
fn lease_living_longer_than_the_maximum_is_refused() {
    let issuer = Issuer::new();
    let lease = signed_with(&issuer, |c| c["exp"] = (NOW + LEASE_MAX_TTL_SECONDS as i64 + 1).into());
    refused_with(&issuer.verifier(), &lease, NOW, "lease_lifetime_too_long");
}

#[test]
fn lease_missing_a_required_claim_is_refused() {
    let issuer = Issuer::new();
    for claim in ["sub", "jti", "iat", "nbf", "exp", "scope", "scopes", "cnf", "sid", "epoch", "iss", "aud"] {
        let lease = signed_with(&issuer, |c| {
            c.as_object_mut().unwrap().remove(claim);
        });
        refused_with(&issuer.verifier(), &lease, NOW, "lease_claims_invalid");
    }
    let lease = signed_with(&issuer, |c| c["cnf"] = json!({}));
    refused_with(&issuer.verifier(), &lease, NOW, "lease_claims_invalid");
}

#[test]
fn lease_whose_scope_and_scopes_disagree_is_refused() {
    let issuer = Issuer::new();
    let lease = signed_with(&issuer, |c| c["scope"] = "echo:run files:read admin".into());
    refused_with(&issuer.verifier(), &lease, NOW, "lease_scope_inconsistent");
}

#[test]
fn oversized_lease_is_refused_before_parsing() {
    let issuer = Issuer::new();
    let lease = signed_with(&issuer, |c| c["padding"] = "A".repeat(MAX_LEASE_BYTES).into());
    refused_with(&issuer.verifier(), &lease, NOW, "lease_too_large");
}

#[test]
fn verifier_holds_several_keys_during_rotation() {
    let old = Issuer::new();
    let new = Issuer::new();
    let jwks: LeaseJwks =
        latchgate_core::jose::Jwks { keys: vec![EcSigningJwk::new(&new.key.jwk), EcSigningJwk::new(&old.key.jwk)] };
    let v = LeaseVerifier::from_jwks(&jwks).unwrap();
    v.verify(&old.lease("jkt", NOW), NOW).unwrap();
    v.verify(&new.lease("jkt", NOW), NOW).unwrap();
    assert_eq!(v.kids().count(), 2);
}

#[test]
fn jwks_entry_whose_kid_is_not_its_thumbprint_is_refused() {
    let issuer = Issuer::new();
    let mut entry = EcSigningJwk::new(&issuer.key.jwk);
    entry.kid = "chosen-by-attacker".into();
    let jwks: LeaseJwks = latchgate_core::jose::Jwks { keys: vec![entry] };
    assert_eq!(LeaseVerifier::from_jwks(&jwks).unwrap_err(), JwkError::KidMismatch);
}

#[test]
fn malformed_leases_are_refused() {
    let issuer = Issuer::new();
    for junk in ["", "abc", "a.b", "a.b.c", "a.b.c.d", "e30.e30.e30"] {
        refused_with(&issuer.verifier(), junk, NOW, "lease_malformed");
    }
}

// --- the verified-lease memory: it skips the signature check, never a refusal ---

#[test]
fn remembered_lease_is_refused_the_moment_it_expires() {
    let issuer = Issuer::new();
    let verifier = issuer.verifier();
    let lease = issuer.lease("jkt", NOW);
    verifier.verify(&lease, NOW).unwrap();
    verifier.verify(&lease, NOW + 100).unwrap();
    refused_with(&verifier, &lease, NOW + 300 + 5, "lease_expired");
    refused_with(&verifier, &lease, NOW + 10_000, "lease_expired");
}

#[test]
fn remembered_lease_is_still_refused_before_it_is_valid() {
    let issuer = Issuer::new();
    let verifier = issuer.verifier();
    let lease = issuer.lease("jkt", NOW);
    verifier.verify(&lease, NOW).unwrap();
    // The remembered claims are checked against the clock of each request.
    refused_with(&verifier, &lease, NOW - 60, "lease_not_yet_valid");
}

#[test]
fn a_tampered_copy_of_a_remembered_lease_is_verified_and_refused() {
    let issuer = Issuer::new();
    let verifier = issuer.verifier();
    let lease = issuer.lease("jkt", NOW);
    verifier.verify(&lease, NOW).unwrap();
    let mut parts: Vec<String> = lease.split('.').map(str::to_owned).collect();
    let mut claims = serde_json::to_value(issuer.claims("jkt", NOW)).unwrap();
    claims["sub"] = json!("agent-admin");
    parts[1] = b64url_encode(claims.to_string());
    refused_with(&verifier, &parts.join("."), NOW, "lease_signature_invalid");
    // A signature with a flipped byte is not the remembered lease either.
    let mut bytes = lease.clone().into_bytes();
    let last = bytes.len() - 2;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    refused_with(&verifier, &String::from_utf8(bytes).unwrap(), NOW, "lease_signature_invalid");
}

#[test]
fn a_verifier_for_rotated_keys_does_not_inherit_remembered_leases() {
    let old = Issuer::new();
    let new = Issuer::new();
    let both: LeaseJwks =
        latchgate_core::jose::Jwks { keys: vec![EcSigningJwk::new(&new.key.jwk), EcSigningJwk::new(&old.key.jwk)] };
    let during = LeaseVerifier::from_jwks(&both).unwrap();
    let lease = old.lease("jkt", NOW);
    during.verify(&lease, NOW).unwrap();
    // The old key retired: the verifier built from the new JWKS refuses it, and so does a clone.
    let after = new.verifier();
    refused_with(&after, &lease, NOW, "lease_unknown_kid");
    let copy = during.clone();
    copy.verify(&lease, NOW).unwrap();
}

#[test]
fn many_distinct_leases_never_make_a_refusal_pass() {
    let issuer = Issuer::new();
    let verifier = issuer.verifier();
    // More leases than the memory holds: old ones are dropped, all stay valid.
    let leases: Vec<String> = (0..4200).map(|n| issuer.lease(&format!("jkt-{n}"), NOW)).collect();
    for lease in &leases {
        verifier.verify(lease, NOW).unwrap();
    }
    verifier.verify(&leases[0], NOW + 1).unwrap();
    refused_with(&verifier, &leases[4199], NOW + 400, "lease_expired");
}
