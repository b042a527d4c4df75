//! The embedded policy engine: default deny, per-principal ACL, strict
//! decoding of decisions, safe reload, and its evaluation cost.

use latchgate_broker::policy::{
    Budgets, EmbeddedRego, PolicyAction, PolicyDecision, PolicyEgress, PolicyError, PolicyInput, TrustVerdict,
};
use latchgate_core::action::{EgressProfile, RiskLevel};
use serde_json::json;
use std::path::{Path, PathBuf};

fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

fn input(principal: &str, action: &str, risk: RiskLevel) -> PolicyInput {
    PolicyInput {
        principal: principal.into(),
        session_id: "sess-1".into(),
        scopes: vec!["http.fetch".into(), "fs.read".into(), "gmail.send".into()],
        required_scopes: vec!["http.fetch".into()],
        action: PolicyAction { id: action.into(), version: "1.0.0".into(), risk_level: risk },
        trust: TrustVerdict { digest_verified: true },
        requested_sinks: vec!["example.com".into()],
        requested_secrets: vec![],
        egress: PolicyEgress {
            profile: EgressProfile::ProxyAllowlist,
            allowed_domains: vec!["example.com".into(), "*.example.com".into()],
        },
        budgets_before: Budgets { calls_used: 2, max_calls: Some(100), cost_used: 0, max_cost: None },
        unresolved_domains: vec![],
    }
}

fn engine() -> EmbeddedRego {
    EmbeddedRego::load(&policies_dir()).unwrap()
}

#[test]
fn permitted_principal_gets_a_typed_allow_with_debited_budget() {
    let d = engine().evaluate(&input("agent-research", "http_fetch", RiskLevel::Low)).unwrap();
    assert!(d.allow, "{d:?}");
    assert_eq!(d.deny_reason, None);
    assert!(!d.requires_approval);
    assert_eq!(d.allowed_sinks, vec!["example.com"]);
    assert_eq!(d.budgets_after, Some(Budgets { calls_used: 3, max_calls: Some(100), cost_used: 0, max_cost: None }));
    assert!(d.policy_version.starts_with("2026-11-28+acl."), "{}", d.policy_version);
}

#[test]
fn unknown_principal_is_denied_by_default() {
    let d = engine().evaluate(&input("someone-else", "http_fetch", RiskLevel::Low)).unwrap();
    assert!(!d.allow);
    assert_eq!(d.deny_reason.as_deref(), Some("principal_not_permitted"));
    assert!(d.allowed_sinks.is_empty() && d.approved_secrets.is_empty());
}

#[test]
fn untrusted_digest_is_denied_even_for_a_permitted_principal() {
    let mut i = input("agent-research", "http_fetch", RiskLevel::Low);
    i.trust.digest_verified = false;
    let d = engine().evaluate(&i).unwrap();
    assert_eq!(d.deny_reason.as_deref(), Some("untrusted_provider_digest"));
}

#[test]
fn exhausted_budget_is_denied_with_budget_exhausted() {
    let mut i = input("agent-research", "http_fetch", RiskLevel::Low);
    i.budgets_before = Budgets { calls_used: 100, max_calls: Some(100), cost_used: 0, max_cost: None };
    let d = engine().evaluate(&i).unwrap();
    assert_eq!(d.deny_reason.as_deref(), Some("budget_exhausted"));
}

#[test]
fn high_risk_allow_requires_approval() {
    let mut i = input("agent-assistant", "gmail.send", RiskLevel::High);
    i.required_scopes = vec!["gmail.send".into()];
    i.requested_sinks = vec![];
    i.egress =
        PolicyEgress { profile: EgressProfile::ProxyAllowlist, allowed_domains: vec!["gmail.googleapis.com".into()] };
    i.requested_secrets = vec!["GMAIL_OAUTH_TOKEN".into()];
    let d = engine().evaluate(&i).unwrap();
    assert!(d.allow && d.requires_approval, "{d:?}");
    assert_eq!(d.approved_secrets, vec!["GMAIL_OAUTH_TOKEN"]);
}

fn custom_engine(policy: &str) -> Result<EmbeddedRego, PolicyError> {
    let data = std::fs::read_to_string(policies_dir().join("data.json")).unwrap();
    EmbeddedRego::from_sources(vec![("custom.rego".into(), policy.into())], &data, policies_dir().join("data.json"))
}

#[test]
fn policy_without_a_well_formed_decision_is_refused_at_load() {
    let undefined = "package latchgate\nimport rego.v1\ndecision := {\"allow\": true} if input.never\n";
    assert!(matches!(custom_engine(undefined), Err(PolicyError::Load(m)) if m.contains("undefined")));
    let missing_key = "package latchgate\nimport rego.v1\ndecision := {\"allow\": false, \"requires_approval\": false, \"allowed_sinks\": [], \"approved_secrets\": [], \"approved_egress\": {\"profile\": \"none\", \"allowed_domains\": []}, \"budgets_after\": null, \"policy_version\": \"x\"}\n";
    assert!(matches!(custom_engine(missing_key), Err(PolicyError::Load(m)) if m.contains("deny_reason")));
}

