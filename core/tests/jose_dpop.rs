//! DPoP proofs (RFC 9449): the one accepted shape, and every way a forged,
//! replayed-elsewhere or sloppy proof is refused with its own `deny_reason`.

mod jose_support;

use jose_support::*;
use latchgate_core::error::ErrorCode;
use latchgate_core::jose::{DpopError, DpopVerifier, access_token_hash, b64url_encode, verify_dpop_proof};
use serde_json::json;

struct Setup {
    agent: EcKey,
    lease: String,
}

fn setup() -> Setup {
    let issuer = Issuer::new();
    let agent = EcKey::generate();
    let lease = issuer.lease(&agent.jkt(), NOW);
    Setup { agent, lease }
}

fn check(s: &Setup, proof: &str) -> Result<latchgate_core::jose::DpopClaims, DpopError> {
    verify_dpop_proof(proof, "POST", EXECUTE_HTU, &s.lease, &s.agent.jkt(), NOW)
}

fn refused_with(s: &Setup, proof: &str, reason: &str) {
    let err = check(s, proof).unwrap_err();
    assert_eq!(err.deny_reason(), reason, "{err}");
    assert_eq!(err.error_code(), ErrorCode::InvalidDpop);
    assert_eq!(err.error_code().http_status(), 401);
    assert_eq!(err.code(), "invalid_dpop");
}

#[test]
fn well_formed_proof_is_accepted_and_returns_jti_and_iat_for_replay_cache() {
    let s = setup();
    let claims = proof_claims(&s.lease, "POST", EXECUTE_HTU, NOW - 3);
    let proof = s.agent.sign(&proof_header(&s.agent), &claims);
    let verified = check(&s, &proof).unwrap();
    assert_eq!(verified.jti, claims["jti"].as_str().unwrap());
    assert_eq!(verified.iat, NOW - 3);
    assert_eq!(verified.jkt, s.agent.jkt());
    assert_eq!(verified.htu, EXECUTE_HTU);
}

#[test]
fn dpop_verifier_builds_htu_from_public_base_url_not_the_request() {
    let s = setup();
    let verifier = DpopVerifier::new(BASE_URL).unwrap();
    let proof = proof(&s.agent, &s.lease, NOW);
    verifier.verify(&proof, "POST", EXECUTE_PATH, &s.lease, &s.agent.jkt(), NOW).unwrap();
    verifier.verify(&proof, "POST", &format!("{EXECUTE_PATH}?trace=1"), &s.lease, &s.agent.jkt(), NOW).unwrap();
    let err = verifier.verify(&proof, "POST", "/v1/actions/other/execute", &s.lease, &s.agent.jkt(), NOW).unwrap_err();
    assert_eq!(err.deny_reason(), "dpop_htu_mismatch");
    let elsewhere = DpopVerifier::new("https://gate.example").unwrap();
    let err = elsewhere.verify(&proof, "POST", EXECUTE_PATH, &s.lease, &s.agent.jkt(), NOW).unwrap_err();
    assert_eq!(err.deny_reason(), "dpop_htu_mismatch");
}

#[test]
fn proof_for_another_method_is_refused() {
    let s = setup();
    let proof = s.agent.sign(&proof_header(&s.agent), &proof_claims(&s.lease, "GET", EXECUTE_HTU, NOW));
    refused_with(&s, &proof, "dpop_htm_mismatch");
    let proof = s.agent.sign(&proof_header(&s.agent), &proof_claims(&s.lease, "post", EXECUTE_HTU, NOW));
    refused_with(&s, &proof, "dpop_htm_mismatch");
}

#[test]
fn proof_for_another_uri_is_refused() {
    let s = setup();
    for htu in [
        "http://localhost:3000/v1/actions/other/execute",
        "https://localhost:3000/v1/actions/echo/execute",
        "http://localhost:3001/v1/actions/echo/execute",
        "http://evil.example:3000/v1/actions/echo/execute",
        "http://localhost:3000/v1/actions/echo/execute/",
        "/v1/actions/echo/execute",
    ] {
        let proof = s.agent.sign(&proof_header(&s.agent), &proof_claims(&s.lease, "POST", htu, NOW));
        refused_with(&s, &proof, "dpop_htu_mismatch");
    }
}

#[test]
fn proof_htu_in_an_equivalent_spelling_is_accepted() {
    let s = setup();
    for htu in [
        "HTTP://LocalHost:3000/v1/actions/echo/execute",
        "http://localhost:3000/v1/actions/echo/execute?x=1#f",
        "http://localhost:3000/v1/actions/./echo/execute",
    ] {
        let proof = s.agent.sign(&proof_header(&s.agent), &proof_claims(&s.lease, "POST", htu, NOW));
        check(&s, &proof).unwrap_or_else(|e| panic!("{htu}: {e}"));
    }
}

