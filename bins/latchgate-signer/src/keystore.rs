//! The signer's three private keys, generated on first run and persisted:
//!
//! | file (in the key dir, 0700)  | key                         | used for                 |
//! |------------------------------|-----------------------------|--------------------------|
//! | `lease-es256.p8`             | P-256, PKCS#8 DER           | lease JWTs (ES256)       |
//! | `grant-ed25519.p8`           | Ed25519, PKCS#8 DER         | grants                   |
//! | `receipt-ed25519.p8`         | Ed25519, PKCS#8 DER         | receipts                 |
//! | `receipt-keys.jwks.json`     | public JWKS, current first  | verifying old receipts   |
//! | `retired-keys.json`          | public lease/grant keys     | leases/grants in flight  |
//!
//! Key files are created 0600 in one step (`O_CREAT|O_EXCL` with the mode, then
//! a hard link into place so a crash never leaves a half-written key under the
//! real name) and refused at load when group or other have any permission bit.
//! A root process (the CLI) writing here gives every file it creates to the
//! directory's owner, so the signer can still read it.
//!
//! Rotation (`crate::rotation`) replaces a key file and keeps the old public
//! half: receipt keys in the history forever, lease and grant keys in
//! `retired-keys.json` until every lease/grant they signed has expired.
//! Nothing outside this crate learns a private key.

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signer, SigningKey};
use latchgate_core::jose::{
    EcPublicJwk, EcSigningJwk, EcdsaKeyPair, Jwks, LeaseClaims, LeaseJwks, OkpSigningJwk, ReceiptJwks, ed25519_kid,
    es256_key_from_pkcs8, es256_public_jwk, generate_es256_pkcs8, sign_es256_jws,
};
use zeroize::Zeroizing;

pub const LEASE_KEY_FILE: &str = "lease-es256.p8";
pub const GRANT_KEY_FILE: &str = "grant-ed25519.p8";
pub const RECEIPT_KEY_FILE: &str = "receipt-ed25519.p8";
pub const RECEIPT_KEY_HISTORY_FILE: &str = "receipt-keys.jwks.json";
pub const RETIRED_KEYS_FILE: &str = "retired-keys.json";

/// Every file of a key dir, in the order a watcher stamps them.
pub const KEY_DIR_FILES: [&str; 5] =
    [LEASE_KEY_FILE, GRANT_KEY_FILE, RECEIPT_KEY_FILE, RECEIPT_KEY_HISTORY_FILE, RETIRED_KEYS_FILE];

