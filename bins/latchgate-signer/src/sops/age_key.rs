//! The age identity file (`sops_key_file`): the X25519 secret keys that unwrap
//! a SOPS file's data key, in the format `age-keygen` writes (`# ` comment
//! lines, one `AGE-SECRET-KEY-1…` per line). It is refused when group or
//! other have any permission on it. Wrapping a data key for a recipient
//! needs only the public `age1…` string.

use super::SopsError;
use super::cipher::{DATA_KEY_BYTES, DataKey};
use age::armor::{ArmoredReader, ArmoredWriter, Format};
use age::secrecy::ExposeSecret;
use age::x25519;
use std::io::{Read, Write};
use std::path::Path;
use std::str::FromStr;
use zeroize::Zeroizing;

/// An identity file is a few lines; anything much larger is not one.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// The identities of one key file. `Debug` shows the public halves only.
pub struct AgeIdentities {
    identities: Vec<x25519::Identity>,
}

impl std::fmt::Debug for AgeIdentities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgeIdentities").field("recipients", &self.recipients()).finish()
    }
}

impl AgeIdentities {
    /// Reads `path` (no symlinks, mode checked on the open file).
    pub fn load(path: &Path) -> Result<AgeIdentities, SopsError> {
        let bytes = crate::keystore::read_private_file(path, MAX_KEY_FILE_BYTES)
            .map_err(|e| SopsError::KeyFile { path: path.to_owned(), source: Box::new(e) })?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| SopsError::KeyInvalid { path: path.to_owned(), reason: "not UTF-8 text".into() })?;
        Self::parse(text).map_err(|reason| SopsError::KeyInvalid { path: path.to_owned(), reason })
    }

    /// Parses identity-file text; the error names the line, never its content.
    pub fn parse(text: &str) -> Result<AgeIdentities, String> {
        let mut identities = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let identity = x25519::Identity::from_str(line)
                .map_err(|_| format!("line {} is not an age X25519 secret key (AGE-SECRET-KEY-1…)", n + 1))?;
            identities.push(identity);
        }
        if identities.is_empty() {
            return Err("no AGE-SECRET-KEY-1 line".into());
        }
        Ok(AgeIdentities { identities })
    }

    pub fn generate() -> AgeIdentities {
        AgeIdentities { identities: vec![x25519::Identity::generate()] }
    }

    /// `age1…` of every identity, in file order.
    pub fn recipients(&self) -> Vec<String> {
        self.identities.iter().map(|i| i.to_public().to_string()).collect()
    }

    /// The identity that new files are encrypted to: the first one.
    pub fn primary_recipient(&self) -> String {
        self.identities[0].to_public().to_string()
    }

    /// This file's identities followed by `other`'s (a key rotation keeps both
    /// until the secrets file has been re-encrypted).
    pub fn merged_with(&self, other: &AgeIdentities) -> AgeIdentities {
        let mut identities = self.identities.clone();
        identities.extend(other.identities.iter().cloned());
        AgeIdentities { identities }
    }

    /// The file text, in `age-keygen`'s layout.
    pub fn to_file_text(&self, created: &str) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::new());
        for identity in &self.identities {
            text.push_str(&format!("# created: {created}\n# public key: {}\n", identity.to_public()));
            text.push_str(identity.to_string().expose_secret());
            text.push('\n');
        }
        text
    }

    /// Unwraps a data key from one `enc` entry (an armored age file). `Ok(None)`
    /// when none of these identities is a recipient of it.
    pub fn unwrap_data_key(&self, armored: &str) -> Result<Option<DataKey>, SopsError> {
        let decryptor = age::Decryptor::new_buffered(ArmoredReader::new(armored.as_bytes()))
            .map_err(|_| SopsError::DataKey("the age envelope is malformed"))?;
        let mut reader = match decryptor.decrypt(self.identities.iter().map(|i| i as &dyn age::Identity)) {
            Ok(reader) => reader,
            Err(age::DecryptError::NoMatchingKeys) => return Ok(None),
            Err(_) => return Err(SopsError::DataKey("the age envelope does not authenticate")),
        };
        let mut plain = Zeroizing::new(Vec::with_capacity(DATA_KEY_BYTES));
        (&mut reader)
            .take(DATA_KEY_BYTES as u64 + 1)
            .read_to_end(&mut plain)
            .map_err(|_| SopsError::DataKey("the age payload does not authenticate"))?;
        let key: [u8; DATA_KEY_BYTES] =
            plain.as_slice().try_into().map_err(|_| SopsError::DataKey("the data key is not 32 bytes"))?;
        Ok(Some(Zeroizing::new(key)))
    }
}

/// Wraps `key` for `recipient` (`age1…`) as an armored age file, the form
/// sops stores in `sops.age[].enc`.
pub fn wrap_data_key(recipient: &str, key: &DataKey) -> Result<String, SopsError> {
    let recipient = x25519::Recipient::from_str(recipient)
        .map_err(|_| SopsError::Unsupported(format!("`{recipient}` is not an age X25519 recipient")))?;
    let encryptor = age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
        .map_err(|_| SopsError::Crypto("age encryption"))?;
    let mut out = Vec::new();
    let armor = ArmoredWriter::wrap_output(&mut out, Format::AsciiArmor).map_err(|_| SopsError::Crypto("age armor"))?;
    let mut writer = encryptor.wrap_output(armor).map_err(|_| SopsError::Crypto("age encryption"))?;
    writer.write_all(key.as_ref()).map_err(|_| SopsError::Crypto("age encryption"))?;
    writer.finish().and_then(|armor| armor.finish()).map_err(|_| SopsError::Crypto("age encryption"))?;
    String::from_utf8(out).map_err(|_| SopsError::Crypto("age armor"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sops::cipher::random_data_key;

    #[test]
    fn data_key_unwraps_only_for_its_recipient() {
        let ours = AgeIdentities::generate();
        let theirs = AgeIdentities::generate();
        let key = random_data_key();
        let wrapped = wrap_data_key(&ours.primary_recipient(), &key).unwrap();
        assert!(wrapped.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"), "{wrapped}");
        assert_eq!(*ours.unwrap_data_key(&wrapped).unwrap().unwrap(), *key);
        assert!(theirs.unwrap_data_key(&wrapped).unwrap().is_none());
        assert!(theirs.merged_with(&ours).unwrap_data_key(&wrapped).unwrap().is_some());
    }

    #[test]
    fn identity_file_text_parses_back_and_errors_never_echo_the_key() {
        let ids = AgeIdentities::generate();
        let text = ids.to_file_text("2026-01-01T00:00:00Z");
        assert_eq!(AgeIdentities::parse(&text).unwrap().recipients(), ids.recipients());
        let broken = text.replace("AGE-SECRET-KEY-1", "AGE-SECRET-KEY-X");
        let err = AgeIdentities::parse(&broken).unwrap_err();
        assert_eq!(err, "line 3 is not an age X25519 secret key (AGE-SECRET-KEY-1…)");
        assert!(!format!("{ids:?}").contains("AGE-SECRET-KEY"));
    }
}
