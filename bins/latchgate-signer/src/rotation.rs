//! `latchgate keys rotate receipt|grant|lease`: replace one signing key in the
//! key dir and keep its public half where verifiers find it.
//!
//! | key     | old public key goes to        | trusted until                         |
//! |---------|-------------------------------|---------------------------------------|
//! | receipt | `receipt-keys.jwks.json`      | forever (receipts are evidence)       |
//! | lease   | `retired-keys.json`           | rotation + longest lease TTL + skew   |
//! | grant   | `retired-keys.json`           | rotation + longest grant lifetime     |
//!
//! Order of writes: the public half is recorded first, then the new private
//! key replaces the old one by rename. A crash in between leaves the old key
//! in use and an extra (harmless) public entry, never a key nobody can verify.
//! A running signer notices the changed files and reloads (`crate::reload`);
//! its book of outstanding grants survives the reload.

use std::fs::File;
use std::path::Path;

use latchgate_core::jose::{LEASE_MAX_TTL_SECONDS, OkpSigningJwk};
use serde::Serialize;

use crate::grant_book::{FINALISE_GRACE_SECONDS, MAX_GRANT_TTL_SECONDS, MAX_ISSUE_SKEW_SECONDS};
use crate::keystore::{
    self, GRANT_KEY_FILE, KeyStore, KeyStoreError, LEASE_KEY_FILE, RECEIPT_KEY_FILE, RECEIPT_KEY_HISTORY_FILE,
    RETIRED_KEYS_FILE, RetiredKey,
};

/// Which signing key to replace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    Receipt,
    Grant,
    Lease,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Receipt => "receipt",
            KeyKind::Grant => "grant",
            KeyKind::Lease => "lease",
        }
    }

    /// How long the replaced key must stay trusted after `now`; `None` = forever.
    pub fn verify_old_until(self, now: i64) -> Option<i64> {
        match self {
            KeyKind::Receipt => None,
            // A lease signed just before the rotation lives at most the longest TTL.
            KeyKind::Lease => Some(now + LEASE_MAX_TTL_SECONDS as i64 + MAX_ISSUE_SKEW_SECONDS),
            // The executor verifies a grant when the call starts, within its lifetime;
            // the finalise grace covers a call that starts just before expiry.
            KeyKind::Grant => Some(now + MAX_GRANT_TTL_SECONDS + FINALISE_GRACE_SECONDS),
        }
    }
}

/// What one rotation did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rotation {
    pub kind: KeyKind,
    pub old_kid: String,
    pub new_kid: String,
    /// Unix seconds until which the old key still verifies; `None` = forever.
    pub old_key_verifies_until: Option<i64>,
}

