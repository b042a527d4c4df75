//! The registered actions as the broker serves them — reloadable on
//! `POST /v1/admin/reload` — and the unauthenticated catalogue routes: list,
//! detail, request schema.

use crate::gate::Gate;
use latchgate_core::error::{ApiError, ErrorCode};
use latchgate_core::manifest::{DigestTrust, ManifestError, RegisteredAction, Registry};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

/// One consistent view: the registry and its digest trust.
pub struct LoadedActions {
    pub registry: Registry,
    pub trust: DigestTrust,
}

/// The current actions; a reload swaps the whole view at once, so a request
/// never sees a registry with another registry's trust.
pub struct ActionCatalog {
    current: RwLock<Arc<LoadedActions>>,
}

/// What a manifest reload changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReloadSummary {
    pub actions: usize,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    /// Actions whose pinned digest was not verified at start (refused until a restart).
    pub untrusted: Vec<String>,
}

impl ActionCatalog {
    pub fn new(registry: Registry, trust: DigestTrust) -> ActionCatalog {
        ActionCatalog { current: RwLock::new(Arc::new(LoadedActions { registry, trust })) }
    }

    pub fn current(&self) -> Arc<LoadedActions> {
        // The lock only guards an Arc swap; a panic elsewhere cannot leave it half-written.
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Load every manifest again. Either all load and replace the current
    /// set, or nothing changes and every error is returned. Provider modules
    /// are not readable by the sealed broker: an action keeps its trust only
    /// if it pins a digest that was verified at start.
    pub fn reload(&self, manifests_dir: &Path) -> Result<ReloadSummary, Vec<ManifestError>> {
        let registry = Registry::load(manifests_dir)?;
        let mut guard = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let old = Arc::clone(&guard);
        let trust = old.trust.carried_to(&old.registry, &registry);
        let summary = summarize(&old.registry, &registry, &trust);
        *guard = Arc::new(LoadedActions { registry, trust });
        Ok(summary)
    }
}

fn definition(action: &RegisteredAction) -> Option<String> {
    action.definition_hash().ok()
}

fn summarize(old: &Registry, new: &Registry, trust: &DigestTrust) -> ReloadSummary {
    let mut summary =
        ReloadSummary { actions: new.len(), added: vec![], removed: vec![], changed: vec![], untrusted: vec![] };
    for action in new.iter() {
        match old.get(action.id()) {
            None => summary.added.push(action.id().to_string()),
            Some(before) if definition(before) != definition(action) => summary.changed.push(action.id().to_string()),
            Some(_) => {}
        }
        if !trust.is_trusted(action.id()) {
            summary.untrusted.push(action.id().to_string());
        }
    }
    summary.removed = old.iter().filter(|a| new.get(a.id()).is_none()).map(|a| a.id().to_string()).collect();
    summary
}

pub fn list(gate: &Gate) -> Value {
    serde_json::to_value(gate.actions.current().registry.summaries()).unwrap_or(Value::Array(Vec::new()))
}

fn find(actions: &LoadedActions, action_id: &str) -> Result<Arc<RegisteredAction>, ApiError> {
    actions.registry.get(action_id).cloned().ok_or_else(|| ApiError::new(ErrorCode::ActionNotFound))
}

pub fn detail(gate: &Gate, action_id: &str) -> Result<Value, ApiError> {
    let actions = gate.actions.current();
    let action = find(&actions, action_id)?;
    let mut detail = action.detail_json();
    detail["trusted"] = actions.trust.is_trusted(action_id).into();
    Ok(detail)
}

pub fn request_schema(gate: &Gate, action_id: &str) -> Result<Value, ApiError> {
    Ok(find(&gate.actions.current(), action_id)?.request_schema().clone())
}

/// The operator's view of one action: the agent's detail plus where it was
/// loaded from, why it is (not) trusted, and the definition hash approvals pin.
pub fn operator_detail(gate: &Gate, action_id: &str) -> Result<Value, ApiError> {
    let actions = gate.actions.current();
    let action = find(&actions, action_id)?;
    let mut detail = action.detail_json();
    detail["trusted"] = actions.trust.is_trusted(action_id).into();
    detail["trust_failure"] =
        json!(actions.trust.failure(action_id).map(|e| json!({"code": e.code(), "message": e.to_string()})));
    detail["source"] = action.source().display().to_string().into();
    detail["definition_hash"] = json!(definition(&action));
    detail["operator_allowed_domains"] = json!(gate.egress_allow.for_action(action_id));
    Ok(detail)
}

/// The operator's list: every action with its trust.
pub fn operator_list(gate: &Gate) -> Value {
    let actions = gate.actions.current();
    let list: Vec<Value> = actions
        .registry
        .iter()
        .map(|a| {
            let m = a.manifest();
            json!({
                "action_id": m.action_id, "version": m.version, "risk_level": m.risk_level,
                "provider": m.provider.as_str(), "trusted": actions.trust.is_trusted(a.id()),
                "egress": a.egress_json(), "required_scopes": m.required_scopes,
            })
        })
        .collect();
    json!({"count": list.len(), "actions": list})
}
