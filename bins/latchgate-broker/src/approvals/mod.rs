//! Human approvals of held calls.
//!
//! A call whose policy decision `requires_approval` is not run: its plan —
//! everything decided before dispatch — is stored immutably in the ledger
//! with the SHA-256 of its text (the plan hash) and an expiry, and the agent
//! gets 202 with the `approval_id`. An operator then, over the admin socket:
//!
//! * **approves**: the plan is re-checked against the gate as it is *now*
//!   (the action still exists with the same definition hash, its module
//!   digest is trusted, the lease's epoch is not revoked, the session's
//!   budget still covers it) and then runs through the same execution tail
//!   as every auto-allowed call ([`pipeline::run_plan`]); grant and
//!   receipt name the operator and the thumbprint of the key they proved;
//! * **denies** with a reason.
//!
//! One decision per approval, ever: the state store's one-shot
//! `claim_approval` picks the single caller (operator or the expiry sweeper)
//! that may decide, and the ledger's `approval_outcomes` row is the durable
//! record of that decision. Everyone else gets a terminal answer.
//!
//! A changed manifest between request and approval fails the approval with
//! `manifest_changed` and nothing is dispatched (docs/approvals.md).

pub mod sweeper;
mod views;

pub use views::{agent_view, operator_view};

use crate::auth::{authenticate_request, state_error};
use crate::gate::Gate;
use crate::ledger::{
    ApprovalFilter, ApprovalOutcome, ApprovalRecord, LedgerError, NewApproval, NewAuditEvent, ledger_timestamp,
};
use crate::pipeline::{Answer, Plan, Stages, audit_event, persistence_failed, run_plan};
use crate::policy::PolicyDecision;
use latchgate_core::action::RiskLevel;
use latchgate_core::error::{ApiError, ErrorCode};
use latchgate_core::jose::{LeaseClaims, OperatorAuthenticated};
use latchgate_core::manifest::RegisteredAction;
use latchgate_ipc::messages::front_broker::{PeerCred, RequestAuth};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use time::OffsetDateTime;

/// Who decides expiry in the ledger's `operator` column.
pub const SWEEPER_OPERATOR: &str = "latchgate";
const MAX_ID_CHARS: usize = 128;
const MAX_REASON_CHARS: usize = 1024;
/// An agent polls a pending approval about this often.
const POLL_RETRY_SECONDS: u64 = 2;

/// An operator's approval, as the execution tail records it.
#[derive(Clone, Debug)]
pub struct Approval {
    pub approval_id: String,
    pub operator: String,
    pub operator_jkt: String,
    pub plan_hash: String,
    pub comment: Option<String>,
}

/// The approvals whose plan is running right now (in this broker).
#[derive(Default)]
pub struct ApprovalDesk {
    executing: Mutex<HashSet<String>>,
}

impl ApprovalDesk {
    pub fn is_executing(&self, approval_id: &str) -> bool {
        self.executing.lock().unwrap_or_else(PoisonError::into_inner).contains(approval_id)
    }

    pub fn executing_count(&self) -> usize {
        self.executing.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    fn enter(&self, approval_id: &str) -> Executing<'_> {
        self.executing.lock().unwrap_or_else(PoisonError::into_inner).insert(approval_id.to_string());
        Executing { desk: self, approval_id: approval_id.to_string() }
    }
}

struct Executing<'a> {
    desk: &'a ApprovalDesk,
    approval_id: String,
}

impl Drop for Executing<'_> {
    fn drop(&mut self) {
        self.desk.executing.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.approval_id);
    }
}

/// Everything a held call needs to run later, stored as JSON text. It
/// pins the action's definition hash and module digest: what an operator
/// approves is exactly what was asked, under exactly that manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredPlan {
    pub plan_version: u32,
    pub trace_id: String,
    pub action_id: String,
    pub action_version: String,
    pub definition_hash: String,
    pub provider_module_digest: String,
    pub risk_level: RiskLevel,
    pub lease: LeaseClaims,
    pub params: Value,
    pub request_hash: String,
    pub decision: PolicyDecision,
    pub cost_cents: u64,
}