/// A PKCS#8 key is ~140 bytes; anything much larger is not one of ours.
const MAX_KEY_FILE_BYTES: u64 = 16 * 1024;
const MAX_HISTORY_FILE_BYTES: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error(
        "{kind} {path} has mode {mode:04o}: group and other must have no access; fix with `chmod {wanted:o} {path}`"
    )]
    InsecurePermissions { kind: &'static str, path: PathBuf, mode: u32, wanted: u32 },
    #[error("{path} is not a regular {expected} (symlinks are refused)")]
    WrongFileType { path: PathBuf, expected: &'static str },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} does not hold a valid {what} key: {reason}")]
    CorruptKey { path: PathBuf, what: &'static str, reason: String },
    #[error("{path} is not a valid receipt key history: {reason}")]
    CorruptHistory { path: PathBuf, reason: String },
    #[error("{path} is not a valid retired key list: {reason}")]
    CorruptRetired { path: PathBuf, reason: String },
    #[error("{path} does not exist: the keys were never generated (run `latchgate keys init`, or start the gate once)")]
    Missing { path: PathBuf },
    #[error("lease signing failed: {0}")]
    Signing(&'static str),
}

impl KeyStoreError {
    pub fn code(&self) -> &'static str {
        match self {
            KeyStoreError::InsecurePermissions { .. } => "keystore_insecure_permissions",
            KeyStoreError::WrongFileType { .. } => "keystore_wrong_file_type",
            KeyStoreError::Io { .. } => "keystore_io",
            KeyStoreError::CorruptKey { .. } => "keystore_corrupt_key",
            KeyStoreError::CorruptHistory { .. } => "keystore_corrupt_history",
            KeyStoreError::CorruptRetired { .. } => "keystore_corrupt_retired",
            KeyStoreError::Missing { .. } => "keystore_missing",
            KeyStoreError::Signing(_) => "keystore_signing_failed",
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> KeyStoreError + '_ {
    move |source| KeyStoreError::Io { path: path.to_owned(), source }
}

/// The signer's keys. Private halves stay inside; `Debug` shows key ids only.
/// The Ed25519 keys zeroize themselves on drop; the P-256 key lives in
/// `ring`, which does not, so its PKCS#8 bytes are at least wiped after load.
pub struct KeyStore {
    lease_key: EcdsaKeyPair,
    lease_jwk: EcPublicJwk,
    lease_kid: String,
    grant_key: SigningKey,
    grant_kid: String,
    receipt_key: SigningKey,
    receipt_kid: String,
    receipt_history: ReceiptJwks,
    retired: RetiredKeys,
}

/// A replaced key's public half, still trusted until `verify_until` (unix s).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetiredKey<K> {
    pub jwk: K,
    pub retired_at: i64,
    pub verify_until: i64,
}

/// `retired-keys.json`: lease and grant keys replaced by a rotation.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetiredKeys {
    #[serde(default)]
    pub lease: Vec<RetiredKey<EcSigningJwk>>,
    #[serde(default)]
    pub grant: Vec<RetiredKey<OkpSigningJwk>>,
}

/// Whether loading may create what is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// First run: generate missing keys and fix up the history file.
    Generate,
    /// Reload, or a read-only source such as systemd's `$CREDENTIALS_DIRECTORY`:
    /// every key must exist and nothing is written.
    ReadOnly,
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore")
            .field("lease_kid", &self.lease_kid)
            .field("grant_kid", &self.grant_kid)
            .field("receipt_kid", &self.receipt_kid)
            .finish_non_exhaustive()
    }
}

impl KeyStore {
    /// Load the three keys from `key_dir`, generating any that is missing.
    pub fn load_or_generate(key_dir: &Path) -> Result<KeyStore, KeyStoreError> {
        ensure_private_dir(key_dir)?;
        Self::load_with(key_dir, Mode::Generate)
    }

