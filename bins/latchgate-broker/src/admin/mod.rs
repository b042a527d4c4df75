//! The operator plane: every admin-socket request, after the broker's own
//! check of the operator (api key + DPoP proof bound to its `dpop_jkt`,
//! proof `jti` single use), the operator's token bucket, and an audit event
//! naming the operator. One handler per [`AdminRequest`] variant.

pub mod evidence;
mod policy_edit;
mod status;
pub mod throttle;

use crate::auth::state_error;
use crate::gate::{Gate, unix_now};
use crate::ledger::NewAuditEvent;
use crate::state::DPOP_JTI_TTL_SECS;
use crate::{approvals, catalog};
use latchgate_core::error::{ApiError, ErrorCode};
use latchgate_core::jose::{AuthHeaders, OperatorAuthenticated, authenticate_operator};
use latchgate_ipc::messages::admin::AdminRequest;
use latchgate_ipc::messages::front_broker::{FrontReply, PeerCred, RequestAuth};
use serde_json::{Value, json};

pub async fn handle(gate: &Gate, peer: &PeerCred, auth: &RequestAuth, request: AdminRequest) -> FrontReply {
    // Later pages of an export carry the broker's own single-use token
    // instead of a proof (the proof that opened the export was single use).
    if let AdminRequest::AuditExport { after_seq, continuation: Some(token) } = &request {
        return match gate.exports.redeem(token, *after_seq) {
            Some(operator) => evidence::export_page(gate, &operator, *after_seq).await,
            None => FrontReply::Error(
                ApiError::new(ErrorCode::InvalidOperatorToken).with_deny_reason("export_continuation_invalid"),
            ),
        };
    }
    match authorize(gate, peer, auth, &request).await {
        Ok(operator) => dispatch(gate, &operator, request).await,
        Err(e) => FrontReply::Error(e),
    }
}

/// The broker's own check of the operator, then the bucket, then the audit
/// event. A write is not carried out unless its event is durable.
async fn authorize(
    gate: &Gate,
    peer: &PeerCred,
    auth: &RequestAuth,
    request: &AdminRequest,
) -> Result<OperatorAuthenticated, ApiError> {
    let headers = AuthHeaders { authorization: Some(&auth.authorization), dpop: Some(&auth.dpop) };
    let credentials = &gate.cfg.config.operator_credentials;
    let operator = authenticate_operator(credentials, &gate.dpop, headers, &auth.method, &auth.path, unix_now())
        .inspect_err(|e| {
            tracing::warn!(code = e.code.as_str(), deny_reason = ?e.deny_reason, uid = peer.uid, path = %auth.path,
                "operator request refused");
        })?;
    let replay_key = format!("operator:{}:{}", operator.jkt, operator.proof.jti);
    if !gate.state.check_and_record_jti(&replay_key, DPOP_JTI_TTL_SECS).await.map_err(state_error)? {
        return Err(ApiError::new(ErrorCode::ReplayDetected).with_deny_reason("dpop_jti_reused"));
    }
    if let Err(seconds) = gate.throttle.take(&operator.operator, request.is_write()) {
        return Err(ApiError::new(ErrorCode::OperatorThrottled)
            .with_reason(format!(
                "more than the allowed {} per second",
                if request.is_write() { "writes" } else { "reads" }
            ))
            .with_retry_after(seconds));
    }
    let mut event = NewAuditEvent::new("operator_request");
    event.principal = Some(format!("operator:{}", operator.operator));
    event.decision = Some("accepted".into());
    event.payload = json!({
        "operator": operator.operator, "operator_jkt": operator.jkt, "operation": request.name(),
        "target": request.target(), "method": auth.method, "path": auth.path, "peer_uid": peer.uid,
    });
    if let Some(id) = request.target().filter(|_| matches!(request, AdminRequest::GetAction { .. })) {
        event.action_id = Some(id.to_string());
    }
    match gate.ledger.append_event(event).await {
        Ok(_) => {}
        Err(e) if request.is_write() => return Err(crate::pipeline::persistence_failed(e)),
        Err(e) => tracing::error!(code = e.code(), error = %e, "operator read not audited; answering anyway"),
    }
    Ok(operator)
}

fn json_reply(status: u16, body: Value) -> FrontReply {
    FrontReply::Json { status, body: body.to_string() }
}

fn answer(result: Result<Value, ApiError>) -> FrontReply {
    match result {
        Ok(body) => json_reply(200, body),
        Err(e) => FrontReply::Error(e),
    }
}

