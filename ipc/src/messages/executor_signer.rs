//! executor → signer: grant verification keys, secrets for one grant, liveness.

use super::broker_signer::GrantPublicKey;
use super::status::ProcessStatus;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecretsRequest {
    Ping,
    /// The grant verification keys: the executor takes them from the signer
    /// itself, never from the broker whose grants it checks.
    GrantKeys,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecretsReply {
    Pong(ProcessStatus),
    GrantKeys(Vec<GrantPublicKey>),
    Refused { code: String, message: String },
}
