//! The host side of `latchgate:io`: per-call state and the import
//! implementations. Every import first checks that this call's manifest
//! declared it and (for io) that the budget allows one more call; a policy
//! violation records why and traps, ending only this call.

mod fs;
mod http;
mod log;

use crate::egress::EgressClient;
use crate::task::{FailureClass, IoObservation};
use latchgate_core::action::{EgressRules, HostImport};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{ResourceLimiter, StoreLimits};

wasmtime::component::bindgen!({
    path: "../../providers/wit",
    world: "latchgate:provider/provider",
    // http.send awaits the network on the executor's runtime: the guest runs
    // on an async fiber, so a call waiting for its response holds no thread.
    // Everything else the host does is immediate.
    imports: { "latchgate:io/http.send": async | trappable, default: trappable },
    exports: { default: async },
});

pub(crate) use self::ProviderPre as ProviderBindingsPre;

/// Why the host ended a call; stored before trapping so that the runtime
/// reports the host's reason, not the generic trap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    pub class: FailureClass,
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.class.code(), self.detail)
    }
}

impl std::error::Error for Violation {}

/// `StoreLimits` (trap on grow failure) that also remembers that the cap was hit,
/// so a memory violation is classified as `memory_limit`, not as a generic trap.
pub(crate) struct MemoryCap {
    limits: StoreLimits,
    pub hit: bool,
}

impl MemoryCap {
    pub fn new(limits: StoreLimits) -> Self {
        MemoryCap { limits, hit: false }
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let verdict = self.limits.memory_growing(current, desired, maximum);
        if !matches!(verdict, Ok(true)) {
            self.hit = true;
        }
        verdict
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.hit = true;
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// Everything one call may use, and what it has done so far.
pub(crate) struct CallState {
    pub memory: MemoryCap,
    pub action_id: String,
    pub declared: BTreeSet<HostImport>,
    pub io_calls: u32,
    pub max_io_calls: u32,
    pub max_host_response_bytes: u64,
    pub deadline: Instant,
    pub egress: Arc<EgressClient>,
    pub egress_rules: EgressRules,
    pub grant_sinks: Vec<String>,
    pub fs_root: Option<PathBuf>,
    pub observations: Vec<IoObservation>,
    pub violation: Option<Violation>,
    pub log_lines: u32,
    /// This call's secrets (wiped when the call's store drops).
    pub secrets: crate::secrets::CallSecrets,
}

impl CallState {
    /// Steps 1 and 2 of every io call: the import is declared, the budget has room.
    fn admit_io(&mut self, import: HostImport) -> wasmtime::Result<()> {
        if !self.declared.contains(&import) {
            return Err(self.violate(FailureClass::ImportDenied, format!("{import:?} not in required_imports")));
        }
        if self.io_calls >= self.max_io_calls {
            self.io_calls = self.io_calls.saturating_add(1);
            return Err(self.violate(
                FailureClass::IoBudgetExhausted,
                format!("io call {} exceeds max_io_calls {}", self.io_calls, self.max_io_calls),
            ));
        }
        self.io_calls += 1;
        Ok(())
    }

    /// Records the violation (first one wins) and returns the trap that ends the call.
    fn violate(&mut self, class: FailureClass, detail: String) -> wasmtime::Error {
        let violation = Violation { class, detail };
        if self.violation.is_none() {
            self.violation = Some(violation.clone());
        }
        wasmtime::Error::new(violation)
    }
}

pub(crate) enum ImportKind {
    Host(HostImport),
    /// `latchgate:io/types`: type definitions only, no functions.
    TypesOnly,
}

/// Maps a component import name (`latchgate:io/http@0.1.0`) to the capability it needs.
pub(crate) fn import_for_name(name: &str) -> Option<ImportKind> {
    let unversioned = name.split('@').next().unwrap_or(name);
    match unversioned {
        "latchgate:io/http" => Some(ImportKind::Host(HostImport::Http)),
        "latchgate:io/log" => Some(ImportKind::Host(HostImport::Log)),
        "latchgate:io/fs" => Some(ImportKind::Host(HostImport::Fs)),
        "latchgate:io/types" => Some(ImportKind::TypesOnly),
        _ => None,
    }
}

pub(crate) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    latchgate::io::types::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    latchgate::io::http::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    latchgate::io::log::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    latchgate::io::fs::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    Ok(())
}

impl latchgate::io::types::Host for CallState {}
