//! The write operations, each run by the writer inside its own savepoint.
//! Every row written here is restated as a witness in an audit event of the
//! same transaction (see `event::Witness`).

use rusqlite::{OptionalExtension, params};

use super::LedgerError;
use super::event::{AuditEvent, NewAuditEvent, ReceiptWitness, Witness, now_timestamp};
use super::intent::{
    ApprovalOutcome, ApprovalRecord, ExecutionIntent, Finalization, IntentState, NewApproval, NewIntent,
};
use super::writer::WriteCtx;

/// Event type of the event written with each intent.
pub const INTENT_RECORDED_EVENT: &str = "execution_intent_recorded";
/// Event type written by [`fail_intent`] when the caller gives none.
pub const INTENT_FAILED_EVENT: &str = "execution_intent_failed";

pub(super) fn record_intent(ctx: &mut WriteCtx<'_>, intent: NewIntent) -> Result<ExecutionIntent, LedgerError> {
    let created_at = now_timestamp();
    // One-shot: the grant row is the lock. A second intent for the same grant
    // inserts nothing and is refused.
    let inserted = ctx
        .conn
        .prepare_cached(
            "INSERT INTO consumed_grants (grant_id, consumed_at) VALUES (?1, ?2) ON CONFLICT(grant_id) DO NOTHING",
        )?
        .execute(params![intent.grant_id, created_at])?;
    if inserted == 0 {
        return Err(LedgerError::GrantConsumed(intent.grant_id));
    }
    ctx.conn
        .prepare_cached(
            "INSERT INTO execution_intents (intent_id, grant_id, trace_id, action_id, request_hash, created_at, state) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending')",
        )?
        .execute(params![
            intent.intent_id,
            intent.grant_id,
            intent.trace_id,
            intent.action_id,
            intent.request_hash,
            created_at
        ])?;
    let mut event = NewAuditEvent::new(INTENT_RECORDED_EVENT);
    event.trace_id = Some(intent.trace_id.clone());
    event.action_id = Some(intent.action_id.clone());
    let witness = Witness::IntentRecorded {
        intent_id: intent.intent_id.clone(),
        grant_id: intent.grant_id.clone(),
        trace_id: intent.trace_id.clone(),
        action_id: intent.action_id.clone(),
        request_hash: intent.request_hash.clone(),
        created_at: created_at.clone(),
    };
    ctx.append_event(event, Some(witness))?;
    Ok(ExecutionIntent {
        intent_id: intent.intent_id,
        grant_id: intent.grant_id,
        trace_id: intent.trace_id,
        action_id: intent.action_id,
        request_hash: intent.request_hash,
        created_at,
        state: IntentState::Pending,
        resolved_at: None,
    })
}

