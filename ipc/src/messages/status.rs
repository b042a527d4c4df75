//! Health and readiness reported by each process.

use latchgate_core::confine::ConfinementReport;
use latchgate_core::role::Role;
use serde::{Deserialize, Serialize};

/// What a process says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessStatus {
    pub role: Role,
    pub pid: u32,
    pub uid: u32,
    pub ready: bool,
    /// What the kernel enforces on this process; `None` before it sealed itself.
    pub confinement: Option<ConfinementReport>,
}

impl ProcessStatus {
    pub fn current(role: Role, ready: bool, confinement: Option<ConfinementReport>) -> Self {
        ProcessStatus { role, pid: std::process::id(), uid: nix::unistd::getuid().as_raw(), ready, confinement }
    }
}

/// One process as seen by the broker (which reaches all the others).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessHealth {
    pub role: Role,
    pub up: bool,
    pub status: Option<ProcessStatus>,
    /// Why the process is considered down (stable IPC error code).
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    pub processes: Vec<ProcessHealth>,
}

impl HealthReport {
    pub fn all_up(&self) -> bool {
        self.processes.iter().all(|p| p.up && p.status.as_ref().is_some_and(|s| s.ready))
    }
}
