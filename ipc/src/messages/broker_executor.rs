//! broker → executor.

use super::status::ProcessStatus;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecutorRequest {
    Ping,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecutorReply {
    Pong { status: ProcessStatus, signer_link_up: bool },
    Refused { code: String, message: String },
}