#[test]
fn decision_that_widens_the_request_is_an_invalid_response() {
    let i = input("agent-research", "http_fetch", RiskLevel::Low);
    let widened = json!({
        "allow": true, "deny_reason": null, "requires_approval": false,
        "allowed_sinks": ["example.com", "evil.test"], "approved_secrets": [],
        "approved_egress": {"profile": "proxy_allowlist", "allowed_domains": ["example.com"]},
        "budgets_after": {"calls_used": 3, "max_calls": 100, "cost_used": 0, "max_cost": null},
        "policy_version": "x"
    });
    assert!(
        matches!(PolicyDecision::from_engine_value(widened, &i), Err(PolicyError::InvalidResponse(m)) if m.contains("allowed_sinks"))
    );
}

#[test]
fn ill_typed_or_inconsistent_decisions_are_invalid_responses() {
    let i = input("agent-research", "http_fetch", RiskLevel::Low);
    let good = json!({
        "allow": false, "deny_reason": "principal_not_permitted", "requires_approval": false,
        "allowed_sinks": [], "approved_secrets": [],
        "approved_egress": {"profile": "none", "allowed_domains": []},
        "budgets_after": null, "policy_version": "x"
    });
    PolicyDecision::from_engine_value(good.clone(), &i).unwrap();
    let mutations = [
        ("allow", json!("false")),
        ("deny_reason", json!(null)),
        ("requires_approval", json!(true)),
        ("approved_egress", json!("none")),
        ("extra_field", json!(1)),
    ];
    for (key, value) in mutations {
        let mut bad = good.clone();
        bad[key] = value;
        let result = PolicyDecision::from_engine_value(bad, &i);
        assert!(matches!(result, Err(PolicyError::InvalidResponse(_))), "{key}: {result:?}");
    }
    assert!(matches!(PolicyDecision::from_engine_value(json!([]), &i), Err(PolicyError::InvalidResponse(_))));
}

#[test]
fn invalid_response_maps_to_a_503_code() {
    let e = PolicyError::InvalidResponse("x".into());
    assert_eq!(e.code(), "policy_engine_invalid_response");
    assert_eq!(e.error_code().http_status(), 503);
}

#[test]
fn reload_applies_new_acl_and_a_broken_reload_keeps_the_old_policy() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(policies_dir().join("latchgate.rego"), dir.path().join("latchgate.rego")).unwrap();
    std::fs::copy(policies_dir().join("data.json"), dir.path().join("data.json")).unwrap();
    let engine = EmbeddedRego::load(dir.path()).unwrap();
    let i = input("new-agent", "http_fetch", RiskLevel::Low);
    assert!(!engine.evaluate(&i).unwrap().allow);

    let data_path = dir.path().join("data.json");
    latchgate_broker::policy::update_data_file(&data_path, |d| {
        latchgate_broker::policy::grant(d, "new-agent", "http_*")
    })
    .unwrap();
    let version = engine.reload().unwrap();
    let d = engine.evaluate(&i).unwrap();
    assert!(d.allow, "{d:?}");
    assert_eq!(d.policy_version, version);

    std::fs::write(&data_path, "{ not json").unwrap();
    assert!(matches!(engine.reload(), Err(PolicyError::Load(_))));
    assert!(engine.evaluate(&i).unwrap().allow, "old policy must stay in force");
}

#[test]
fn concurrent_evaluations_agree() {
    let engine = std::sync::Arc::new(engine());
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                for n in 0..50 {
                    let principal = if (t + n) % 2 == 0 { "agent-research" } else { "stranger" };
                    let d = engine.evaluate(&input(principal, "http_fetch", RiskLevel::Low)).unwrap();
                    assert_eq!(d.allow, principal == "agent-research");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// Not a pass/fail benchmark: prints p50/p99 so the figure can be reported.
#[test]
fn evaluation_latency_is_measured() {
    let engine = engine();
    let i = input("agent-research", "http_fetch", RiskLevel::Low);
    for _ in 0..50 {
        engine.evaluate(&i).unwrap();
    }
    let mut samples: Vec<std::time::Duration> = (0..500)
        .map(|_| {
            let start = std::time::Instant::now();
            engine.evaluate(&i).unwrap();
            start.elapsed()
        })
        .collect();
    samples.sort();
    let p50 = samples[samples.len() / 2];
    let p99 = samples[samples.len() * 99 / 100];
    eprintln!("embedded rego evaluate: p50 {p50:?} p99 {p99:?}");
    assert!(p50 < std::time::Duration::from_millis(50), "p50 {p50:?}");
}
