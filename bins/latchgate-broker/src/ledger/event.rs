//! Audit events and the hash chain that links them.
//!
//! An event's `hash` is `sha256:<hex>` of the RFC 8785 form of the event
//! object without its `hash` key — that is, including `seq`, `prev_hash` and
//! the `witness`. `prev_hash` is the previous event's `hash`
//! ([`GENESIS_PREV_HASH`] for `seq` 1). Because `seq` is hashed, a deleted or
//! reordered row breaks the chain even if its neighbours are left untouched.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use super::LedgerError;
use super::intent::IntentState;

/// `prev_hash` of the first event.
pub const GENESIS_PREV_HASH: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// An event as the caller describes it; the ledger assigns seq, id, time and links.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NewAuditEvent {
    pub event_type: String,
    pub trace_id: Option<String>,
    pub action_id: Option<String>,
    pub principal: Option<String>,
    pub session_id: Option<String>,
    pub decision: Option<String>,
    pub payload: Value,
}

impl NewAuditEvent {
    pub fn new(event_type: impl Into<String>) -> Self {
        NewAuditEvent {
            event_type: event_type.into(),
            payload: Value::Object(Default::default()),
            ..Default::default()
        }
    }
}

/// A row of another ledger table, restated in the event written in the same
/// transaction. The chain protects events; witnesses extend that protection to
/// intents, consumed grants, receipts and approval outcomes: editing or
/// deleting such a row makes it disagree with (or lose) its witness.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Witness {
    IntentRecorded {
        intent_id: String,
        grant_id: String,
        trace_id: String,
        action_id: String,
        request_hash: String,
        created_at: String,
    },
    IntentClosed {
        intent_id: String,
        state: IntentState,
        resolved_at: String,
        receipt: Option<ReceiptWitness>,
    },
    ApprovalOutcome {
        approval_id: String,
        outcome: String,
        operator: String,
        ts: String,
        plan_hash: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        operator_jkt: Option<String>,
    },
    ApprovalRequested {
        approval_id: String,
        trace_id: String,
        action_id: String,
        principal: String,
        session_id: String,
        request_hash: String,
        plan_hash: String,
        created_at: String,
        expires_at: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptWitness {
    pub receipt_id: String,
    pub grant_id: String,
    pub result_hash: String,
}

/// A committed audit event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEvent {
    pub seq: u64,
    pub event_id: String,
    /// UTC, fixed microsecond precision, so that text order is time order.
    pub ts: String,
    pub event_type: String,
    pub trace_id: Option<String>,
    pub action_id: Option<String>,
    pub principal: Option<String>,
    pub session_id: Option<String>,
    pub decision: Option<String>,
    pub payload: Value,
    pub witness: Option<Witness>,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEvent {
    /// The chain hash of this event as it should be (see module docs).
    pub fn compute_hash(&self) -> Result<String, LedgerError> {
        let mut value = serde_json::to_value(self)?;
        if let Value::Object(object) = &mut value {
            object.remove("hash");
        }
        Ok(latchgate_core::jcs::hash(&value)?)
    }
}

const TS_FORMAT: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// Ledger timestamp: RFC 3339, UTC, exactly six fractional digits.
pub fn ledger_timestamp(t: OffsetDateTime) -> String {
    // Formatting a UTC time with this description cannot fail for years 0..=9999.
    t.to_offset(time::UtcOffset::UTC).format(TS_FORMAT).unwrap_or_else(|_| "0000-01-01T00:00:00.000000Z".into())
}

pub fn now_timestamp() -> String {
    ledger_timestamp(OffsetDateTime::now_utc())
}
