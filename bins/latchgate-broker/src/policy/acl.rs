//! Editing the ACL in `policies/data.json` for `latchgate policy grant|revoke|show`.
//! Pure functions over the JSON document, plus an atomic file rewrite (temp
//! file in the same directory, fsync, rename, fsync the directory) so the
//! running gate's reload never sees a half-written file.

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// The policy data file inside the configured `policies_dir`.
pub const DATA_FILE: &str = "data.json";

/// Principal → action globs, as `policy show` prints it.
pub type AclEntries = BTreeMap<String, Vec<String>>;

#[derive(Debug, thiserror::Error)]
pub enum AclEditError {
    #[error("invalid principal `{0}`")]
    InvalidPrincipal(String),
    #[error("invalid action pattern `{0}` (action id characters, `*` and `**` only)")]
    InvalidPattern(String),
    #[error("invalid host `{0}` (a lower-case host name or IP address, no wildcard)")]
    InvalidHost(String),
    #[error("data.json: {0}")]
    Malformed(String),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

impl AclEditError {
    pub fn code(&self) -> &'static str {
        match self {
            AclEditError::InvalidPrincipal(_) => "invalid_principal",
            AclEditError::InvalidPattern(_) => "invalid_action_pattern",
            AclEditError::InvalidHost(_) => "invalid_host",
            AclEditError::Malformed(_) => "policy_data_malformed",
            AclEditError::Io { .. } => "policy_data_io_error",
        }
    }
}

/// Add `pattern` to `principal`'s entries. Returns whether the document changed.
pub fn grant(data: &mut Value, principal: &str, pattern: &str) -> Result<bool, AclEditError> {
    check_principal(principal)?;
    check_pattern(pattern)?;
    let changed = add_to_list(acl_mut(data)?, "acl", principal, pattern)?;
    if changed {
        bump_revision(data)?;
    }
    Ok(changed)
}

/// Adds `value` to the list `section[key]` (created when absent). Returns
/// whether it was added; `section_name` names the section in errors.
pub(super) fn add_to_list(
    section: &mut Map<String, Value>,
    section_name: &str,
    key: &str,
    value: &str,
) -> Result<bool, AclEditError> {
    let entry = section.entry(key.to_owned()).or_insert_with(|| Value::Array(vec![]));
    let list = entry
        .as_array_mut()
        .ok_or_else(|| AclEditError::Malformed(format!("policy_data.{section_name}.{key} is not an array")))?;
    if list.iter().any(|v| v.as_str() == Some(value)) {
        return Ok(false);
    }
    list.push(Value::String(value.to_owned()));
    Ok(true)
}

/// Removes `value` from the list `section[key]`, dropping the key when the
/// list is left empty. Returns whether it was there.
pub(super) fn remove_from_list(
    section: &mut Map<String, Value>,
    section_name: &str,
    key: &str,
    value: &str,
) -> Result<bool, AclEditError> {
    let Some(entry) = section.get_mut(key) else {
        return Ok(false);
    };
    let list = entry
        .as_array_mut()
        .ok_or_else(|| AclEditError::Malformed(format!("policy_data.{section_name}.{key} is not an array")))?;
    let before = list.len();
    list.retain(|v| v.as_str() != Some(value));
    let changed = list.len() != before;
    if list.is_empty() {
        section.remove(key);
    }
    Ok(changed)
}

/// Remove `pattern` from `principal`'s entries (dropping the principal when no
/// entry is left). Returns whether the document changed. Only the exact
/// pattern is removed: revoking `github.issue_get` does not narrow `github.*`.
pub fn revoke(data: &mut Value, principal: &str, pattern: &str) -> Result<bool, AclEditError> {
    check_principal(principal)?;
    let changed = remove_from_list(acl_mut(data)?, "acl", principal, pattern)?;
    if changed {
        bump_revision(data)?;
    }
    Ok(changed)
}

/// The ACL as principal → patterns.
pub fn show(data: &Value) -> Result<AclEntries, AclEditError> {
    let acl = data
        .pointer("/policy_data/acl")
        .and_then(Value::as_object)
        .ok_or_else(|| AclEditError::Malformed("policy_data.acl is missing or not an object".into()))?;
    acl.iter()
        .map(|(principal, patterns)| {
            let patterns = patterns
                .as_array()
                .and_then(|a| a.iter().map(|p| p.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>())
                .ok_or_else(|| {
                    AclEditError::Malformed(format!("policy_data.acl.{principal} is not a list of strings"))
                })?;
            Ok((principal.clone(), patterns))
        })
        .collect()
}

pub fn read_data_file(path: &Path) -> Result<Value, AclEditError> {
    let text = std::fs::read_to_string(path).map_err(|e| io_error(path, e))?;
    serde_json::from_str(&text).map_err(|e| AclEditError::Malformed(e.to_string()))
}

/// Replace `path` atomically with `data` (pretty-printed), keeping its permissions.
pub fn write_data_file(path: &Path, data: &Value) -> Result<(), AclEditError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut text = serde_json::to_string_pretty(data).map_err(|e| AclEditError::Malformed(e.to_string()))?;
    text.push('\n');
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| io_error(dir, e))?;
    if let Ok(meta) = std::fs::metadata(path) {
        tmp.as_file().set_permissions(meta.permissions()).map_err(|e| io_error(tmp.path(), e))?;
    }
    tmp.write_all(text.as_bytes()).map_err(|e| io_error(tmp.path(), e))?;
    tmp.as_file().sync_all().map_err(|e| io_error(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| io_error(path, e.error))?;
    // The rename is durable only once the directory entry is on disk.
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error(dir, e))?;
    Ok(())
}

