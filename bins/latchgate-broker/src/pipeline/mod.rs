//! `POST /v1/actions/{id}/execute`, in the order of ARCHITECTURE.md: every
//! step that can refuse runs before the budget is debited, and the answer is
//! sent only after the evidence transaction committed.

mod effects;
mod secrets;
pub(crate) mod sinks;

use crate::approvals::{self, Approval};
use crate::auth::{authenticate_request, state_error};
use crate::gate::{Gate, unix_now};
use crate::ledger::{Finalization, IntentResolution, LedgerError, NewAuditEvent, NewIntent};
use crate::metrics::{self, CallDecision, Dependency, gate_metrics};
use crate::peers::{signer_refused, unavailable};
use crate::policy::{Budgets, PolicyAction, PolicyDecision, PolicyEgress, PolicyInput, TrustVerdict};
use crate::state::{BudgetLimits, BudgetSnapshot, DebitOutcome};
use latchgate_core::error::{ApiError, ErrorCode};
use latchgate_core::grant::{Grant, SignedGrant};
use latchgate_core::jose::LeaseClaims;
use latchgate_core::manifest::{ProviderKind, RegisteredAction};
use latchgate_core::receipt::{Receipt, rfc3339};
use latchgate_ipc::messages::broker_executor::{ExecutorReply, ExecutorRequest, Outcome, RunTask};
use latchgate_ipc::messages::broker_signer::{SignerReply, SignerRequest};
use latchgate_ipc::messages::front_broker::{PeerCred, RequestAuth};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// A grant lives long enough to be dispatched, not to be hoarded.
const GRANT_TTL_SECONDS: i64 = 60;
/// Beyond the action's own timeout, the time dispatch may take end to end.
const DISPATCH_GRACE: Duration = Duration::from_secs(5);

/// An HTTP answer: status and JSON body.
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

/// Everything decided before dispatch; a held call stores it (see `approvals::StoredPlan`).
pub(crate) struct Plan {
    pub trace_id: String,
    pub action: Arc<RegisteredAction>,
    pub lease: LeaseClaims,
    pub params: Value,
    pub request_hash: String,
    pub decision: PolicyDecision,
    pub cost_cents: u64,
}

/// One agent call, counted by how it ended (`latchgate_action_calls_total`)
/// and, when dispatched, timed (`latchgate_action_duration_seconds`).
pub async fn execute(
    gate: &Gate,
    peer: &PeerCred,
    auth: &RequestAuth,
    action_id: &str,
    body: &[u8],
) -> Result<Answer, ApiError> {
    let started = std::time::Instant::now();
    let result = execute_call(gate, peer, auth, action_id, body).await;
    record_call(gate, action_id, &result, started);
    result
}

/// Counts one finished call of `action_id` (see [`execute`]).
pub(crate) fn record_call(
    gate: &Gate,
    action_id: &str,
    result: &Result<Answer, ApiError>,
    started: std::time::Instant,
) {
    let decision = match result {
        Ok(answer) => CallDecision::of_status(answer.status),
        Err(error) => CallDecision::of_error(error),
    };
    let actions = gate.actions.current();
    gate_metrics().record_call(metrics::action_label(&actions.registry, action_id), decision, started.elapsed());
}

async fn execute_call(
    gate: &Gate,
    peer: &PeerCred,
    auth: &RequestAuth,
    action_id: &str,
    body: &[u8],
) -> Result<Answer, ApiError> {
    // Counted from here: a drain (SIGTERM) waits for this call to be answered.
    let _in_flight = gate.begin_execution()?;
    let mut stages = Stages::start();
    let lease = authenticate_request(gate, peer, auth).await?;
    stages.mark("auth");
    let trace_id = uuid::Uuid::new_v4().to_string();
    let plan = match decide(gate, lease, action_id, body, &trace_id).await {
        Ok(plan) => {
            stages.mark("decide");
            plan
        }
        Err(Refusal { error, lease, refused_sinks }) => {
            record_denial(gate, &trace_id, action_id, lease.as_ref(), &error, &refused_sinks).await?;
            return Err(error);
        }
    };
    if plan.decision.requires_approval {
        return approvals::hold(gate, &plan).await;
    }
    let answer = run_plan(gate, plan, None, &mut stages).await;
    tracing::debug!(stages = %stages, "execute timings");
    answer
}

