//! The loaded set of actions: lookups by id, the listing and detail documents
//! of `GET /v1/actions[/{id}]`, and per-action request/response validation.

use super::error::{DigestError, ManifestError};
use super::load;
use super::model::Manifest;
use super::schema::{CompiledSchema, SchemaViolation};
use crate::action::{EgressProfile, RiskLevel};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One action, checked and with its schemas compiled.
#[derive(Debug)]
pub struct RegisteredAction {
    manifest: Manifest,
    source: PathBuf,
    request: CompiledSchema,
    /// The declared response schema, or `{}` (limits only) when none is declared.
    response: CompiledSchema,
    response_declared: bool,
}

/// An entry of `GET /v1/actions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ActionSummary {
    pub action_id: String,
    pub version: String,
    pub risk_level: RiskLevel,
}

impl RegisteredAction {
    pub(super) fn new(
        manifest: Manifest,
        source: PathBuf,
        request: CompiledSchema,
        response: CompiledSchema,
        response_declared: bool,
    ) -> Self {
        RegisteredAction { manifest, source, request, response, response_declared }
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn id(&self) -> &str {
        &self.manifest.action_id
    }

    /// The file the action was loaded from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    pub fn request_schema(&self) -> &Value {
        self.request.schema()
    }

    pub fn response_schema(&self) -> Option<&Value> {
        self.response_declared.then(|| self.response.schema())
    }

    /// Depth, `io.max_request_bytes` and the request schema.
    pub fn validate_request(&self, params: &Value) -> Result<(), SchemaViolation> {
        self.request.validate(params)
    }

    /// Size-check, parse and validate a raw request body.
    pub fn parse_request(&self, body: &[u8]) -> Result<Value, SchemaViolation> {
        self.request.parse_and_validate(body)
    }

    /// Depth, `io.max_response_bytes` and the response schema. An action
    /// without a response schema (only allowed below high risk) checks depth
    /// and size only.
    pub fn validate_response(&self, output: &Value) -> Result<(), SchemaViolation> {
        self.response.validate(output)
    }

    pub fn summary(&self) -> ActionSummary {
        ActionSummary {
            action_id: self.manifest.action_id.clone(),
            version: self.manifest.version.clone(),
            risk_level: self.manifest.risk_level,
        }
    }

    /// `egress` as API.md shows it: `"none"` or `{"proxy_allowlist":{"allowed_domains":[..]}}`.
    pub fn egress_json(&self) -> Value {
        let e = &self.manifest.egress;
        match e.profile {
            EgressProfile::None => json!("none"),
            EgressProfile::ProxyAllowlist => json!({"proxy_allowlist": {"allowed_domains": e.allowed_domains}}),
        }
    }

    /// The document of `GET /v1/actions/{id}`. Secret names are listed (the
    /// caller may need to know a credential is involved), never values or
    /// injection details.
    pub fn detail_json(&self) -> Value {
        let m = &self.manifest;
        json!({
            "action_id": m.action_id,
            "version": m.version,
            "description": m.description,
            "provider": m.provider.as_str(),
            "provider_module_digest": m.provider_module_digest,
            "risk_level": m.risk_level,
            "required_scopes": m.required_scopes,
            "declared_side_effects": m.declared_side_effects,
            "egress": self.egress_json(),
            "secrets": m.secrets.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            "verifier_kind": m.verifier_kind.as_str(),
            "io": {
                "max_request_bytes": m.io.max_request_bytes,
                "max_response_bytes": m.io.max_response_bytes,
            },
            "request_schema": self.request_schema(),
            "response_schema": self.response_schema(),
        })
    }

    /// `sha256:` of everything that defines the action as the gate runs it:
    /// the manifest and both schemas (which may live in files of their own).
    /// An approval pins it, so a plan approved later runs exactly what was held.
    pub fn definition_hash(&self) -> Result<String, crate::jcs::JcsError> {
        crate::jcs::hash(&json!({
            "manifest": self.manifest,
            "request_schema": self.request.schema(),
            "response_schema": self.response_schema(),
        }))
    }

    /// Hash the action's provider module under `providers_dir` and compare it
    /// with the pinned `provider_module_digest`.
    pub fn verify_module_digest(&self, providers_dir: &Path) -> Result<(), DigestError> {
        let path = self.manifest.module_path(providers_dir);
        let actual = module_digest(&path).map_err(|message| DigestError::ModuleUnreadable {
            action_id: self.manifest.action_id.clone(),
            path: path.clone(),
            message,
        })?;
        check_pinned(&self.manifest, path, actual)
    }
}

fn check_pinned(m: &Manifest, path: PathBuf, actual: String) -> Result<(), DigestError> {
    if actual == m.provider_module_digest {
        Ok(())
    } else {
        Err(DigestError::Mismatch {
            action_id: m.action_id.clone(),
            path,
            expected: m.provider_module_digest.clone(),
            actual,
        })
    }
}

