//! The OPA path against the embedded engine: the same inputs through
//! embedded regorus and through `OpaClient` → HTTP → the OPA-REST-compatible
//! test server (same `policies/`) must give identical decisions; and every
//! way OPA can misbehave is a 503 with its own code, never an allow.

use latchgate_broker::policy::{
    Budgets, EmbeddedRego, OpaClient, PolicyAction, PolicyDecision, PolicyEgress, PolicyEngine, PolicyError,
    PolicyInput, TrustVerdict,
};
use latchgate_core::action::{EgressProfile, RiskLevel};
use latchgate_core::config::OpaConfig;
use latchgate_core::error::ErrorCode;
use latchgate_tests::opa_server::{OPA_TIMEOUT_MS, OpaServer};
use latchgate_tests::repo_root;

fn client(opa: &OpaServer) -> OpaClient {
    OpaClient::new(&OpaConfig { url: opa.url(), timeout_ms: OPA_TIMEOUT_MS }).unwrap()
}

fn base(principal: &str, action: &str, risk: RiskLevel) -> PolicyInput {
    PolicyInput {
        principal: principal.into(),
        session_id: "s-1".into(),
        scopes: vec!["http.fetch".into()],
        required_scopes: vec!["http.fetch".into()],
        action: PolicyAction { id: action.into(), version: "1.0.0".into(), risk_level: risk },
        trust: TrustVerdict { digest_verified: true },
        requested_sinks: vec!["api.example.com".into()],
        requested_secrets: vec!["token".into()],
        egress: PolicyEgress { profile: EgressProfile::ProxyAllowlist, allowed_domains: vec!["*.example.com".into()] },
        budgets_before: Budgets { calls_used: 0, max_calls: Some(10), cost_used: 0, max_cost: None },
        unresolved_domains: vec![],
    }
}

/// Named inputs covering the allow, every deny reason, approval and budgets.
fn spread() -> Vec<(&'static str, PolicyInput)> {
    let ok = || base("agent-research", "http_fetch", RiskLevel::Low);
    let mut cases = vec![("allowed", ok())];
    let mut add = |name, edit: &dyn Fn(&mut PolicyInput)| {
        let mut input = ok();
        edit(&mut input);
        cases.push((name, input));
    };
    add("invalid_input (empty principal)", &|i| i.principal.clear());
    add("untrusted_provider_digest", &|i| i.trust.digest_verified = false);
    add("principal_not_permitted", &|i| i.principal = "nobody".into());
    add("wildcard acl for everyone", &|i| {
        i.principal = "nobody".into();
        i.action.id = "weather.current".into();
    });
    add("prefix acl pattern", &|i| {
        i.principal = "agent-dev".into();
        i.action.id = "github.issue_get".into();
    });
    add("missing_required_scopes", &|i| i.scopes.clear());
    add("egress_not_allowed (sink outside the allowlist)", &|i| i.requested_sinks = vec!["evil.test".into()]);
    add("egress_not_allowed (profile none with a sink)", &|i| i.egress.profile = EgressProfile::None);
    add("egress none without sinks", &|i| {
        i.egress = PolicyEgress { profile: EgressProfile::None, allowed_domains: vec![] };
        i.requested_sinks.clear();
    });
    add("budget_exhausted (calls)", &|i| i.budgets_before.calls_used = 10);
    add("last call within budget", &|i| i.budgets_before.calls_used = 9);
    add("budget_exhausted (cost)", &|i| {
        i.principal = "agent-assistant".into();
        i.action.id = "gmail.send".into();
        i.budgets_before.max_cost = Some(3);
        i.budgets_before.cost_used = 2;
    });
    add("costed action within budget", &|i| {
        i.principal = "agent-assistant".into();
        i.action.id = "gmail.send".into();
        i.budgets_before.max_cost = Some(4);
        i.budgets_before.cost_used = 2;
    });
    add("no limits at all", &|i| {
        i.budgets_before = Budgets { calls_used: 7, max_calls: None, cost_used: 3, max_cost: None }
    });
    add("approval required (high risk)", &|i| i.action.risk_level = RiskLevel::High);
    add("approval required (critical risk)", &|i| i.action.risk_level = RiskLevel::Critical);
    add("approval required (unresolved domain)", &|i| i.unresolved_domains = vec!["api.example.com".into()]);
    add("high risk but denied", &|i| {
        i.action.risk_level = RiskLevel::High;
        i.principal = "nobody".into();
    });
    cases
}