/// A refusal before anything was debited, with the lease when known (for the audit event).
struct Refusal {
    error: ApiError,
    lease: Option<LeaseClaims>,
    /// Destinations the allowlist refused (the learned egress domains).
    refused_sinks: Vec<String>,
}

async fn decide(
    gate: &Gate,
    lease: LeaseClaims,
    action_id: &str,
    body: &[u8],
    trace_id: &str,
) -> Result<Plan, Refusal> {
    let refuse =
        |error: ApiError, lease: &LeaseClaims| Refusal { error, lease: Some(lease.clone()), refused_sinks: Vec::new() };
    let actions = gate.actions.current();
    let Some(action) = actions.registry.get(action_id).cloned() else {
        return Err(refuse(ApiError::new(ErrorCode::ActionNotFound), &lease));
    };
    let digest_verified = actions.trust.is_trusted(action_id);
    if !digest_verified {
        return Err(refuse(ApiError::new(ErrorCode::ActionDigestMismatch), &lease));
    }
    let params = action
        .parse_request(body)
        .map_err(|v| refuse(ApiError::new(v.error_code()).with_reason(v.reason.clone()), &lease))?;
    let request_hash = latchgate_core::jcs::hash(&params).map_err(|_| {
        refuse(ApiError::new(ErrorCode::BadRequest).with_reason("request cannot be canonicalised"), &lease)
    })?;
    let manifest = action.manifest();
    let sinks = sinks::requested_sinks(manifest, &params).map_err(|e| refuse(e, &lease))?;
    let operator_allowed = gate.egress_allow.for_action(action_id);
    if let Err(refused) = sinks::precheck(manifest, &operator_allowed, &sinks) {
        return Err(Refusal { refused_sinks: refused.sinks, ..refuse(refused.error, &lease) });
    }
    let budget = session_budget(gate, &lease).await.map_err(|e| refuse(e, &lease))?;
    let input = PolicyInput {
        principal: lease.sub.clone(),
        session_id: lease.sid.clone(),
        scopes: lease.scopes.clone(),
        required_scopes: manifest.required_scopes.clone(),
        action: PolicyAction {
            id: manifest.action_id.clone(),
            version: manifest.version.clone(),
            risk_level: manifest.risk_level,
        },
        trust: TrustVerdict { digest_verified },
        requested_sinks: sinks,
        requested_secrets: manifest.secrets.iter().map(|s| s.name.clone()).collect(),
        egress: PolicyEgress {
            profile: manifest.egress.profile,
            allowed_domains: manifest.egress.allowed_domains.clone(),
        },
        budgets_before: Budgets {
            calls_used: budget.used_calls,
            max_calls: budget.limits.max_calls,
            cost_used: budget.used_cost_cents,
            max_cost: budget.limits.max_cost_cents,
        },
        unresolved_domains: Vec::new(),
    };
    let decision = gate.policy.evaluate(&input).await.map_err(|e| {
        tracing::warn!(code = e.code(), error = %e, "policy evaluation failed");
        gate_metrics().dependency_error(Dependency::PolicyEngine, e.code());
        refuse(ApiError::new(e.error_code()).with_retry_after(1), &lease)
    })?;
    if !decision.allow {
        let reason = decision.deny_reason.clone().unwrap_or_else(|| "policy_denied".into());
        let code = if reason == "budget_exhausted" {
            gate_metrics().budget_exhausted();
            ErrorCode::BudgetExhausted
        } else {
            ErrorCode::PolicyDenied
        };
        let error = ApiError::new(code).with_deny_reason(reason.clone()).with_remediation(remediation_for(&reason));
        return Err(refuse(error, &lease));
    }
    secrets::check_required(gate, manifest, &decision.approved_secrets).await.map_err(|e| refuse(e, &lease))?;
    let cost_cents =
        decision.budgets_after.map(|after| after.cost_used.saturating_sub(budget.used_cost_cents)).unwrap_or(0);
    Ok(Plan { trace_id: trace_id.to_string(), action, lease, params, request_hash, decision, cost_cents })
}

