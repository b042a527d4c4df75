//! Running the `latchgate` operator CLI of this build from a test.

use std::path::Path;
use std::process::{Command, Output};

/// `latchgate --config <config> <args…>`; returns the finished process.
pub fn latchgate(config: &Path, args: &[&str]) -> Output {
    Command::new(crate::bin_dir().join("latchgate"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run the latchgate CLI")
}

/// The CLI's stdout as JSON (for `--json` commands); panics with both streams otherwise.
pub fn json_of(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}); status {}\nstdout: {}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Both streams, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
