//! Required secrets, checked after the policy allowed the call and before
//! anything is debited or held for approval. The broker never holds a secret:
//! it asks the signer which of the action's required names the secrets file
//! has (names only) and denies with the first missing one named.

use crate::gate::Gate;
use crate::peers::signer_refused;
use latchgate_core::error::{ApiError, ErrorCode};
use latchgate_core::manifest::Manifest;
use latchgate_ipc::messages::broker_signer::{SignerReply, SignerRequest};

/// `deny_reason` when a required secret is absent from the secrets file.
pub const MISSING_REQUIRED_SECRET: &str = "missing_required_secret";
/// `deny_reason` when the policy did not approve a secret the action requires.
pub const SECRET_NOT_APPROVED: &str = "secret_not_approved";

pub async fn check_required(gate: &Gate, manifest: &Manifest, approved: &[String]) -> Result<(), ApiError> {
    let required: Vec<String> = manifest.secrets.iter().filter(|s| s.required).map(|s| s.name.clone()).collect();
    if required.is_empty() {
        return Ok(());
    }
    if let Some(name) = required.iter().find(|n| !approved.contains(n)) {
        return Err(denied(SECRET_NOT_APPROVED, format!("the policy did not approve required secret {name}"))
            .with_remediation("see the policy's approved_secrets"));
    }
    let present = match gate.peers.sign(SignerRequest::SecretsPresent { names: required.clone() }).await? {
        SignerReply::SecretsPresent { present } => present,
        SignerReply::Refused { code, message } => {
            // The file exists but cannot be decrypted (tampered, wrong key):
            // nothing can be released, and the operator has to act.
            tracing::error!(%code, %message, "secrets file unusable");
            return Err(ApiError::component_unavailable("secrets"));
        }
        other => return Err(signer_refused(other)),
    };
    match required.iter().find(|n| !present.contains(n)) {
        None => Ok(()),
        Some(name) => {
            Err(denied(MISSING_REQUIRED_SECRET, format!("required secret {name} is not in the secrets file"))
                .with_remediation(format!("an operator runs: latchgate secrets set {name}")))
        }
    }
}

fn denied(deny_reason: &str, reason: String) -> ApiError {
    ApiError::new(ErrorCode::PolicyDenied).with_deny_reason(deny_reason).with_reason(reason)
}