fn remediation_for(reason: &str) -> &'static str {
    match reason {
        "principal_not_permitted" => "ask an operator: latchgate policy grant <principal> <action>",
        "missing_required_scopes" => "request a lease with the action's required_scopes",
        "egress_not_allowed" => "the destination is not in the action's allowed_domains",
        "budget_exhausted" => "the session's budget is spent; request a new lease",
        "untrusted_provider_digest" => "the provider module does not match its pinned digest",
        _ => "see the policy's deny_reason",
    }
}

/// The session's budget; a lease whose budget the store no longer has (a
/// store restarted without persistence) starts fresh from the lease's limits.
async fn session_budget(gate: &Gate, lease: &LeaseClaims) -> Result<BudgetSnapshot, ApiError> {
    if let Some(snapshot) = gate.state.budget_snapshot(&lease.sid).await.map_err(state_error)? {
        return Ok(snapshot);
    }
    let limits = BudgetLimits { max_calls: lease.budgets.max_calls, max_cost_cents: lease.budgets.max_cost_usd_cents };
    let ttl = u64::try_from(lease.exp - unix_now()).unwrap_or(0).max(1);
    gate.state.init_session_budget(&lease.sid, limits, ttl).await.map_err(state_error)?;
    gate.state
        .budget_snapshot(&lease.sid)
        .await
        .map_err(state_error)?
        .ok_or_else(|| ApiError::new(ErrorCode::BudgetStoreUnavailable).with_retry_after(1))
}

pub(crate) fn audit_event(event_type: &str, plan: &Plan) -> NewAuditEvent {
    let mut event = NewAuditEvent::new(event_type);
    event.trace_id = Some(plan.trace_id.clone());
    event.action_id = Some(plan.action.id().to_string());
    event.principal = Some(plan.lease.sub.clone());
    event.session_id = Some(plan.lease.sid.clone());
    event
}

async fn record_denial(
    gate: &Gate,
    trace_id: &str,
    action_id: &str,
    lease: Option<&LeaseClaims>,
    error: &ApiError,
    refused_sinks: &[String],
) -> Result<(), ApiError> {
    let mut event = NewAuditEvent::new("action_denied");
    event.trace_id = Some(trace_id.to_string());
    event.action_id = Some(action_id.chars().take(128).collect());
    event.principal = lease.map(|l| l.sub.clone());
    event.session_id = lease.map(|l| l.sid.clone());
    event.decision = Some("denied".into());
    event.payload = json!({"error": error.code.as_str(), "deny_reason": error.deny_reason, "reason": error.reason});
    if !refused_sinks.is_empty() {
        event.payload["refused_sinks"] = json!(refused_sinks);
    }
    gate.ledger.append_event(event).await.map(|_| ()).map_err(persistence_failed)
}

pub(crate) fn persistence_failed(e: LedgerError) -> ApiError {
    tracing::error!(code = e.code(), error = %e, "evidence not persisted");
    ApiError::new(ErrorCode::EvidencePersistenceFailed)
}