#[test]
fn stale_proof_is_refused_and_the_window_edge_is_accepted() {
    let s = setup();
    refused_with(&s, &proof(&s.agent, &s.lease, NOW - 61), "dpop_iat_stale");
    refused_with(&s, &proof(&s.agent, &s.lease, NOW - 3600), "dpop_iat_stale");
    check(&s, &proof(&s.agent, &s.lease, NOW - 60)).unwrap();
}

#[test]
fn future_proof_is_refused_and_small_skew_is_accepted() {
    let s = setup();
    refused_with(&s, &proof(&s.agent, &s.lease, NOW + 6), "dpop_iat_future");
    check(&s, &proof(&s.agent, &s.lease, NOW + 5)).unwrap();
}

#[test]
fn proof_made_for_another_lease_is_refused() {
    let s = setup();
    let mut claims = proof_claims(&s.lease, "POST", EXECUTE_HTU, NOW);
    claims["ath"] = access_token_hash("some-other-lease").into();
    refused_with(&s, &s.agent.sign(&proof_header(&s.agent), &claims), "dpop_ath_mismatch");
}

#[test]
fn proof_without_ath_is_refused() {
    let s = setup();
    let mut claims = proof_claims(&s.lease, "POST", EXECUTE_HTU, NOW);
    claims.as_object_mut().unwrap().remove("ath");
    refused_with(&s, &s.agent.sign(&proof_header(&s.agent), &claims), "dpop_ath_missing");
}

#[test]
fn proof_by_a_key_other_than_the_leased_one_is_refused() {
    let s = setup();
    let thief = EcKey::generate();
    refused_with(&s, &proof(&thief, &s.lease, NOW), "dpop_jkt_mismatch");
}

#[test]
fn header_jwk_swapped_for_the_leased_key_fails_the_signature() {
    // The thief signs with its own key but claims the leased public key.
    let s = setup();
    let thief = EcKey::generate();
    let forged = thief.sign(&proof_header(&s.agent), &proof_claims(&s.lease, "POST", EXECUTE_HTU, NOW));
    refused_with(&s, &forged, "dpop_signature_invalid");
}

#[test]
fn unsigned_alg_none_proof_is_refused() {
    let s = setup();
    let mut header = proof_header(&s.agent);
    header["alg"] = "none".into();
    let proof = assemble(&header, &proof_claims(&s.lease, "POST", EXECUTE_HTU, NOW), b"");
    refused_with(&s, &proof, "dpop_alg_not_allowed");
    let proof = proof.trim_end_matches('.').to_owned();
    refused_with(&s, &proof, "dpop_malformed");
}

#[test]
fn hs256_proof_keyed_with_the_public_key_is_refused() {
    let s = setup();
    let claims = proof_claims(&s.lease, "POST", EXECUTE_HTU, NOW);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some("dpop+jwt".into());
    header.jwk = Some(serde_json::from_value(s.agent.jwk.to_value()).unwrap());
    // Every public spelling of the key an attacker could use as an HMAC secret.
    let point = s.agent.jwk.uncompressed_point().unwrap();
    let jwk_text = s.agent.jwk.to_value().to_string();
    for secret in [&point[..], jwk_text.as_bytes(), s.agent.jwk.x.as_bytes()] {
        let proof = jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(secret)).unwrap();
        refused_with(&s, &proof, "dpop_alg_not_allowed");
    }
}

#[test]
fn any_alg_other_than_es256_is_refused() {
    let s = setup();
    let claims = proof_claims(&s.lease, "POST", EXECUTE_HTU, NOW);
    for alg in ["RS256", "PS256", "ES384", "ES512", "EdDSA", "es256", "ES256 ", ""] {
        let mut header = proof_header(&s.agent);
        header["alg"] = alg.into();
        // A genuine ES256 signature over the altered header: only alg is wrong.
        refused_with(&s, &s.agent.sign(&header, &claims), "dpop_alg_not_allowed");
    }
}

#[test]
fn proof_with_wrong_or_missing_typ_is_refused() {
    let s = setup();
    let claims = proof_claims(&s.lease, "POST", EXECUTE_HTU, NOW);
    for typ in [json!("JWT"), json!("at+jwt"), json!(null)] {
        let mut header = proof_header(&s.agent);
        header["typ"] = typ;
        refused_with(&s, &s.agent.sign(&header, &claims), "dpop_typ_invalid");
    }
    let mut header = proof_header(&s.agent);
    header.as_object_mut().unwrap().remove("typ");
    refused_with(&s, &s.agent.sign(&header, &claims), "dpop_typ_invalid");
}

