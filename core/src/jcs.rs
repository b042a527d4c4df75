//! RFC 8785 JSON Canonicalization Scheme, and the `sha256:<hex>` hashes built on it.
//! Every signed or hashed document (request_hash, grants, receipts, audit chain)
//! goes through here so that two processes always hash the same bytes.

use serde::Serialize;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum JcsError {
    #[error("value cannot be canonicalized: {0}")]
    Canonicalize(String),
}

impl JcsError {
    pub fn code(&self) -> &'static str {
        "jcs_error"
    }
}

/// The canonical UTF-8 bytes of `value`.
pub fn canonical_bytes<T: Serialize>(value: &T) -> Result<Vec<u8>, JcsError> {
    serde_json_canonicalizer::to_vec(value).map_err(|e| JcsError::Canonicalize(e.to_string()))
}

/// `sha256:<lowercase hex>` of arbitrary bytes.
pub fn sha256_tagged(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `sha256:<hex>` of the canonical form of `value`.
pub fn hash<T: Serialize>(value: &T) -> Result<String, JcsError> {
    Ok(sha256_tagged(&canonical_bytes(value)?))
}