/// The grant an intent consumed, if the intent is still pending.
fn pending_intent_grant(ctx: &WriteCtx<'_>, intent_id: &str) -> Result<String, LedgerError> {
    let row: Option<(String, String)> = ctx
        .conn
        .prepare_cached("SELECT grant_id, state FROM execution_intents WHERE intent_id = ?1")?
        .query_row([intent_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((grant_id, state)) = row else {
        return Err(LedgerError::IntentNotFound(intent_id.to_string()));
    };
    if state != IntentState::Pending.as_str() {
        return Err(LedgerError::IntentNotPending(intent_id.to_string(), "already closed"));
    }
    Ok(grant_id)
}

fn close_intent(ctx: &WriteCtx<'_>, intent_id: &str, state: IntentState, resolved_at: &str) -> Result<(), LedgerError> {
    ctx.conn
        .prepare_cached("UPDATE execution_intents SET state = ?2, resolved_at = ?3 WHERE intent_id = ?1")?
        .execute(params![intent_id, state.as_str(), resolved_at])?;
    Ok(())
}

pub(super) fn finalize(ctx: &mut WriteCtx<'_>, finalization: Finalization) -> Result<AuditEvent, LedgerError> {
    let Finalization { intent_id, receipt, resolution, event } = finalization;
    let grant_id = pending_intent_grant(ctx, &intent_id)?;
    if grant_id != receipt.grant_id {
        return Err(LedgerError::IntentNotPending(intent_id, "receipt names another grant"));
    }
    let now = now_timestamp();
    let inserted = ctx
        .conn
        .prepare_cached(
            "INSERT INTO receipts (receipt_id, grant_id, json, created_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT(receipt_id) DO NOTHING",
        )?
        .execute(params![receipt.receipt_id, receipt.grant_id, serde_json::to_string(&receipt)?, now])?;
    if inserted == 0 {
        return Err(LedgerError::ReceiptExists(receipt.receipt_id));
    }
    let state = resolution.state();
    close_intent(ctx, &intent_id, state, &now)?;
    let witness = Witness::IntentClosed {
        intent_id,
        state,
        resolved_at: now,
        receipt: Some(ReceiptWitness {
            receipt_id: receipt.receipt_id,
            grant_id: receipt.grant_id,
            result_hash: receipt.result_hash,
        }),
    };
    ctx.append_event(event, Some(witness))
}

pub(super) fn fail_intent(
    ctx: &mut WriteCtx<'_>,
    intent_id: String,
    event: NewAuditEvent,
) -> Result<AuditEvent, LedgerError> {
    pending_intent_grant(ctx, &intent_id)?;
    let now = now_timestamp();
    close_intent(ctx, &intent_id, IntentState::Failed, &now)?;
    let witness = Witness::IntentClosed { intent_id, state: IntentState::Failed, resolved_at: now, receipt: None };
    ctx.append_event(event, Some(witness))
}

pub(super) fn record_approval_outcome(
    ctx: &mut WriteCtx<'_>,
    outcome: ApprovalOutcome,
    event: NewAuditEvent,
) -> Result<AuditEvent, LedgerError> {
    let inserted = ctx
        .conn
        .prepare_cached(
            "INSERT INTO approval_outcomes (approval_id, outcome, operator, ts, plan_hash, reason, operator_jkt) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(approval_id) DO NOTHING",
        )?
        .execute(params![
            outcome.approval_id,
            outcome.outcome,
            outcome.operator,
            outcome.ts,
            outcome.plan_hash,
            outcome.reason,
            outcome.operator_jkt
        ])?;
    if inserted == 0 {
        return Err(LedgerError::ApprovalAlreadyDecided(outcome.approval_id));
    }
    let witness = Witness::ApprovalOutcome {
        approval_id: outcome.approval_id,
        outcome: outcome.outcome,
        operator: outcome.operator,
        ts: outcome.ts,
        plan_hash: outcome.plan_hash,
        reason: outcome.reason,
        operator_jkt: outcome.operator_jkt,
    };
    ctx.append_event(event, Some(witness))
}

/// Stores a held call's immutable plan with its `approval_pending` event.
pub(super) fn record_approval(
    ctx: &mut WriteCtx<'_>,
    approval: NewApproval,
    event: NewAuditEvent,
) -> Result<ApprovalRecord, LedgerError> {
    if latchgate_core::jcs::sha256_tagged(approval.plan.as_bytes()) != approval.plan_hash {
        return Err(LedgerError::Encoding("plan_hash is not the hash of the plan text".into()));
    }
    let created_at = now_timestamp();
    let inserted = ctx
        .conn
        .prepare_cached(
            "INSERT INTO approvals (approval_id, trace_id, action_id, principal, session_id, request_hash, plan_hash, \
         plan, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
         ON CONFLICT(approval_id) DO NOTHING",
        )?
        .execute(params![
            approval.approval_id,
            approval.trace_id,
            approval.action_id,
            approval.principal,
            approval.session_id,
            approval.request_hash,
            approval.plan_hash,
            approval.plan,
            created_at,
            approval.expires_at
        ])?;
    if inserted == 0 {
        return Err(LedgerError::ApprovalExists(approval.approval_id));
    }
    let witness = Witness::ApprovalRequested {
        approval_id: approval.approval_id.clone(),
        trace_id: approval.trace_id.clone(),
        action_id: approval.action_id.clone(),
        principal: approval.principal.clone(),
        session_id: approval.session_id.clone(),
        request_hash: approval.request_hash.clone(),
        plan_hash: approval.plan_hash.clone(),
        created_at: created_at.clone(),
        expires_at: approval.expires_at.clone(),
    };
    ctx.append_event(event, Some(witness))?;
    Ok(ApprovalRecord {
        approval_id: approval.approval_id,
        trace_id: approval.trace_id,
        action_id: approval.action_id,
        principal: approval.principal,
        session_id: approval.session_id,
        request_hash: approval.request_hash,
        plan_hash: approval.plan_hash,
        plan: approval.plan,
        created_at,
        expires_at: approval.expires_at,
        outcome: None,
        intent_state: None,
        receipt_id: None,
    })
}
