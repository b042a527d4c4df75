//! broker → signer.

use super::status::ProcessStatus;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignerRequest {
    Ping,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignerReply {
    Pong(ProcessStatus),
    /// The signer refused (stable code + message for logs; never key material).
    Refused {
        code: String,
        message: String,
    },
}
