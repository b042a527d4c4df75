//! `GET /v1/receipts/{id}` for agents: lease + DPoP, and only receipts of the
//! caller's own principal.

use crate::auth::authenticate_request;
use crate::gate::Gate;
use crate::ledger::EventFilter;
use latchgate_core::error::{ApiError, ErrorCode};
use latchgate_ipc::messages::front_broker::{PeerCred, RequestAuth};
use serde_json::Value;

const MAX_RECEIPT_ID_CHARS: usize = 128;

pub async fn get(gate: &Gate, peer: &PeerCred, auth: &RequestAuth, receipt_id: &str) -> Result<Value, ApiError> {
    let lease = authenticate_request(gate, peer, auth).await?;
    if receipt_id.is_empty() || receipt_id.len() > MAX_RECEIPT_ID_CHARS {
        return Err(ApiError::new(ErrorCode::NotFound));
    }
    let receipt = gate.ledger.get_receipt(receipt_id.to_string()).await.map_err(|e| {
        tracing::error!(code = e.code(), error = %e, "receipt read failed");
        ApiError::new(ErrorCode::StoreUnavailable).with_retry_after(1)
    })?;
    let receipt = receipt.ok_or_else(|| ApiError::new(ErrorCode::NotFound))?;
    let filter = EventFilter {
        trace_id: Some(receipt.trace_id.clone()),
        principal: Some(lease.sub.clone()),
        limit: Some(1),
        ..EventFilter::default()
    };
    let owned = gate.ledger.query_events(filter).await.map(|events| !events.is_empty()).unwrap_or(false);
    if !owned {
        // Someone else's receipt reads as absent.
        return Err(ApiError::new(ErrorCode::NotFound));
    }
    serde_json::to_value(&receipt).map_err(|_| ApiError::new(ErrorCode::InternalError))
}
