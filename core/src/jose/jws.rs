//! ES256 JWS in compact serialisation: splitting, header decoding, signature
//! verification with `ring` (the fast backend: two verifies per request) and
//! signing. Claims are decoded by the callers, only after the signature holds.

use ring::rand::SystemRandom;
/// Re-exported so the signer and the client name the key type without
/// depending on `ring` themselves.
pub use ring::signature::EcdsaKeyPair;
use ring::signature::{ECDSA_P256_SHA256_FIXED, KeyPair, UnparsedPublicKey};
use serde::de::DeserializeOwned;

use super::b64::{b64url_decode, b64url_encode};
use super::jwk::{EcPublicJwk, JwkError};

/// The only signature algorithm the gate accepts or produces.
pub const ALG_ES256: &str = "ES256";

/// The protected header members the gate looks at. Unknown members are
/// ignored, except that any `crit` is refused (we understand no extensions).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct JoseHeader {
    pub alg: String,
    pub typ: Option<String>,
    pub kid: Option<String>,
    pub jwk: Option<serde_json::Value>,
    pub crit: Option<serde_json::Value>,
}

/// A compact JWS split into its parts; nothing is trusted yet.
pub struct CompactJws<'a> {
    /// `BASE64URL(header) '.' BASE64URL(payload)`: the signed bytes.
    pub signing_input: &'a str,
    pub header_b64: &'a str,
    pub payload_b64: &'a str,
    pub signature_b64: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsFormatError {
    #[error("not three dot-separated segments")]
    Segments,
    #[error("segment is not strict base64url")]
    Encoding,
    #[error("segment is not the expected JSON")]
    Json,
}

impl<'a> CompactJws<'a> {
    pub fn split(token: &'a str) -> Result<Self, JwsFormatError> {
        let (signing_input, signature_b64) = token.rsplit_once('.').ok_or(JwsFormatError::Segments)?;
        let (header_b64, payload_b64) = signing_input.split_once('.').ok_or(JwsFormatError::Segments)?;
        if payload_b64.contains('.') {
            return Err(JwsFormatError::Segments);
        }
        Ok(CompactJws { signing_input, header_b64, payload_b64, signature_b64 })
    }

    pub fn header<T: DeserializeOwned>(&self) -> Result<T, JwsFormatError> {
        decode_json(self.header_b64)
    }

    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, JwsFormatError> {
        decode_json(self.payload_b64)
    }

    /// Verify the ES256 signature (64-byte fixed `r || s`, never DER) against a
    /// SEC1 uncompressed P-256 point.
    pub fn verify_es256(&self, public_point: &[u8; 65]) -> bool {
        let Ok(signature) = b64url_decode(self.signature_b64) else {
            return false;
        };
        if signature.len() != 64 {
            return false;
        }
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public_point)
            .verify(self.signing_input.as_bytes(), &signature)
            .is_ok()
    }
}

fn decode_json<T: DeserializeOwned>(segment: &str) -> Result<T, JwsFormatError> {
    let bytes = b64url_decode(segment).map_err(|_| JwsFormatError::Encoding)?;
    serde_json::from_slice(&bytes).map_err(|_| JwsFormatError::Json)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("header or claims are not valid JSON objects")]
    NotJson,
    #[error("the ECDSA signing operation failed")]
    Crypto,
}

impl SignError {
    pub fn code(&self) -> &'static str {
        match self {
            SignError::NotJson => "jws_sign_not_json",
            SignError::Crypto => "jws_sign_crypto_failed",
        }
    }
}

/// Produce a compact ES256 JWS from the header and claims JSON texts. Both must
/// be JSON objects; the header is expected to say `"alg":"ES256"` (the caller
/// owns the header so it can add `kid`, `typ` or `jwk`).
pub fn sign_es256_jws(header_json: &str, claims_json: &str, key: &EcdsaKeyPair) -> Result<String, SignError> {
    for text in [header_json, claims_json] {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|_| SignError::NotJson)?;
        if !value.is_object() {
            return Err(SignError::NotJson);
        }
    }
    let mut token = b64url_encode(header_json.as_bytes());
    token.push('.');
    token.push_str(&b64url_encode(claims_json.as_bytes()));
    let signature = key.sign(&SystemRandom::new(), token.as_bytes()).map_err(|_| SignError::Crypto)?;
    token.push('.');
    token.push_str(&b64url_encode(signature.as_ref()));
    Ok(token)
}

/// Generate a fresh P-256 key as a PKCS#8 document (what the signer persists).
pub fn generate_es256_pkcs8() -> Result<Vec<u8>, SignError> {
    let rng = SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(&ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| SignError::Crypto)?;
    Ok(doc.as_ref().to_vec())
}

/// Load a P-256 signing key from PKCS#8 DER.
pub fn es256_key_from_pkcs8(pkcs8: &[u8]) -> Result<EcdsaKeyPair, SignError> {
    EcdsaKeyPair::from_pkcs8(&ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &SystemRandom::new())
        .map_err(|_| SignError::Crypto)
}

/// The public JWK of a `ring` P-256 key pair.
pub fn es256_public_jwk(key: &EcdsaKeyPair) -> Result<EcPublicJwk, JwkError> {
    EcPublicJwk::from_uncompressed_point(key.public_key().as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_token_verifies_and_any_flipped_bit_does_not() {
        let key = es256_key_from_pkcs8(&generate_es256_pkcs8().unwrap()).unwrap();
        let point = es256_public_jwk(&key).unwrap().uncompressed_point().unwrap();
        let token = sign_es256_jws(r#"{"alg":"ES256"}"#, r#"{"a":1}"#, &key).unwrap();
        assert!(CompactJws::split(&token).unwrap().verify_es256(&point));
        let mut tampered = token.clone().into_bytes();
        let at = token.find('.').unwrap() + 2;
        tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(!CompactJws::split(&tampered).unwrap().verify_es256(&point));
    }

    #[test]
    fn wrong_segment_counts_are_refused() {
        assert!(CompactJws::split("a.b").is_err());
        assert!(CompactJws::split("a.b.c.d").is_err());
        assert!(CompactJws::split("a.b.c").is_ok());
    }

    #[test]
    fn signing_refuses_non_object_json() {
        let key = es256_key_from_pkcs8(&generate_es256_pkcs8().unwrap()).unwrap();
        assert_eq!(sign_es256_jws("[1]", "{}", &key), Err(SignError::NotJson));
        assert_eq!(sign_es256_jws("{}", "nope", &key), Err(SignError::NotJson));
    }
}
