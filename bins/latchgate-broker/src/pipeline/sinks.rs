//! Egress pre-check: the hosts a call will contact, predicted from the
//! manifest's template and the request, checked against the action's
//! allowlist (plus the domains an operator allowed for it in policy data)
//! before policy, budget or grant are touched.

use latchgate_core::action::{EgressProfile, EgressRules};
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

/// The pre-check refused these sinks (kept as learned egress domains).
pub struct RefusedSinks {
    pub error: ApiError,
    pub sinks: Vec<String>,
}

/// The same allowlist rule the executor enforces, applied early. An action
/// without egress gets none, whatever an operator allowed.
pub fn precheck(manifest: &Manifest, operator_allowed: &[String], sinks: &[String]) -> Result<(), RefusedSinks> {
    let egress = &manifest.egress;
    let refused: Vec<String> = match egress.profile {
        EgressProfile::None => sinks.to_vec(),
        EgressProfile::ProxyAllowlist => sinks
            .iter()
            .filter(|s| !domain_allowed(&egress.allowed_domains, s) && !operator_allowed.contains(s))
            .cloned()
            .collect(),
    };
    if refused.is_empty() {
        return Ok(());
    }
    Err(RefusedSinks {
        error: ApiError::new(ErrorCode::PolicyDenied).with_deny_reason("egress_not_allowed").with_remediation(
            "the destination is not in the action's allowed_domains; an operator may allow it: latchgate egress allow",
        ),
        sinks: refused,
    })
}

/// The egress rules sent with a task: the manifest's, plus the granted sinks
/// an operator allowed beyond it. The executor still lets a call reach only
/// what the signed grant names.
pub fn task_egress(manifest: &Manifest, granted_sinks: &[String]) -> EgressRules {
    let mut rules = manifest.egress.clone();
    if rules.profile == EgressProfile::ProxyAllowlist {
        for sink in granted_sinks {
            if !domain_allowed(&rules.allowed_domains, sink) {
                rules.allowed_domains.push(sink.clone());
            }
        }
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(profile: EgressProfile, domains: &[&str]) -> Manifest {
        let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../manifests/http_fetch.yaml"));
        let text = std::fs::read_to_string(path).expect("http_fetch manifest");
        let mut m = latchgate_core::manifest::parse_manifest(path, &text).expect("parse");
        m.egress.profile = profile;
        m.egress.allowed_domains = domains.iter().map(|d| d.to_string()).collect();
        m
    }

    #[test]
    fn refused_sinks_are_named_and_operator_allowed_ones_pass() {
        let m = manifest(EgressProfile::ProxyAllowlist, &["api.example.com"]);
        let sinks = vec!["new.example.org".to_string()];
        let refused = precheck(&m, &[], &sinks).expect_err("refused");
        assert_eq!(refused.sinks, sinks);
        assert_eq!(refused.error.deny_reason.as_deref(), Some("egress_not_allowed"));
        precheck(&m, &["new.example.org".into()], &sinks).unwrap_or_else(|_| panic!("operator allowed"));
        let rules = task_egress(&m, &sinks);
        assert_eq!(rules.allowed_domains, vec!["api.example.com", "new.example.org"]);
    }

    #[test]
    fn no_egress_action_never_gets_an_operator_domain() {
        let m = manifest(EgressProfile::None, &[]);
        assert!(precheck(&m, &["x.example".into()], &["x.example".into()]).is_err());
        assert!(task_egress(&m, &["x.example".into()]).allowed_domains.is_empty());
    }
}