const PLAN_VERSION: u32 = 1;

impl StoredPlan {
    fn of(plan: &Plan) -> Result<StoredPlan, ApiError> {
        let manifest = plan.action.manifest();
        let definition_hash = plan.action.definition_hash().map_err(|e| {
            tracing::error!(error = %e, "action definition cannot be hashed");
            ApiError::new(ErrorCode::InternalError)
        })?;
        Ok(StoredPlan {
            plan_version: PLAN_VERSION,
            trace_id: plan.trace_id.clone(),
            action_id: manifest.action_id.clone(),
            action_version: manifest.version.clone(),
            definition_hash,
            provider_module_digest: manifest.provider_module_digest.clone(),
            risk_level: manifest.risk_level,
            lease: plan.lease.clone(),
            params: plan.params.clone(),
            request_hash: plan.request_hash.clone(),
            decision: plan.decision.clone(),
            cost_cents: plan.cost_cents,
        })
    }

    /// The stored plan of `record`, refused unless its text still hashes to the plan hash.
    pub fn of_record(record: &ApprovalRecord) -> Result<StoredPlan, ApiError> {
        let corrupt = |what: &str| {
            tracing::error!(approval = %record.approval_id, what, "stored approval plan is corrupt");
            ApiError::new(ErrorCode::InternalError).with_reason("the stored plan does not verify; run latchgate verify")
        };
        if latchgate_core::jcs::sha256_tagged(record.plan.as_bytes()) != record.plan_hash {
            return Err(corrupt("plan_hash mismatch"));
        }
        let plan: StoredPlan = serde_json::from_str(&record.plan).map_err(|_| corrupt("plan does not parse"))?;
        if plan.plan_version != PLAN_VERSION || plan.trace_id != record.trace_id || plan.action_id != record.action_id {
            return Err(corrupt("plan disagrees with its row"));
        }
        Ok(plan)
    }

    fn into_plan(self, action: Arc<RegisteredAction>) -> Plan {
        Plan {
            trace_id: self.trace_id,
            action,
            lease: self.lease,
            params: self.params,
            request_hash: self.request_hash,
            decision: self.decision,
            cost_cents: self.cost_cents,
        }
    }
}