/// Read, edit and atomically rewrite `path`; the file is untouched when `edit`
/// fails or reports no change. Returns whether it changed.
pub fn update_data_file(
    path: &Path,
    edit: impl FnOnce(&mut Value) -> Result<bool, AclEditError>,
) -> Result<bool, AclEditError> {
    let mut data = read_data_file(path)?;
    let changed = edit(&mut data)?;
    if changed {
        write_data_file(path, &data)?;
    }
    Ok(changed)
}

/// [`update_data_file`] under an exclusive lock on the file's directory:
/// every editor (the CLI offline, the broker for the admin API) takes it, so
/// two edits never both read revision N and lose one of them. The file itself
/// is replaced by rename on every edit, so a lock on it would not outlive the
/// first writer. Returns whether it changed and the document as it now is.
pub fn locked_update(
    path: &Path,
    edit: impl FnOnce(&mut Value) -> Result<bool, AclEditError>,
) -> Result<(bool, Value), AclEditError> {
    let _lock = lock_dir_of(path)?;
    let mut data = read_data_file(path)?;
    let changed = edit(&mut data)?;
    if changed {
        write_data_file(path, &data)?;
    }
    Ok((changed, data))
}

/// Holds an exclusive `flock` on the directory of `data_file` until dropped.
pub fn lock_dir_of(data_file: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, AclEditError> {
    let dir = match data_file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let handle = std::fs::File::open(dir).map_err(|e| io_error(dir, e))?;
    nix::fcntl::Flock::lock(handle, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, errno)| AclEditError::Io {
        path: dir.display().to_string(),
        message: format!("cannot lock: {errno}"),
    })
}

fn acl_mut(data: &mut Value) -> Result<&mut Map<String, Value>, AclEditError> {
    policy_data_mut(data)?
        .entry("acl")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| AclEditError::Malformed("policy_data.acl is not an object".into()))
}

pub(super) fn policy_data_mut(data: &mut Value) -> Result<&mut Map<String, Value>, AclEditError> {
    data.as_object_mut()
        .ok_or_else(|| AclEditError::Malformed("the document is not an object".into()))?
        .get_mut("policy_data")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| AclEditError::Malformed("policy_data is missing or not an object".into()))
}

/// Each edit bumps `acl_revision`, which is part of `policy_version`, so
/// receipts and audit events show which ACL decided them.
pub(super) fn bump_revision(data: &mut Value) -> Result<(), AclEditError> {
    let policy_data = policy_data_mut(data)?;
    let revision = match policy_data.get("acl_revision") {
        None => 0,
        Some(v) => {
            v.as_u64().ok_or_else(|| AclEditError::Malformed("policy_data.acl_revision is not a count".into()))?
        }
    };
    policy_data.insert("acl_revision".into(), Value::from(revision + 1));
    Ok(())
}

fn check_principal(principal: &str) -> Result<(), AclEditError> {
    let ok = principal == "*"
        || (!principal.is_empty()
            && principal.len() <= 128
            && principal.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.@:-".contains(&b)));
    if ok { Ok(()) } else { Err(AclEditError::InvalidPrincipal(principal.to_owned())) }
}

/// The pattern grammar latchgate.rego understands: an exact action id, `**`,
/// `<prefix>.**`, or `<stem>*` (one trailing `*` within the last segment).
/// Anything else (`?`, `[...]`, `{a,b}`, inner `*`) is refused so that what an
/// operator grants is what they read.
fn check_pattern(pattern: &str) -> Result<(), AclEditError> {
    let body = pattern
        .strip_suffix("**")
        .filter(|p| p.is_empty() || p.ends_with('.'))
        .or_else(|| pattern.strip_suffix('*'))
        .unwrap_or(pattern);
    let ok = !pattern.is_empty()
        && pattern.len() <= 128
        && body.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if ok { Ok(()) } else { Err(AclEditError::InvalidPattern(pattern.to_owned())) }
}

fn io_error(path: &Path, e: std::io::Error) -> AclEditError {
    AclEditError::Io { path: path.display().to_string(), message: e.to_string() }
}
