//! Egress pre-check: the hosts a call will contact, predicted from the
//! manifest's template and the request, checked against the action's
//! allowlist before policy, budget or grant are touched.

use latchgate_core::action::EgressProfile;
use latchgate_core::egress::domain_allowed;
use latchgate_core::error::{ApiError, ErrorCode};
use latchgate_core::manifest::Manifest;
use serde_json::Value;

/// Hosts the call will contact (lower-case, no port).
pub fn requested_sinks(manifest: &Manifest, params: &Value) -> Result<Vec<String>, ApiError> {
    let Some(template) = &manifest.template else { return Ok(Vec::new()) };
    let url = template.render_url(params).map_err(|e| {
        ApiError::new(ErrorCode::SchemaViolation).with_reason(format!("request cannot fill the URL template: {e}"))
    })?;
    let parsed = url::Url::parse(&url)
        .map_err(|e| ApiError::new(ErrorCode::SchemaViolation).with_reason(format!("request URL: {e}")))?;
    let host = parsed
        .host_str()
        .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| ApiError::new(ErrorCode::SchemaViolation).with_reason("request URL has no host"))?;
    Ok(vec![host])
}

/// The same allowlist rule the executor enforces, applied early.
pub fn precheck(manifest: &Manifest, sinks: &[String]) -> Result<(), ApiError> {
    let egress = &manifest.egress;
    let allowed = match egress.profile {
        EgressProfile::None => sinks.is_empty(),
        EgressProfile::ProxyAllowlist => sinks.iter().all(|s| domain_allowed(&egress.allowed_domains, s)),
    };
    if !allowed {
        return Err(ApiError::new(ErrorCode::PolicyDenied)
            .with_deny_reason("egress_not_allowed")
            .with_remediation("the destination is not in the action's allowed_domains"));
    }
    Ok(())
}