/// 202: store the plan and let an operator decide.
pub(crate) async fn hold(gate: &Gate, plan: &Plan) -> Result<Answer, ApiError> {
    let stored = StoredPlan::of(plan)?;
    // The exact bytes are stored and hashed: no canonical form is needed, and
    // none could change a request value (JCS rewrites large integers).
    let text = serde_json::to_string(&stored).map_err(|_| ApiError::new(ErrorCode::InternalError))?;
    let plan_hash = latchgate_core::jcs::sha256_tagged(text.as_bytes());
    let approval_id = uuid::Uuid::new_v4().to_string();
    let ttl = gate.cfg.config.approvals.ttl_seconds;
    let expires = OffsetDateTime::now_utc() + time::Duration::seconds(i64::try_from(ttl).unwrap_or(i64::MAX / 2));
    let expires_at = ledger_timestamp(expires);
    let mut event = audit_event("approval_pending", plan);
    event.decision = Some("pending_approval".into());
    event.payload = json!({
        "approval_id": approval_id, "request_hash": plan.request_hash, "plan_hash": plan_hash,
        "risk_level": stored.risk_level, "expires_at": expires_at,
    });
    let approval = NewApproval {
        approval_id: approval_id.clone(),
        trace_id: plan.trace_id.clone(),
        action_id: stored.action_id.clone(),
        principal: plan.lease.sub.clone(),
        session_id: plan.lease.sid.clone(),
        request_hash: plan.request_hash.clone(),
        plan_hash: plan_hash.clone(),
        plan: text,
        expires_at: expires_at.clone(),
    };
    gate.ledger.record_approval(approval, event).await.map_err(persistence_failed)?;
    Ok(Answer {
        status: 202,
        body: json!({
            "decision": "pending_approval",
            "approval_id": approval_id,
            "request_hash": plan.request_hash,
            "trace_id": plan.trace_id,
            "expires_at": latchgate_core::receipt::rfc3339(expires),
        }),
    })
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_CHARS && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn read_error(e: LedgerError) -> ApiError {
    tracing::error!(code = e.code(), error = %e, "approval read failed");
    ApiError::new(ErrorCode::StoreUnavailable).with_retry_after(1)
}

async fn find(gate: &Gate, approval_id: &str) -> Result<ApprovalRecord, ApiError> {
    if !valid_id(approval_id) {
        return Err(ApiError::new(ErrorCode::NotFound));
    }
    gate.ledger.get_approval(approval_id.to_string()).await.map_err(read_error)?.ok_or_else(|| {
        ApiError::new(ErrorCode::NotFound).with_remediation("list approvals with latchgate approvals list --status all")
    })
}

fn is_past_expiry(record: &ApprovalRecord) -> bool {
    record.expires_at <= ledger_timestamp(OffsetDateTime::now_utc())
}

fn already_decided(gate: &Gate, record: &ApprovalRecord) -> ApiError {
    if record.outcome.as_ref().is_some_and(|o| o.outcome == "expired") {
        return expired_error(record);
    }
    let state = views::operator_state(record, gate.approvals.is_executing(&record.approval_id));
    ApiError::new(ErrorCode::ApprovalAlreadyDecided)
        .with_reason(format!("approval is {state}"))
        .with_remediation("show it with latchgate approvals show <id>")
}

fn audit_subject(record: &ApprovalRecord, event_type: &str, decision: &str) -> NewAuditEvent {
    let mut event = NewAuditEvent::new(event_type);
    event.trace_id = Some(record.trace_id.clone());
    event.action_id = Some(record.action_id.clone());
    event.principal = Some(record.principal.clone());
    event.session_id = Some(record.session_id.clone());
    event.decision = Some(decision.into());
    event
}

/// Writes the one outcome of an approval with its audit event.
async fn record_outcome(
    gate: &Gate,
    record: &ApprovalRecord,
    outcome: &str,
    operator: (&str, Option<&str>),
    reason: Option<String>,
    mut payload: Value,
) -> Result<ApprovalOutcome, ApiError> {
    let (operator, operator_jkt) = operator;
    let decided = ApprovalOutcome {
        approval_id: record.approval_id.clone(),
        outcome: outcome.into(),
        operator: operator.into(),
        ts: ledger_timestamp(OffsetDateTime::now_utc()),
        plan_hash: record.plan_hash.clone(),
        reason: reason.clone(),
        operator_jkt: operator_jkt.map(Into::into),
    };
    let mut event = audit_subject(record, &format!("approval_{outcome}"), outcome);
    payload["approval_id"] = record.approval_id.clone().into();
    payload["plan_hash"] = record.plan_hash.clone().into();
    payload["operator"] = operator.into();
    payload["operator_jkt"] = json!(operator_jkt);
    payload["reason"] = json!(reason);
    event.payload = payload;
    match gate.ledger.record_approval_outcome(decided.clone(), event).await {
        Ok(_) => Ok(decided),
        Err(LedgerError::ApprovalAlreadyDecided(_)) => Err(ApiError::new(ErrorCode::ApprovalAlreadyDecided)),
        Err(e) => Err(persistence_failed(e)),
    }
}

/// Marks `record` expired if this caller wins its claim (sweeper, or an
/// operator who arrived too late). Returns whether it was this caller.
pub async fn expire(gate: &Gate, record: &ApprovalRecord) -> Result<bool, ApiError> {
    if !gate.state.claim_approval(&record.approval_id).await.map_err(state_error)? {
        return Ok(false);
    }
    let payload = json!({"expires_at": record.expires_at});
    record_outcome(gate, record, "expired", (SWEEPER_OPERATOR, None), Some("ttl_elapsed".into()), payload).await?;
    Ok(true)
}

fn expired_error(record: &ApprovalRecord) -> ApiError {
    ApiError::new(ErrorCode::ApprovalExpired)
        .with_reason(format!("approval expired at {}", record.expires_at))
        .with_remediation("the agent must ask again; raise [approvals] ttl_seconds if operators need longer")
}

/// The approval, if it can still be decided: not decided yet and not past
/// its expiry (which is then recorded, if nobody else is recording it).
async fn undecided(gate: &Gate, approval_id: &str) -> Result<ApprovalRecord, ApiError> {
    let record = find(gate, approval_id).await?;
    if record.outcome.is_some() {
        return Err(already_decided(gate, &record));
    }
    if is_past_expiry(&record) {
        expire(gate, &record).await?;
        return Err(expired_error(&record));
    }
    Ok(record)
}

/// The one-shot claim: exactly one caller ever decides an approval; everyone
/// else is answered with what the approval is now.
async fn claim(gate: &Gate, record: &ApprovalRecord) -> Result<(), ApiError> {
    if gate.state.claim_approval(&record.approval_id).await.map_err(state_error)? {
        return Ok(());
    }
    let now = gate.ledger.get_approval(record.approval_id.clone()).await.map_err(read_error)?;
    Err(already_decided(gate, now.as_ref().unwrap_or(record)))
}

/// The approval of `approval_id` by `operator`: re-checks, then the plan runs.
pub async fn approve(
    gate: &Gate,
    operator: &OperatorAuthenticated,
    approval_id: &str,
    body: &[u8],
) -> Result<Answer, ApiError> {
    let comment = optional_text(body, "comment")?;
    let record = undecided(gate, approval_id).await?;
    // Counted from before the claim: a drain waits for an approved plan as for any call.
    let _in_flight = gate.begin_execution()?;
    let stored = StoredPlan::of_record(&record)?;
    claim(gate, &record).await?;
    // From here on this call alone decides the approval.
    let _deciding = gate.approvals.enter(&record.approval_id);
    let approval = Approval {
        approval_id: record.approval_id.clone(),
        operator: operator.operator.clone(),
        operator_jkt: operator.jkt.clone(),
        plan_hash: record.plan_hash.clone(),
        comment,
    };
    let action = match recheck(gate, &stored).await {
        Ok(action) => action,
        Err(reason) => return Err(fail(gate, &approval, &record, reason).await),
    };
    let answer = match run_plan(gate, stored.into_plan(action), Some(&approval), &mut Stages::start()).await {
        Ok(answer) => answer,
        Err(e) => return Err(close_if_undecided(gate, &approval, &record, e).await),
    };
    let mut body = answer.body;
    body["approval_id"] = record.approval_id.clone().into();
    body["approved_by"] = approval.operator.clone().into();
    body["status"] = if answer.status == 200 { "approved" } else { "failed" }.into();
    Ok(Answer { status: answer.status, body })
}

/// The gate as it is now must still run this plan. The reason on failure is
/// the approval's recorded reason (docs/approvals.md).
async fn recheck(gate: &Gate, plan: &StoredPlan) -> Result<Arc<RegisteredAction>, &'static str> {
    let actions = gate.actions.current();
    let Some(action) = actions.registry.get(&plan.action_id).cloned() else {
        return Err("action_removed");
    };
    let manifest = action.manifest();
    if action.definition_hash().ok().as_deref() != Some(plan.definition_hash.as_str())
        || manifest.provider_module_digest != plan.provider_module_digest
    {
        return Err("manifest_changed");
    }
    if !actions.trust.is_trusted(&plan.action_id) {
        return Err("untrusted_provider_digest");
    }
    let epoch = gate.state.revocation_epoch().await.map_err(|_| "state_store_unavailable")?;
    if plan.lease.epoch < epoch {
        return Err("lease_revoked");
    }
    let Some(budget) = gate.state.budget_snapshot(&plan.lease.sid).await.map_err(|_| "budget_store_unavailable")?
    else {
        return Err("session_expired");
    };
    let calls_left = budget.remaining_calls().is_none_or(|left| left >= 1);
    let cost_left = budget.remaining_cost_cents().is_none_or(|left| left >= plan.cost_cents);
    if !calls_left || !cost_left {
        return Err("budget_exhausted");
    }
    Ok(action)
}

