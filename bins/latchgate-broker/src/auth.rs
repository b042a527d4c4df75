//! The broker's own check of an agent request: lease and DPoP proof verified
//! again (a compromised front cannot invent a caller), then what only the
//! broker knows — the revocation epoch and the proof's single use.

use crate::gate::{Gate, unix_now};
use crate::state::DPOP_JTI_TTL_SECS;
use latchgate_core::error::{ApiError, ErrorCode};
use latchgate_core::jose::{AuthHeaders, Authenticated, LeaseClaims, authenticate};
use latchgate_ipc::messages::front_broker::{PeerCred, RequestAuth};

pub async fn authenticate_request(gate: &Gate, peer: &PeerCred, auth: &RequestAuth) -> Result<LeaseClaims, ApiError> {
    let headers = AuthHeaders { authorization: Some(&auth.authorization), dpop: Some(&auth.dpop) };
    let now = unix_now();
    let keys = gate.keys.get(&gate.peers).await?;
    let verified = match authenticate(&keys.lease_verifier, &gate.dpop, headers, &auth.method, &auth.path, now) {
        Err(e) if e.deny_reason.as_deref() == Some("lease_unknown_kid") => {
            // A key rotated since the cache was filled: look once more.
            let keys = gate.keys.refresh_when_allowed(&gate.peers).await?;
            authenticate(&keys.lease_verifier, &gate.dpop, headers, &auth.method, &auth.path, now)?
        }
        other => other?,
    };
    let Authenticated { lease, proof } = verified;
    check_principal(gate, peer, &lease)?;
    // Replay first, then the epoch (ARCHITECTURE.md order): a store that is
    // down answers `replay_cache_unavailable` before anything else.
    // One store round trip for both.
    let replay_key = format!("{}:{}", proof.jkt, proof.jti);
    let Some(epoch) =
        gate.state.record_jti_and_read_epoch(&replay_key, DPOP_JTI_TTL_SECS).await.map_err(state_error)?
    else {
        return Err(ApiError::new(ErrorCode::ReplayDetected).with_deny_reason("dpop_jti_reused"));
    };
    if lease.epoch < epoch {
        return Err(ApiError::new(ErrorCode::InvalidLease).with_deny_reason("lease_revoked"));
    }
    // Read after the epoch, which is where a store notices it lost its data.
    if let Some(fence) = gate.state.replay_fence()
        && proof.iat <= fence
    {
        tracing::warn!(iat = proof.iat, fence, "DPoP proof older than the replay cache's memory refused");
        return Err(ApiError::new(ErrorCode::ReplayCacheUnavailable)
            .with_reason("the replay cache lost its memory; sign a new DPoP proof")
            .with_retry_after(1));
    }
    Ok(lease)
}

/// With peercred identity, the connecting uid must be the lease's principal:
/// a stolen lease and key are useless from another account.
fn check_principal(gate: &Gate, peer: &PeerCred, lease: &LeaseClaims) -> Result<(), ApiError> {
    let caller = crate::identity::principal_for(&gate.cfg, peer)?;
    if caller.name != lease.sub {
        return Err(ApiError::new(ErrorCode::IdentityForbidden).with_deny_reason("lease_principal_mismatch"));
    }
    Ok(())
}

pub fn state_error(e: crate::state::StateError) -> ApiError {
    tracing::warn!(code = e.code(), error = %e, "state store failure");
    crate::metrics::gate_metrics().dependency_error(crate::metrics::Dependency::StateStore, e.code());
    ApiError::new(e.error_code()).with_retry_after(1)
}
