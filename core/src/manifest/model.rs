//! The manifest file format: one YAML document per action. Every struct denies
//! unknown fields so that a typo (`egres:`) is an error, not a silently
//! permissive default.

use crate::action::{EgressRules, HostImport, HttpTemplate, ResourceLimits, RiskLevel};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One action as written in `manifests/<action>.yaml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub action_id: String,
    pub version: String,
    pub description: String,
    pub provider: ProviderKind,
    /// `sha256:<64 lowercase hex>` of `providers/dist/<provider>.wasm`.
    pub provider_module_digest: String,
    pub required_imports: Vec<HostImport>,
    /// Required when `provider` is `http_api`, refused otherwise.
    #[serde(default)]
    pub template: Option<HttpTemplate>,
    /// Required when `provider` is `fs`, refused otherwise.
    #[serde(default)]
    pub fs: Option<FsTemplate>,
    pub io: IoSpec,
    #[serde(default)]
    pub resource_limits: ResourceLimits,
    pub egress: EgressRules,
    #[serde(default)]
    pub secrets: Vec<SecretSpec>,
    pub risk_level: RiskLevel,
    pub verifier_kind: VerifierKind,
    #[serde(default)]
    pub verification_config: VerificationConfig,
    #[serde(default)]
    pub declared_side_effects: Vec<String>,
    #[serde(default)]
    pub required_scopes: Vec<String>,
}

impl Manifest {
    /// Where the built module of this action's provider lives under `providers_dir`.
    pub fn module_path(&self, providers_dir: &Path) -> PathBuf {
        providers_dir.join("dist").join(format!("{}.wasm", self.provider.as_str()))
    }
}

/// Builtin providers (one WASM module each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    HttpApi,
    Fs,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::HttpApi => "http_api",
            ProviderKind::Fs => "fs",
        }
    }
}

/// What the `fs` provider may do for this action. Fixed per action so that a
/// low-risk `fs_read` can never be asked to delete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsTemplate {
    pub operation: FsOperation,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsOperation {
    Read,
    /// Create a new file; fails when it exists.
    Create,
    /// Replace an existing file whose current hash matches the request's expected-before hash.
    Overwrite,
    Delete,
}

impl FsOperation {
    /// The provider's `op` value.
    pub fn as_str(self) -> &'static str {
        match self {
            FsOperation::Read => "read",
            FsOperation::Create => "create",
            FsOperation::Overwrite => "overwrite",
            FsOperation::Delete => "delete",
        }
    }

    /// Whether the operation changes the file system (and so has a side effect to verify).
    pub fn mutates(self) -> bool {
        !matches!(self, FsOperation::Read)
    }
}

/// Request/response contract of an action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IoSpec {
    pub request_schema: SchemaSource,
    #[serde(default)]
    pub response_schema: Option<SchemaSource>,
    pub max_request_bytes: usize,
    pub max_response_bytes: usize,
}

/// A JSON Schema given inline (a YAML mapping) or as a path relative to the
/// manifests directory (`schemas/x.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SchemaSource {
    Path(String),
    Inline(serde_json::Map<String, serde_json::Value>),
}

/// A secret the action needs and how the host injects it into the outgoing
/// request. The value never reaches the WASM module.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSpec {
    /// Name in the secrets file, e.g. `GITHUB_TOKEN`.
    pub name: String,
    #[serde(default = "default_true")]
    pub required: bool,
    pub inject: SecretInjection,
}

fn default_true() -> bool {
    true
}

/// `^[A-Z][A-Z0-9_]{0,63}$`: the names a manifest may declare and the
/// secrets CLI may store.
pub fn is_valid_secret_name(name: &str) -> bool {
    name.len() <= 64
        && name.bytes().next().is_some_and(|b| b.is_ascii_uppercase())
        && name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Exactly one of `header`, `query`, `basic_auth` (checked by validation so the
/// error names the field; an untagged enum would only say "no variant matched").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretInjection {
    /// Header name, e.g. `Authorization`.
    #[serde(default)]
    pub header: Option<String>,
    /// Query parameter name, e.g. `key`.
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub basic_auth: Option<BasicAuthInjection>,
    /// Value format with one `{}` where the secret goes, e.g. `Bearer {}`.
    #[serde(default)]
    pub format: Option<String>,
}

/// HTTP basic auth: the secret is the password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthInjection {
    pub username: String,
}

/// Where a validated secret goes; derived from [`SecretInjection`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InjectionTarget<'a> {
    Header { name: &'a str, format: &'a str },
    Query { name: &'a str, format: &'a str },
    BasicAuth { username: &'a str },
}

impl SecretInjection {
    /// The injection target, or `None` when not exactly one target is set.
    pub fn target(&self) -> Option<InjectionTarget<'_>> {
        let format = self.format.as_deref().unwrap_or("{}");
        match (&self.header, &self.query, &self.basic_auth) {
            (Some(name), None, None) => Some(InjectionTarget::Header { name, format }),
            (None, Some(name), None) => Some(InjectionTarget::Query { name, format }),
            (None, None, Some(b)) => Some(InjectionTarget::BasicAuth { username: &b.username }),
            _ => None,
        }
    }
}

/// How the broker checks that the side effect happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifierKind {
    None,
    /// The observed HTTP status is in `expected_status` and `required_fields` exist in the output.
    HttpStatus,
    /// The file system effect the executor observed matches the operation.
    FsEffect,
}

impl VerifierKind {
    pub fn as_str(self) -> &'static str {
        match self {
            VerifierKind::None => "none",
            VerifierKind::HttpStatus => "http_status",
            VerifierKind::FsEffect => "fs_effect",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerificationConfig {
    /// `http_status`: accepted statuses.
    #[serde(default)]
    pub expected_status: Vec<u16>,
    /// `http_status`: JSON Pointers (RFC 6901) that must exist in the output.
    #[serde(default)]
    pub required_fields: Vec<String>,
}

impl VerificationConfig {
    pub fn is_empty(&self) -> bool {
        self.expected_status.is_empty() && self.required_fields.is_empty()
    }
}
