//! What a child process's main loop can fail with: start-up (config,
//! confinement) or its channels.

use crate::error::IpcError;
use latchgate_core::confine::ConfineError;
use latchgate_core::process::StartError;

#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Ipc(#[from] IpcError),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    /// A process-specific start-up step failed (key store, runtime, ledger…).
    #[error("{message}")]
    Setup { code: &'static str, message: String },
}

impl From<ConfineError> for ChildError {
    fn from(e: ConfineError) -> Self {
        ChildError::Start(StartError::Confine(e))
    }
}

impl ChildError {
    /// A start-up failure with its own stable code.
    pub fn setup(code: &'static str, error: impl std::fmt::Display) -> Self {
        ChildError::Setup { code, message: error.to_string() }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ChildError::Start(e) => e.code(),
            ChildError::Ipc(e) => e.code(),
            ChildError::Io { .. } => "io_error",
            ChildError::Setup { code, .. } => code,
        }
    }
}
