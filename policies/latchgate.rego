# LatchGate execution policy. Evaluated as data.latchgate.decision by the
# embedded regorus engine and, unchanged, by OPA (POST /v1/data/latchgate/decision).
# Input and output are documented in README.md.
#
# Every check is written as "ok_<check> if <evidence>": a missing or ill-typed
# input field leaves the evidence undefined, so the check fails and the
# decision is a deny. Nothing here can allow by omission.
package latchgate

import rego.v1

config := data.policy_data

# Deny reasons in the order they are reported: the first failing check wins.
checks := [
	"invalid_input",
	"untrusted_provider_digest",
	"principal_not_permitted",
	"missing_required_scopes",
	"egress_not_allowed",
	"budget_exhausted",
]

deny_reasons := [reason | some reason in checks; failed[reason]]

failed contains "invalid_input" if not ok_input

failed contains "untrusted_provider_digest" if not ok_trust

failed contains "principal_not_permitted" if not ok_acl

failed contains "missing_required_scopes" if not ok_scopes

failed contains "egress_not_allowed" if not ok_egress

failed contains "budget_exhausted" if not ok_budget

# --- input shape -----------------------------------------------------------

ok_input if {
	is_string(input.principal)
	input.principal != ""
	is_string(input.session_id)
	is_array(input.scopes)
	is_array(input.required_scopes)
	is_string(input.action.id)
	is_string(input.action.version)
	input.action.risk_level in {"low", "medium", "high", "critical"}
	is_boolean(input.trust.digest_verified)
	is_array(input.requested_sinks)
	is_array(input.requested_secrets)
	input.egress.profile in {"none", "proxy_allowlist"}
	is_array(input.egress.allowed_domains)
	is_array(input.unresolved_domains)
	is_number(input.budgets_before.calls_used)
	is_number(input.budgets_before.cost_used)
	limit_ok_type(input.budgets_before.max_calls)
	limit_ok_type(input.budgets_before.max_cost)
}

# A budget limit is a number, or null for "no limit on this lease".
limit_ok_type(x) if is_number(x)

limit_ok_type(x) if is_null(x)

# --- provider digest trust ---------------------------------------------------

ok_trust if input.trust.digest_verified == true

# --- per-principal ACL -------------------------------------------------------
# data.policy_data.acl maps a principal (or "*" for every principal) to action
# id patterns: an exact id; "**" (every action); "<prefix>.**" (every action
# below <prefix>); or "<stem>*", where "*" matches within the last
# dot-separated segment ("github.*" matches "github.issue_get", not
# "github.a.b"). Plain string builtins rather than glob.match: the grammar is
# what an operator reads, and a glob compile per pattern would cost ~25 us.

acl_patterns contains pattern if {
	some pattern in object.get(config.acl, input.principal, [])
}

acl_patterns contains pattern if {
	some pattern in object.get(config.acl, "*", [])
}

pattern_matches(pattern, id) if pattern == id

pattern_matches(pattern, _) if pattern == "**"

pattern_matches(pattern, id) if {
	endswith(pattern, ".**")
	startswith(id, trim_suffix(pattern, "**"))
}

pattern_matches(pattern, id) if {
	endswith(pattern, "*")
	not endswith(pattern, "**")
	stem := trim_suffix(pattern, "*")
	startswith(id, stem)
	rest := trim_prefix(id, stem)
	rest != ""
	not contains(rest, ".")
}

ok_acl if {
	some pattern in acl_patterns
	pattern_matches(pattern, input.action.id)
}

# --- scopes ------------------------------------------------------------------

missing_scopes := {s | some s in input.required_scopes; not s in input.scopes}

ok_scopes if count(missing_scopes) == 0

# --- egress ------------------------------------------------------------------
# The broker already pre-checks sinks against the manifest; the policy repeats
# the check so a broker bug cannot widen egress on its own.

sink_allowed(sink) if {
	some domain in input.egress.allowed_domains
	domain == sink
}

sink_allowed(sink) if {
	some domain in input.egress.allowed_domains
	startswith(domain, "*.")
	endswith(sink, trim_prefix(domain, "*"))
}

# Hosts an operator allowed for this action beyond its manifest (learned
# egress domains, `latchgate egress allow`): exact names only, and only for an
# action that has network egress at all (the profile check below).
operator_allowed_domains := object.get(object.get(config, "egress_allow", {}), input.action.id, [])

sink_allowed(sink) if {
	some domain in operator_allowed_domains
	domain == sink
}

ok_egress if {
	input.egress.profile == "none"
	count(input.requested_sinks) == 0
}

ok_egress if {
	input.egress.profile == "proxy_allowlist"
	every sink in input.requested_sinks {
		sink_allowed(sink)
	}
}

# --- budgets -----------------------------------------------------------------

action_cost := object.get(object.get(config, "action_costs", {}), input.action.id, object.get(config, "default_action_cost", 0))

calls_after := input.budgets_before.calls_used + 1

cost_after := input.budgets_before.cost_used + action_cost

within_limit(_, limit) if is_null(limit)

within_limit(used, limit) if {
	is_number(limit)
	used <= limit
}

ok_budget if {
	within_limit(calls_after, input.budgets_before.max_calls)
	within_limit(cost_after, input.budgets_before.max_cost)
}

# --- decision ----------------------------------------------------------------

default allow := false

allow if count(deny_reasons) == 0

default deny_reason := null

deny_reason := deny_reasons[0] if count(deny_reasons) > 0

approval_risk_levels := {level | some level in object.get(object.get(config, "approval", {}), "risk_levels", ["high", "critical"])}

default requires_approval := false

requires_approval if {
	allow
	input.action.risk_level in approval_risk_levels
}

requires_approval if {
	allow
	count(input.unresolved_domains) > 0
}

default allowed_sinks := []

allowed_sinks := input.requested_sinks if allow

default approved_secrets := []

approved_secrets := input.requested_secrets if allow

default approved_egress := {"profile": "none", "allowed_domains": []}

approved_egress := {"profile": input.egress.profile, "allowed_domains": input.egress.allowed_domains} if allow

default budgets_after := null

budgets_after := {
	"calls_used": calls_after,
	"max_calls": input.budgets_before.max_calls,
	"cost_used": cost_after,
	"max_cost": input.budgets_before.max_cost,
} if allow

budgets_after := input.budgets_before if {
	not allow
	ok_input
}

default policy_version := "unversioned"

policy_version := sprintf("%s+acl.%d", [config.version, object.get(config, "acl_revision", 0)]) if is_string(config.version)

decision := {
	"allow": allow,
	"deny_reason": deny_reason,
	"requires_approval": requires_approval,
	"allowed_sinks": allowed_sinks,
	"approved_secrets": approved_secrets,
	"approved_egress": approved_egress,
	"budgets_after": budgets_after,
	"policy_version": policy_version,
}
