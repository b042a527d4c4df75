//! `latchgate`: the supervisor (`up`, `serve`) and the operator CLI.
#![forbid(unsafe_code)]

mod commands;
mod safety;
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
    /// Who talks to the admin socket (commands that use it).
    #[command(flatten)]
    operator: commands::admin_client::OperatorArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the gate in embedded mode (SQLite + embedded Rego); writes a default config on first run.
    Up,
    /// Start the gate from an explicit production config.
    Serve,
    /// Check this host and config: production safety, keys, Redis, OPA, egress proxy, manifests, kernel, ledger.
    Doctor(commands::doctor::DoctorArgs),
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
    /// Per-principal ACL in <policies_dir>/data.json (through the admin socket; --offline edits the file).
    Policy {
        #[command(subcommand)]
        command: commands::policy::PolicyCommand,
    },
    /// The gate's health: processes and their confinement, dependencies, counters.
    Status(commands::status::StatusArgs),
    /// The gate's Prometheus metrics (GET /metrics on the admin socket); --json parses them.
    Metrics(commands::metrics::MetricsArgs),
    /// Registered actions and their trust, or one action in detail.
    Actions(commands::actions::ActionsArgs),
    /// Held calls waiting for an operator: list, show, approve, deny.
    Approvals {
        #[command(subcommand)]
        command: commands::approvals::ApprovalsCommand,
    },
    /// Kill switch: revoke every lease and grant issued so far (asks first unless -y).
    Revoke(commands::operations::RevokeArgs),
    /// Receipts from the gate: fetch one, or fetch and verify it against the gate's receipt keys.
    Receipts {
        #[command(subcommand)]
        command: commands::receipts::ReceiptsCommand,
    },
    /// Dispatched calls whose outcome is unknown (unresolved execution intents).
    Intents(commands::operations::JsonArgs),
    /// Refuse new executions (503 draining) while in-flight ones finish; --resume lifts it.
    Drain(commands::operations::DrainArgs),
    /// Load manifests and policy data again.
    Reload(commands::operations::JsonArgs),
    /// latchgate.toml: validate, read and write keys, add principals and operators, test a webhook.
    Config {
        #[command(subcommand)]
        command: commands::config_cmd::ConfigCommand,
    },
    /// Install the gate as systemd units rendered for this config (--systemd [--prefix DIR] [--dry-run]).
    Install(commands::install::InstallArgs),
    /// Evidence ledger operations: online backup.
    Ledger {
        #[command(subcommand)]
        command: commands::ledger::LedgerCommand,
    },
    /// Webhook outbox: list, dead-letters, replay ID.
    Webhooks {
        #[command(subcommand)]
        command: commands::webhooks::WebhooksCommand,
    },
    /// The signer's keys: init, list, rotate receipt|grant|lease.
    Keys {
        #[command(subcommand)]
        command: commands::keys::KeysCommand,
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
        Command::Doctor(args) => commands::doctor::run(&cli.config, args),
        Command::Egress { command } => commands::egress::run(&cli.config, &cli.operator, command),
        Command::Audit(args) => commands::audit::run(&cli.config, &cli.operator, args),
        Command::Verify(args) => commands::verify::run(&cli.config, &cli.operator, args),
        Command::Receipt { command } => commands::receipt::run(command),
        Command::Policy { command } => commands::policy::run(&cli.config, &cli.operator, command),
        Command::Status(args) => commands::status::run(&cli.config, &cli.operator, args),
        Command::Metrics(args) => commands::metrics::run(&cli.config, &cli.operator, args),
        Command::Actions(args) => commands::actions::run(&cli.config, &cli.operator, args),
        Command::Approvals { command } => commands::approvals::run(&cli.config, &cli.operator, command),
        Command::Revoke(args) => commands::operations::revoke(&cli.config, &cli.operator, args),
        Command::Receipts { command } => commands::receipts::run(&cli.config, &cli.operator, command),
        Command::Intents(args) => commands::operations::intents(&cli.config, &cli.operator, args),
        Command::Drain(args) => commands::operations::drain(&cli.config, &cli.operator, args),
        Command::Reload(args) => commands::operations::reload(&cli.config, &cli.operator, args),
        Command::Config { command } => commands::config_cmd::run(&cli.config, command),
        Command::Keys { command } => commands::keys::run(&cli.config, command),
        Command::Ledger { command } => commands::ledger::run(&cli.config, command),
        Command::Install(args) => commands::install::run(&cli.config, args),
        Command::Webhooks { command } => commands::webhooks::run(&cli.config, command),
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
    if !first_run_allowed && safety::check_serve(&cfg).is_err() {
        return ExitCode::FAILURE;
    }
    if first_run_allowed && cfg.config.mode == Mode::Production {
        tracing::warn!(
            "mode = \"production\" under `latchgate up`: the production-safety checks of `latchgate serve` are skipped"
        );
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
