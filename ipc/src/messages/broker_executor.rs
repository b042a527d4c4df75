//! broker → executor: run one task under a signed grant, and liveness.
//! `RunTask` and `Outcome` cross the channel as bincode, so no field may need
//! `deserialize_any` (no `serde_json::Value`, no untagged enums): JSON travels
//! as text.

use super::status::ProcessStatus;
use latchgate_core::action::{EgressRules, HostImport, HttpTemplate, ResourceLimits};
use latchgate_core::grant::SignedGrant;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One execution the broker asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunTask {
    pub action_id: String,
    /// `sha256:<hex>` of the provider component; must equal the grant's.
    pub module_digest: String,
    /// The request's parameters: a JSON object, as text.
    pub params_json: String,
    pub template: Option<HttpTemplate>,
    /// The manifest's `required_imports`: the only host interfaces this call may use.
    pub required_imports: Vec<HostImport>,
    pub limits: ResourceLimits,
    pub egress: EgressRules,
    /// Root of the `fs` provider's files; `None` for every other action.
    pub fs_root: Option<PathBuf>,
    pub grant: SignedGrant,
}

/// Why a call that started did not produce an output. Each class ends only
/// its own call; the runtime keeps serving.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FailureClass {
    FuelExhausted,
    MemoryLimit,
    Timeout,
    IoBudgetExhausted,
    Trap,
    ImportDenied,
    OutputTooLarge,
    MalformedOutput,
    EgressDenied,
    ProviderError,
}

impl FailureClass {
    /// The stable string stored in receipts (`failure_class`).
    pub fn code(self) -> &'static str {
        match self {
            FailureClass::FuelExhausted => "fuel_exhausted",
            FailureClass::MemoryLimit => "memory_limit",
            FailureClass::Timeout => "timeout",
            FailureClass::IoBudgetExhausted => "io_budget_exhausted",
            FailureClass::Trap => "trap",
            FailureClass::ImportDenied => "import_denied",
            FailureClass::OutputTooLarge => "output_too_large",
            FailureClass::MalformedOutput => "malformed_output",
            FailureClass::EgressDenied => "egress_denied",
            FailureClass::ProviderError => "provider_error",
        }
    }
}

impl std::fmt::Display for FailureClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutcomeResult {
    /// The provider's output: valid JSON text within the output size limit.
    Succeeded { output_json: String },
    /// `detail` is for logs and the operator, not for the agent.
    Failed { class: FailureClass, detail: String },
}

/// What the host saw while one call ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub action_id: String,
    pub grant_id: String,
    pub module_digest: String,
    pub result: OutcomeResult,
    /// Every io call the provider attempted, in order.
    pub io: Vec<IoObservation>,
    /// Calls counted against `max_io_calls` (attempts, including refused ones).
    pub io_calls: u32,
    pub fuel_consumed: u64,
    pub duration_us: u64,
}

impl Outcome {
    pub fn failure_class(&self) -> Option<FailureClass> {
        match &self.result {
            OutcomeResult::Failed { class, .. } => Some(*class),
            OutcomeResult::Succeeded { .. } => None,
        }
    }

    pub fn output_json(&self) -> Option<&str> {
        match &self.result {
            OutcomeResult::Succeeded { output_json } => Some(output_json),
            OutcomeResult::Failed { .. } => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IoObservation {
    Http(HttpObservation),
    Fs(FsObservation),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpObservation {
    pub method: String,
    /// `scheme://host:port` of the sink (no path or query: those may carry request data).
    pub sink: String,
    /// The pinned address connected to, or the proxy's when one is configured.
    pub connected_to: Option<String>,
    pub via_proxy: bool,
    pub status: Option<u16>,
    pub response_bytes: u64,
    /// `sha256:<hex>` of the response body handed to the provider.
    pub response_sha256: Option<String>,
    /// Header names the host removed before sending (credentials).
    pub stripped_headers: Vec<String>,
    /// Stable reason when the call was refused or failed.
    pub error: Option<String>,
    pub duration_us: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsObservation {
    pub op: String,
    pub path: String,
    pub sha256_before: Option<String>,
    pub sha256_after: Option<String>,
    pub bytes: u64,
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecutorRequest {
    Ping,
    /// Run one task. `revocation_epoch` is the broker's current epoch: the
    /// executor keeps the highest it has seen and refuses older grants.
    Run {
        task: Box<RunTask>,
        revocation_epoch: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecutorReply {
    Pong {
        status: ProcessStatus,
        signer_link_up: bool,
    },
    /// The call ran (successfully or not); what the host observed.
    Ran(Box<Outcome>),
    /// Nothing ran (bad grant, unknown module, invalid task…).
    Refused {
        code: String,
        message: String,
    },
}
