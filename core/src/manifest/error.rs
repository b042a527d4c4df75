//! Load-time errors. Each one names the manifest file and the field path so an
//! operator can fix the manifest without reading the loader.

use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("{dir}: cannot list manifests: {message}")]
    DirUnreadable { dir: PathBuf, message: String },
    #[error("{file}: cannot read: {message}")]
    Unreadable { file: PathBuf, message: String },
    /// YAML syntax, unknown field, wrong type, missing field.
    #[error("{file}: {field}: {message}")]
    Parse { file: PathBuf, field: String, message: String },
    /// A rule the manifest breaks (pattern, risk requirements, egress, ...).
    #[error("{file}: {field}: {message}")]
    Invalid { file: PathBuf, field: String, message: String },
    #[error("{file}: {field}: schema is not usable: {message}")]
    Schema { file: PathBuf, field: String, message: String },
    #[error("{file}: action_id: duplicate action id `{action_id}` (first defined in {first})")]
    DuplicateActionId { file: PathBuf, action_id: String, first: PathBuf },
}

impl ManifestError {
    /// Stable code for logs and `latchgate doctor`.
    pub fn code(&self) -> &'static str {
        match self {
            ManifestError::DirUnreadable { .. } => "manifest_dir_unreadable",
            ManifestError::Unreadable { .. } => "manifest_unreadable",
            ManifestError::Parse { .. } => "manifest_parse_error",
            ManifestError::Invalid { .. } => "manifest_invalid",
            ManifestError::Schema { .. } => "manifest_schema_invalid",
            ManifestError::DuplicateActionId { .. } => "manifest_duplicate_action_id",
        }
    }

    /// The manifest file the error is about (the directory for `DirUnreadable`).
    pub fn file(&self) -> &std::path::Path {
        match self {
            ManifestError::DirUnreadable { dir, .. } => dir,
            ManifestError::Unreadable { file, .. }
            | ManifestError::Parse { file, .. }
            | ManifestError::Invalid { file, .. }
            | ManifestError::Schema { file, .. }
            | ManifestError::DuplicateActionId { file, .. } => file,
        }
    }

    /// Dotted field path inside the manifest, when the error is about one field.
    pub fn field(&self) -> Option<&str> {
        match self {
            ManifestError::Parse { field, .. }
            | ManifestError::Invalid { field, .. }
            | ManifestError::Schema { field, .. } => Some(field),
            ManifestError::DuplicateActionId { .. } => Some("action_id"),
            ManifestError::DirUnreadable { .. } | ManifestError::Unreadable { .. } => None,
        }
    }
}

/// Provider module digest trust failures (the registry's "digest trust" step).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("{action_id}: provider module {path} cannot be read: {message}")]
    ModuleUnreadable { action_id: String, path: PathBuf, message: String },
    #[error("{action_id}: provider module {path} has digest {actual}, manifest pins {expected}")]
    Mismatch { action_id: String, path: PathBuf, expected: String, actual: String },
    /// After a reload: the manifest pins a digest no module was verified
    /// against at start (the broker cannot read the providers dir once sealed).
    #[error("{action_id}: pinned digest {digest} was not verified at start; restart the gate to verify it")]
    NotVerified { action_id: String, digest: String },
}

impl DigestError {
    pub fn code(&self) -> &'static str {
        match self {
            DigestError::ModuleUnreadable { .. } => "provider_module_unreadable",
            DigestError::Mismatch { .. } => "action_digest_mismatch",
            DigestError::NotVerified { .. } => "provider_module_not_verified",
        }
    }
}
