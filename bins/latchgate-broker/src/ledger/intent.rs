//! Execution intents (written before dispatch, resolved after the receipt) and
//! approval outcomes: the ledger rows the pipeline creates besides events.

use serde::{Deserialize, Serialize};

use latchgate_core::receipt::Receipt;

use super::event::NewAuditEvent;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentState {
    /// Dispatch may have happened; the outcome is unknown until resolved.
    Pending,
    Resolved,
    Failed,
}

impl IntentState {
    pub fn as_str(self) -> &'static str {
        match self {
            IntentState::Pending => "pending",
            IntentState::Resolved => "resolved",
            IntentState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<IntentState> {
        match text {
            "pending" => Some(IntentState::Pending),
            "resolved" => Some(IntentState::Resolved),
            "failed" => Some(IntentState::Failed),
            _ => None,
        }
    }
}

/// What the broker knows before dispatch. The intent consumes `grant_id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewIntent {
    pub intent_id: String,
    pub grant_id: String,
    pub trace_id: String,
    pub action_id: String,
    pub request_hash: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionIntent {
    pub intent_id: String,
    pub grant_id: String,
    pub trace_id: String,
    pub action_id: String,
    pub request_hash: String,
    pub created_at: String,
    pub state: IntentState,
    pub resolved_at: Option<String>,
}

/// How an intent ends once the executor has answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntentResolution {
    Resolved,
    Failed,
}

impl IntentResolution {
    pub fn state(self) -> IntentState {
        match self {
            IntentResolution::Resolved => IntentState::Resolved,
            IntentResolution::Failed => IntentState::Failed,
        }
    }
}

/// The evidence transaction after an execution: the signed receipt, the final
/// audit event and the intent's resolution, committed together.
#[derive(Clone, Debug)]
pub struct Finalization {
    pub intent_id: String,
    pub receipt: Receipt,
    pub resolution: IntentResolution,
    pub event: NewAuditEvent,
}

/// An operator's decision on an approval, tied to the immutable plan it approved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalOutcome {
    pub approval_id: String,
    /// `approved` | `denied` | `expired` | `failed` (approved, but a re-check refused to run it)
    pub outcome: String,
    pub operator: String,
    pub ts: String,
    pub plan_hash: String,
    /// Deny reason, or the re-check that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Thumbprint of the DPoP key the deciding operator proved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_jkt: Option<String>,
}

/// A held call as the pipeline stores it: the plan text is immutable and
/// `plan_hash` is `sha256:` of exactly these bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewApproval {
    pub approval_id: String,
    pub trace_id: String,
    pub action_id: String,
    pub principal: String,
    pub session_id: String,
    pub request_hash: String,
    pub plan_hash: String,
    pub plan: String,
    /// Ledger timestamp (fixed width, so text order is time order).
    pub expires_at: String,
}

/// A stored approval with what became of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    pub approval_id: String,
    pub trace_id: String,
    pub action_id: String,
    pub principal: String,
    pub session_id: String,
    pub request_hash: String,
    pub plan_hash: String,
    pub plan: String,
    pub created_at: String,
    pub expires_at: String,
    pub outcome: Option<ApprovalOutcome>,
    /// The execution of an approved plan: its intent's state and receipt, if any.
    pub intent_state: Option<IntentState>,
    pub receipt_id: Option<String>,
}

/// Which approvals `list_approvals` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApprovalFilter {
    All,
    /// No outcome yet.
    Pending,
    /// Outcome equal to this value.
    Outcome(&'static str),
}