async fn fail(gate: &Gate, approval: &Approval, record: &ApprovalRecord, reason: &str) -> ApiError {
    let payload = json!({"comment": approval.comment});
    let operator = (approval.operator.as_str(), Some(approval.operator_jkt.as_str()));
    match record_outcome(gate, record, "failed", operator, Some(reason.into()), payload).await {
        Ok(_) => ApiError::new(ErrorCode::ApprovalFailed)
            .with_deny_reason(reason)
            .with_reason(format!("approval failed its re-check: {reason}; nothing was run"))
            .with_remediation(fail_remediation(reason)),
        Err(e) => e,
    }
}

fn fail_remediation(reason: &str) -> &'static str {
    match reason {
        "manifest_changed" | "action_removed" => "the action changed since the agent asked; the agent must ask again",
        "untrusted_provider_digest" => "the provider module does not match its pinned digest; restart the gate",
        "lease_revoked" => "the agent's lease was revoked (revoke-all); the agent must lease and ask again",
        "session_expired" => "the agent's lease expired before the approval; the agent must ask again",
        "budget_exhausted" => "the session's budget is spent; the agent must lease again",
        _ => "see the approval's reason",
    }
}

/// The tail failed before it recorded any outcome (a store was down): the
/// approval is closed as failed with that code rather than left claimed and
/// undecidable. Returns the error to answer.
async fn close_if_undecided(gate: &Gate, approval: &Approval, record: &ApprovalRecord, error: ApiError) -> ApiError {
    match gate.ledger.get_approval_outcome(record.approval_id.clone()).await {
        Ok(Some(_)) => error,
        Ok(None) => {
            fail(gate, approval, record, error.code.as_str()).await;
            error
        }
        Err(e) => {
            tracing::error!(code = e.code(), approval = %record.approval_id, "approval outcome unknown after a failed run");
            error
        }
    }
}