async fn dispatch(gate: &Gate, operator: &OperatorAuthenticated, request: AdminRequest) -> FrontReply {
    match request {
        AdminRequest::Status { front } => json_reply(200, status::report(gate, front).await),
        AdminRequest::ListActions => json_reply(200, catalog::operator_list(gate)),
        AdminRequest::GetAction { action_id } => answer(catalog::operator_detail(gate, &action_id)),
        AdminRequest::ListApprovals { status, limit } => {
            answer(approvals::list(gate, status.as_deref(), limit.as_deref()).await)
        }
        AdminRequest::GetApproval { approval_id } => answer(approvals::show(gate, &approval_id).await),
        AdminRequest::Approve { approval_id, body } => {
            match approvals::approve(gate, operator, &approval_id, &body).await {
                Ok(done) => json_reply(done.status, done.body),
                Err(e) => FrontReply::Error(e),
            }
        }
        AdminRequest::Deny { approval_id, body } => answer(approvals::deny(gate, operator, &approval_id, &body).await),
        AdminRequest::AuditEvents(query) => answer(evidence::events(gate, &query).await),
        AdminRequest::AuditVerify => answer(evidence::verify(gate).await),
        AdminRequest::AuditExport { after_seq, .. } => evidence::export_page(gate, &operator.operator, after_seq).await,
        AdminRequest::GetReceipt { receipt_id } => answer(evidence::receipt(gate, &receipt_id).await),
        AdminRequest::ReceiptKeys => match gate.keys.refresh(&gate.peers).await {
            Ok(keys) => FrontReply::Json { status: 200, body: keys.receipt_jwks_json.clone() },
            Err(e) => FrontReply::Error(e),
        },
        AdminRequest::RevokeAll => answer(revoke_all(gate, operator).await),
        AdminRequest::UnresolvedIntents => answer(evidence::unresolved_intents(gate).await),
        AdminRequest::Drain => answer(set_draining(gate, operator, true).await),
        AdminRequest::Resume => answer(set_draining(gate, operator, false).await),
        AdminRequest::Reload => answer(reload(gate, operator).await),
        AdminRequest::EgressLearned => answer(policy_edit::learned_domains(gate).await),
        AdminRequest::EgressAllow { body } => answer(policy_edit::egress(gate, operator, &body, true).await),
        AdminRequest::EgressDisallow { body } => answer(policy_edit::egress(gate, operator, &body, false).await),
        AdminRequest::PolicyShow => answer(policy_edit::show(gate)),
        AdminRequest::PolicyGrant { body } => answer(policy_edit::acl(gate, operator, &body, true).await),
        AdminRequest::PolicyRevoke { body } => answer(policy_edit::acl(gate, operator, &body, false).await),
    }
}

/// An operator's change, as its own audit event (after it took effect).
async fn record_change(gate: &Gate, operator: &OperatorAuthenticated, event_type: &str, mut payload: Value) {
    let mut event = NewAuditEvent::new(event_type);
    event.principal = Some(format!("operator:{}", operator.operator));
    event.decision = Some("applied".into());
    payload["operator"] = operator.operator.clone().into();
    payload["operator_jkt"] = operator.jkt.clone().into();
    event.payload = payload;
    if let Err(e) = gate.ledger.append_event(event).await {
        tracing::error!(code = e.code(), error = %e, event_type, "operator change applied but its event was not written");
    }
}

/// `POST /v1/admin/revoke-all`: every lease and grant issued so far is dead.
async fn revoke_all(gate: &Gate, operator: &OperatorAuthenticated) -> Result<Value, ApiError> {
    let epoch = gate.state.bump_epoch().await.map_err(state_error)?;
    tracing::warn!(epoch, operator = %operator.operator, "revocation epoch bumped: every older lease and grant is dead");
    record_change(gate, operator, "revocation_epoch_bumped", json!({"revocation_epoch": epoch})).await;
    Ok(json!({"revocation_epoch": epoch, "revoked": "every lease and grant issued before this epoch"}))
}

async fn set_draining(gate: &Gate, operator: &OperatorAuthenticated, draining: bool) -> Result<Value, ApiError> {
    gate.draining.store(draining, std::sync::atomic::Ordering::SeqCst);
    let in_flight = gate.in_flight.load(std::sync::atomic::Ordering::SeqCst);
    let event_type = if draining { "gate_draining" } else { "gate_resumed" };
    record_change(gate, operator, event_type, json!({"in_flight_executions": in_flight})).await;
    Ok(json!({"draining": draining, "in_flight_executions": in_flight}))
}

/// `POST /v1/admin/reload`: manifests (all or nothing), then policy data.
async fn reload(gate: &Gate, operator: &OperatorAuthenticated) -> Result<Value, ApiError> {
    let manifests_dir = gate.cfg.manifests_dir();
    let summary = match gate.actions.reload(&manifests_dir) {
        Ok(summary) => summary,
        Err(errors) => {
            let first: Vec<String> = errors.iter().take(5).map(ToString::to_string).collect();
            return Err(ApiError::new(ErrorCode::BadRequest)
                .with_reason(format!("{} manifest error(s), nothing reloaded: {}", errors.len(), first.join("; ")))
                .with_remediation("fix the named manifest fields and reload again"));
        }
    };
    let policy_version = gate.reload_policy().map_err(|e| {
        ApiError::new(e.error_code())
            .with_reason(format!("manifests reloaded; policy data not reloaded (previous stays in force): {e}"))
            .with_remediation("fix data.json and reload again")
    })?;
    let payload = json!({"manifests": summary, "policy_version": policy_version});
    record_change(gate, operator, "gate_reloaded", payload.clone()).await;
    Ok(payload)
}
