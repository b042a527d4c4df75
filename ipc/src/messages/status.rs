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

/// One external dependency of the broker, as the broker sees it right now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DependencyHealth {
    /// What the gate uses it for: [`STATE_STORE`] or [`POLICY_ENGINE`].
    pub name: String,
    /// Which backend serves it: `sqlite`, `redis`, `embedded_rego`, `opa`.
    pub backend: String,
    /// Where it is (never with credentials): `unix /run/redis.sock`, `127.0.0.1:8181`.
    pub endpoint: Option<String>,
    pub up: bool,
    /// Why it is considered down: the stable code its failures are answered with.
    pub error: Option<String>,
    /// Anything an operator should know while it is up (policy version, …).
    pub detail: Option<String>,
}

/// [`DependencyHealth::name`] of the replay cache / budgets / epoch store.
pub const STATE_STORE: &str = "state_store";
/// [`DependencyHealth::name`] of the policy decision point.
pub const POLICY_ENGINE: &str = "policy_engine";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    pub processes: Vec<ProcessHealth>,
    /// The broker's state store and policy engine. (bincode reads fields in
    /// order, so both ends of the IPC channel are built together; JSON
    /// readers of a report without it see an empty list.)
    #[serde(default)]
    pub dependencies: Vec<DependencyHealth>,
}

impl HealthReport {
    /// Every process is up and ready.
    pub fn all_up(&self) -> bool {
        self.processes.iter().all(|p| p.up && p.status.as_ref().is_some_and(|s| s.ready))
    }

    /// Every dependency answered its probe.
    pub fn dependencies_up(&self) -> bool {
        self.dependencies.iter().all(|d| d.up)
    }

    /// The gate can serve: processes and dependencies alike.
    pub fn ready(&self) -> bool {
        self.all_up() && self.dependencies_up()
    }
}
