//! The four privilege-separated processes, and the supervisor that starts them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A process of the gate. The discriminants are part of the IPC hello and
/// must never be reordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    Front,
    Broker,
    Executor,
    Signer,
    Supervisor,
}

impl Role {
    /// The four children, in start order (dependencies first). Shutdown uses the reverse.
    pub const CHILDREN: [Role; 4] = [Role::Signer, Role::Executor, Role::Broker, Role::Front];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Front => "front",
            Role::Broker => "broker",
            Role::Executor => "executor",
            Role::Signer => "signer",
            Role::Supervisor => "supervisor",
        }
    }

    /// Name of the binary that runs this role.
    pub fn binary_name(self) -> &'static str {
        match self {
            Role::Front => "latchgate-front",
            Role::Broker => "latchgate-broker",
            Role::Executor => "latchgate-executor",
            Role::Signer => "latchgate-signer",
            Role::Supervisor => "latchgate",
        }
    }

    /// System user the process runs as when the supervisor is started as root.
    pub fn system_user(self) -> &'static str {
        match self {
            Role::Front => "latchgate-front",
            Role::Broker => "latchgate-broker",
            Role::Executor => "latchgate-exec",
            Role::Signer => "latchgate-signer",
            Role::Supervisor => "root",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        [Role::Front, Role::Broker, Role::Executor, Role::Signer, Role::Supervisor]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
