# Unit tests for latchgate.rego. Run by `cargo test -p latchgate-broker`
# (bins/latchgate-broker/tests/policy_rego_tests.rs evaluates every
# data.latchgate.test_* rule) and by `opa test policies/` where OPA exists.
package latchgate

import rego.v1

fixture_data := {
	"version": "test",
	"acl_revision": 3,
	"acl": {
		"alice": ["http_fetch", "github.*", "fs.**"],
		"bob": ["weather.current"],
		"*": ["public.ping"],
	},
	"approval": {"risk_levels": ["high", "critical"]},
	"default_action_cost": 0,
	"action_costs": {"github.pr_create": 5},
}

base_input := {
	"principal": "alice",
	"session_id": "s-1",
	"scopes": ["http.fetch", "github.issues.write"],
	"required_scopes": ["http.fetch"],
	"action": {"id": "http_fetch", "version": "1.0.0", "risk_level": "low"},
	"trust": {"digest_verified": true},
	"requested_sinks": ["api.example.com"],
	"requested_secrets": [],
	"egress": {"profile": "proxy_allowlist", "allowed_domains": ["example.com", "*.example.com"]},
	"budgets_before": {"calls_used": 0, "max_calls": 10, "cost_used": 0, "max_cost": null},
	"unresolved_domains": [],
}

decide(overrides) := d if {
	d := decision with input as object.union(base_input, overrides) with data.policy_data as fixture_data
}

test_allowed_low_risk_call_needs_no_approval if {
	d := decide({})
	d.allow == true
	d.deny_reason == null
	d.requires_approval == false
	d.allowed_sinks == ["api.example.com"]
	d.approved_egress == {"profile": "proxy_allowlist", "allowed_domains": ["example.com", "*.example.com"]}
	d.budgets_after == {"calls_used": 1, "max_calls": 10, "cost_used": 0, "max_cost": null}
	d.policy_version == "test+acl.3"
}

test_empty_input_is_denied_as_invalid if {
	d := decision with input as {} with data.policy_data as fixture_data
	d.allow == false
	d.deny_reason == "invalid_input"
	d.requires_approval == false
	d.allowed_sinks == []
	d.approved_secrets == []
	d.budgets_after == null
}

test_ill_typed_digest_verdict_is_not_trust if {
	d := decide({"trust": {"digest_verified": "true"}})
	d.allow == false
	d.deny_reason == "invalid_input"
}

test_untrusted_digest_is_denied if {
	d := decide({"trust": {"digest_verified": false}})
	d.allow == false
	d.deny_reason == "untrusted_provider_digest"
}

test_unknown_principal_is_denied_by_default if {
	d := decide({"principal": "mallory"})
	d.allow == false
	d.deny_reason == "principal_not_permitted"
}

test_acl_is_per_principal if {
	d := decide({"principal": "bob"})
	d.deny_reason == "principal_not_permitted"
}

test_wildcard_principal_entry_applies_to_everyone if {
	d := decide({"principal": "mallory", "action": {"id": "public.ping", "version": "1.0.0", "risk_level": "low"}})
	d.allow == true
}

test_glob_single_segment_does_not_cross_dots if {
	d := decide({"action": {"id": "github.issue.sub", "version": "1.0.0", "risk_level": "low"}})
	d.deny_reason == "principal_not_permitted"
	e := decide({"action": {"id": "github.issue_get", "version": "1.0.0", "risk_level": "low"}})
	e.allow == true
}

test_subtree_pattern_matches_every_depth if {
	d := decide({"action": {"id": "fs.dir.read", "version": "1.0.0", "risk_level": "low"}})
	d.allow == true
	e := decide({"action": {"id": "fsx.read", "version": "1.0.0", "risk_level": "low"}})
	e.deny_reason == "principal_not_permitted"
}

test_glob_does_not_match_prefix_lookalike if {
	d := decide({"action": {"id": "githubx.issue_get", "version": "1.0.0", "risk_level": "low"}})
	d.deny_reason == "principal_not_permitted"
}

test_missing_required_scope_is_denied if {
	d := decide({"required_scopes": ["http.fetch", "admin"]})
	d.allow == false
	d.deny_reason == "missing_required_scopes"
}

test_sink_outside_allowlist_is_denied if {
	d := decide({"requested_sinks": ["api.example.com", "evil.test"]})
	d.deny_reason == "egress_not_allowed"
}