/// `latchgate keys init`: a complete key set in `key_dir`, generated where
/// missing, including an empty `retired-keys.json` so that every file a
/// systemd `LoadCredential=` line names exists before the first rotation.
pub fn init(key_dir: &Path) -> Result<KeyStore, KeyStoreError> {
    let store = KeyStore::load_or_generate(key_dir)?;
    match keystore::create_private_file(&key_dir.join(RETIRED_KEYS_FILE), b"{\"lease\": [], \"grant\": []}\n") {
        Err(KeyStoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {}
        other => other?,
    }
    Ok(store)
}

/// Replace the `kind` key in `key_dir` (which must already hold a complete key set).
pub fn rotate(key_dir: &Path, kind: KeyKind, now: i64) -> Result<Rotation, KeyStoreError> {
    // One rotation at a time: a second CLI waits here instead of interleaving writes.
    let lock = File::open(key_dir).map_err(|source| KeyStoreError::Io { path: key_dir.to_owned(), source })?;
    lock.lock().map_err(|source| KeyStoreError::Io { path: key_dir.to_owned(), source })?;
    let current = KeyStore::load(key_dir)?;
    let verify_until = kind.verify_old_until(now);
    let rotation = match kind {
        KeyKind::Receipt => {
            let path = key_dir.join(RECEIPT_KEY_FILE);
            let pkcs8 = keystore::generate_ed25519_pkcs8()?;
            let new = OkpSigningJwk::new(&keystore::ed25519_public(&path, &pkcs8, "Ed25519 receipt")?);
            let history_path = key_dir.join(RECEIPT_KEY_HISTORY_FILE);
            let mut history = keystore::read_receipt_history(&history_path)?;
            history.keys.retain(|k| k.kid != new.kid);
            history.keys.insert(0, new.clone());
            keystore::write_json(&history_path, &history)?;
            keystore::replace_file(&path, &pkcs8)?;
            Rotation {
                kind,
                old_kid: current.receipt_kid().to_string(),
                new_kid: new.kid,
                old_key_verifies_until: None,
            }
        }
        KeyKind::Grant | KeyKind::Lease => {
            let until = verify_until.unwrap_or(now);
            let retired_at = now;
            let (path, pkcs8, new_kid, old_kid) = if kind == KeyKind::Grant {
                let path = key_dir.join(GRANT_KEY_FILE);
                let pkcs8 = keystore::generate_ed25519_pkcs8()?;
                let new_kid = OkpSigningJwk::new(&keystore::ed25519_public(&path, &pkcs8, "Ed25519 grant")?).kid;
                let old = OkpSigningJwk::new(&current.grant_public_key());
                let old_kid = old.kid.clone();
                retire(key_dir, now, |r| r.grant.push(RetiredKey { jwk: old, retired_at, verify_until: until }))?;
                (path, pkcs8, new_kid, old_kid)
            } else {
                let path = key_dir.join(LEASE_KEY_FILE);
                let pkcs8 = keystore::generate_lease_pkcs8()?;
                let new_kid = keystore::es256_public(&path, &pkcs8)?.kid;
                let old = current.lease_public_jwk();
                let old_kid = old.kid.clone();
                retire(key_dir, now, |r| r.lease.push(RetiredKey { jwk: old, retired_at, verify_until: until }))?;
                (path, pkcs8, new_kid, old_kid)
            };
            keystore::replace_file(&path, &pkcs8)?;
            Rotation { kind, old_kid, new_kid, old_key_verifies_until: verify_until }
        }
    };
    // The dir fsync in replace_file made the new key durable; the lock ends with `lock`.
    drop(lock);
    Ok(rotation)
}

/// Add to `retired-keys.json`, dropping entries nothing can need any more.
fn retire(key_dir: &Path, now: i64, add: impl FnOnce(&mut keystore::RetiredKeys)) -> Result<(), KeyStoreError> {
    let path = key_dir.join(RETIRED_KEYS_FILE);
    let mut retired = keystore::read_retired(&path)?;
    retired.lease.retain(|k| k.verify_until > now);
    retired.grant.retain(|k| k.verify_until > now);
    add(&mut retired);
    keystore::write_json(&path, &retired)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};
    use latchgate_core::jose::{LeaseBudgets, LeaseClaims, LeaseParams, LeaseVerifier};
    use std::os::unix::fs::PermissionsExt;

    const NOW: i64 = 1_800_000_000;

    fn key_dir() -> (tempfile::TempDir, std::path::PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        KeyStore::load_or_generate(&dir).unwrap();
        (tmp, dir)
    }

    fn lease_claims() -> LeaseClaims {
        let params = LeaseParams {
            principal: "alice".into(),
            scopes: vec!["echo:run".into()],
            dpop_jkt: "jkt".into(),
            session_id: "s1".into(),
            epoch: 0,
            budgets: LeaseBudgets::default(),
            ttl_seconds: Some(3600),
        };
        LeaseClaims::new(params, NOW).unwrap()
    }

    #[test]
    fn receipt_signed_before_rotation_verifies_with_the_history_after_it() {
        let (_tmp, dir) = key_dir();
        let before = KeyStore::load(&dir).unwrap();
        let (old_kid, old_sig) = before.sign_receipt(b"old receipt");
        let rotation = rotate(&dir, KeyKind::Receipt, NOW).unwrap();
        assert_eq!(rotation.old_kid, old_kid);
        assert_eq!(rotation.old_key_verifies_until, None, "receipt keys are trusted forever");

        let after = KeyStore::load(&dir).unwrap();
        assert_eq!(after.receipt_kid(), rotation.new_kid);
        assert_ne!(after.receipt_kid(), old_kid);
        let history = after.receipt_jwks();
        assert_eq!(history.keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(), [&rotation.new_kid, &old_kid]);
        let old = history.keys.iter().find(|k| k.kid == old_kid).unwrap();
        VerifyingKey::from_bytes(&old.public_key().unwrap())
            .unwrap()
            .verify(b"old receipt", &Signature::from_bytes(&old_sig))
            .unwrap();
        // A second rotation appends again; nothing is ever removed.
        rotate(&dir, KeyKind::Receipt, NOW + 10).unwrap();
        assert_eq!(KeyStore::load(&dir).unwrap().receipt_jwks().keys.len(), 3);
    }

    #[test]
    fn lease_signed_before_rotation_verifies_until_the_longest_ttl_has_passed() {
        let (_tmp, dir) = key_dir();
        let old_lease = KeyStore::load(&dir).unwrap().sign_lease(&lease_claims()).unwrap();
        let rotation = rotate(&dir, KeyKind::Lease, NOW).unwrap();
        let until = rotation.old_key_verifies_until.unwrap();
        assert!(until >= NOW + LEASE_MAX_TTL_SECONDS as i64, "{until}");

        let after = KeyStore::load(&dir).unwrap();
        assert_eq!(after.lease_kid(), rotation.new_kid);
        let jwks = after.lease_jwks_at(NOW + 60);
        assert_eq!(
            jwks.keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
            [&rotation.new_kid, &rotation.old_kid]
        );
        let verifier = LeaseVerifier::from_jwks(&jwks).unwrap();
        verifier.verify(&old_lease, NOW + 60).unwrap();
        verifier.verify(&after.sign_lease(&lease_claims()).unwrap(), NOW + 60).unwrap();
        // Once every old lease has expired, the old key is no longer published.
        assert_eq!(after.lease_jwks_at(until).keys.len(), 1);
    }

    #[test]
    fn grant_key_rotation_keeps_the_old_key_for_grants_in_flight_then_drops_it() {
        let (_tmp, dir) = key_dir();
        let old = KeyStore::load(&dir).unwrap();
        let (old_kid, sig) = old.sign_grant(b"grant");
        let rotation = rotate(&dir, KeyKind::Grant, NOW).unwrap();
        let after = KeyStore::load(&dir).unwrap();
        let keys = after.grant_public_keys_at(NOW + 5);
        assert_eq!(keys[0].0, after.grant_kid(), "current key first");
        let (_, raw) = keys.iter().find(|(kid, _)| *kid == old_kid).expect("old grant key still published");
        VerifyingKey::from_bytes(raw).unwrap().verify(b"grant", &Signature::from_bytes(&sig)).unwrap();
        let until = rotation.old_key_verifies_until.unwrap();
        assert_eq!(after.grant_public_keys_at(until).len(), 1);
        // A later rotation prunes retired keys nothing can need any more.
        rotate(&dir, KeyKind::Grant, until + 1).unwrap();
        let retired = KeyStore::load(&dir).unwrap().retired().grant.clone();
        assert_eq!(retired.len(), 1, "{retired:?}");
        assert_ne!(retired[0].jwk.kid, old_kid);
    }

    #[test]
    fn rotated_files_are_private_and_leave_no_temp_files() {
        let (_tmp, dir) = key_dir();
        for kind in [KeyKind::Receipt, KeyKind::Grant, KeyKind::Lease] {
            rotate(&dir, kind, NOW).unwrap();
        }
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(!name.ends_with(".tmp"), "{name}");
            assert_eq!(entry.metadata().unwrap().permissions().mode() & 0o777, 0o600, "{name}");
        }
    }

    #[test]
    fn root_rotating_a_signer_owned_key_dir_leaves_files_the_signer_can_read() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED: needs root to chown the key dir");
            return;
        }
        let (_tmp, dir) = key_dir();
        let owner = 4242;
        for entry in std::fs::read_dir(&dir).unwrap() {
            std::os::unix::fs::chown(entry.unwrap().path(), Some(owner), Some(owner)).unwrap();
        }
        std::os::unix::fs::chown(&dir, Some(owner), Some(owner)).unwrap();
        rotate(&dir, KeyKind::Lease, NOW).unwrap();
        use std::os::unix::fs::MetadataExt;
        for name in [LEASE_KEY_FILE, RETIRED_KEYS_FILE] {
            let meta = std::fs::metadata(dir.join(name)).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (owner, owner), "{name}");
        }
    }

    #[test]
    fn rotation_without_keys_names_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let e = rotate(&dir, KeyKind::Receipt, NOW).unwrap_err();
        assert_eq!(e.code(), "keystore_missing");
        assert!(e.to_string().contains("latchgate keys init"), "{e}");
    }

    #[test]
    fn init_writes_every_file_a_credential_line_names_and_is_idempotent() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let first = init(&dir).unwrap();
        for name in keystore::KEY_DIR_FILES {
            assert!(dir.join(name).is_file(), "{name}");
        }
        let again = init(&dir).unwrap();
        assert_eq!(first.receipt_kid(), again.receipt_kid());
        assert_eq!(KeyStore::load(&dir).unwrap().retired(), &keystore::RetiredKeys::default());
    }

    #[test]
    fn read_only_load_creates_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(KeyStore::load(&dir).unwrap_err().code(), "keystore_missing");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }

    #[test]
    fn a_tampered_retired_key_list_is_refused() {
        let (_tmp, dir) = key_dir();
        rotate(&dir, KeyKind::Lease, NOW).unwrap();
        let path = dir.join(RETIRED_KEYS_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        doc["lease"][0]["jwk"]["kid"] = "someone-else".into();
        std::fs::write(&path, doc.to_string()).unwrap();
        assert_eq!(KeyStore::load(&dir).unwrap_err().code(), "keystore_corrupt_retired");
    }
}
