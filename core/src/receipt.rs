//! Receipts: the signed record of one execution, as served by
//! `GET /v1/receipts/{id}` and verified offline by `latchgate receipt verify`.
//!
//! # What is hashed and what is signed
//!
//! * The **content** of a receipt is its JSON object without the three keys
//!   `result_hash`, `receipt_signature` and `signing_key_id`. Optional fields
//!   that are absent (`failure_class`, `approved_by`, `approved_by_jkt`) are omitted, not `null`.
//! * `result_hash` = [`crate::jcs::hash`] of the content:
//!   `sha256:<hex>` of its RFC 8785 canonical form.
//! * The signature is Ed25519 (the signer's receipt key) over the bytes
//!   `"latchgate.receipt.v1\n" || signing_key_id || "\n" || result_hash`
//!   ([`Receipt::signing_payload`]). The prefix keeps a receipt signature from
//!   ever being valid as any other LatchGate signature, and naming the key id
//!   binds the receipt to the key that is claimed to have signed it.
//! * `receipt_signature` is the 64-byte signature in unpadded base64url;
//!   `signing_key_id` is the key id of the receipt key: base64url(SHA-256(raw
//!   32-byte public key)), [`crate::jose::ed25519_kid`].
//!
//! Offline verification ([`verify_with_jwks`]) hashes the receipt JSON exactly
//! as received (minus the three keys), so a field added by a third party is
//! covered by the hash and breaks verification instead of being ignored.

use std::collections::HashMap;

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::jcs;
use crate::jose::{OkpSigningJwk, ReceiptJwks, b64url_decode, b64url_encode};

/// Prefix of every receipt signing payload (domain separation).
pub const SIGNING_DOMAIN: &str = "latchgate.receipt.v1";

/// Keys of the receipt object that are not part of the hashed content.
pub const UNHASHED_FIELDS: [&str; 3] = ["result_hash", "receipt_signature", "signing_key_id"];

/// The result as the broker normalised it, e.g. `{"kind":"http_response","status":200}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NormalizedResult {
    pub kind: String,
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

/// What effect verification concluded, e.g. `{"status":"verified","verifier":"http_status"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerificationOutcome {
    pub status: String,
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

/// A receipt (API.md). Build it with empty `result_hash`/`receipt_signature`,
/// then [`Receipt::seal_result_hash`], have the signer sign
/// [`Receipt::signing_payload`], and [`Receipt::attach_signature`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    pub receipt_id: String,
    pub grant_id: String,
    pub trace_id: String,
    pub action_id: String,
    pub provider_module_digest: String,
    /// What the provider and the host observed (status, body hash, io calls, fuel…).
    pub provider_receipt: Value,
    pub normalized_result: NormalizedResult,
    pub verification_outcome: VerificationOutcome,
    pub result_hash: String,
    pub receipt_signature: String,
    pub signing_key_id: String,
    /// RFC 3339. Kept as the exact string that was hashed: reformatting a
    /// parsed timestamp could change its spelling and break the hash.
    pub started_at: String,
    pub finished_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// Thumbprint of the approving operator's DPoP key (see `Grant::approved_by_jkt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by_jkt: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    #[error("receipt is not valid JSON or does not have the receipt shape: {0}")]
    Malformed(String),
    #[error("JWKS is malformed: {0}")]
    MalformedJwks(String),
    #[error("receipt timestamp {field} is not RFC 3339")]
    BadTimestamp { field: &'static str },
    #[error("result_hash does not match the receipt content")]
    ResultHashMismatch,
    #[error("receipt_signature is not a base64url Ed25519 signature")]
    MalformedSignature,
    #[error("signing_key_id does not name the key used for verification")]
    KeyIdMismatch,
    #[error("no receipt key with kid {0}")]
    UnknownKey(String),
    #[error("receipt signature does not verify")]
    BadSignature,
    #[error("receipt content cannot be canonicalized: {0}")]
    Canonicalize(String),
}