    /// Load the keys without creating or changing anything (reload after a
    /// rotation, systemd credentials). A missing key is an error.
    pub fn load(key_dir: &Path) -> Result<KeyStore, KeyStoreError> {
        let meta = fs::symlink_metadata(key_dir).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => KeyStoreError::Missing { path: key_dir.to_owned() },
            _ => io_err(key_dir)(e),
        })?;
        if !meta.file_type().is_dir() {
            return Err(KeyStoreError::WrongFileType { path: key_dir.to_owned(), expected: "directory" });
        }
        check_mode(key_dir, "key directory", meta.mode(), 0o700)?;
        Self::load_with(key_dir, Mode::ReadOnly)
    }

    fn load_with(key_dir: &Path, mode: Mode) -> Result<KeyStore, KeyStoreError> {
        let lease_path = key_dir.join(LEASE_KEY_FILE);
        let lease_pkcs8 = load_key_file(&lease_path, mode, || {
            generate_es256_pkcs8().map(Zeroizing::new).map_err(|_| KeyStoreError::Signing("P-256 key generation"))
        })?;
        let lease_key = es256_key_from_pkcs8(&lease_pkcs8).map_err(|e| corrupt(&lease_path, "P-256 lease", e))?;
        let lease_jwk = es256_public_jwk(&lease_key).map_err(|e| corrupt(&lease_path, "P-256 lease", e))?;
        let lease_kid = lease_jwk.thumbprint();

        let grant_path = key_dir.join(GRANT_KEY_FILE);
        let grant_key = load_ed25519(&grant_path, "Ed25519 grant", mode)?;
        let receipt_path = key_dir.join(RECEIPT_KEY_FILE);
        let receipt_key = load_ed25519(&receipt_path, "Ed25519 receipt", mode)?;

        let receipt_history = sync_receipt_history(&key_dir.join(RECEIPT_KEY_HISTORY_FILE), &receipt_key, mode)?;
        let retired = read_retired(&key_dir.join(RETIRED_KEYS_FILE))?;
        Ok(KeyStore {
            lease_key,
            lease_jwk,
            lease_kid,
            grant_kid: ed25519_kid(grant_key.verifying_key().as_bytes()),
            grant_key,
            receipt_kid: ed25519_kid(receipt_key.verifying_key().as_bytes()),
            receipt_key,
            receipt_history,
            retired,
        })
    }

    /// A lease JWT (`alg` ES256, `typ` JWT, `kid` = the lease key's thumbprint).
    pub fn sign_lease(&self, claims: &LeaseClaims) -> Result<String, KeyStoreError> {
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": self.lease_kid}).to_string();
        let claims = serde_json::to_string(claims).map_err(|_| KeyStoreError::Signing("claims serialisation"))?;
        sign_es256_jws(&header, &claims, &self.lease_key).map_err(|e| KeyStoreError::Signing(e.code()))
    }

    /// Ed25519 signature over `message` (the JCS bytes of a grant) and the grant kid.
    pub fn sign_grant(&self, message: &[u8]) -> (String, [u8; 64]) {
        (self.grant_kid.clone(), self.grant_key.sign(message).to_bytes())
    }

    /// Ed25519 signature over `message` (the JCS bytes of a receipt) and the receipt kid.
    pub fn sign_receipt(&self, message: &[u8]) -> (String, [u8; 64]) {
        (self.receipt_kid.clone(), self.receipt_key.sign(message).to_bytes())
    }

    /// `/.well-known/jwks.json`: the current lease key, then every retired
    /// lease key that may still have unexpired leases out.
    pub fn lease_jwks(&self) -> LeaseJwks {
        self.lease_jwks_at(unix_now())
    }

    pub fn lease_jwks_at(&self, now: i64) -> LeaseJwks {
        let current = EcSigningJwk::new(&self.lease_jwk);
        let retired = live(&self.retired.lease, now).filter(|k| k.kid != current.kid).cloned();
        Jwks { keys: std::iter::once(current.clone()).chain(retired).collect() }
    }

    /// Grant verification keys `(kid, raw key)`: current first, then retired
    /// grant keys whose grants may still be running.
    pub fn grant_public_keys(&self) -> Vec<(String, [u8; 32])> {
        self.grant_public_keys_at(unix_now())
    }

    pub fn grant_public_keys_at(&self, now: i64) -> Vec<(String, [u8; 32])> {
        let current = (self.grant_kid.clone(), self.grant_public_key());
        let retired = live(&self.retired.grant, now)
            .filter(|k| k.kid != self.grant_kid)
            .filter_map(|k| k.public_key().ok().map(|raw| (k.kid.clone(), raw)));
        std::iter::once(current).chain(retired).collect()
    }

    /// The retired lease and grant keys as stored (expired ones included).
    pub fn retired(&self) -> &RetiredKeys {
        &self.retired
    }

    pub(crate) fn lease_public_jwk(&self) -> EcSigningJwk {
        EcSigningJwk::new(&self.lease_jwk)
    }

    pub fn lease_kid(&self) -> &str {
        &self.lease_kid
    }

    /// Every receipt key ever used here, current first.
    pub fn receipt_jwks(&self) -> ReceiptJwks {
        self.receipt_history.clone()
    }

    pub fn receipt_kid(&self) -> &str {
        &self.receipt_kid
    }

    /// Raw Ed25519 public key the executor verifies grants with.
    pub fn grant_public_key(&self) -> [u8; 32] {
        self.grant_key.verifying_key().to_bytes()
    }

    /// Whether `signature` over `message` was made with this signer's grant key.
    pub fn verify_grant(&self, message: &[u8], signature: &ed25519_dalek::Signature) -> bool {
        self.grant_key.verifying_key().verify_strict(message, signature).is_ok()
    }

    pub fn grant_kid(&self) -> &str {
        &self.grant_kid
    }

    pub fn grant_jwk(&self) -> OkpSigningJwk {
        OkpSigningJwk::new(&self.grant_public_key())
    }
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn live<K>(keys: &[RetiredKey<K>], now: i64) -> impl Iterator<Item = &K> {
    keys.iter().filter(move |k| k.verify_until > now).map(|k| &k.jwk)
}

