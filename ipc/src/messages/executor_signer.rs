//! executor → signer: secrets for one grant (and liveness).

use super::status::ProcessStatus;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecretsRequest {
    Ping,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecretsReply {
    Pong(ProcessStatus),
    Refused { code: String, message: String },
}