/// `sha256:<hex>` of a module file.
pub fn module_digest(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    Ok(crate::jcs::sha256_tagged(&bytes))
}

/// All registered actions, keyed by `action_id`.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    actions: BTreeMap<String, Arc<RegisteredAction>>,
}

impl Registry {
    /// Load every `*.yaml`/`*.yml` in `manifests_dir`. Either every manifest is
    /// valid, or every error found in any of them is returned.
    pub fn load(manifests_dir: &Path) -> Result<Registry, Vec<ManifestError>> {
        let files = load::manifest_files(manifests_dir).map_err(|e| vec![e])?;
        if files.is_empty() {
            return Err(vec![ManifestError::DirUnreadable {
                dir: manifests_dir.to_path_buf(),
                message: "no *.yaml manifests found".into(),
            }]);
        }
        let mut errors = Vec::new();
        let mut actions: BTreeMap<String, Arc<RegisteredAction>> = BTreeMap::new();
        for file in files {
            match load::load_action(&file, manifests_dir) {
                Ok(action) => match actions.get(action.id()) {
                    Some(first) => errors.push(ManifestError::DuplicateActionId {
                        file,
                        action_id: action.id().to_owned(),
                        first: first.source().to_path_buf(),
                    }),
                    None => {
                        actions.insert(action.id().to_owned(), Arc::new(action));
                    }
                },
                Err(mut errs) => errors.append(&mut errs),
            }
        }
        if errors.is_empty() { Ok(Registry { actions }) } else { Err(errors) }
    }

    pub fn get(&self, action_id: &str) -> Option<&Arc<RegisteredAction>> {
        self.actions.get(action_id)
    }

    pub fn len(&self) -> usize {
        self.actions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// Actions in `action_id` order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<RegisteredAction>> {
        self.actions.values()
    }

    /// `GET /v1/actions`, in `action_id` order.
    pub fn summaries(&self) -> Vec<ActionSummary> {
        self.actions.values().map(|a| a.summary()).collect()
    }

    /// The registry's digest-trust step: hash each provider module once and
    /// record, per action, whether it matches the pinned digest.
    pub fn verify_module_digests(&self, providers_dir: &Path) -> DigestTrust {
        let mut hashed: BTreeMap<PathBuf, Result<String, String>> = BTreeMap::new();
        let mut verdicts = BTreeMap::new();
        for action in self.actions.values() {
            let m = action.manifest();
            let path = m.module_path(providers_dir);
            let digest = hashed.entry(path.clone()).or_insert_with(|| module_digest(&path)).clone();
            let verdict = match digest {
                Ok(actual) => check_pinned(m, path, actual),
                Err(message) => Err(DigestError::ModuleUnreadable { action_id: m.action_id.clone(), path, message }),
            };
            verdicts.insert(m.action_id.clone(), verdict);
        }
        DigestTrust { verdicts }
    }
}

/// Per-action outcome of [`Registry::verify_module_digests`]. An action that is
/// not listed is not trusted.
#[derive(Clone, Debug, Default)]
pub struct DigestTrust {
    verdicts: BTreeMap<String, Result<(), DigestError>>,
}

impl DigestTrust {
    pub fn is_trusted(&self, action_id: &str) -> bool {
        matches!(self.verdicts.get(action_id), Some(Ok(())))
    }

    pub fn failures(&self) -> impl Iterator<Item = &DigestError> {
        self.verdicts.values().filter_map(|v| v.as_ref().err())
    }

    pub fn all_trusted(&self) -> bool {
        self.verdicts.values().all(Result::is_ok)
    }

    /// Trust for `reloaded` without hashing any module again: an action is
    /// trusted only when its pinned digest is one that a module of `verified`
    /// (the registry this trust was computed for) matched.
    pub fn carried_to(&self, verified: &Registry, reloaded: &Registry) -> DigestTrust {
        let good: std::collections::BTreeSet<&str> = verified
            .iter()
            .filter(|a| self.is_trusted(a.id()))
            .map(|a| a.manifest().provider_module_digest.as_str())
            .collect();
        let verdicts = reloaded
            .iter()
            .map(|a| {
                let m = a.manifest();
                let verdict = if good.contains(m.provider_module_digest.as_str()) {
                    Ok(())
                } else {
                    Err(DigestError::NotVerified {
                        action_id: m.action_id.clone(),
                        digest: m.provider_module_digest.clone(),
                    })
                };
                (m.action_id.clone(), verdict)
            })
            .collect();
        DigestTrust { verdicts }
    }

    /// Why `action_id` is not trusted (`None` when it is, or is unknown).
    pub fn failure(&self, action_id: &str) -> Option<&DigestError> {
        self.verdicts.get(action_id).and_then(|v| v.as_ref().err())
    }
}