fn corrupt(path: &Path, what: &'static str, reason: impl fmt::Display) -> KeyStoreError {
    KeyStoreError::CorruptKey { path: path.to_owned(), what, reason: reason.to_string() }
}

fn load_ed25519(path: &Path, what: &'static str, mode: Mode) -> Result<SigningKey, KeyStoreError> {
    let pkcs8 = load_key_file(path, mode, generate_ed25519_pkcs8)?;
    SigningKey::from_pkcs8_der(&pkcs8).map_err(|e| corrupt(path, what, e))
}

pub(crate) fn generate_ed25519_pkcs8() -> Result<Zeroizing<Vec<u8>>, KeyStoreError> {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let doc = key.to_pkcs8_der().map_err(|_| KeyStoreError::Signing("Ed25519 key encoding"))?;
    Ok(Zeroizing::new(doc.as_bytes().to_vec()))
}

pub(crate) fn ed25519_public(path: &Path, pkcs8: &[u8], what: &'static str) -> Result<[u8; 32], KeyStoreError> {
    let key = SigningKey::from_pkcs8_der(pkcs8).map_err(|e| corrupt(path, what, e))?;
    Ok(key.verifying_key().to_bytes())
}

pub(crate) fn es256_public(path: &Path, pkcs8: &[u8]) -> Result<EcSigningJwk, KeyStoreError> {
    let key = es256_key_from_pkcs8(pkcs8).map_err(|e| corrupt(path, "P-256 lease", e))?;
    let jwk = es256_public_jwk(&key).map_err(|e| corrupt(path, "P-256 lease", e))?;
    Ok(EcSigningJwk::new(&jwk))
}

pub(crate) fn generate_lease_pkcs8() -> Result<Zeroizing<Vec<u8>>, KeyStoreError> {
    generate_es256_pkcs8().map(Zeroizing::new).map_err(|_| KeyStoreError::Signing("P-256 key generation"))
}

/// A key file read as `mode` allows: created when missing in `Generate`,
/// an error in `ReadOnly`.
fn load_key_file(
    path: &Path,
    mode: Mode,
    generate: impl FnOnce() -> Result<Zeroizing<Vec<u8>>, KeyStoreError>,
) -> Result<Zeroizing<Vec<u8>>, KeyStoreError> {
    match mode {
        Mode::Generate => load_or_create_key_file(path, generate),
        Mode::ReadOnly => read_private_file(path, MAX_KEY_FILE_BYTES).map_err(|e| match e {
            KeyStoreError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                KeyStoreError::Missing { path: path.to_owned() }
            }
            other => other,
        }),
    }
}

/// The key dir must be a real directory with no group/other access; it is
/// created 0700 when missing (its parents with the default mode).
fn ensure_private_dir(dir: &Path) -> Result<(), KeyStoreError> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent).map_err(io_err(parent))?;
            }
            match DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err(dir)(e)),
            }
        }
        Err(e) => return Err(io_err(dir)(e)),
        Ok(_) => {}
    }
    let meta = fs::symlink_metadata(dir).map_err(io_err(dir))?;
    if !meta.file_type().is_dir() {
        return Err(KeyStoreError::WrongFileType { path: dir.to_owned(), expected: "directory" });
    }
    check_mode(dir, "key directory", meta.mode(), 0o700)
}

