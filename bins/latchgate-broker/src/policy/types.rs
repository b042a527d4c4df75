//! The policy's input and output documents (documented in policies/README.md).

use super::PolicyError;
use latchgate_core::action::{EgressProfile, RiskLevel};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyInput {
    pub principal: String,
    pub session_id: String,
    /// Scopes of the caller's lease.
    pub scopes: Vec<String>,
    /// `required_scopes` of the action's manifest.
    pub required_scopes: Vec<String>,
    pub action: PolicyAction,
    pub trust: TrustVerdict,
    /// Hosts this call will contact (from the request after the egress pre-check).
    pub requested_sinks: Vec<String>,
    /// Secret names the manifest declares.
    pub requested_secrets: Vec<String>,
    pub egress: PolicyEgress,
    pub budgets_before: Budgets,
    /// Sinks whose host could not be determined or resolved before the call.
    pub unresolved_domains: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyAction {
    pub id: String,
    pub version: String,
    pub risk_level: RiskLevel,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustVerdict {
    /// The provider module's file hash equals the manifest's pinned digest.
    pub digest_verified: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyEgress {
    pub profile: EgressProfile,
    pub allowed_domains: Vec<String>,
}

/// Lease budget counters. `None` limits mean the lease sets no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budgets {
    pub calls_used: u64,
    pub max_calls: Option<u64>,
    /// US cents.
    pub cost_used: u64,
    pub max_cost: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDecision {
    pub allow: bool,
    pub deny_reason: Option<String>,
    pub requires_approval: bool,
    pub allowed_sinks: Vec<String>,
    pub approved_secrets: Vec<String>,
    pub approved_egress: PolicyEgress,
    pub budgets_after: Option<Budgets>,
    pub policy_version: String,
}

/// Keys the decision object must carry. serde would quietly read a missing
/// `Option` field as `None`; a decision that omits `deny_reason` is malformed.
const DECISION_KEYS: &[&str] = &[
    "allow",
    "deny_reason",
    "requires_approval",
    "allowed_sinks",
    "approved_secrets",
    "approved_egress",
    "budgets_after",
    "policy_version",
];

impl PolicyDecision {
    /// Strict decoding of an engine's answer: every key present, every type
    /// right, no extra keys, and the decision consistent with its input.
    pub fn from_engine_value(value: serde_json::Value, input: &PolicyInput) -> Result<PolicyDecision, PolicyError> {
        let object = value
            .as_object()
            .ok_or_else(|| PolicyError::InvalidResponse(format!("decision is not an object: {}", type_name(&value))))?;
        if let Some(missing) = DECISION_KEYS.iter().find(|k| !object.contains_key(**k)) {
            return Err(PolicyError::InvalidResponse(format!("decision has no `{missing}`")));
        }
        let decision: PolicyDecision =
            serde_json::from_value(value).map_err(|e| PolicyError::InvalidResponse(e.to_string()))?;
        decision.check_consistent_with(input)?;
        Ok(decision)
    }

    /// A policy may narrow what was asked, never widen it; and an allow must
    /// not carry a deny reason (or a deny lack one).
    fn check_consistent_with(&self, input: &PolicyInput) -> Result<(), PolicyError> {
        let invalid = |m: &str| Err(PolicyError::InvalidResponse(m.to_owned()));
        match (self.allow, &self.deny_reason) {
            (true, Some(_)) => return invalid("allow with a deny_reason"),
            (false, None) => return invalid("deny without a deny_reason"),
            (false, Some(r)) if r.is_empty() => return invalid("empty deny_reason"),
            _ => {}
        }
        if !self.allow && self.requires_approval {
            return invalid("a denied call cannot require approval");
        }
        if !is_subset(&self.allowed_sinks, &input.requested_sinks) {
            return invalid("allowed_sinks contains a sink that was not requested");
        }
        if !is_subset(&self.approved_secrets, &input.requested_secrets) {
            return invalid("approved_secrets contains a secret that was not requested");
        }
        if !is_subset(&self.approved_egress.allowed_domains, &input.egress.allowed_domains) {
            return invalid("approved_egress widens the action's allowed domains");
        }
        if self.allow && self.budgets_after.is_none() {
            return invalid("an allow needs budgets_after");
        }
        Ok(())
    }
}

fn is_subset(granted: &[String], requested: &[String]) -> bool {
    let requested: BTreeSet<&String> = requested.iter().collect();
    granted.iter().all(|g| requested.contains(g))
}

fn type_name(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null (the rule is undefined)",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}
