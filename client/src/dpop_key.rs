//! The agent's DPoP key (P-256) and RFC 9449 proofs signed with it.

use latchgate_core::jose::{
    EcPublicJwk, EcdsaKeyPair, access_token_hash, es256_key_from_pkcs8, es256_public_jwk, generate_es256_pkcs8,
    sign_es256_jws,
};
use serde_json::json;

use crate::error::ClientError;

pub struct DpopKey {
    pair: EcdsaKeyPair,
    jwk: EcPublicJwk,
    jkt: String,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopKey").field("jkt", &self.jkt).finish_non_exhaustive()
    }
}

impl DpopKey {
    /// A fresh random key.
    pub fn generate() -> Result<DpopKey, ClientError> {
        let pkcs8 = generate_es256_pkcs8().map_err(|e| ClientError::Key(e.to_string()))?;
        DpopKey::from_pkcs8(&pkcs8)
    }

    /// A key kept by the caller (PKCS#8 DER), e.g. an operator's DPoP key.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<DpopKey, ClientError> {
        let pair = es256_key_from_pkcs8(pkcs8).map_err(|e| ClientError::Key(e.to_string()))?;
        let jwk = es256_public_jwk(&pair).map_err(|e| ClientError::Key(e.to_string()))?;
        let jkt = jwk.thumbprint();
        Ok(DpopKey { pair, jwk, jkt })
    }

    /// The public JWK sent as `dpop_jwk` when asking for a lease.
    pub fn public_jwk(&self) -> &EcPublicJwk {
        &self.jwk
    }

    /// RFC 7638 thumbprint; a lease's `cnf.jkt` must equal it.
    pub fn thumbprint(&self) -> &str {
        &self.jkt
    }

    /// A proof for one request, issued now with a fresh UUID `jti`.
    /// `access_token` (the lease, or an operator api key) sets `ath`.
    pub fn proof(&self, htm: &str, htu: &str, access_token: Option<&str>) -> Result<String, ClientError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        self.proof_at(htm, htu, access_token, now, &uuid::Uuid::new_v4().to_string())
    }

    /// Same as [`DpopKey::proof`] with a chosen `iat` and `jti` (tests, replays).
    pub fn proof_at(
        &self,
        htm: &str,
        htu: &str,
        access_token: Option<&str>,
        iat: i64,
        jti: &str,
    ) -> Result<String, ClientError> {
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk.to_value()});
        let mut claims = json!({"jti": jti, "htm": htm, "htu": htu, "iat": iat});
        if let Some(token) = access_token {
            claims["ath"] = access_token_hash(token).into();
        }
        sign_es256_jws(&header.to_string(), &claims.to_string(), &self.pair)
            .map_err(|e| ClientError::Key(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchgate_core::jose::verify_dpop_proof;

    #[test]
    fn proof_verifies_under_the_gate_verifier_and_binds_the_token() {
        let key = DpopKey::generate().unwrap();
        let htu = "http://localhost:3000/v1/actions/echo/execute";
        let proof = key.proof("POST", htu, Some("lease-jwt")).unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = verify_dpop_proof(&proof, "POST", htu, "lease-jwt", key.thumbprint(), now).unwrap();
        assert_eq!(claims.jkt, key.thumbprint());
        let err = verify_dpop_proof(&proof, "POST", htu, "other-lease", key.thumbprint(), now).unwrap_err();
        assert_eq!(err.deny_reason(), "dpop_ath_mismatch");
    }

    #[test]
    fn every_proof_has_a_fresh_jti() {
        let key = DpopKey::generate().unwrap();
        let a = key.proof("GET", "http://localhost:3000/x", None).unwrap();
        let b = key.proof("GET", "http://localhost:3000/x", None).unwrap();
        assert_ne!(a.split('.').nth(1), b.split('.').nth(1));
    }

    #[test]
    fn keys_reloaded_from_pkcs8_keep_their_thumbprint() {
        let pkcs8 = generate_es256_pkcs8().unwrap();
        let a = DpopKey::from_pkcs8(&pkcs8).unwrap();
        let b = DpopKey::from_pkcs8(&pkcs8).unwrap();
        assert_eq!(a.thumbprint(), b.thumbprint());
        assert_ne!(a.thumbprint(), DpopKey::generate().unwrap().thumbprint());
    }
}
