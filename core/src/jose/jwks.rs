//! JWKS documents: `/.well-known/jwks.json` (lease keys, ES256) and the
//! receipt-key history (`/v1/receipt-keys`, Ed25519).

use serde::{Deserialize, Serialize};

use super::b64::{b64url_decode, b64url_encode};
use super::jwk::{EcPublicJwk, JwkError, ed25519_kid};

/// A lease verification key as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcSigningJwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub y: String,
    pub kid: String,
    #[serde(rename = "use")]
    pub use_: String,
    pub alg: String,
}

impl EcSigningJwk {
    /// Publish `jwk` with its thumbprint as `kid`.
    pub fn new(jwk: &EcPublicJwk) -> EcSigningJwk {
        EcSigningJwk {
            kty: jwk.kty.clone(),
            crv: jwk.crv.clone(),
            x: jwk.x.clone(),
            y: jwk.y.clone(),
            kid: jwk.thumbprint(),
            use_: "sig".into(),
            alg: "ES256".into(),
        }
    }

    /// The validated public key (kty, crv, coordinates, on-curve).
    pub fn public_jwk(&self) -> Result<EcPublicJwk, JwkError> {
        if self.alg != "ES256" {
            return Err(JwkError::Malformed);
        }
        EcPublicJwk::from_value(&serde_json::json!({"kty": self.kty, "crv": self.crv, "x": self.x, "y": self.y}))
    }
}

/// An Ed25519 verification key (grant or receipt key) as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OkpSigningJwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub kid: String,
    #[serde(rename = "use")]
    pub use_: String,
    pub alg: String,
}

impl OkpSigningJwk {
    pub fn new(public_key: &[u8; 32]) -> OkpSigningJwk {
        OkpSigningJwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: b64url_encode(public_key),
            kid: ed25519_kid(public_key),
            use_: "sig".into(),
            alg: "EdDSA".into(),
        }
    }

    /// The raw public key, after checking type, curve, length and that `kid`
    /// is the key's own id.
    pub fn public_key(&self) -> Result<[u8; 32], JwkError> {
        if self.kty != "OKP" {
            return Err(JwkError::WrongKty);
        }
        if self.crv != "Ed25519" {
            return Err(JwkError::WrongCurve);
        }
        let raw: [u8; 32] =
            b64url_decode(&self.x).ok().and_then(|b| b.try_into().ok()).ok_or(JwkError::BadCoordinate("x"))?;
        if ed25519_kid(&raw) != self.kid {
            return Err(JwkError::KidMismatch);
        }
        Ok(raw)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks<K> {
    pub keys: Vec<K>,
}

impl<K> Default for Jwks<K> {
    fn default() -> Self {
        Jwks { keys: Vec::new() }
    }
}

/// `GET /.well-known/jwks.json`.
pub type LeaseJwks = Jwks<EcSigningJwk>;
/// `GET /v1/receipt-keys`: every receipt key ever used, current first.
pub type ReceiptJwks = Jwks<OkpSigningJwk>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn okp_jwk_with_foreign_kid_is_refused() {
        let mut jwk = OkpSigningJwk::new(&[9u8; 32]);
        assert_eq!(jwk.public_key().unwrap(), [9u8; 32]);
        jwk.kid = ed25519_kid(&[8u8; 32]);
        assert_eq!(jwk.public_key(), Err(JwkError::KidMismatch));
    }

    #[test]
    fn jwks_serialises_use_member() {
        let doc: ReceiptJwks = Jwks { keys: vec![OkpSigningJwk::new(&[1u8; 32])] };
        let v = serde_json::to_value(&doc).unwrap();
        assert_eq!(v["keys"][0]["use"], "sig");
        assert_eq!(v["keys"][0]["alg"], "EdDSA");
        assert_eq!(v["keys"][0]["kty"], "OKP");
    }
}
