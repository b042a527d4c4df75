//! The signer's view of the secrets file: decrypted on demand, the values
//! kept at most [`CACHE_TTL`] and only while the file (and the key file) is
//! the same inode with the same modification time and size — an edit by
//! `latchgate secrets set` (rename) or by `sops` (in place) is seen on the
//! next request. Values are wiped from memory when the cache entry is
//! dropped; they leave this module only as the per-grant release the
//! service hands to the executor.

use crate::sops::{self, FileStamp, SecretValues, SopsError};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

pub const CACHE_TTL: Duration = Duration::from_secs(30);

/// `[secrets]` of the config, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultPaths {
    pub secrets_file: PathBuf,
    pub key_file: PathBuf,
}

struct Cached {
    secrets: FileStamp,
    key: FileStamp,
    loaded: Instant,
    values: SecretValues,
}

pub struct SecretsVault {
    paths: VaultPaths,
    cache: Mutex<Option<Cached>>,
    ttl: Duration,
}

impl std::fmt::Debug for SecretsVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsVault").field("paths", &self.paths).finish_non_exhaustive()
    }
}

impl SecretsVault {
    pub fn new(paths: VaultPaths) -> SecretsVault {
        Self::with_ttl(paths, CACHE_TTL)
    }

    pub fn with_ttl(paths: VaultPaths, ttl: Duration) -> SecretsVault {
        SecretsVault { paths, cache: Mutex::new(None), ttl }
    }

    pub fn paths(&self) -> &VaultPaths {
        &self.paths
    }

    /// Decrypts now (start-up: a broken setup is reported before sealing) and
    /// returns how many values the file holds.
    pub fn load(&self) -> Result<usize, SopsError> {
        self.with_values(|values| values.len())
    }

    /// Which of `names` the file holds (names only; no value leaves).
    pub fn present(&self, names: &[String]) -> Result<Vec<String>, SopsError> {
        self.with_values(|values| names.iter().filter(|n| values.contains_key(*n)).cloned().collect())
    }

    /// The values of those `names` the file holds, in the order asked.
    pub fn release(&self, names: &[String]) -> Result<Vec<(String, Zeroizing<String>)>, SopsError> {
        self.with_values(|values| {
            names.iter().filter_map(|n| values.get(n).map(|v| (n.clone(), Zeroizing::new(v.to_string())))).collect()
        })
    }

    fn with_values<T>(&self, read: impl FnOnce(&SecretValues) -> T) -> Result<T, SopsError> {
        let secrets = FileStamp::of(&self.paths.secrets_file)?;
        let key = FileStamp::of(&self.paths.key_file)?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let fresh =
            cache.as_ref().is_some_and(|c| c.secrets == secrets && c.key == key && c.loaded.elapsed() < self.ttl);
        if !fresh {
            // The old values go (and are wiped) before the file is read again:
            // a file that no longer decrypts releases nothing.
            *cache = None;
            let (document, read_stamp) = sops::decrypt_file(&self.paths.secrets_file, &self.paths.key_file)?;
            *cache = Some(Cached { secrets: read_stamp, key, loaded: Instant::now(), values: document.secrets() });
        }
        let cached = cache.as_ref().ok_or(SopsError::NotEncrypted)?;
        Ok(read(&cached.values))
    }

    /// Drops the decrypted values now (they are wiped).
    pub fn forget(&self) {
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sops::{AgeIdentities, DecryptedDocument, Format, replace_private_file};

    struct Setup {
        _dir: tempfile::TempDir,
        paths: VaultPaths,
        ids: AgeIdentities,
    }

    fn setup(values: &[(&str, &str)]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let paths = VaultPaths { secrets_file: dir.path().join("secrets.yaml"), key_file: dir.path().join("age.txt") };
        let ids = AgeIdentities::generate();
        replace_private_file(&paths.key_file, ids.to_file_text("now").as_bytes()).unwrap();
        let setup = Setup { _dir: dir, paths, ids };
        setup.write(values);
        setup
    }

    impl Setup {
        fn write(&self, values: &[(&str, &str)]) {
            let mut doc = DecryptedDocument::new_empty(&self.ids.primary_recipient(), Format::Yaml).unwrap();
            for (k, v) in values {
                doc.set(k, Zeroizing::new(v.to_string()));
            }
            let text = doc.encrypt(time::OffsetDateTime::now_utc()).unwrap();
            replace_private_file(&self.paths.secrets_file, text.as_bytes()).unwrap();
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn presence_and_release_name_only_what_was_asked() {
        let s = setup(&[("A_TOKEN", "a-value"), ("B_TOKEN", "b-value")]);
        let vault = SecretsVault::new(s.paths.clone());
        assert_eq!(vault.load().unwrap(), 2);
        assert_eq!(vault.present(&names(&["A_TOKEN", "MISSING"])).unwrap(), names(&["A_TOKEN"]));
        let released = vault.release(&names(&["A_TOKEN", "MISSING"])).unwrap();
        assert_eq!(released.len(), 1);
        assert_eq!((released[0].0.as_str(), released[0].1.as_str()), ("A_TOKEN", "a-value"));
    }

    #[test]
    fn an_edited_file_is_read_again_before_the_ttl_ends() {
        let s = setup(&[("A_TOKEN", "old")]);
        let vault = SecretsVault::new(s.paths.clone());
        assert_eq!(vault.release(&names(&["A_TOKEN"])).unwrap()[0].1.as_str(), "old");
        s.write(&[("A_TOKEN", "new")]);
        assert_eq!(vault.release(&names(&["A_TOKEN"])).unwrap()[0].1.as_str(), "new");
    }

    #[test]
    fn a_file_tampered_after_loading_releases_nothing() {
        let s = setup(&[("A_TOKEN", "value")]);
        let vault = SecretsVault::with_ttl(s.paths.clone(), Duration::ZERO);
        vault.load().unwrap();
        let text = std::fs::read_to_string(&s.paths.secrets_file).unwrap();
        let tampered = text.replacen("data:", "data:AAAA", 1);
        replace_private_file(&s.paths.secrets_file, tampered.as_bytes()).unwrap();
        let err = vault.release(&names(&["A_TOKEN"])).unwrap_err();
        assert_eq!(err.code(), "sops_value_tampered", "{err}");
        assert!(vault.cache.lock().unwrap().is_none(), "the old values were dropped");
    }

    #[test]
    fn a_group_readable_key_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let s = setup(&[("A_TOKEN", "value")]);
        std::fs::set_permissions(&s.paths.key_file, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = SecretsVault::new(s.paths.clone()).load().unwrap_err();
        assert_eq!(err.code(), "sops_key_insecure_permissions", "{err}");
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
}
