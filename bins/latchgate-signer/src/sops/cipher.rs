//! One encrypted SOPS value: `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]`,
//! AES-256-GCM with a 32-byte random nonce (what sops writes) and the value's
//! key path (`a:b:`) as additional data, so that a value moved to another key
//! no longer decrypts.

use super::SopsError;
use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use zeroize::Zeroizing;

/// AES-256-GCM with sops's 32-byte nonce.
type SopsGcm = AesGcm<Aes256, U32>;

const NONCE_BYTES: usize = 32;
const TAG_BYTES: usize = 16;
pub const DATA_KEY_BYTES: usize = 32;

/// The data key every value of one file is encrypted with.
pub type DataKey = Zeroizing<[u8; DATA_KEY_BYTES]>;

/// The `type:` of an encrypted value: how its plaintext is read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    Str,
    Int,
    Int64,
    Float,
    Bool,
    Bytes,
    Comment,
}

impl ValueType {
    fn parse(s: &str) -> Option<ValueType> {
        Some(match s {
            "str" => ValueType::Str,
            "int" => ValueType::Int,
            "int64" => ValueType::Int64,
            "float" => ValueType::Float,
            "bool" => ValueType::Bool,
            "bytes" => ValueType::Bytes,
            "comment" => ValueType::Comment,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            ValueType::Str => "str",
            ValueType::Int => "int",
            ValueType::Int64 => "int64",
            ValueType::Float => "float",
            ValueType::Bool => "bool",
            ValueType::Bytes => "bytes",
            ValueType::Comment => "comment",
        }
    }
}

pub fn random_data_key() -> DataKey {
    let mut key = Zeroizing::new([0u8; DATA_KEY_BYTES]);
    rand::rngs::OsRng.fill_bytes(key.as_mut());
    key
}

/// Encrypts `plaintext` as a value of `kind` under `aad` (the key path, or the
/// last-modified time for the MAC).
pub fn encrypt(plaintext: &[u8], kind: ValueType, key: &DataKey, aad: &str) -> Result<String, SopsError> {
    let mut nonce = [0u8; NONCE_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let cipher = SopsGcm::new_from_slice(key.as_ref()).map_err(|_| SopsError::Crypto("data key length"))?;
    let sealed = cipher
        .encrypt(&Nonce::<U32>::from(nonce), Payload { msg: plaintext, aad: aad.as_bytes() })
        .map_err(|_| SopsError::Crypto("AES-GCM encryption"))?;
    let (data, tag) = sealed.split_at(sealed.len() - TAG_BYTES);
    Ok(format!(
        "ENC[AES256_GCM,data:{},iv:{},tag:{},type:{}]",
        STANDARD.encode(data),
        STANDARD.encode(nonce),
        STANDARD.encode(tag),
        kind.as_str()
    ))
}

/// Decrypts one `ENC[…]` value. Any change to data, iv, tag, type or to the
/// key path fails authentication.
pub fn decrypt(value: &str, key: &DataKey, aad: &str) -> Result<(Zeroizing<Vec<u8>>, ValueType), SopsError> {
    let parsed = parse(value).ok_or(SopsError::MalformedValue)?;
    let cipher = SopsGcm::new_from_slice(key.as_ref()).map_err(|_| SopsError::Crypto("data key length"))?;
    let mut sealed = Zeroizing::new(Vec::with_capacity(parsed.data.len() + TAG_BYTES));
    sealed.extend_from_slice(&parsed.data);
    sealed.extend_from_slice(&parsed.tag);
    let plaintext = cipher
        .decrypt(&Nonce::<U32>::from(parsed.iv), Payload { msg: &sealed, aad: aad.as_bytes() })
        .map_err(|_| SopsError::Tampered)?;
    Ok((Zeroizing::new(plaintext), parsed.kind))
}

/// Whether `value` has the shape of an encrypted value (used to tell a
/// stray plaintext where a ciphertext belongs).
pub fn looks_encrypted(value: &str) -> bool {
    value.starts_with("ENC[AES256_GCM,")
}

struct Parsed {
    data: Vec<u8>,
    iv: [u8; NONCE_BYTES],
    tag: Vec<u8>,
    kind: ValueType,
}

fn parse(value: &str) -> Option<Parsed> {
    let body = value.strip_prefix("ENC[AES256_GCM,")?.strip_suffix(']')?;
    let mut fields = body.split(',');
    let mut field = |name: &str| fields.next()?.strip_prefix(name)?.strip_prefix(':');
    let data = STANDARD.decode(field("data")?).ok()?;
    let iv: [u8; NONCE_BYTES] = STANDARD.decode(field("iv")?).ok()?.try_into().ok()?;
    let tag = STANDARD.decode(field("tag")?).ok()?;
    let kind = ValueType::parse(field("type")?)?;
    if fields.next().is_some() || tag.len() != TAG_BYTES {
        return None;
    }
    Some(Parsed { data, iv, tag, kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_round_trips_under_its_key_path_only() {
        let key = random_data_key();
        let enc = encrypt(b"hunter2", ValueType::Str, &key, "db:password:").unwrap();
        assert!(enc.starts_with("ENC[AES256_GCM,data:") && enc.ends_with(",type:str]"), "{enc}");
        let (plain, kind) = decrypt(&enc, &key, "db:password:").unwrap();
        assert_eq!((plain.as_slice(), kind), (&b"hunter2"[..], ValueType::Str));
        assert!(matches!(decrypt(&enc, &key, "db:other:"), Err(SopsError::Tampered)));
        assert!(matches!(decrypt(&enc, &random_data_key(), "db:password:"), Err(SopsError::Tampered)));
    }

    #[test]
    fn changed_type_or_ciphertext_fails_authentication_or_parsing() {
        let key = random_data_key();
        let enc = encrypt(b"5", ValueType::Int, &key, "n:").unwrap();
        // The type is not authenticated by GCM, but it is part of the MAC'd plaintext reading.
        assert!(decrypt(&enc.replace("type:int", "type:nope"), &key, "n:").is_err());
        let data = enc.split("data:").nth(1).unwrap().split(',').next().unwrap();
        let flipped = if data.starts_with('A') { data.replacen('A', "B", 1) } else { format!("A{}", &data[1..]) };
        assert!(matches!(decrypt(&enc.replace(data, &flipped), &key, "n:"), Err(SopsError::Tampered)));
        assert!(matches!(decrypt("ENC[AES256_GCM,data:AA==]", &key, "n:"), Err(SopsError::MalformedValue)));
    }
}
