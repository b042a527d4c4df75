//! The broker's links to the signer and the executor, and typed calls over them.

use latchgate_core::error::{ApiError, ErrorCode};
use latchgate_ipc::link::ClientLink;
use latchgate_ipc::messages::broker_signer::{PublicKeys, SignerReply, SignerRequest};
use latchgate_ipc::messages::status::ProcessStatus;
use latchgate_ipc::{BrokerExecutor, BrokerSigner, IpcError};
use std::time::Duration;

/// Signing is local CPU work in the signer; anything slower means it is stuck.
pub const SIGNER_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Peers {
    pub signer: ClientLink<BrokerSigner>,
    pub executor: ClientLink<BrokerExecutor>,
    /// The broker's own status (its confinement is fixed once sealed).
    pub own: std::sync::OnceLock<ProcessStatus>,
}

/// A peer could not be reached: fail closed with 503.
pub fn unavailable(component: &str, e: &IpcError) -> ApiError {
    tracing::warn!(component, code = e.code(), error = %e, "peer unavailable");
    if let Some(dependency) = crate::metrics::Dependency::of_component(component) {
        crate::metrics::gate_metrics().dependency_error(dependency, e.code());
    }
    ApiError::component_unavailable(component)
}

/// The signer answered something other than what was asked for.
pub fn signer_refused(reply: SignerReply) -> ApiError {
    match reply {
        SignerReply::Refused { code, message } => {
            tracing::error!(%code, %message, "signer refused");
        }
        other => tracing::error!(reply = ?other, "unexpected signer reply"),
    }
    ApiError::new(ErrorCode::InternalError)
}

impl Peers {
    pub async fn sign(&self, request: SignerRequest) -> Result<SignerReply, ApiError> {
        self.signer.call(request, SIGNER_TIMEOUT).await.map_err(|e| unavailable("signer", &e))
    }

    pub async fn public_keys(&self) -> Result<PublicKeys, ApiError> {
        match self.sign(SignerRequest::PublicKeys).await? {
            SignerReply::PublicKeys(keys) => Ok(keys),
            other => Err(signer_refused(other)),
        }
    }
}
