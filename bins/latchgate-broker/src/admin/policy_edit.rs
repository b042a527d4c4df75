//! Policy data edits over the admin socket: the per-principal ACL and the
//! hosts an operator allows an action beyond its manifest (from the learned
//! egress domains). Both edit `<policies_dir>/data.json` with the same editor
//! as the offline CLI (grammar checks, revision bump, locked atomic rewrite)
//! and reload the policy before answering, so the next call sees the change.

use super::record_change;
use crate::gate::Gate;
use crate::policy::egress_allow;
use crate::policy::{AclEditError, DATA_FILE, locked_update, read_data_file};
use latchgate_core::action::EgressProfile;
use latchgate_core::egress::domain_allowed;
use latchgate_core::error::{ApiError, ErrorCode};
use latchgate_core::jose::OperatorAuthenticated;
use serde::Deserialize;
use serde_json::{Value, json};

fn edit_error(e: AclEditError) -> ApiError {
    match e {
        AclEditError::Io { path, message } => {
            tracing::error!(%path, %message, "policy data not written");
            ApiError::new(ErrorCode::PolicyDataWriteFailed).with_reason(format!("{path}: {message}")).with_remediation(
                "the broker's user must be able to write the policies dir; or edit offline: \
                     latchgate policy grant --offline",
            )
        }
        other => ApiError::new(ErrorCode::BadRequest).with_deny_reason(other.code()).with_reason(other.to_string()),
    }
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::new(ErrorCode::BadRequest).with_reason(format!("body: {e}")))
}

fn revision(data: &Value) -> u64 {
    data.pointer("/policy_data/acl_revision").and_then(Value::as_u64).unwrap_or(0)
}

/// After a successful edit: the running policy reflects the file now.
fn reload_after_edit(gate: &Gate) -> Result<String, ApiError> {
    gate.reload_policy().map_err(|e| {
        ApiError::new(e.error_code())
            .with_reason(format!("data.json written but not loaded (the previous policy stays in force): {e}"))
    })
}

/// `GET /v1/admin/policy/acl`
pub fn show(gate: &Gate) -> Result<Value, ApiError> {
    let path = gate.cfg.policies_dir().join(DATA_FILE);
    let data = read_data_file(&path).map_err(edit_error)?;
    let acl = crate::policy::show(&data).map_err(edit_error)?;
    let egress_allow = egress_allow::entries(&data).map_err(edit_error)?;
    Ok(json!({
        "acl_revision": revision(&data), "file": path, "acl": acl, "egress_allow": egress_allow,
        "policy_version": gate.policy.policy_version(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AclEdit {
    principal: String,
    action_pattern: String,
}

/// `POST /v1/admin/policy/grant|revoke`
pub async fn acl(gate: &Gate, operator: &OperatorAuthenticated, body: &[u8], grant: bool) -> Result<Value, ApiError> {
    let edit: AclEdit = parse(body)?;
    let path = gate.cfg.policies_dir().join(DATA_FILE);
    let (principal, pattern) = (edit.principal.clone(), edit.action_pattern.clone());
    let (changed, data) = tokio::task::spawn_blocking(move || {
        locked_update(&path, |data| {
            if grant {
                crate::policy::grant(data, &principal, &pattern)
            } else {
                crate::policy::revoke(data, &principal, &pattern)
            }
        })
    })
    .await
    .map_err(|_| ApiError::new(ErrorCode::InternalError))?
    .map_err(edit_error)?;
    let policy_version = if changed { Some(reload_after_edit(gate)?) } else { gate.policy.policy_version() };
    let patterns = crate::policy::show(&data).map_err(edit_error)?.remove(&edit.principal).unwrap_or_default();
    let result = json!({
        "ok": true, "changed": changed, "principal": edit.principal, "pattern": edit.action_pattern,
        "patterns": patterns, "acl_revision": revision(&data), "policy_version": policy_version,
    });
    if changed {
        let event = if grant { "policy_acl_granted" } else { "policy_acl_revoked" };
        record_change(gate, operator, event, result.clone()).await;
    }
    Ok(result)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EgressEdit {
    action_id: String,
    domain: String,
}

/// `POST /v1/admin/egress/allow|disallow`
pub async fn egress(
    gate: &Gate,
    operator: &OperatorAuthenticated,
    body: &[u8],
    allow: bool,
) -> Result<Value, ApiError> {
    let edit: EgressEdit = parse(body)?;
    let domain = edit.domain.trim_end_matches('.').to_ascii_lowercase();
    if allow {
        let actions = gate.actions.current();
        let action = actions.registry.get(&edit.action_id).ok_or_else(|| ApiError::new(ErrorCode::ActionNotFound))?;
        if action.manifest().egress.profile != EgressProfile::ProxyAllowlist {
            return Err(ApiError::new(ErrorCode::BadRequest)
                .with_reason(format!("{} has no network egress; no host can be allowed for it", edit.action_id)));
        }
    }
    let path = gate.cfg.policies_dir().join(DATA_FILE);
    let (action_id, host) = (edit.action_id.clone(), domain.clone());
    let (changed, data) = tokio::task::spawn_blocking(move || {
        locked_update(&path, |data| {
            if allow {
                egress_allow::allow(data, &action_id, &host)
            } else {
                egress_allow::disallow(data, &action_id, &host)
            }
        })
    })
    .await
    .map_err(|_| ApiError::new(ErrorCode::InternalError))?
    .map_err(edit_error)?;
    let policy_version = if changed { Some(reload_after_edit(gate)?) } else { gate.policy.policy_version() };
    let allowed = egress_allow::entries(&data).map_err(edit_error)?.remove(&edit.action_id).unwrap_or_default();
    let result = json!({
        "ok": true, "changed": changed, "action_id": edit.action_id, "domain": domain,
        "allowed_domains": allowed, "acl_revision": revision(&data), "policy_version": policy_version,
    });
    if changed {
        let event = if allow { "egress_domain_allowed" } else { "egress_domain_disallowed" };
        record_change(gate, operator, event, result.clone()).await;
    }
    Ok(result)
}

/// `GET /v1/admin/egress/learned`: what agents asked for that the allowlist
/// refused, and whether it is allowed now.
pub async fn learned_domains(gate: &Gate) -> Result<Value, ApiError> {
    let learned = gate.ledger.learned_domains().await.map_err(|e| {
        tracing::error!(code = e.code(), error = %e, "learned domains not read");
        ApiError::new(ErrorCode::StoreUnavailable).with_retry_after(1)
    })?;
    let actions = gate.actions.current();
    let domains: Vec<Value> = learned
        .into_iter()
        .map(|d| {
            let by_manifest = actions
                .registry
                .get(&d.action_id)
                .is_some_and(|a| domain_allowed(&a.manifest().egress.allowed_domains, &d.domain));
            let by_operator = gate.egress_allow.for_action(&d.action_id).contains(&d.domain);
            let mut value = serde_json::to_value(&d).unwrap_or(Value::Null);
            value["allowed"] = (by_manifest || by_operator).into();
            value
        })
        .collect();
    Ok(json!({"count": domains.len(), "domains": domains}))
}