#[test]
fn proof_jwk_with_private_key_is_refused() {
    let s = setup();
    let mut header = proof_header(&s.agent);
    header["jwk"]["d"] = b64url_encode([1u8; 32]).into();
    let proof = s.agent.sign(&header, &proof_claims(&s.lease, "POST", EXECUTE_HTU, NOW));
    refused_with(&s, &proof, "dpop_jwk_private");
}

#[test]
fn proof_without_jwk_or_with_non_p256_jwk_is_refused() {
    let s = setup();
    let claims = proof_claims(&s.lease, "POST", EXECUTE_HTU, NOW);
    let mut header = proof_header(&s.agent);
    header.as_object_mut().unwrap().remove("jwk");
    refused_with(&s, &s.agent.sign(&header, &claims), "dpop_jwk_missing");
    let mut header = proof_header(&s.agent);
    header["jwk"] = json!({"kty": "oct", "k": "c2VjcmV0"});
    refused_with(&s, &s.agent.sign(&header, &claims), "dpop_jwk_invalid");
    let mut header = proof_header(&s.agent);
    header["jwk"]["x"] = b64url_encode([0u8; 32]).into();
    refused_with(&s, &s.agent.sign(&header, &claims), "dpop_jwk_invalid");
}

#[test]
fn tampered_proof_payload_is_refused() {
    let s = setup();
    let good = proof(&s.agent, &s.lease, NOW);
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let mut claims = proof_claims(&s.lease, "POST", EXECUTE_HTU, NOW);
    claims["jti"] = "attacker-chosen-jti".into();
    parts[1] = b64url_encode(claims.to_string());
    refused_with(&s, &parts.join("."), "dpop_signature_invalid");
}

#[test]
fn der_encoded_or_truncated_signature_is_refused() {
    let s = setup();
    let good = proof(&s.agent, &s.lease, NOW);
    let (input, _) = good.rsplit_once('.').unwrap();
    refused_with(&s, &format!("{input}.{}", b64url_encode([0x30u8; 70])), "dpop_signature_invalid");
    refused_with(&s, &format!("{input}.{}", b64url_encode([7u8; 63])), "dpop_signature_invalid");
}

#[test]
fn oversized_proof_is_refused_before_parsing() {
    let s = setup();
    let mut header = proof_header(&s.agent);
    header["padding"] = "A".repeat(5000).into();
    let proof = s.agent.sign(&header, &proof_claims(&s.lease, "POST", EXECUTE_HTU, NOW));
    refused_with(&s, &proof, "dpop_header_too_large");
    refused_with(&s, &"x".repeat(64 * 1024), "dpop_header_too_large");
}

#[test]
fn proof_with_critical_extension_is_refused() {
    let s = setup();
    let mut header = proof_header(&s.agent);
    header["crit"] = json!(["exp"]);
    refused_with(
        &s,
        &s.agent.sign(&header, &proof_claims(&s.lease, "POST", EXECUTE_HTU, NOW)),
        "dpop_crit_unsupported",
    );
}

#[test]
fn proof_without_usable_jti_is_refused() {
    let s = setup();
    for jti in [json!(null), json!(""), json!("a".repeat(129)), json!("has space"), json!(42)] {
        let mut claims = proof_claims(&s.lease, "POST", EXECUTE_HTU, NOW);
        claims["jti"] = jti.clone();
        let err = check(&s, &s.agent.sign(&proof_header(&s.agent), &claims)).unwrap_err();
        assert!(
            matches!(err.deny_reason(), "dpop_jti_invalid" | "dpop_claim_missing" | "dpop_malformed"),
            "{jti}: {err}"
        );
    }
    let mut claims = proof_claims(&s.lease, "POST", EXECUTE_HTU, NOW);
    claims.as_object_mut().unwrap().remove("jti");
    refused_with(&s, &s.agent.sign(&proof_header(&s.agent), &claims), "dpop_claim_missing");
}

#[test]
fn garbage_is_refused_as_malformed() {
    let s = setup();
    for junk in ["", "a", "a.b", "a.b.c", "e30.e30.", "e30=.e30.AA", "....", "eyJ.eyJ.eyJ"] {
        refused_with(&s, junk, "dpop_malformed");
    }
}
