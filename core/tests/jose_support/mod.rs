//! Fixtures shared by the `jose_*` tests: a gate-side lease issuer and an
//! agent-side DPoP key, both built on the gate's own signing helpers, plus a
//! JWS assembler that lets a test put anything it likes in a header.
#![allow(dead_code)]

use latchgate_core::jose::{
    EcPublicJwk, LeaseBudgets, LeaseClaims, LeaseParams, LeaseVerifier, access_token_hash, b64url_encode,
    es256_key_from_pkcs8, es256_public_jwk, generate_es256_pkcs8, sign_es256_jws,
};
use ring::signature::EcdsaKeyPair;
use serde_json::{Value, json};

pub const BASE_URL: &str = "http://localhost:3000";
pub const EXECUTE_PATH: &str = "/v1/actions/echo/execute";
pub const EXECUTE_HTU: &str = "http://localhost:3000/v1/actions/echo/execute";
pub const NOW: i64 = 1_800_000_000;

pub struct EcKey {
    pub pair: EcdsaKeyPair,
    pub jwk: EcPublicJwk,
}

impl EcKey {
    pub fn generate() -> EcKey {
        let pair = es256_key_from_pkcs8(&generate_es256_pkcs8().unwrap()).unwrap();
        let jwk = es256_public_jwk(&pair).unwrap();
        EcKey { pair, jwk }
    }

    pub fn jkt(&self) -> String {
        self.jwk.thumbprint()
    }

    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        sign_es256_jws(&header.to_string(), &claims.to_string(), &self.pair).unwrap()
    }
}

/// The signer side: one lease key and the verifier the front would build.
pub struct Issuer {
    pub key: EcKey,
}

impl Issuer {
    pub fn new() -> Issuer {
        Issuer { key: EcKey::generate() }
    }

    pub fn kid(&self) -> String {
        self.key.jkt()
    }

    pub fn verifier(&self) -> LeaseVerifier {
        let mut v = LeaseVerifier::default();
        v.add_key(&self.key.jwk).unwrap();
        v
    }

    pub fn claims(&self, jkt: &str, now: i64) -> LeaseClaims {
        LeaseClaims::new(
            LeaseParams {
                principal: "agent-alice".into(),
                scopes: vec!["echo:run".into(), "files:read".into()],
                dpop_jkt: jkt.into(),
                session_id: "sess-1".into(),
                epoch: 7,
                budgets: LeaseBudgets { max_calls: Some(10), max_cost_usd_cents: None },
                ttl_seconds: None,
            },
            now,
        )
        .unwrap()
    }

    pub fn sign_value(&self, claims: &Value) -> String {
        self.key.sign(&json!({"alg": "ES256", "typ": "JWT", "kid": self.kid()}), claims)
    }

    pub fn lease(&self, jkt: &str, now: i64) -> String {
        self.sign_value(&serde_json::to_value(self.claims(jkt, now)).unwrap())
    }
}

pub fn proof_header(key: &EcKey) -> Value {
    json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.jwk.to_value()})
}

pub fn proof_claims(lease: &str, htm: &str, htu: &str, iat: i64) -> Value {
    json!({
        "jti": uuid::Uuid::new_v4().to_string(),
        "htm": htm,
        "htu": htu,
        "iat": iat,
        "ath": access_token_hash(lease),
    })
}

/// A good proof for POST on the execute route.
pub fn proof(key: &EcKey, lease: &str, iat: i64) -> String {
    key.sign(&proof_header(key), &proof_claims(lease, "POST", EXECUTE_HTU, iat))
}

/// A JWS whose header and signature bytes are exactly what the test says.
pub fn assemble(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!("{}.{}.{}", b64url_encode(header.to_string()), b64url_encode(claims.to_string()), b64url_encode(signature))
}