fn check_mode(path: &Path, kind: &'static str, mode: u32, wanted: u32) -> Result<(), KeyStoreError> {
    if mode & 0o077 != 0 {
        return Err(KeyStoreError::InsecurePermissions { kind, path: path.to_owned(), mode: mode & 0o7777, wanted });
    }
    Ok(())
}

/// Read a private key file, or create it with `generate` when absent.
fn load_or_create_key_file(
    path: &Path,
    generate: impl FnOnce() -> Result<Zeroizing<Vec<u8>>, KeyStoreError>,
) -> Result<Zeroizing<Vec<u8>>, KeyStoreError> {
    match read_private_file(path, MAX_KEY_FILE_BYTES) {
        Err(KeyStoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
        other => return other,
    }
    let bytes = generate()?;
    match create_private_file(path, &bytes) {
        Ok(()) => Ok(bytes),
        // Another instance won the race: use its key, not ours.
        Err(KeyStoreError::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {
            read_private_file(path, MAX_KEY_FILE_BYTES)
        }
        Err(e) => Err(e),
    }
}

/// Open without following symlinks, then check type and mode on the open
/// file itself so the check and the read concern the same inode.
pub(crate) fn read_private_file(path: &Path, max: u64) -> Result<Zeroizing<Vec<u8>>, KeyStoreError> {
    let file =
        OpenOptions::new().read(true).custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC).open(path).map_err(
            |e| {
                if e.raw_os_error() == Some(nix::libc::ELOOP) {
                    KeyStoreError::WrongFileType { path: path.to_owned(), expected: "file" }
                } else {
                    io_err(path)(e)
                }
            },
        )?;
    let meta = file.metadata().map_err(io_err(path))?;
    if !meta.file_type().is_file() {
        return Err(KeyStoreError::WrongFileType { path: path.to_owned(), expected: "file" });
    }
    check_mode(path, "key file", meta.mode(), 0o600)?;
    if meta.len() > max {
        return Err(corrupt(path, "private", format!("file is {} bytes, more than {max}", meta.len())));
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(meta.len() as usize));
    file.take(max + 1).read_to_end(&mut bytes).map_err(io_err(path))?;
    Ok(bytes)
}

/// Write `bytes` to a new file at `path`, mode 0600 from creation. Fails with
/// `AlreadyExists` when `path` exists; never replaces a key.
pub(crate) fn create_private_file(path: &Path, bytes: &[u8]) -> Result<(), KeyStoreError> {
    let tmp = temp_sibling(path);
    // A leftover from a crash mid-write; it never became the key.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&tmp)(e)),
        _ => {}
    }
    write_new_file(&tmp, bytes)?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    linked.map_err(io_err(path))?;
    sync_parent(path)
}

/// Replace `path` atomically (the public history file; a rotated key).
pub(crate) fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), KeyStoreError> {
    let tmp = temp_sibling(path);
    let _ = fs::remove_file(&tmp);
    write_new_file(&tmp, bytes)?;
    fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_parent(path)
}

pub(crate) fn write_new_file(path: &Path, bytes: &[u8]) -> Result<(), KeyStoreError> {
    let mut file: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err(path))?;
    give_to_directory_owner(&file, path)?;
    file.write_all(bytes).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

/// Run as root (the CLI rotating keys), a new file would belong to root and
/// the signer could not read it: it goes to the owner of its directory.
fn give_to_directory_owner(file: &File, path: &Path) -> Result<(), KeyStoreError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let dir = fs::metadata(parent).map_err(io_err(parent))?;
    if dir.uid() == 0 && dir.gid() == 0 {
        return Ok(());
    }
    std::os::unix::fs::fchown(file, Some(dir.uid()), Some(dir.gid())).map_err(io_err(path))
}