/// Debit → grant → intent → dispatch → assess → receipt → evidence: the one
/// execution tail of auto-allowed calls and of plans an operator approved.
/// For an approved plan (`approval`), the operator's decision is recorded
/// once the debit succeeded and before the intent, a budget or revocation
/// refusal closes the approval as failed, and grant and receipt name the
/// operator and the key they proved.
pub(crate) async fn run_plan(
    gate: &Gate,
    plan: Plan,
    approval: Option<&Approval>,
    stages: &mut Stages,
) -> Result<Answer, ApiError> {
    let session = plan.lease.sid.clone();
    // The debit and the epoch re-check share one store round trip.
    let (debited, epoch_read) =
        gate.state.debit_and_read_epoch(&session, 1, plan.cost_cents).await.map_err(state_error)?;
    let refusal = match debited {
        DebitOutcome::Debited(_) => None,
        DebitOutcome::Exhausted(_) => {
            gate_metrics().budget_exhausted();
            let error = ApiError::new(ErrorCode::BudgetExhausted).with_deny_reason("budget_exhausted");
            record_denial(gate, &plan.trace_id, plan.action.id(), Some(&plan.lease), &error, &[]).await?;
            Some(("budget_exhausted", error))
        }
        DebitOutcome::UnknownSession => {
            Some(("session_expired", ApiError::new(ErrorCode::BudgetStoreUnavailable).with_retry_after(1)))
        }
    };
    if let Some((reason, error)) = refusal {
        if let Some(approval) = approval {
            return Err(approvals::close_failed(gate, approval, &plan, reason).await);
        }
        return Err(error);
    }
    // Until dispatch starts, any failure gives the debit back.
    let refund = || async {
        if let Err(e) = gate.state.refund(&session, 1, plan.cost_cents).await {
            tracing::error!(code = e.code(), error = %e, "budget refund failed");
        }
    };
    let epoch = match epoch_read {
        Some(Ok(epoch)) => epoch,
        Some(Err(e)) => {
            refund().await;
            return Err(state_error(e));
        }
        // Debited without an epoch read: a backend breaking the trait's promise.
        None => {
            refund().await;
            return Err(state_error(crate::state::StateError::StoreUnavailable("no epoch after the debit".into())));
        }
    };
    // A revoke-all since the caller authenticated (or since the call was held) kills it here.
    if plan.lease.epoch < epoch {
        refund().await;
        let error = ApiError::new(ErrorCode::InvalidLease).with_deny_reason("lease_revoked");
        if let Some(approval) = approval {
            return Err(approvals::close_failed(gate, approval, &plan, "lease_revoked").await);
        }
        return Err(error);
    }
    if let Some(approval) = approval
        && let Err(e) = approvals::close_approved(gate, approval, &plan).await
    {
        refund().await;
        return Err(e);
    }
    // The intent needs only the grant's id: it is committed (fsync) while the
    // signer signs, and dispatch waits for both.
    let grant_id = uuid::Uuid::new_v4().to_string();
    let intent = NewIntent {
        intent_id: uuid::Uuid::new_v4().to_string(),
        grant_id: grant_id.clone(),
        trace_id: plan.trace_id.clone(),
        action_id: plan.action.id().to_string(),
        request_hash: plan.request_hash.clone(),
    };
    let intent_id = intent.intent_id.clone();
    stages.mark("debit");
    let (signed, recorded) = tokio::join!(
        sign_grant(gate, &plan, approval, epoch, grant_id),
        gate.ledger.record_intent_and_consume_grant(intent)
    );
    if let Err(e) = recorded {
        refund().await;
        return Err(match e {
            LedgerError::GrantConsumed(_) => ApiError::new(ErrorCode::GrantConsumed),
            other => persistence_failed(other),
        });
    }
    let grant = match signed {
        Ok(grant) => grant,
        Err(e) => {
            // The intent is written but nothing was dispatched: close it and give the debit back.
            refund().await;
            let mut event = audit_event("action_failed", &plan);
            event.decision = Some("failed".into());
            event.payload = json!({"intent_id": intent_id, "reason": "grant_not_signed"});
            gate.ledger.fail_intent(intent_id, event).await.map_err(persistence_failed)?;
            return Err(e);
        }
    };
    stages.mark("grant_and_intent_commit");
    let started_at = rfc3339(OffsetDateTime::now_utc());
    let outcome = match dispatch(gate, &plan, grant.clone(), epoch).await {
        Dispatched::Ran(outcome) => outcome,
        Dispatched::Refused { code, message } => {
            // Nothing ran: the executor refused before starting the provider.
            tracing::error!(%code, %message, "executor refused the task");
            refund().await;
            let mut event = audit_event("action_failed", &plan);
            event.decision = Some("failed".into());
            event.payload = json!({"intent_id": intent_id, "executor_refusal": code});
            gate.ledger.fail_intent(intent_id, event).await.map_err(persistence_failed)?;
            return Err(ApiError::new(ErrorCode::ActionExecutionFailed).with_reason(code));
        }
        Dispatched::Lost(error) => {
            // The provider may have run: no refund, the intent stays pending for an operator.
            tracing::error!(intent = %intent_id, "executor lost mid-call; intent left unresolved");
            return Err(error);
        }
    };
    let finished_at = rfc3339(OffsetDateTime::now_utc());
    let assessment = effects::assess(&plan.action, &outcome, gate.cfg.config.response_schema_enforcement);
    let mut receipt = Receipt {
        receipt_id: uuid::Uuid::new_v4().to_string(),
        grant_id: grant.grant.grant_id.clone(),
        trace_id: plan.trace_id.clone(),
        action_id: plan.action.id().to_string(),
        provider_module_digest: plan.action.manifest().provider_module_digest.clone(),
        provider_receipt: assessment.provider_receipt,
        normalized_result: assessment.normalized,
        verification_outcome: assessment.verification,
        result_hash: String::new(),
        receipt_signature: String::new(),
        signing_key_id: String::new(),
        started_at,
        finished_at,
        failure_class: assessment.failure_class.clone(),
        approved_by: approval.map(|a| a.operator.clone()),
        approved_by_jkt: approval.map(|a| a.operator_jkt.clone()),
    };
    stages.mark("dispatch");
    sign_receipt(gate, &mut receipt).await?;
    stages.mark("receipt_sign");
    let succeeded = assessment.failure_class.is_none();
    let mut event = audit_event(if succeeded { "action_executed" } else { "action_failed" }, &plan);
    event.decision = Some(if succeeded { "executed" } else { "failed" }.into());
    event.payload = json!({
        "intent_id": intent_id, "receipt_id": receipt.receipt_id, "grant_id": receipt.grant_id,
        "request_hash": plan.request_hash, "failure_class": receipt.failure_class,
        "policy_version": plan.decision.policy_version,
    });
    if let Some(approval) = approval {
        event.payload["approval_id"] = approval.approval_id.clone().into();
        event.payload["approved_by"] = approval.operator.clone().into();
    }
    let finalization = Finalization {
        intent_id,
        receipt: receipt.clone(),
        resolution: if succeeded { IntentResolution::Resolved } else { IntentResolution::Failed },
        event,
    };
    gate.ledger.finalize(finalization).await.map_err(persistence_failed)?;
    stages.mark("evidence_commit");

    let runtime = json!({
        "duration_ms": outcome.duration_us as f64 / 1000.0,
        "fuel_consumed": outcome.fuel_consumed,
        "io_calls": outcome.io_calls,
    });
    if !succeeded {
        return Ok(Answer {
            status: 502,
            body: json!({
                "error": ErrorCode::ActionExecutionFailed.as_str(),
                "failure_class": receipt.failure_class,
                "trace_id": plan.trace_id, "action_id": receipt.action_id,
                "grant_id": receipt.grant_id, "receipt_id": receipt.receipt_id,
                "runtime": runtime,
            }),
        });
    }
    let mut verification = serde_json::Map::new();
    verification.insert("outcome".into(), receipt.verification_outcome.status.clone().into());
    verification.extend(receipt.verification_outcome.details.clone());
    Ok(Answer {
        status: 200,
        body: json!({
            "decision": "executed",
            "trace_id": plan.trace_id,
            "action_id": receipt.action_id,
            "grant_id": receipt.grant_id,
            "receipt_id": receipt.receipt_id,
            "request_hash": plan.request_hash,
            "output": assessment.output,
            "verification": verification,
            "runtime": runtime,
        }),
    })
}

