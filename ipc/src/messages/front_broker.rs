//! front → broker. One variant per agent route the broker answers; the front
//! keeps HTTP to itself and sends only typed, size-bounded requests.

use super::admin::AdminRequest;
use super::status::HealthReport;
use latchgate_core::error::ApiError;
use serde::{Deserialize, Serialize};

/// `SO_PEERCRED` of the HTTP client, captured by the front per connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerCred {
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
}

/// The authentication material of one request, exactly as received; the
/// broker verifies it again rather than trusting the front's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestAuth {
    pub authorization: String,
    pub dpop: String,
    pub method: String,
    /// Request path (no query), from which the expected `htu` is built.
    pub path: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FrontRequest {
    /// Readiness of every process (for `/readyz`).
    Health {
        peer: PeerCred,
    },
    /// Lease verification keys (JWKS JSON) for the front's own checks.
    LeaseKeys,
    /// `POST /v1/leases` with its raw body.
    IssueLease {
        peer: PeerCred,
        body: Vec<u8>,
    },
    ListActions,
    GetAction {
        action_id: String,
    },
    GetRequestSchema {
        action_id: String,
    },
    /// `POST /v1/actions/{id}/execute` with the raw body (the action's params).
    Execute {
        peer: PeerCred,
        auth: RequestAuth,
        action_id: String,
        body: Vec<u8>,
    },
    GetReceipt {
        peer: PeerCred,
        auth: RequestAuth,
        receipt_id: String,
    },
    /// `GET /v1/approvals/{id}/poll` (client socket; lease + DPoP, same session).
    PollApproval {
        peer: PeerCred,
        auth: RequestAuth,
        approval_id: String,
    },
    /// An operator route of the admin socket (`auth` carries the operator's
    /// api key and proof; the broker checks them again).
    Admin {
        peer: PeerCred,
        auth: RequestAuth,
        request: AdminRequest,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FrontReply {
    Health(HealthReport),
    LeaseKeys {
        jwks_json: String,
    },
    /// A JSON answer with its HTTP status.
    Json {
        status: u16,
        body: String,
    },
    Error(ApiError),
    /// One page of a JSONL export; `next_after_seq` is `None` on the last
    /// page, else `continuation` authorises asking for the next one (once).
    Jsonl {
        body: String,
        next_after_seq: Option<u64>,
        continuation: Option<String>,
    },
}