impl ReceiptError {
    pub fn code(&self) -> &'static str {
        match self {
            ReceiptError::Malformed(_) => "receipt_malformed",
            ReceiptError::MalformedJwks(_) => "receipt_jwks_malformed",
            ReceiptError::BadTimestamp { .. } => "receipt_bad_timestamp",
            ReceiptError::ResultHashMismatch => "receipt_result_hash_mismatch",
            ReceiptError::MalformedSignature => "receipt_signature_malformed",
            ReceiptError::KeyIdMismatch => "receipt_key_id_mismatch",
            ReceiptError::UnknownKey(_) => "receipt_unknown_key",
            ReceiptError::BadSignature => "receipt_bad_signature",
            ReceiptError::Canonicalize(_) => "receipt_canonicalize_failed",
        }
    }
}

/// Key id of a receipt key ([`crate::jose::ed25519_kid`] of its raw bytes).
pub fn ed25519_kid(key: &VerifyingKey) -> String {
    crate::jose::ed25519_kid(key.as_bytes())
}

/// RFC 3339 form used for receipt timestamps (UTC, `Z`).
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
}

impl Receipt {
    /// `sha256:<hex>` of the receipt content (see the module docs).
    pub fn compute_result_hash(&self) -> Result<String, ReceiptError> {
        let value = serde_json::to_value(self).map_err(|e| ReceiptError::Canonicalize(e.to_string()))?;
        content_hash(value)
    }

    /// Sets `result_hash` from the current content.
    pub fn seal_result_hash(&mut self) -> Result<(), ReceiptError> {
        self.result_hash = self.compute_result_hash()?;
        Ok(())
    }

    /// The exact bytes the signer signs with the receipt key.
    pub fn signing_payload(&self) -> Vec<u8> {
        signing_payload(&self.signing_key_id, &self.result_hash)
    }

    pub fn attach_signature(&mut self, signature: &Signature) {
        self.receipt_signature = b64url_encode(signature.to_bytes());
    }

    /// Checks timestamps, `result_hash`, that `signing_key_id` names `key`, and
    /// the signature.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), ReceiptError> {
        self.check_timestamps()?;
        if self.compute_result_hash()? != self.result_hash {
            return Err(ReceiptError::ResultHashMismatch);
        }
        verify_signature(&self.signing_key_id, &self.result_hash, &self.receipt_signature, key)
    }

    fn check_timestamps(&self) -> Result<(), ReceiptError> {
        for (field, text) in [("started_at", &self.started_at), ("finished_at", &self.finished_at)] {
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .map_err(|_| ReceiptError::BadTimestamp { field })?;
        }
        Ok(())
    }
}

/// The bytes signed for a receipt with `result_hash` under key `signing_key_id`.
pub fn signing_payload(signing_key_id: &str, result_hash: &str) -> Vec<u8> {
    format!("{SIGNING_DOMAIN}\n{signing_key_id}\n{result_hash}").into_bytes()
}

fn content_hash(value: Value) -> Result<String, ReceiptError> {
    let Value::Object(mut object) = value else {
        return Err(ReceiptError::Malformed("receipt is not a JSON object".into()));
    };
    for key in UNHASHED_FIELDS {
        object.remove(key);
    }
    jcs::hash(&Value::Object(object)).map_err(|e| ReceiptError::Canonicalize(e.to_string()))
}

fn verify_signature(
    signing_key_id: &str,
    result_hash: &str,
    signature_b64: &str,
    key: &VerifyingKey,
) -> Result<(), ReceiptError> {
    if ed25519_kid(key) != signing_key_id {
        return Err(ReceiptError::KeyIdMismatch);
    }
    let bytes = b64url_decode(signature_b64).map_err(|_| ReceiptError::MalformedSignature)?;
    let bytes: [u8; 64] = bytes.try_into().map_err(|_| ReceiptError::MalformedSignature)?;
    let signature = Signature::from_bytes(&bytes);
    key.verify_strict(&signing_payload(signing_key_id, result_hash), &signature).map_err(|_| ReceiptError::BadSignature)
}