pub(crate) fn temp_sibling(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

pub(crate) fn sync_parent(path: &Path) -> Result<(), KeyStoreError> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(parent).and_then(|d| d.sync_all()).map_err(io_err(parent))
}

/// The receipt key history as stored (empty when there is none yet).
pub(crate) fn read_receipt_history(path: &Path) -> Result<ReceiptJwks, KeyStoreError> {
    let history: ReceiptJwks = match read_private_file(path, MAX_HISTORY_FILE_BYTES) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| KeyStoreError::CorruptHistory { path: path.to_owned(), reason: e.to_string() })?,
        Err(KeyStoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Jwks::default(),
        Err(e) => return Err(e),
    };
    for key in &history.keys {
        key.public_key().map_err(|e| KeyStoreError::CorruptHistory {
            path: path.to_owned(),
            reason: format!("{}: {e}", key.kid),
        })?;
    }
    Ok(history)
}

pub(crate) fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), KeyStoreError> {
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| KeyStoreError::CorruptHistory { path: path.to_owned(), reason: e.to_string() })?;
    replace_file(path, &bytes)
}

/// Make sure the current receipt key heads the history; older keys stay so
/// receipts signed before a rotation still verify. Read-only sources get the
/// fix in memory only.
fn sync_receipt_history(path: &Path, current: &SigningKey, mode: Mode) -> Result<ReceiptJwks, KeyStoreError> {
    let current = OkpSigningJwk::new(current.verifying_key().as_bytes());
    let mut history = read_receipt_history(path)?;
    if history.keys.first() == Some(&current) {
        return Ok(history);
    }
    history.keys.retain(|k| k.kid != current.kid);
    history.keys.insert(0, current);
    if mode == Mode::Generate {
        write_json(path, &history)?;
    }
    Ok(history)
}

