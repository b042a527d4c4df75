//! Public JWKs the gate accepts (EC P-256 for ES256, OKP Ed25519 for receipts
//! and grants), RFC 7638 thumbprints, and the key-id functions every process
//! uses so that a `kid` is always a stable function of the public key.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::b64::{b64url_decode, b64url_encode};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    #[error("jwk kty must be \"EC\"")]
    WrongKty,
    #[error("jwk crv must be \"P-256\"")]
    WrongCurve,
    #[error("jwk coordinate {0} is not 32 bytes of base64url")]
    BadCoordinate(&'static str),
    #[error("jwk point is not on the P-256 curve")]
    NotOnCurve,
    #[error("jwk carries private key material (\"d\")")]
    PrivateKeyMaterial,
    #[error("jwk kid does not match the key thumbprint")]
    KidMismatch,
    #[error("jwk is not a JSON object with the required members")]
    Malformed,
}

impl JwkError {
    pub fn code(&self) -> &'static str {
        match self {
            JwkError::WrongKty => "jwk_wrong_kty",
            JwkError::WrongCurve => "jwk_wrong_curve",
            JwkError::BadCoordinate(_) => "jwk_bad_coordinate",
            JwkError::NotOnCurve => "jwk_not_on_curve",
            JwkError::PrivateKeyMaterial => "jwk_private_key_material",
            JwkError::KidMismatch => "jwk_kid_mismatch",
            JwkError::Malformed => "jwk_malformed",
        }
    }
}

/// RFC 7638 thumbprint over the *required* members of any JWK: the members are
/// written in lexicographic order, without whitespace, hashed with SHA-256 and
/// base64url-encoded. Generic over key type so RSA test vectors work too.
pub fn jwk_thumbprint(required_members: &[(&str, &str)]) -> String {
    let mut members: Vec<&(&str, &str)> = required_members.iter().collect();
    members.sort_by(|a, b| a.0.cmp(b.0));
    let mut json = String::from("{");
    for (i, (name, value)) in members.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        // serde_json's string escaping is exactly JSON's minimal escaping.
        json.push_str(&serde_json::Value::from(*name).to_string());
        json.push(':');
        json.push_str(&serde_json::Value::from(*value).to_string());
    }
    json.push('}');
    b64url_encode(Sha256::digest(json.as_bytes()))
}

/// A validated public EC P-256 key: `kty`/`crv` checked, coordinates exactly
/// 32 bytes, point on the curve. Private members are refused at parse time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EcPublicJwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub y: String,
}

/// The members looked at when parsing; other members (`alg`, `use`, `kid`…)
/// that some JOSE libraries add are tolerated and ignored.
#[derive(Deserialize)]
struct EcJwkMembers {
    kty: String,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    d: Option<serde_json::Value>,
}

impl EcPublicJwk {
    /// Parse and validate a JWK given as a JSON value.
    pub fn from_value(value: &serde_json::Value) -> Result<Self, JwkError> {
        Self::from_value_with_point(value).map(|(jwk, _)| jwk)
    }

    /// [`EcPublicJwk::from_value`] plus the validated SEC1 point, so a verifier
    /// on the hot path checks the curve equation once.
    pub fn from_value_with_point(value: &serde_json::Value) -> Result<(Self, [u8; 65]), JwkError> {
        let members = EcJwkMembers::deserialize(value).map_err(|_| JwkError::Malformed)?;
        if members.d.is_some() {
            return Err(JwkError::PrivateKeyMaterial);
        }
        if members.kty != "EC" {
            return Err(JwkError::WrongKty);
        }
        if members.crv.as_deref() != Some("P-256") {
            return Err(JwkError::WrongCurve);
        }
        let x = members.x.ok_or(JwkError::BadCoordinate("x"))?;
        let y = members.y.ok_or(JwkError::BadCoordinate("y"))?;
        let jwk = EcPublicJwk { kty: "EC".into(), crv: "P-256".into(), x, y };
        let point = jwk.uncompressed_point()?;
        Ok((jwk, point))
    }

    /// Build from a SEC1 uncompressed point (`0x04 || x || y`), as `ring` exports it.
    pub fn from_uncompressed_point(point: &[u8]) -> Result<Self, JwkError> {
        if point.len() != 65 || point[0] != 0x04 {
            return Err(JwkError::NotOnCurve);
        }
        let jwk = EcPublicJwk {
            kty: "EC".into(),
            crv: "P-256".into(),
            x: b64url_encode(&point[1..33]),
            y: b64url_encode(&point[33..65]),
        };
        jwk.uncompressed_point()?;
        Ok(jwk)
    }