/// The receipt keys of a JWKS (`GET /v1/receipt-keys`), by key id. Every
/// entry must be a well-formed Ed25519 key whose `kid` is its own key id: the
/// key id is a function of the key, so a mismatch means the set was edited.
pub fn receipt_keys_from_jwks(jwks_json: &str) -> Result<HashMap<String, VerifyingKey>, ReceiptError> {
    let jwks: ReceiptJwks = serde_json::from_str(jwks_json).map_err(|e| ReceiptError::MalformedJwks(e.to_string()))?;
    let mut keys = HashMap::new();
    for jwk in &jwks.keys {
        let raw = jwk.public_key().map_err(|e| ReceiptError::MalformedJwks(format!("key {}: {e}", jwk.kid)))?;
        let key = VerifyingKey::from_bytes(&raw)
            .map_err(|_| ReceiptError::MalformedJwks(format!("key {} is not an Ed25519 point", jwk.kid)))?;
        keys.insert(jwk.kid.clone(), key);
    }
    Ok(keys)
}

/// The published JWK of a receipt key.
pub fn receipt_public_jwk(key: &VerifyingKey) -> OkpSigningJwk {
    OkpSigningJwk::new(key.as_bytes())
}

/// Offline verification of one receipt against a JWKS of receipt keys
/// (`latchgate receipt verify FILE --jwks FILE`). Returns the parsed receipt.
pub fn verify_with_jwks(receipt_json: &str, jwks_json: &str) -> Result<Receipt, ReceiptError> {
    let value: Value = serde_json::from_str(receipt_json).map_err(|e| ReceiptError::Malformed(e.to_string()))?;
    let receipt: Receipt = serde_json::from_value(value.clone()).map_err(|e| ReceiptError::Malformed(e.to_string()))?;
    receipt.check_timestamps()?;
    if content_hash(value)? != receipt.result_hash {
        return Err(ReceiptError::ResultHashMismatch);
    }
    let keys = receipt_keys_from_jwks(jwks_json)?;
    let key =
        keys.get(&receipt.signing_key_id).ok_or_else(|| ReceiptError::UnknownKey(receipt.signing_key_id.clone()))?;
    verify_signature(&receipt.signing_key_id, &receipt.result_hash, &receipt.receipt_signature, key)?;
    Ok(receipt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn signed_receipt(signer: &SigningKey) -> Receipt {
        let mut receipt = Receipt {
            receipt_id: "rcpt_1".into(),
            grant_id: "grant_1".into(),
            trace_id: "trace_1".into(),
            action_id: "http_fetch".into(),
            provider_module_digest: format!("sha256:{}", "ab".repeat(32)),
            provider_receipt: serde_json::json!({"status": 200, "body_sha256": "sha256:00", "io_calls": 1}),
            normalized_result: NormalizedResult {
                kind: "http_response".into(),
                details: serde_json::from_value(serde_json::json!({"status": 200})).unwrap(),
            },
            verification_outcome: VerificationOutcome { status: "verified".into(), details: Map::new() },
            result_hash: String::new(),
            receipt_signature: String::new(),
            signing_key_id: ed25519_kid(&signer.verifying_key()),
            started_at: "2026-11-02T10:00:00.120Z".into(),
            finished_at: "2026-11-02T10:00:00.250Z".into(),
            failure_class: None,
            approved_by: None,
            approved_by_jkt: None,
        };
        receipt.seal_result_hash().unwrap();
        let signature = signer.sign(&receipt.signing_payload());
        receipt.attach_signature(&signature);
        receipt
    }

    fn jwks_of(keys: &[&SigningKey]) -> String {
        let keys: Vec<OkpSigningJwk> = keys.iter().map(|k| receipt_public_jwk(&k.verifying_key())).collect();
        serde_json::to_string(&ReceiptJwks { keys }).unwrap()
    }

    #[test]
    fn signed_receipt_verifies_with_its_key_and_offline_with_jwks() {
        let signer = key(1);
        let receipt = signed_receipt(&signer);
        receipt.verify(&signer.verifying_key()).unwrap();
        let json = serde_json::to_string(&receipt).unwrap();
        let parsed = verify_with_jwks(&json, &jwks_of(&[&key(9), &signer])).unwrap();
        assert_eq!(parsed, receipt);
    }

    #[test]
    fn result_hash_is_the_jcs_hash_of_the_content_without_signature_fields() {
        let receipt = signed_receipt(&key(1));
        let mut content = serde_json::to_value(&receipt).unwrap();
        for k in UNHASHED_FIELDS {
            content.as_object_mut().unwrap().remove(k);
        }
        assert_eq!(receipt.result_hash, crate::jcs::hash(&content).unwrap());
        assert!(receipt.result_hash.starts_with("sha256:"));
    }

    #[test]
    fn tampered_output_breaks_the_result_hash() {
        let signer = key(1);
        let mut receipt = signed_receipt(&signer);
        receipt.provider_receipt["status"] = 500.into();
        assert!(matches!(receipt.verify(&signer.verifying_key()), Err(ReceiptError::ResultHashMismatch)));
    }

    #[test]
    fn field_added_by_a_third_party_is_refused_offline() {
        let signer = key(1);
        let mut value = serde_json::to_value(signed_receipt(&signer)).unwrap();
        value["normalized_result"]["extra"] = "injected".into();
        let err = verify_with_jwks(&value.to_string(), &jwks_of(&[&signer])).unwrap_err();
        assert!(matches!(err, ReceiptError::ResultHashMismatch), "{err:?}");
    }

    #[test]
    fn rehashed_receipt_without_the_key_fails_the_signature() {
        let signer = key(1);
        let mut receipt = signed_receipt(&signer);
        receipt.approved_by = Some("mallory".into());
        receipt.seal_result_hash().unwrap();
        assert!(matches!(receipt.verify(&signer.verifying_key()), Err(ReceiptError::BadSignature)));
    }

    #[test]
    fn receipt_signed_by_another_key_is_refused() {
        let receipt = signed_receipt(&key(1));
        assert!(matches!(receipt.verify(&key(2).verifying_key()), Err(ReceiptError::KeyIdMismatch)));
        let json = serde_json::to_string(&receipt).unwrap();
        assert!(matches!(verify_with_jwks(&json, &jwks_of(&[&key(2)])), Err(ReceiptError::UnknownKey(_))));
    }

    #[test]
    fn forged_signature_under_the_right_kid_is_refused() {
        let signer = key(1);
        let attacker = key(3);
        let mut receipt = signed_receipt(&signer);
        receipt.attach_signature(&attacker.sign(&receipt.signing_payload()));
        assert!(matches!(receipt.verify(&signer.verifying_key()), Err(ReceiptError::BadSignature)));
    }

    #[test]
    fn jwks_entry_with_a_lying_kid_is_refused() {
        let signer = key(1);
        let mut jwk = receipt_public_jwk(&signer.verifying_key());
        jwk.kid = ed25519_kid(&key(2).verifying_key());
        let jwks = serde_json::to_string(&ReceiptJwks { keys: vec![jwk] }).unwrap();
        let json = serde_json::to_string(&signed_receipt(&signer)).unwrap();
        assert!(matches!(verify_with_jwks(&json, &jwks), Err(ReceiptError::MalformedJwks(_))));
    }

    #[test]
    fn padded_or_truncated_signature_is_malformed() {
        let signer = key(1);
        let mut receipt = signed_receipt(&signer);
        receipt.receipt_signature.push_str("==");
        assert!(matches!(receipt.verify(&signer.verifying_key()), Err(ReceiptError::MalformedSignature)));
        receipt.receipt_signature.truncate(40);
        assert!(matches!(receipt.verify(&signer.verifying_key()), Err(ReceiptError::MalformedSignature)));
    }

    #[test]
    fn non_rfc3339_timestamp_is_refused() {
        let signer = key(1);
        let mut receipt = signed_receipt(&signer);
        receipt.finished_at = "yesterday".into();
        assert!(matches!(receipt.verify(&signer.verifying_key()), Err(ReceiptError::BadTimestamp { .. })));
    }
}
