//! The one place that knows messages are bincode (1.3.3, RUSTSEC-2025-0141:
//! unmaintained but complete). A swap to another serde format touches only this file.

use crate::error::IpcError;
use bincode::Options;
use serde::{Serialize, de::DeserializeOwned};

/// Fixed, explicit options: little-endian, varint integers, a size limit, and
/// trailing bytes refused so that a datagram is exactly one value.
fn options(limit: usize) -> impl Options {
    bincode::DefaultOptions::new()
        .with_little_endian()
        .with_varint_encoding()
        .with_limit(limit as u64)
        .reject_trailing_bytes()
}

pub fn encode<T: Serialize>(value: &T, limit: usize) -> Result<Vec<u8>, IpcError> {
    options(limit).serialize(value).map_err(|e| match *e {
        bincode::ErrorKind::SizeLimit => IpcError::Oversized { size: limit + 1, limit },
        other => IpcError::Malformed(other.to_string()),
    })
}

/// Decoding never panics and never allocates beyond `limit` (bincode checks
/// lengths against the limit before allocating).
pub fn decode<T: DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<T, IpcError> {
    if bytes.len() > limit {
        return Err(IpcError::Oversized { size: bytes.len(), limit });
    }
    options(limit).deserialize(bytes).map_err(|e| IpcError::Malformed(e.to_string()))
}