test_wildcard_domain_requires_a_label_boundary if {
	d := decide({"requested_sinks": ["notexample.com"]})
	d.deny_reason == "egress_not_allowed"
}

test_operator_allowed_domain_passes_for_its_action_only if {
	allowed := object.union(fixture_data, {"egress_allow": {"http_fetch": ["new.example.org"]}})
	d := decision with input as object.union(base_input, {"requested_sinks": ["new.example.org"]})
		with data.policy_data as allowed
	d.allow == true
	d.allowed_sinks == ["new.example.org"]
	# The manifest's domains are what approved_egress reports; the grant carries the sink.
	d.approved_egress.allowed_domains == ["example.com", "*.example.com"]
	other := object.union(base_input, {"requested_sinks": ["new.example.org"], "action": {"id": "http_post", "version": "1", "risk_level": "low"}})
	e := decision with input as other with data.policy_data as object.union(allowed, {"acl": {"alice": ["http_post"]}})
	e.deny_reason == "egress_not_allowed"
}

test_operator_allowed_domain_never_opens_a_no_egress_action if {
	allowed := object.union(fixture_data, {"egress_allow": {"http_fetch": ["new.example.org"]}})
	d := decision with input as object.union(base_input, {"requested_sinks": ["new.example.org"], "egress": {"profile": "none", "allowed_domains": []}})
		with data.policy_data as allowed
	d.deny_reason == "egress_not_allowed"
}

test_no_egress_profile_refuses_any_sink if {
	d := decide({"egress": {"profile": "none", "allowed_domains": []}})
	d.deny_reason == "egress_not_allowed"
	e := decide({"egress": {"profile": "none", "allowed_domains": []}, "requested_sinks": []})
	e.allow == true
	e.approved_egress == {"profile": "none", "allowed_domains": []}
}

test_call_budget_exhausted_is_denied if {
	d := decide({"budgets_before": {"calls_used": 10, "max_calls": 10, "cost_used": 0, "max_cost": null}})
	d.allow == false
	d.deny_reason == "budget_exhausted"
	d.budgets_after == {"calls_used": 10, "max_calls": 10, "cost_used": 0, "max_cost": null}
}

test_last_call_within_budget_is_allowed if {
	d := decide({"budgets_before": {"calls_used": 9, "max_calls": 10, "cost_used": 0, "max_cost": null}})
	d.allow == true
	d.budgets_after.calls_used == 10
}

test_cost_budget_uses_the_action_cost if {
	action := {"id": "github.pr_create", "version": "1.0.0", "risk_level": "high"}
	d := decide({"action": action, "budgets_before": {"calls_used": 0, "max_calls": null, "cost_used": 96, "max_cost": 100}})
	d.deny_reason == "budget_exhausted"
	e := decide({"action": action, "budgets_before": {"calls_used": 0, "max_calls": null, "cost_used": 95, "max_cost": 100}})
	e.allow == true
	e.budgets_after.cost_used == 100
}

test_high_and_critical_risk_require_approval if {
	every level in ["high", "critical"] {
		d := decide({"action": {"id": "http_fetch", "version": "1.0.0", "risk_level": level}})
		d.allow == true
		d.requires_approval == true
	}
	m := decide({"action": {"id": "http_fetch", "version": "1.0.0", "risk_level": "medium"}})
	m.requires_approval == false
}

test_unresolved_domain_requires_approval if {
	d := decide({"unresolved_domains": ["api.example.com"]})
	d.allow == true
	d.requires_approval == true
}

test_denied_call_never_asks_for_approval if {
	d := decide({"principal": "mallory", "action": {"id": "http_fetch", "version": "1.0.0", "risk_level": "critical"}})
	d.allow == false
	d.requires_approval == false
}

test_secrets_are_approved_only_when_allowed if {
	d := decide({"requested_secrets": ["GITHUB_TOKEN"]})
	d.approved_secrets == ["GITHUB_TOKEN"]
	e := decide({"requested_secrets": ["GITHUB_TOKEN"], "trust": {"digest_verified": false}})
	e.approved_secrets == []
	e.allowed_sinks == []
}

test_first_failing_check_is_reported if {
	d := decide({"principal": "mallory", "trust": {"digest_verified": false}, "required_scopes": ["admin"]})
	d.deny_reason == "untrusted_provider_digest"
}

test_shipped_data_grants_nothing_to_unknown_principals if {
	d := decision with input as object.union(base_input, {"principal": "nobody-in-particular"})
	d.deny_reason == "principal_not_permitted"
}
