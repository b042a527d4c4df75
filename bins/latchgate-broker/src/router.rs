//! One handler per front request variant.

use crate::gate::Gate;
use crate::{admin, approvals, catalog, health, leases, pipeline, receipts};
use latchgate_core::error::ApiError;
use latchgate_ipc::messages::front_broker::{FrontReply, FrontRequest};
use serde_json::Value;

fn json(status: u16, body: Value) -> FrontReply {
    FrontReply::Json { status, body: body.to_string() }
}

fn answer(result: Result<Value, ApiError>) -> FrontReply {
    match result {
        Ok(body) => json(200, body),
        Err(e) => FrontReply::Error(e),
    }
}

pub async fn handle(gate: &Gate, request: FrontRequest) -> FrontReply {
    match request {
        FrontRequest::Health { front, .. } => {
            let report = health::report(gate).await;
            health::count_probe(&[health::up(front)], []);
            health::count_probe(&report.processes, health::failing_dependencies(&report));
            FrontReply::Health(report)
        }
        // The front asks on first use and when a lease names a kid it does not
        // know (a rotation): answer from the signer, not from a stale cache
        // (at most one signer round trip a second).
        FrontRequest::LeaseKeys => match gate.keys.refresh(&gate.peers).await {
            Ok(keys) => FrontReply::LeaseKeys { jwks_json: keys.lease_jwks_json.clone() },
            Err(e) => FrontReply::Error(e),
        },
        FrontRequest::IssueLease { peer, body } => answer(leases::issue(gate, &peer, &body).await),
        FrontRequest::ListActions => json(200, catalog::list(gate)),
        FrontRequest::GetAction { action_id } => answer(catalog::detail(gate, &action_id)),
        FrontRequest::GetRequestSchema { action_id } => answer(catalog::request_schema(gate, &action_id)),
        FrontRequest::Execute { peer, auth, action_id, body } => {
            match pipeline::execute(gate, &peer, &auth, &action_id, &body).await {
                Ok(answer) => json(answer.status, answer.body),
                Err(e) => FrontReply::Error(e),
            }
        }
        FrontRequest::GetReceipt { peer, auth, receipt_id } => {
            answer(receipts::get(gate, &peer, &auth, &receipt_id).await)
        }
        FrontRequest::PollApproval { peer, auth, approval_id } => {
            answer(approvals::poll(gate, &peer, &auth, &approval_id).await)
        }
        FrontRequest::Admin { peer, auth, request } => admin::handle(gate, &peer, &auth, request).await,
    }
}
