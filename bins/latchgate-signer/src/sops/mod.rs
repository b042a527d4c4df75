//! SOPS 3.x files with age recipients, natively: no external program is ever
//! run. The signer decrypts them to release secrets per grant; the
//! `latchgate secrets` CLI reads and writes them through the same code.
//!
//! What is implemented is exactly what sops does for YAML and JSON files
//! with age keys: a random 32-byte data key wrapped for each age recipient
//! (`sops.age[].enc`), every value encrypted with AES-256-GCM under its key
//! path, and a SHA-512 MAC over all values, encrypted under the data key.
//! Everything else sops can do (KMS, PGP, Shamir key groups, regex-selected
//! encryption) is refused with `sops_unsupported`: a file the gate cannot
//! fully verify is never half-read.
//!
//! | module | job |
//! |---|---|
//! | [`tree`] | the document in file order (the MAC covers the order) |
//! | [`cipher`] | one `ENC[AES256_GCM,…]` value |
//! | [`metadata`] | the `sops:` section |
//! | [`age_key`] | the age identity file and data-key wrapping |
//! | [`document`] | decrypt + MAC check, edit, encrypt |
//! | [`files`] | reading with a size cap, atomic replacement keeping the owner |

pub mod age_key;
pub mod cipher;
pub mod document;
pub mod files;
pub mod metadata;
pub mod tree;

pub use age_key::AgeIdentities;
pub use document::{DecryptedDocument, EncryptedDocument, Format, SecretValues};
pub use files::{FileStamp, read_secrets_file, replace_private_file};

use std::path::{Path, PathBuf};

/// Why a SOPS file could not be used. Messages name files, fields and key
/// paths, never a value or a key.
#[derive(Debug, thiserror::Error)]
pub enum SopsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is {size} bytes, more than the {max} a secrets file may have")]
    TooLarge { path: PathBuf, size: u64, max: u64 },
    #[error("age key file: {source}")]
    KeyFile { path: PathBuf, source: Box<crate::keystore::KeyStoreError> },
    #[error("age key file {path}: {reason}")]
    KeyInvalid { path: PathBuf, reason: String },
    #[error("not a valid SOPS document: {0}")]
    Format(String),
    #[error("the file has no `sops` metadata: it is not encrypted")]
    NotEncrypted,
    #[error("{0}")]
    Unsupported(String),
    #[error(
        "no age identity of the key file is a recipient of the secrets file (file: {file_recipients:?}, key file: {key_recipients:?})"
    )]
    NoMatchingKey { file_recipients: Vec<String>, key_recipients: Vec<String> },
    #[error("the data key cannot be recovered: {0}")]
    DataKey(&'static str),
    #[error("MAC mismatch: the file was modified without the data key")]
    MacMismatch,
    #[error("the value at `{path}` does not authenticate: it was modified, moved or replaced")]
    TamperedValue { path: String },
    #[error("`{path}` holds {found} where sops stores an encrypted value")]
    Plaintext { path: String, found: &'static str },
    #[error("an encrypted value does not authenticate")]
    Tampered,
    #[error("an encrypted value is malformed")]
    MalformedValue,
    #[error("a decrypted value is malformed: {0}")]
    BadPlaintext(&'static str),
    #[error("{0} failed")]
    Crypto(&'static str),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: Box<crate::keystore::KeyStoreError> },
}

impl SopsError {
    pub fn code(&self) -> &'static str {
        match self {
            SopsError::Io { .. } => "sops_file_unreadable",
            SopsError::TooLarge { .. } => "sops_file_too_large",
            SopsError::KeyFile { source, .. } => match source.code() {
                "keystore_insecure_permissions" => "sops_key_insecure_permissions",
                "keystore_wrong_file_type" => "sops_key_wrong_file_type",
                _ => "sops_key_unreadable",
            },
            SopsError::KeyInvalid { .. } => "sops_key_invalid",
            SopsError::Format(_) => "sops_format_invalid",
            SopsError::NotEncrypted => "sops_not_encrypted",
            SopsError::Unsupported(_) => "sops_unsupported",
            SopsError::NoMatchingKey { .. } => "sops_no_matching_key",
            SopsError::DataKey(_) => "sops_data_key_invalid",
            SopsError::MacMismatch => "sops_mac_mismatch",
            SopsError::TamperedValue { .. }
            | SopsError::Plaintext { .. }
            | SopsError::Tampered
            | SopsError::MalformedValue
            | SopsError::BadPlaintext(_) => "sops_value_tampered",
            SopsError::Crypto(_) => "sops_crypto_failed",
            SopsError::Write { .. } => "sops_file_unwritable",
        }
    }

    /// The error of one value, named by its key path.
    fn at_path(self, path: &[&str], looked_encrypted: bool) -> SopsError {
        let path = path.join(":");
        match self {
            SopsError::MalformedValue if !looked_encrypted => {
                SopsError::Plaintext { path, found: "a plaintext string" }
            }
            SopsError::Tampered | SopsError::MalformedValue | SopsError::BadPlaintext(_) => {
                SopsError::TamperedValue { path }
            }
            other => other,
        }
    }
}

/// Reads and decrypts the secrets file with the identities of `key_file`.
pub fn decrypt_file(secrets_file: &Path, key_file: &Path) -> Result<(DecryptedDocument, FileStamp), SopsError> {
    let identities = AgeIdentities::load(key_file)?;
    let (text, stamp) = read_secrets_file(secrets_file)?;
    let document = EncryptedDocument::parse(&text, Format::from_path(secrets_file)?)?.decrypt(&identities)?;
    Ok((document, stamp))
}