    /// SEC1 uncompressed point, after checking the coordinates and that the
    /// point lies on P-256 (so an invalid-curve point never reaches a verifier).
    pub fn uncompressed_point(&self) -> Result<[u8; 65], JwkError> {
        let x = decode_coordinate(&self.x, "x")?;
        let y = decode_coordinate(&self.y, "y")?;
        let mut point = [0u8; 65];
        point[0] = 0x04;
        point[1..33].copy_from_slice(&x);
        point[33..65].copy_from_slice(&y);
        p256::PublicKey::from_sec1_bytes(&point).map_err(|_| JwkError::NotOnCurve)?;
        Ok(point)
    }

    /// RFC 7638 thumbprint (`jkt` in `cnf`, and our `kid` for EC keys).
    pub fn thumbprint(&self) -> String {
        jwk_thumbprint(&[("crv", &self.crv), ("kty", &self.kty), ("x", &self.x), ("y", &self.y)])
    }

    pub fn to_value(&self) -> serde_json::Value {
        serde_json::json!({"kty": self.kty, "crv": self.crv, "x": self.x, "y": self.y})
    }
}

fn decode_coordinate(text: &str, name: &'static str) -> Result<[u8; 32], JwkError> {
    let bytes = b64url_decode(text).map_err(|_| JwkError::BadCoordinate(name))?;
    bytes.try_into().map_err(|_| JwkError::BadCoordinate(name))
}

/// Key id of an EC P-256 key: its RFC 7638 thumbprint.
pub fn ec_kid(jwk: &EcPublicJwk) -> String {
    jwk.thumbprint()
}

/// Key id of an Ed25519 key (grant and receipt keys): base64url of SHA-256 of
/// the raw 32-byte public key, untruncated (43 characters). Not an RFC 7638
/// thumbprint; it only has to be stable and collision-free across our keys.
pub fn ed25519_kid(public_key: &[u8; 32]) -> String {
    b64url_encode(Sha256::digest(public_key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_point() -> [u8; 65] {
        let secret = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
        let encoded = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&secret.public_key(), false);
        encoded.as_bytes().try_into().unwrap()
    }

    #[test]
    fn point_round_trips_through_jwk() {
        let point = sample_point();
        let jwk = EcPublicJwk::from_uncompressed_point(&point).unwrap();
        assert_eq!(jwk.uncompressed_point().unwrap(), point);
        let parsed = EcPublicJwk::from_value(&jwk.to_value()).unwrap();
        assert_eq!(parsed, jwk);
    }

    #[test]
    fn point_off_the_curve_is_refused() {
        let mut point = sample_point();
        point[64] ^= 1;
        assert_eq!(EcPublicJwk::from_uncompressed_point(&point), Err(JwkError::NotOnCurve));
    }

    #[test]
    fn short_or_padded_coordinates_are_refused() {
        let jwk = EcPublicJwk::from_uncompressed_point(&sample_point()).unwrap();
        let mut v = jwk.to_value();
        v["x"] = serde_json::Value::from(&jwk.x[..42]);
        assert_eq!(EcPublicJwk::from_value(&v), Err(JwkError::BadCoordinate("x")));
        let mut v = jwk.to_value();
        v["y"] = serde_json::Value::from(format!("{}=", jwk.y));
        assert_eq!(EcPublicJwk::from_value(&v), Err(JwkError::BadCoordinate("y")));
    }

    #[test]
    fn private_jwk_is_refused() {
        let jwk = EcPublicJwk::from_uncompressed_point(&sample_point()).unwrap();
        let mut v = jwk.to_value();
        v["d"] = serde_json::Value::from(b64url_encode([7u8; 32]));
        assert_eq!(EcPublicJwk::from_value(&v), Err(JwkError::PrivateKeyMaterial));
    }

    #[test]
    fn other_curves_and_key_types_are_refused() {
        let jwk = EcPublicJwk::from_uncompressed_point(&sample_point()).unwrap();
        let mut v = jwk.to_value();
        v["crv"] = "P-384".into();
        assert_eq!(EcPublicJwk::from_value(&v), Err(JwkError::WrongCurve));
        let mut v = jwk.to_value();
        v["kty"] = "oct".into();
        assert_eq!(EcPublicJwk::from_value(&v), Err(JwkError::WrongKty));
    }

    #[test]
    fn ed25519_kid_depends_on_every_key_byte() {
        let a = ed25519_kid(&[1u8; 32]);
        let mut other = [1u8; 32];
        other[31] = 2;
        assert_ne!(a, ed25519_kid(&other));
        assert_eq!(a.len(), 43);
        assert_eq!(a, ed25519_kid(&[1u8; 32]));
    }
}
