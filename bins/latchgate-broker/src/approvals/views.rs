//! How an approval reads: to the agent polling it (API.md statuses
//! `pending | approved | denied | failed`) and to an operator (every state,
//! with the plan on request).

use super::StoredPlan;
use crate::ledger::{ApprovalRecord, IntentState};
use serde_json::{Value, json};

/// The operator's state of an approval.
pub fn operator_state(record: &ApprovalRecord, executing: bool) -> &'static str {
    let Some(outcome) = &record.outcome else {
        return if executing { "deciding" } else { "pending" };
    };
    match outcome.outcome.as_str() {
        "approved" => match (executing, record.intent_state, &record.receipt_id) {
            (true, ..) => "executing",
            (false, Some(IntentState::Resolved), Some(_)) => "executed",
            (false, Some(IntentState::Failed), _) => "execution_failed",
            // Dispatched and never resolved: the effect may have happened.
            (false, Some(IntentState::Pending), _) => "outcome_unknown",
            _ => "not_executed",
        },
        "denied" => "denied",
        "expired" => "expired",
        _ => "failed",
    }
}

/// The operator's view; `with_plan` adds the stored plan (params, decision, lease).
pub fn operator_view(record: &ApprovalRecord, executing: bool, with_plan: bool) -> Value {
    let outcome = record.outcome.as_ref();
    let mut view = json!({
        "approval_id": record.approval_id,
        "status": operator_state(record, executing),
        "action_id": record.action_id,
        "principal": record.principal,
        "session_id": record.session_id,
        "trace_id": record.trace_id,
        "request_hash": record.request_hash,
        "plan_hash": record.plan_hash,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "decided_by": outcome.map(|o| o.operator.clone()),
        "decided_by_jkt": outcome.and_then(|o| o.operator_jkt.clone()),
        "decided_at": outcome.map(|o| o.ts.clone()),
        "reason": outcome.and_then(|o| o.reason.clone()),
        "receipt_id": record.receipt_id,
    });
    if with_plan {
        view["plan"] = match StoredPlan::of_record(record) {
            Ok(plan) => json!({
                "action_version": plan.action_version,
                "definition_hash": plan.definition_hash,
                "provider_module_digest": plan.provider_module_digest,
                "risk_level": plan.risk_level,
                "params": plan.params,
                "allowed_sinks": plan.decision.allowed_sinks,
                "approved_secrets": plan.decision.approved_secrets,
                "policy_version": plan.decision.policy_version,
                "cost_cents": plan.cost_cents,
                "lease": {"jti": plan.lease.jti, "scopes": plan.lease.scopes, "epoch": plan.lease.epoch, "exp": plan.lease.exp},
            }),
            Err(e) => json!({"error": e.code.as_str(), "reason": e.reason}),
        };
    }
    view
}

/// The agent's poll answer. `failure_class` is that of the receipt when the
/// approved plan ran and failed.
pub fn agent_view(
    record: &ApprovalRecord,
    executing: bool,
    failure_class: Option<String>,
    retry_after_seconds: u64,
) -> Value {
    let state = operator_state(record, executing);
    let reason = record.outcome.as_ref().and_then(|o| o.reason.clone());
    let (status, reason) = match state {
        // Until the plan has run (or is known not to), the agent keeps polling.
        "pending" | "deciding" | "executing" => ("pending", None),
        "executed" => ("approved", None),
        "outcome_unknown" => {
            ("approved", Some("execution outcome unknown; an operator must resolve the intent".into()))
        }
        "execution_failed" => ("failed", Some(failure_class.unwrap_or_else(|| "execution_failed".into()))),
        "not_executed" => ("failed", Some("not_executed".into())),
        "denied" => ("denied", reason),
        "expired" => ("failed", Some("expired".into())),
        _ => ("failed", reason),
    };
    let mut view = json!({"approval_id": record.approval_id, "action_id": record.action_id, "status": status});
    if let Some(reason) = reason {
        view["reason"] = reason.into();
    }
    if let Some(receipt_id) = &record.receipt_id {
        view["receipt_id"] = receipt_id.clone().into();
    }
    if status == "pending" {
        view["retry_after_seconds"] = retry_after_seconds.into();
        view["expires_at"] = record.expires_at.clone().into();
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::ApprovalOutcome;

    fn record(outcome: Option<&str>, intent: Option<IntentState>, receipt: Option<&str>) -> ApprovalRecord {
        ApprovalRecord {
            approval_id: "a".into(),
            trace_id: "t".into(),
            action_id: "fs.write".into(),
            principal: "p".into(),
            session_id: "s".into(),
            request_hash: "sha256:r".into(),
            plan_hash: "sha256:p".into(),
            plan: String::new(),
            created_at: "2026-01-01T00:00:00.000000Z".into(),
            expires_at: "2026-01-01T00:05:00.000000Z".into(),
            outcome: outcome.map(|o| ApprovalOutcome {
                approval_id: "a".into(),
                outcome: o.into(),
                operator: "alice".into(),
                ts: "2026-01-01T00:01:00.000000Z".into(),
                plan_hash: "sha256:p".into(),
                reason: (o != "approved").then(|| "why".into()),
                operator_jkt: None,
            }),
            intent_state: intent,
            receipt_id: receipt.map(Into::into),
        }
    }

    #[test]
    fn the_agent_keeps_polling_until_the_approved_plan_has_run() {
        assert_eq!(agent_view(&record(None, None, None), false, None, 2)["status"], "pending");
        assert_eq!(agent_view(&record(None, None, None), true, None, 2)["status"], "pending", "being decided");
        let running = record(Some("approved"), Some(IntentState::Pending), None);
        assert_eq!(agent_view(&running, true, None, 2)["status"], "pending");
        let done = agent_view(&record(Some("approved"), Some(IntentState::Resolved), Some("r1")), false, None, 2);
        assert_eq!((done["status"].as_str(), done["receipt_id"].as_str()), (Some("approved"), Some("r1")));
        assert!(done.get("retry_after_seconds").is_none());
    }

    #[test]
    fn terminal_states_map_to_the_sdk_statuses_with_a_reason() {
        let failed = record(Some("approved"), Some(IntentState::Failed), Some("r2"));
        let view = agent_view(&failed, false, Some("verification_failed".into()), 2);
        assert_eq!((view["status"].as_str(), view["reason"].as_str()), (Some("failed"), Some("verification_failed")));
        let lost = agent_view(&record(Some("approved"), Some(IntentState::Pending), None), false, None, 2);
        assert_eq!(lost["status"], "approved", "the effect may have happened: never reported as failed");
        assert_eq!(agent_view(&record(Some("denied"), None, None), false, None, 2)["reason"], "why");
        let expired = agent_view(&record(Some("expired"), None, None), false, None, 2);
        assert_eq!((expired["status"].as_str(), expired["reason"].as_str()), (Some("failed"), Some("expired")));
        let rechecked = agent_view(&record(Some("failed"), None, None), false, None, 2);
        assert_eq!(rechecked["status"], "failed");
        assert_eq!(operator_state(&record(Some("approved"), None, None), false), "not_executed");
    }
}
