//! front → broker.

use super::status::HealthReport;
use latchgate_core::error::ApiError;
use serde::{Deserialize, Serialize};

/// `SO_PEERCRED` of the HTTP client, captured by the front per connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerCred {
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FrontRequest {
    /// Readiness of every process (for `/readyz`).
    Health { peer: PeerCred },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FrontReply {
    Health(HealthReport),
    Error(ApiError),
}
