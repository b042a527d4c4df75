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
}

impl From<ConfineError> for ChildError {
    fn from(e: ConfineError) -> Self {
        ChildError::Start(StartError::Confine(e))
    }
}

impl ChildError {
    pub fn code(&self) -> &'static str {
        match self {
            ChildError::Start(e) => e.code(),
            ChildError::Ipc(e) => e.code(),
            ChildError::Io { .. } => "io_error",
        }
    }
}
