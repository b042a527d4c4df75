//! `latchgate:io/log`: provider messages go to the executor's log, tagged with
//! the action, truncated and capped per call so that a provider cannot flood it.
//! Log lines are not io calls (they leave the sandbox only as local log records).

use super::CallState;
use super::latchgate::io::log::{Host, Level};
use crate::task::FailureClass;
use latchgate_core::action::HostImport;

const MAX_LINES_PER_CALL: u32 = 64;
const MAX_LINE_CHARS: usize = 1024;

impl Host for CallState {
    fn write(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        if !self.declared.contains(&HostImport::Log) {
            return Err(self.violate(FailureClass::ImportDenied, "Log not in required_imports".into()));
        }
        self.log_lines = self.log_lines.saturating_add(1);
        if self.log_lines > MAX_LINES_PER_CALL {
            return Ok(());
        }
        let message: String = message.chars().take(MAX_LINE_CHARS).collect();
        let action = self.action_id.as_str();
        match level {
            Level::Debug => tracing::debug!(target: "provider", action, "{message}"),
            Level::Info => tracing::info!(target: "provider", action, "{message}"),
            Level::Warn => tracing::warn!(target: "provider", action, "{message}"),
            Level::Error => tracing::error!(target: "provider", action, "{message}"),
        }
        Ok(())
    }
}
