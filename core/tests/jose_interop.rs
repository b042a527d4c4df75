//! Interoperability: tokens built by an independent JOSE stack (the
//! `jsonwebtoken` crate on RustCrypto `p256`, and bare `p256` ECDSA with a
//! hand-assembled JWS) are accepted, and the gate's own leases verify there.
//! Also prints the measured cost of the two ES256 verifies per request.

mod jose_support;

use std::time::Instant;

use jose_support::*;
use latchgate_core::jose::{DpopVerifier, EcPublicJwk, LeaseVerifier, access_token_hash, verify_dpop_proof};
use p256::ecdsa::signature::Signer;
use p256::pkcs8::EncodePrivateKey;
use serde_json::{Value, json};

/// A P-256 key held by RustCrypto only: no `ring` anywhere near it.
struct IndependentKey {
    secret: p256::SecretKey,
}

impl IndependentKey {
    fn generate() -> Self {
        IndependentKey { secret: p256::SecretKey::random(&mut rand::rngs::OsRng) }
    }

    fn public_jwk_value(&self) -> Value {
        serde_json::from_str(&self.secret.public_key().to_jwk_string()).unwrap()
    }

    fn encoding_key(&self) -> jsonwebtoken::EncodingKey {
        jsonwebtoken::EncodingKey::from_ec_der(self.secret.to_pkcs8_der().unwrap().as_bytes())
    }
}

#[test]
fn proof_signed_by_jsonwebtoken_is_accepted() {
    let issuer = Issuer::new();
    let agent = IndependentKey::generate();
    let jkt = EcPublicJwk::from_value(&agent.public_jwk_value()).unwrap().thumbprint();
    let lease = issuer.lease(&jkt, NOW);

    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.typ = Some("dpop+jwt".into());
    header.jwk = Some(serde_json::from_value(agent.public_jwk_value()).unwrap());
    let claims = json!({
        "jti": uuid::Uuid::new_v4().to_string(),
        "htm": "POST",
        "htu": EXECUTE_HTU,
        "iat": NOW,
        "ath": independent_ath(&lease),
    });
    let proof = jsonwebtoken::encode(&header, &claims, &agent.encoding_key()).unwrap();

    let verified = verify_dpop_proof(&proof, "POST", EXECUTE_HTU, &lease, &jkt, NOW).unwrap();
    assert_eq!(verified.jkt, jkt);
    issuer.verifier().verify(&lease, NOW).unwrap();
}

#[test]
fn proof_hand_assembled_over_bare_p256_ecdsa_is_accepted() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let issuer = Issuer::new();
    let agent = IndependentKey::generate();
    let jwk = agent.public_jwk_value();
    let jkt = EcPublicJwk::from_value(&jwk).unwrap().thumbprint();
    let lease = issuer.lease(&jkt, NOW);

    // Members in a different order and with extra whitespace than ours emit.
    let header = format!("{{ \"jwk\": {jwk}, \"alg\": \"ES256\", \"typ\": \"dpop+jwt\" }}");
    let claims = format!(
        "{{\"iat\": {NOW}, \"ath\": \"{}\", \"htu\": \"{EXECUTE_HTU}\", \"htm\": \"POST\", \"jti\": \"{}\"}}",
        independent_ath(&lease),
        uuid::Uuid::new_v4()
    );
    let input = format!("{}.{}", b64.encode(header), b64.encode(claims));
    let signing_key = p256::ecdsa::SigningKey::from(&agent.secret);
    let signature: p256::ecdsa::Signature = signing_key.sign(input.as_bytes());
    let proof = format!("{input}.{}", b64.encode(signature.to_bytes()));

    DpopVerifier::new(BASE_URL).unwrap().verify(&proof, "POST", EXECUTE_PATH, &lease, &jkt, NOW).unwrap();
}

#[test]
fn lease_signed_by_jsonwebtoken_is_accepted() {
    let lease_key = IndependentKey::generate();
    let jwk = EcPublicJwk::from_value(&lease_key.public_jwk_value()).unwrap();
    let mut verifier = LeaseVerifier::default();
    let kid = verifier.add_key(&jwk).unwrap();

    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid);
    let claims = Issuer::new().claims("jkt-of-agent", NOW);
    let lease = jsonwebtoken::encode(&header, &claims, &lease_key.encoding_key()).unwrap();

    assert_eq!(verifier.verify(&lease, NOW).unwrap(), claims);
}

#[test]
fn gate_lease_and_proof_verify_under_jsonwebtoken() {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let issuer = Issuer::new();
    let agent = EcKey::generate();
    let lease = issuer.lease(&agent.jkt(), now);

    let key = jsonwebtoken::DecodingKey::from_ec_components(&issuer.key.jwk.x, &issuer.key.jwk.y).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["latchgate"]);
    validation.set_issuer(&["latchgate"]);
    let decoded = jsonwebtoken::decode::<Value>(&lease, &key, &validation).unwrap();
    assert_eq!(decoded.claims["cnf"]["jkt"], agent.jkt());

    let proof = proof(&agent, &lease, now);
    let key = jsonwebtoken::DecodingKey::from_ec_components(&agent.jwk.x, &agent.jwk.y).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    let decoded = jsonwebtoken::decode::<Value>(&proof, &key, &validation).unwrap();
    assert_eq!(decoded.claims["ath"], independent_ath(&lease));
    assert_eq!(decoded.header.typ.as_deref(), Some("dpop+jwt"));
}

/// `ath` computed without the gate's helper.
fn independent_ath(lease: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(lease.as_bytes()))
}

#[test]
fn gate_ath_matches_an_independent_computation() {
    assert_eq!(access_token_hash("abc.def.ghi"), independent_ath("abc.def.ghi"));
}

#[test]
fn es256_verify_cost_per_request_is_reported() {
    let issuer = Issuer::new();
    let agent = EcKey::generate();
    let lease = issuer.lease(&agent.jkt(), NOW);
    let proof = proof(&agent, &lease, NOW);
    let leases = issuer.verifier();
    let dpop = DpopVerifier::new(BASE_URL).unwrap();
    let rounds = 200u32;
    let start = Instant::now();
    for _ in 0..rounds {
        let claims = leases.verify(&lease, NOW).unwrap();
        dpop.verify(&proof, "POST", EXECUTE_PATH, &lease, &claims.cnf.jkt, NOW).unwrap();
    }
    let per_request = start.elapsed() / rounds;
    // The bare signature checks under the same load, to show what the rest costs.
    let point = issuer.key.jwk.uncompressed_point().unwrap();
    let jws = latchgate_core::jose::jws::CompactJws::split(&lease).unwrap();
    let start = Instant::now();
    for _ in 0..rounds {
        assert!(jws.verify_es256(&point));
    }
    let per_signature = start.elapsed() / rounds;
    println!(
        "lease + DPoP verification: {per_request:?} per request; one bare ES256 verify: {per_signature:?} ({rounds} rounds)"
    );
    assert!(per_request.as_millis() < 50, "verification unexpectedly slow: {per_request:?}");
}
