//! `latchgate`: the supervisor (`up`, `serve`) and the operator CLI.
#![forbid(unsafe_code)]

mod commands;
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
    /// Egress proxy tooling (Squid config from the manifests).
    Egress {
        #[command(subcommand)]
        command: commands::egress::EgressCommand,
    },
    /// Query the evidence ledger's audit events (read-only; works while the gate runs).
    Audit(commands::audit::AuditArgs),
    /// Verify the evidence ledger: hash chain, every row, every receipt signature (exit 2 on any break).
    Verify(commands::verify::VerifyArgs),
    /// Receipt tools: offline verification of one receipt.
    Receipt {
        #[command(subcommand)]
        command: commands::receipt::ReceiptCommand,
    },
    /// Per-principal ACL in <policies_dir>/data.json (the running gate reloads it).
    Policy {
        #[command(subcommand)]
        command: commands::policy::PolicyCommand,
    },
    /// SOPS secrets the signer releases per grant (values never on argv, never in logs).
    Secrets {
        #[command(subcommand)]
        command: commands::secrets::SecretsCommand,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap's own exit status for a usage error is 2, which `verify` and
            // `receipt verify` reserve for "checked and not intact".
            let _ = e.print();
            return if e.use_stderr() { ExitCode::FAILURE } else { ExitCode::SUCCESS };
        }
    };
    latchgate_core::logging::init(Role::Supervisor);
    match cli.command {
        Command::Up => supervise(&cli.config, true),
        Command::Serve => supervise(&cli.config, false),
        Command::Egress { command } => commands::egress::run(&cli.config, command),
        Command::Audit(args) => commands::audit::run(&cli.config, args),
        Command::Verify(args) => commands::verify::run(&cli.config, args),
        Command::Receipt { command } => commands::receipt::run(command),
        Command::Policy { command } => commands::policy::run(&cli.config, command),
        Command::Secrets { command } => commands::secrets::run(&cli.config, command),
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