/// A deterministic pseudo-random spread on top (no shared RNG state between runs).
fn generated(count: usize) -> Vec<PolicyInput> {
    let mut seed: u64 = 0x5eed_1a7c_0ff1_ce00;
    let mut next = move |n: u64| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let principals = ["agent-research", "agent-dev", "agent-assistant", "nobody", ""];
    let actions = ["http_fetch", "github.issue_get", "github.pr_merge", "gmail.send", "weather.current", "fs.read"];
    let risks = [RiskLevel::Low, RiskLevel::Medium, RiskLevel::High, RiskLevel::Critical];
    let sinks = ["api.example.com", "example.com", "evil.test", "a.b.example.com"];
    (0..count)
        .map(|_| {
            let mut input = base(
                principals[next(principals.len() as u64) as usize],
                actions[next(actions.len() as u64) as usize],
                risks[next(risks.len() as u64) as usize],
            );
            input.scopes = if next(4) == 0 { vec![] } else { input.scopes };
            input.trust.digest_verified = next(8) != 0;
            input.requested_sinks =
                (0..next(3)).map(|_| sinks[next(sinks.len() as u64) as usize].to_string()).collect();
            if next(5) == 0 {
                input.egress = PolicyEgress { profile: EgressProfile::None, allowed_domains: vec![] };
            }
            input.budgets_before = Budgets {
                calls_used: next(6),
                max_calls: if next(3) == 0 { None } else { Some(next(6)) },
                cost_used: next(5),
                max_cost: if next(2) == 0 { None } else { Some(next(6)) },
            };
            if next(6) == 0 {
                input.unresolved_domains = vec!["api.example.com".into()];
            }
            input
        })
        .collect()
}

fn same(embedded: Result<PolicyDecision, PolicyError>, opa: Result<PolicyDecision, PolicyError>, what: &str) {
    match (embedded, opa) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "{what}: embedded and OPA decisions differ"),
        (Err(a), Err(b)) => assert_eq!(a.code(), b.code(), "{what}: {a} vs {b}"),
        (a, b) => panic!("{what}: embedded {a:?} vs OPA {b:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_and_opa_engines_decide_identically() {
    let policies = repo_root().join("policies");
    let opa = OpaServer::start(&policies);
    let embedded = EmbeddedRego::load(&policies).unwrap();
    let http = client(&opa);

    let mut reasons = std::collections::BTreeSet::new();
    let mut approvals = 0;
    for (name, input) in spread() {
        let a = EmbeddedRego::evaluate(&embedded, &input);
        if let Ok(d) = &a {
            reasons.insert(d.deny_reason.clone().unwrap_or_else(|| "allow".into()));
            approvals += usize::from(d.requires_approval);
        }
        same(a, http.evaluate(&input).await, name);
    }
    for reason in [
        "allow",
        "invalid_input",
        "untrusted_provider_digest",
        "principal_not_permitted",
        "missing_required_scopes",
        "egress_not_allowed",
        "budget_exhausted",
    ] {
        assert!(reasons.contains(reason), "the spread never produced {reason}: {reasons:?}");
    }
    assert!(approvals >= 3, "approval-required cases were not decided as such");

    let inputs = generated(300);
    let started = std::time::Instant::now();
    for input in &inputs {
        let _ = http.evaluate(input).await;
    }
    // Reported, not asserted (speed is `make bench`'s job).
    eprintln!("OPA over HTTP (pooled, loopback): {:?} per decision", started.elapsed() / inputs.len() as u32);
    for (n, input) in inputs.iter().enumerate() {
        same(
            EmbeddedRego::evaluate(&embedded, input),
            http.evaluate(input).await,
            &format!("generated #{n}: {input:?}"),
        );
    }
    let (decisions, connections) = opa.stats();
    assert!(decisions >= 600, "{decisions}");
    // Kept-alive connections are reused: without a pool every decision would open one. (A few more than
    // one appear when a request checks out before the previous connection is back in the pool.)
    assert!(
        connections * 20 <= decisions,
        "{decisions} sequential decisions used {connections} connections: no pooling"
    );
    assert_eq!(http.probe().await.unwrap(), embedded.probe().await.unwrap(), "same policy version");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_opa_failure_is_a_503_with_its_own_code() {
    let mut opa = OpaServer::start(&repo_root().join("policies"));
    let http = client(&opa);
    let input = base("agent-research", "http_fetch", RiskLevel::Low);
    assert!(http.evaluate(&input).await.unwrap().allow, "the baseline is an allow");

    for (mode, code) in [
        ("hang", ErrorCode::PolicyEngineTimeout),
        ("fail", ErrorCode::PolicyEngineUnavailable),
        ("garbage", ErrorCode::PolicyEngineInvalidResponse),
        ("ill_typed", ErrorCode::PolicyEngineInvalidResponse),
        ("undefined", ErrorCode::PolicyEngineInvalidResponse),
        ("widening", ErrorCode::PolicyEngineInvalidResponse),
    ] {
        opa.set_mode(mode);
        // `hang` never answers: getting an answer at all proves the timeout bounds the call.
        let err = http.evaluate(&input).await.expect_err(mode);
        assert_eq!(err.error_code(), code, "{mode}: {err}");
        assert_eq!(code.http_status(), 503);
        assert_eq!(http.probe().await.unwrap_err().error_code(), code, "probe in mode {mode}");
    }
    opa.set_mode("normal");
    assert!(http.evaluate(&input).await.unwrap().allow);

    opa.stop();
    let err = http.evaluate(&input).await.expect_err("OPA is down");
    assert_eq!(err.error_code(), ErrorCode::PolicyEngineUnavailable, "{err}");
    opa.restart();
    assert!(http.evaluate(&input).await.unwrap().allow, "the client recovers when OPA is back");
}