async fn sign_grant(
    gate: &Gate,
    plan: &Plan,
    approval: Option<&Approval>,
    epoch: u64,
    grant_id: String,
) -> Result<SignedGrant, ApiError> {
    let now = unix_now();
    let manifest = plan.action.manifest();
    let grant = Grant {
        grant_id,
        trace_id: plan.trace_id.clone(),
        action_id: manifest.action_id.clone(),
        action_version: manifest.version.clone(),
        provider_module_digest: manifest.provider_module_digest.clone(),
        request_hash: plan.request_hash.clone(),
        principal: plan.lease.sub.clone(),
        session_id: plan.lease.sid.clone(),
        epoch,
        issued_at: now,
        expires_at: now + GRANT_TTL_SECONDS,
        allowed_sinks: plan.decision.allowed_sinks.clone(),
        approved_secrets: plan.decision.approved_secrets.clone(),
        approved_by: approval.map(|a| a.operator.clone()),
        approved_by_jkt: approval.map(|a| a.operator_jkt.clone()),
    };
    match gate.peers.sign(SignerRequest::SignGrant { grant: Box::new(grant) }).await? {
        SignerReply::Grant(signed) => Ok(*signed),
        other => Err(signer_refused(other)),
    }
}

async fn sign_receipt(gate: &Gate, receipt: &mut Receipt) -> Result<(), ApiError> {
    let receipt_json = serde_json::to_string(&*receipt).map_err(|_| ApiError::new(ErrorCode::InternalError))?;
    match gate.peers.sign(SignerRequest::SignReceipt { receipt_json }).await {
        Ok(SignerReply::Receipt { signing_key_id, result_hash, signature }) => {
            gate.keys.note_receipt_kid(&gate.peers, &signing_key_id).await;
            receipt.signing_key_id = signing_key_id;
            receipt.result_hash = result_hash;
            receipt.receipt_signature = latchgate_core::jose::b64url_encode(&signature);
            Ok(())
        }
        // The effect may have happened and cannot be evidenced: the intent stays pending.
        Ok(other) => Err({
            signer_refused(other);
            ApiError::new(ErrorCode::EvidencePersistenceFailed)
        }),
        Err(e) => Err(ApiError { code: ErrorCode::EvidencePersistenceFailed, ..e }),
    }
}

