//! front → broker on the admin socket: one typed request per operator route.
//! The front parses method, path and query into these variants and passes
//! bodies through as bytes; the broker authenticates the operator again and
//! validates every field itself. JSON travels as text (bincode-safe).

use super::status::ProcessStatus;
use serde::{Deserialize, Serialize};

/// Filters of `GET /v1/audit/events`, as received (the broker parses and bounds them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQuery {
    pub trace_id: Option<String>,
    pub event_type: Option<String>,
    pub action_id: Option<String>,
    pub principal: Option<String>,
    pub session_id: Option<String>,
    pub decision: Option<String>,
    /// RFC 3339.
    pub after: Option<String>,
    /// RFC 3339.
    pub before: Option<String>,
    pub after_seq: Option<String>,
    pub limit: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminRequest {
    /// `GET /v1/admin/status`; the front reports itself.
    Status { front: ProcessStatus },
    /// `GET /v1/admin/actions`
    ListActions,
    /// `GET /v1/admin/actions/{id}`
    GetAction { action_id: String },
    /// `GET /v1/approvals?status=`
    ListApprovals { status: Option<String>, limit: Option<String> },
    /// `GET /v1/approvals/{id}`
    GetApproval { approval_id: String },
    /// `POST /v1/approvals/{id}/approve` (body: optional `{"comment"}`)
    Approve { approval_id: String, body: Vec<u8> },
    /// `POST /v1/approvals/{id}/deny` (body: `{"reason"}`)
    Deny { approval_id: String, body: Vec<u8> },
    /// `GET /v1/audit/events`
    AuditEvents(AuditQuery),
    /// `GET /v1/audit/verify`
    AuditVerify,
    /// One page of `GET /v1/audit/export`: events after `after_seq`, as JSONL.
    /// Pages after the first carry the single-use `continuation` the broker
    /// returned with the previous page instead of a fresh operator proof.
    AuditExport { after_seq: u64, continuation: Option<String> },
    /// `GET /v1/receipts/{id}` (any receipt)
    GetReceipt { receipt_id: String },
    /// `GET /v1/receipt-keys`
    ReceiptKeys,
    /// `POST /v1/admin/revoke-all`
    RevokeAll,
    /// `GET /v1/admin/intents/unresolved`
    UnresolvedIntents,
    /// `POST /v1/admin/drain`
    Drain,
    /// `POST /v1/admin/resume`
    Resume,
    /// `POST /v1/admin/reload` (manifests and policy data)
    Reload,
    /// `GET /v1/admin/egress/learned`
    EgressLearned,
    /// `POST /v1/admin/egress/allow` (body: `{"action_id","domain"}`)
    EgressAllow { body: Vec<u8> },
    /// `POST /v1/admin/egress/disallow` (body: `{"action_id","domain"}`)
    EgressDisallow { body: Vec<u8> },
    /// `GET /v1/admin/policy/acl`
    PolicyShow,
    /// `POST /v1/admin/policy/grant` (body: `{"principal","action_pattern"}`)
    PolicyGrant { body: Vec<u8> },
    /// `POST /v1/admin/policy/revoke` (body: `{"principal","action_pattern"}`)
    PolicyRevoke { body: Vec<u8> },
}

impl AdminRequest {
    /// Writes change state and draw on the operator's write bucket.
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            AdminRequest::Approve { .. }
                | AdminRequest::Deny { .. }
                | AdminRequest::RevokeAll
                | AdminRequest::Drain
                | AdminRequest::Resume
                | AdminRequest::Reload
                | AdminRequest::EgressAllow { .. }
                | AdminRequest::EgressDisallow { .. }
                | AdminRequest::PolicyGrant { .. }
                | AdminRequest::PolicyRevoke { .. }
        )
    }

    /// Stable name of the operation, as recorded in the operator's audit event.
    pub fn name(&self) -> &'static str {
        match self {
            AdminRequest::Status { .. } => "status",
            AdminRequest::ListActions => "actions.list",
            AdminRequest::GetAction { .. } => "actions.show",
            AdminRequest::ListApprovals { .. } => "approvals.list",
            AdminRequest::GetApproval { .. } => "approvals.show",
            AdminRequest::Approve { .. } => "approvals.approve",
            AdminRequest::Deny { .. } => "approvals.deny",
            AdminRequest::AuditEvents(_) => "audit.events",
            AdminRequest::AuditVerify => "audit.verify",
            AdminRequest::AuditExport { .. } => "audit.export",
            AdminRequest::GetReceipt { .. } => "receipts.get",
            AdminRequest::ReceiptKeys => "receipts.keys",
            AdminRequest::RevokeAll => "revoke_all",
            AdminRequest::UnresolvedIntents => "intents.unresolved",
            AdminRequest::Drain => "drain",
            AdminRequest::Resume => "resume",
            AdminRequest::Reload => "reload",
            AdminRequest::EgressLearned => "egress.learned",
            AdminRequest::EgressAllow { .. } => "egress.allow",
            AdminRequest::EgressDisallow { .. } => "egress.disallow",
            AdminRequest::PolicyShow => "policy.show",
            AdminRequest::PolicyGrant { .. } => "policy.grant",
            AdminRequest::PolicyRevoke { .. } => "policy.revoke",
        }
    }

    /// The object the operation is about, for the audit event.
    pub fn target(&self) -> Option<&str> {
        match self {
            AdminRequest::GetAction { action_id } => Some(action_id),
            AdminRequest::GetApproval { approval_id }
            | AdminRequest::Approve { approval_id, .. }
            | AdminRequest::Deny { approval_id, .. } => Some(approval_id),
            AdminRequest::GetReceipt { receipt_id } => Some(receipt_id),
            _ => None,
        }
    }
}