/// Called by the execution tail once the debit succeeded: records the approval.
pub(crate) async fn close_approved(gate: &Gate, approval: &Approval, plan: &Plan) -> Result<(), ApiError> {
    let record = subject_of(approval, plan);
    let payload = json!({"comment": approval.comment});
    let operator = (approval.operator.as_str(), Some(approval.operator_jkt.as_str()));
    record_outcome(gate, &record, "approved", operator, None, payload).await.map(|_| ())
}

/// Called by the execution tail when the plan cannot run after all (budget
/// spent, lease revoked): the approval ends as failed. Returns the answer.
pub(crate) async fn close_failed(gate: &Gate, approval: &Approval, plan: &Plan, reason: &str) -> ApiError {
    fail(gate, approval, &subject_of(approval, plan), reason).await
}

/// The fields of an approval's row that its outcome and events name.
fn subject_of(approval: &Approval, plan: &Plan) -> ApprovalRecord {
    ApprovalRecord {
        approval_id: approval.approval_id.clone(),
        trace_id: plan.trace_id.clone(),
        action_id: plan.action.id().to_string(),
        principal: plan.lease.sub.clone(),
        session_id: plan.lease.sid.clone(),
        request_hash: plan.request_hash.clone(),
        plan_hash: approval.plan_hash.clone(),
        plan: String::new(),
        created_at: String::new(),
        expires_at: String::new(),
        outcome: None,
        intent_state: None,
        receipt_id: None,
    }
}

/// `deny` with the operator's reason.
pub async fn deny(
    gate: &Gate,
    operator: &OperatorAuthenticated,
    approval_id: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let reason = optional_text(body, "reason")?.ok_or_else(|| {
        ApiError::new(ErrorCode::BadRequest)
            .with_reason("a deny needs {\"reason\": \"...\"}")
            .with_remediation("latchgate approvals deny <id> --reason TEXT")
    })?;
    let record = undecided(gate, approval_id).await?;
    claim(gate, &record).await?;
    let operator_id = (operator.operator.as_str(), Some(operator.jkt.as_str()));
    record_outcome(gate, &record, "denied", operator_id, Some(reason.clone()), json!({})).await?;
    Ok(json!({"approval_id": record.approval_id, "status": "denied", "reason": reason, "denied_by": operator.operator}))
}

