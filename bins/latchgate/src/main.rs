//! `latchgate`: the supervisor (`up`, `serve`) and the operator CLI.
#![forbid(unsafe_code)]

mod supervisor;

use clap::{Parser, Subcommand};
use latchgate_core::config::{LoadedConfig, Mode};
use latchgate_core::role::Role;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "latchgate", version, about = "LatchGate: the execution gate between AI agents and the real world")]
struct Cli {
    /// Path to latchgate.toml.
    #[arg(long, global = true, env = "LATCHGATE_CONFIG", default_value = "latchgate.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the gate in embedded mode (SQLite + embedded Rego); writes a default config on first run.
    Up,
    /// Start the gate from an explicit production config.
    Serve,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    latchgate_core::logging::init(Role::Supervisor);
    match cli.command {
        Command::Up => supervise(&cli.config, true),
        Command::Serve => supervise(&cli.config, false),
    }
}

fn supervise(config: &std::path::Path, first_run_allowed: bool) -> ExitCode {
    if first_run_allowed {
        match supervisor::first_run::ensure_config(config) {
            Ok(true) => eprintln!("wrote default config {}", config.display()),
            Ok(false) => {}
            Err(e) => return fail(e.code(), &e),
        }
    }
    let cfg = match LoadedConfig::load(config) {
        Ok(cfg) => cfg,
        Err(e) => return fail(e.code(), &e),
    };
    if !first_run_allowed && cfg.config.mode != Mode::Production {
        eprintln!(
            "latchgate serve needs a production config (mode = \"production\"); use `latchgate up` for embedded mode"
        );
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail("runtime_start_failed", &e),
    };
    let result = runtime.block_on(async move { supervisor::Supervisor::new(cfg)?.run().await });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e.code(), &e),
    }
}

fn fail(code: &str, error: &dyn std::fmt::Display) -> ExitCode {
    tracing::error!(code, error = %error, "latchgate failed");
    eprintln!("latchgate: {error} [{code}]");
    ExitCode::FAILURE
}