/// `retired-keys.json`, or none when the file does not exist (never rotated).
pub(crate) fn read_retired(path: &Path) -> Result<RetiredKeys, KeyStoreError> {
    let corrupt = |reason: String| KeyStoreError::CorruptRetired { path: path.to_owned(), reason };
    let retired: RetiredKeys = match read_private_file(path, MAX_HISTORY_FILE_BYTES) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?,
        Err(KeyStoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => RetiredKeys::default(),
        Err(e) => return Err(e),
    };
    for key in &retired.lease {
        key.jwk.public_jwk().map_err(|e| corrupt(format!("lease key {}: {e}", key.jwk.kid)))?;
        if key.jwk.public_jwk().map(|j| j.thumbprint()).ok().as_deref() != Some(key.jwk.kid.as_str()) {
            return Err(corrupt(format!("lease key {}: kid is not its thumbprint", key.jwk.kid)));
        }
    }
    for key in &retired.grant {
        key.jwk.public_key().map_err(|e| corrupt(format!("grant key {}: {e}", key.jwk.kid)))?;
    }
    Ok(retired)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicU32, Ordering};

    use ed25519_dalek::{Signature, Verifier, VerifyingKey};
    use latchgate_core::jose::{LeaseBudgets, LeaseParams, LeaseVerifier};

    use super::*;

    /// A scratch dir under the system temp dir, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Scratch {
            static COUNTER: AtomicU32 = AtomicU32::new(0);
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("lg-keys-{}-{n}-{nanos}", std::process::id()));
            fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn keys(&self) -> PathBuf {
            self.0.join("keys")
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    fn lease_claims() -> LeaseClaims {
        LeaseClaims::new(
            LeaseParams {
                principal: "alice".into(),
                scopes: vec!["echo:run".into()],
                dpop_jkt: "jkt".into(),
                session_id: "s1".into(),
                epoch: 3,
                budgets: LeaseBudgets::default(),
                ttl_seconds: None,
            },
            1_800_000_000,
        )
        .unwrap()
    }

    #[test]
    fn first_run_creates_every_key_0600_in_a_0700_dir() {
        let scratch = Scratch::new();
        KeyStore::load_or_generate(&scratch.keys()).unwrap();
        assert_eq!(mode(&scratch.keys()), 0o700);
        for file in [LEASE_KEY_FILE, GRANT_KEY_FILE, RECEIPT_KEY_FILE, RECEIPT_KEY_HISTORY_FILE] {
            assert_eq!(mode(&scratch.keys().join(file)), 0o600, "{file}");
        }
        let leftovers: Vec<_> = fs::read_dir(scratch.keys())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn keys_survive_a_restart_with_the_same_kids() {
        let scratch = Scratch::new();
        let first = KeyStore::load_or_generate(&scratch.keys()).unwrap();
        let lease = first.sign_lease(&lease_claims()).unwrap();
        drop(first);
        let second = KeyStore::load_or_generate(&scratch.keys()).unwrap();
        let again = KeyStore::load_or_generate(&scratch.keys()).unwrap();
        assert_eq!(second.lease_kid(), again.lease_kid());
        assert_eq!(second.grant_kid(), again.grant_kid());
        assert_eq!(second.receipt_kid(), again.receipt_kid());
        assert_eq!(second.receipt_jwks().keys.len(), 1);
        // A lease issued before the restart still verifies after it.
        let verifier = LeaseVerifier::from_jwks(&second.lease_jwks()).unwrap();
        verifier.verify(&lease, 1_800_000_010).unwrap();
    }

    #[test]
    fn key_file_readable_by_group_is_refused_with_the_fix() {
        let scratch = Scratch::new();
        KeyStore::load_or_generate(&scratch.keys()).unwrap();
        let grant = scratch.keys().join(GRANT_KEY_FILE);
        fs::set_permissions(&grant, fs::Permissions::from_mode(0o640)).unwrap();
        let err = KeyStore::load_or_generate(&scratch.keys()).unwrap_err();
        assert_eq!(err.code(), "keystore_insecure_permissions");
        assert_eq!(
            err.to_string(),
            format!(
                "key file {p} has mode 0640: group and other must have no access; fix with `chmod 600 {p}`",
                p = grant.display()
            )
        );
        fs::set_permissions(&grant, fs::Permissions::from_mode(0o600)).unwrap();
        KeyStore::load_or_generate(&scratch.keys()).unwrap();
    }

    #[test]
    fn world_readable_lease_key_is_refused() {
        let scratch = Scratch::new();
        KeyStore::load_or_generate(&scratch.keys()).unwrap();
        let lease = scratch.keys().join(LEASE_KEY_FILE);
        fs::set_permissions(&lease, fs::Permissions::from_mode(0o604)).unwrap();
        let err = KeyStore::load_or_generate(&scratch.keys()).unwrap_err();
        assert!(err.to_string().contains("mode 0604"), "{err}");
    }

    #[test]
    fn key_dir_open_to_group_is_refused_with_the_fix() {
        let scratch = Scratch::new();
        KeyStore::load_or_generate(&scratch.keys()).unwrap();
        fs::set_permissions(scratch.keys(), fs::Permissions::from_mode(0o750)).unwrap();
        let err = KeyStore::load_or_generate(&scratch.keys()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "key directory {p} has mode 0750: group and other must have no access; fix with `chmod 700 {p}`",
                p = scratch.keys().display()
            )
        );
    }

    #[test]
    fn symlinked_key_file_is_refused() {
        let scratch = Scratch::new();
        fs::create_dir(scratch.keys()).unwrap();
        fs::set_permissions(scratch.keys(), fs::Permissions::from_mode(0o700)).unwrap();
        let elsewhere = scratch.0.join("planted.p8");
        fs::write(&elsewhere, b"not a key").unwrap();
        std::os::unix::fs::symlink(&elsewhere, scratch.keys().join(LEASE_KEY_FILE)).unwrap();
        let err = KeyStore::load_or_generate(&scratch.keys()).unwrap_err();
        assert_eq!(err.code(), "keystore_wrong_file_type", "{err}");
    }

    #[test]
    fn corrupt_key_file_is_refused_not_replaced() {
        let scratch = Scratch::new();
        KeyStore::load_or_generate(&scratch.keys()).unwrap();
        let receipt = scratch.keys().join(RECEIPT_KEY_FILE);
        fs::write(&receipt, b"garbage").unwrap();
        let err = KeyStore::load_or_generate(&scratch.keys()).unwrap_err();
        assert_eq!(err.code(), "keystore_corrupt_key", "{err}");
        assert_eq!(fs::read(&receipt).unwrap(), b"garbage");
    }

    #[test]
    fn signatures_verify_with_the_exported_public_keys() {
        let scratch = Scratch::new();
        let store = KeyStore::load_or_generate(&scratch.keys()).unwrap();

        let claims = lease_claims();
        let lease = store.sign_lease(&claims).unwrap();
        let verifier = LeaseVerifier::from_jwks(&store.lease_jwks()).unwrap();
        assert_eq!(verifier.verify(&lease, 1_800_000_000).unwrap(), claims);
        assert_eq!(store.lease_jwks().keys[0].kid, store.lease_kid());

        let (kid, sig) = store.sign_grant(b"grant bytes");
        assert_eq!(kid, store.grant_kid());
        assert_eq!(store.grant_jwk().public_key().unwrap(), store.grant_public_key());
        let grant_key = VerifyingKey::from_bytes(&store.grant_public_key()).unwrap();
        grant_key.verify(b"grant bytes", &Signature::from_bytes(&sig)).unwrap();
        assert!(grant_key.verify(b"other bytes", &Signature::from_bytes(&sig)).is_err());

        let (kid, sig) = store.sign_receipt(b"receipt bytes");
        let published = store.receipt_jwks().keys.into_iter().find(|k| k.kid == kid).unwrap();
        let receipt_key = VerifyingKey::from_bytes(&published.public_key().unwrap()).unwrap();
        receipt_key.verify(b"receipt bytes", &Signature::from_bytes(&sig)).unwrap();
        // Grant and receipt keys are distinct: a grant signature is no receipt.
        assert_ne!(store.grant_kid(), store.receipt_kid());
        assert!(
            receipt_key.verify(b"grant bytes", &Signature::from_bytes(&store.sign_grant(b"grant bytes").1)).is_err()
        );
    }

    #[test]
    fn replaced_receipt_key_stays_in_history_for_old_receipts() {
        let scratch = Scratch::new();
        let first = KeyStore::load_or_generate(&scratch.keys()).unwrap();
        let (old_kid, old_sig) = first.sign_receipt(b"old receipt");
        drop(first);
        fs::remove_file(scratch.keys().join(RECEIPT_KEY_FILE)).unwrap();
        let second = KeyStore::load_or_generate(&scratch.keys()).unwrap();
        let history = second.receipt_jwks();
        assert_eq!(history.keys.len(), 2);
        assert_eq!(history.keys[0].kid, second.receipt_kid());
        let old = history.keys.iter().find(|k| k.kid == old_kid).unwrap();
        VerifyingKey::from_bytes(&old.public_key().unwrap())
            .unwrap()
            .verify(b"old receipt", &Signature::from_bytes(&old_sig))
            .unwrap();
    }

    #[test]
    fn debug_output_carries_no_key_material() {
        let scratch = Scratch::new();
        let store = KeyStore::load_or_generate(&scratch.keys()).unwrap();
        let text = format!("{store:?}");
        assert!(text.contains(store.lease_kid()));
        assert!(!text.contains("SigningKey"));
    }
}