/// `{"<field>": "text"}` from an optional JSON body; absent or empty = `None`.
fn optional_text(body: &[u8], field: &str) -> Result<Option<String>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let bad = |why: String| ApiError::new(ErrorCode::BadRequest).with_reason(why);
    let value: Value = serde_json::from_slice(body).map_err(|e| bad(format!("body is not JSON: {e}")))?;
    let object = value.as_object().ok_or_else(|| bad("body must be a JSON object".into()))?;
    if let Some(extra) = object.keys().find(|k| k.as_str() != field) {
        return Err(bad(format!("unknown field `{extra}`")));
    }
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
        Some(Value::String(text)) if text.chars().count() <= MAX_REASON_CHARS => Ok(Some(text.clone())),
        Some(Value::String(_)) => Err(bad(format!("`{field}` is longer than {MAX_REASON_CHARS} characters"))),
        Some(_) => Err(bad(format!("`{field}` must be a string"))),
    }
}

/// `GET /v1/approvals/{id}/poll` for the agent: its own session's approvals only.
pub async fn poll(gate: &Gate, peer: &PeerCred, auth: &RequestAuth, approval_id: &str) -> Result<Value, ApiError> {
    let lease = authenticate_request(gate, peer, auth).await?;
    let record = find(gate, approval_id).await.map_err(|_| ApiError::new(ErrorCode::NotFound))?;
    if record.session_id != lease.sid || record.principal != lease.sub {
        // Someone else's approval reads as absent.
        return Err(ApiError::new(ErrorCode::NotFound));
    }
    let failure_class = failure_class_of(gate, &record).await;
    Ok(agent_view(&record, gate.approvals.is_executing(&record.approval_id), failure_class, POLL_RETRY_SECONDS))
}

/// The failure class of the receipt of an approved plan, if it failed.
async fn failure_class_of(gate: &Gate, record: &ApprovalRecord) -> Option<String> {
    let receipt_id = record.receipt_id.clone()?;
    if record.intent_state != Some(crate::ledger::IntentState::Failed) {
        return None;
    }
    gate.ledger.get_receipt(receipt_id).await.ok().flatten().and_then(|r| r.failure_class)
}

/// `GET /v1/approvals?status=` (default `pending`).
pub async fn list(gate: &Gate, status: Option<&str>, limit: Option<&str>) -> Result<Value, ApiError> {
    let filter = match status.unwrap_or("pending") {
        "pending" => ApprovalFilter::Pending,
        "all" => ApprovalFilter::All,
        "approved" => ApprovalFilter::Outcome("approved"),
        "denied" => ApprovalFilter::Outcome("denied"),
        "expired" => ApprovalFilter::Outcome("expired"),
        "failed" => ApprovalFilter::Outcome("failed"),
        other => {
            return Err(ApiError::new(ErrorCode::BadRequest)
                .with_reason(format!("unknown status `{other}`"))
                .with_remediation("status is one of pending, approved, denied, expired, failed, all"));
        }
    };
    let limit = match limit {
        None => 100,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::new(ErrorCode::BadRequest).with_reason("limit must be 1..=1000"))?,
    };
    let records = gate.ledger.list_approvals(filter, limit).await.map_err(read_error)?;
    let approvals: Vec<Value> =
        records.iter().map(|r| operator_view(r, gate.approvals.is_executing(&r.approval_id), false)).collect();
    Ok(json!({"count": approvals.len(), "approvals": approvals}))
}

/// `GET /v1/approvals/{id}`: the operator's view with the whole plan.
pub async fn show(gate: &Gate, approval_id: &str) -> Result<Value, ApiError> {
    let record = find(gate, approval_id).await?;
    Ok(operator_view(&record, gate.approvals.is_executing(&record.approval_id), true))
}
