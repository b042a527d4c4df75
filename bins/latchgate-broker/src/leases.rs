//! `POST /v1/leases`: a lease for the calling principal, bound to the
//! caller's DPoP key, with the session's budgets recorded.

use crate::auth::state_error;
use crate::gate::{Gate, unix_now};
use crate::identity::principal_for;
use crate::ledger::NewAuditEvent;
use crate::peers::signer_refused;
use crate::state::BudgetLimits;
use latchgate_core::error::{ApiError, ErrorCode};
use latchgate_core::jose::{EcPublicJwk, LeaseBudgets, LeaseClaims, LeaseParams};
use latchgate_ipc::messages::broker_signer::{SignerReply, SignerRequest};
use latchgate_ipc::messages::front_broker::PeerCred;
use serde::Deserialize;
use serde_json::{Value, json};

/// Largest lease request accepted (a JWK and a few scopes).
const MAX_LEASE_REQUEST_BYTES: usize = 16 * 1024;
const MAX_SCOPES: usize = 64;

#[derive(Deserialize)]
struct LeaseRequest {
    #[serde(default)]
    scopes: Vec<String>,
    dpop_jwk: Value,
    #[serde(default)]
    budgets: Option<LeaseBudgets>,
    #[serde(default)]
    ttl_seconds: Option<u64>,
}

fn bad_request(reason: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::BadRequest).with_reason(reason)
}

pub async fn issue(gate: &Gate, peer: &PeerCred, body: &[u8]) -> Result<Value, ApiError> {
    let principal = principal_for(&gate.cfg, peer)?;
    if body.len() > MAX_LEASE_REQUEST_BYTES {
        return Err(ApiError::new(ErrorCode::PayloadTooLarge));
    }
    let request: LeaseRequest = serde_json::from_slice(body).map_err(|e| bad_request(format!("lease request: {e}")))?;
    if request.scopes.len() > MAX_SCOPES {
        return Err(bad_request(format!("at most {MAX_SCOPES} scopes")));
    }
    let (jwk, _point) =
        EcPublicJwk::from_value_with_point(&request.dpop_jwk).map_err(|e| bad_request(format!("dpop_jwk: {e}")))?;
    let scopes = match (&principal.scopes, request.scopes.is_empty()) {
        (Some(allowed), true) => allowed.clone(),
        (Some(allowed), false) => {
            if let Some(extra) = request.scopes.iter().find(|s| !allowed.contains(s)) {
                return Err(ApiError::new(ErrorCode::ScopeNotPermitted)
                    .with_deny_reason("scope_not_permitted")
                    .with_reason(format!("scope {extra} is not granted to {}", principal.name)));
            }
            request.scopes
        }
        (None, _) => request.scopes,
    };
    let budgets = request.budgets.unwrap_or_default();
    let limits = BudgetLimits { max_calls: budgets.max_calls, max_cost_cents: budgets.max_cost_usd_cents };
    let epoch = gate.state.revocation_epoch().await.map_err(state_error)?;
    let session_id = uuid::Uuid::new_v4().to_string();
    let now = unix_now();
    let params = LeaseParams {
        principal: principal.name.clone(),
        scopes,
        dpop_jkt: jwk.thumbprint(),
        session_id: session_id.clone(),
        epoch,
        budgets,
        ttl_seconds: request.ttl_seconds,
    };
    let claims = LeaseClaims::new(params, now).map_err(|e| bad_request(e.to_string()))?;
    let ttl = u64::try_from(claims.exp - now).unwrap_or(0);
    gate.state.init_session_budget(&session_id, limits, ttl).await.map_err(state_error)?;
    let claims_json = serde_json::to_string(&claims).map_err(|_| ApiError::new(ErrorCode::InternalError))?;
    let jwt = match gate.peers.sign(SignerRequest::SignLease { claims_json }).await? {
        SignerReply::Lease { jwt } => jwt,
        other => return Err(signer_refused(other)),
    };
    // After a lease-key rotation the first lease names a key we have not fetched yet.
    let kid = latchgate_core::jose::jws::CompactJws::split(&jwt)
        .and_then(|jws| jws.header::<latchgate_core::jose::jws::JoseHeader>())
        .ok()
        .and_then(|h| h.kid);
    if let Some(kid) = kid {
        gate.keys.note_lease_kid(&gate.peers, &kid).await;
    }
    let mut event = NewAuditEvent::new("lease_issued");
    event.principal = Some(principal.name);
    event.session_id = Some(session_id.clone());
    event.decision = Some("issued".into());
    event.payload = json!({"lease_jti": claims.jti, "scopes": claims.scopes, "expires_at": claims.exp, "epoch": epoch, "peer_uid": peer.uid});
    gate.ledger.append_event(event).await.map_err(|e| {
        tracing::error!(code = e.code(), error = %e, "lease audit event not written");
        ApiError::new(ErrorCode::EvidencePersistenceFailed)
    })?;
    Ok(json!({
        "lease_jwt": jwt,
        "session_id": session_id,
        "lease_jti": claims.jti,
        "expires_at": claims.expires_at_rfc3339(),
    }))
}