enum Dispatched {
    Ran(Box<Outcome>),
    Refused {
        code: String,
        message: String,
    },
    /// The executor did not answer: whether the provider ran is unknown.
    Lost(ApiError),
}

async fn dispatch(gate: &Gate, plan: &Plan, grant: SignedGrant, epoch: u64) -> Dispatched {
    let manifest = plan.action.manifest();
    let task = RunTask {
        action_id: manifest.action_id.clone(),
        module_digest: manifest.provider_module_digest.clone(),
        params_json: plan.params.to_string(),
        template: manifest.template.clone(),
        required_imports: manifest.required_imports.clone(),
        limits: manifest.resource_limits.clone(),
        egress: sinks::task_egress(manifest, &plan.decision.allowed_sinks),
        fs_root: (manifest.provider == ProviderKind::Fs).then(|| gate.cfg.fs_root().unwrap_or_default()),
        grant,
    };
    let timeout = Duration::from_secs(u64::from(manifest.resource_limits.timeout_seconds)) + DISPATCH_GRACE;
    let request = ExecutorRequest::Run { task: Box::new(task), revocation_epoch: epoch };
    match gate.peers.executor.call(request, timeout).await {
        Ok(ExecutorReply::Ran(outcome)) => Dispatched::Ran(outcome),
        Ok(ExecutorReply::Refused { code, message }) => Dispatched::Refused { code, message },
        Ok(other) => {
            tracing::error!(reply = ?other, "unexpected executor reply");
            Dispatched::Lost(ApiError::new(ErrorCode::ActionExecutionFailed))
        }
        Err(e) => {
            let error = unavailable("executor", &e);
            Dispatched::Lost(ApiError { code: ErrorCode::ActionExecutionFailed, ..error })
        }
    }
}

/// Where the time of one execution went (logged at debug level), for
/// reading `make bench` figures against the stages of the pipeline.
pub(crate) struct Stages {
    last: std::time::Instant,
    marks: Vec<(&'static str, Duration)>,
}

impl Stages {
    pub(crate) fn start() -> Self {
        Stages { last: std::time::Instant::now(), marks: Vec::with_capacity(8) }
    }

    pub(crate) fn mark(&mut self, stage: &'static str) {
        let now = std::time::Instant::now();
        self.marks.push((stage, now - self.last));
        self.last = now;
    }
}

impl std::fmt::Display for Stages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (stage, took)) in self.marks.iter().enumerate() {
            write!(f, "{}{stage}={}us", if i == 0 { "" } else { " " }, took.as_micros())?;
        }
        Ok(())
    }
}
