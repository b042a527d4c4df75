//! Start-up shared by the four child processes: arguments, config, logging and
//! the tokio runtime. Identity drop and confinement happen between loading the
//! config and starting the runtime (no threads exist yet), in the caller.

use crate::config::{ConfigError, LoadedConfig};
use crate::role::Role;
use std::path::PathBuf;

/// Every child takes the same arguments; the supervisor or the systemd unit passes them.
#[derive(Debug, clap::Parser)]
pub struct ChildArgs {
    /// Path to latchgate.toml.
    #[arg(long, env = "LATCHGATE_CONFIG", default_value = "latchgate.toml")]
    pub config: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Confine(#[from] crate::confine::ConfineError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

impl StartError {
    pub fn code(&self) -> &'static str {
        match self {
            StartError::Config(e) => e.code(),
            StartError::Confine(e) => e.code(),
            StartError::Runtime(_) => "runtime_start_failed",
        }
    }
}

/// Parse arguments, init logging, load config. Exits with status 2 on bad arguments.
pub fn load_child_config(role: Role) -> Result<LoadedConfig, StartError> {
    use clap::Parser;
    let args = ChildArgs::parse();
    crate::logging::init(role);
    let mut cfg = LoadedConfig::load(&args.config)?;
    cfg.resolve_peer_users()?;
    Ok(cfg)
}

/// The multi-threaded runtime every child runs on; started only after the
/// process dropped its identity, so every worker thread inherits the drop.
pub fn runtime(worker_threads: usize) -> Result<tokio::runtime::Runtime, StartError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads.max(1))
        .enable_all()
        .build()
        .map_err(StartError::Runtime)
}

/// Log a fatal start-up error with its code and exit non-zero.
pub fn exit_on_error<T, E: std::fmt::Display>(
    role: Role,
    result: Result<T, E>,
    code: impl Fn(&E) -> &'static str,
) -> T {
    match result {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(code = code(&e), error = %e, "{role} cannot start");
            eprintln!("latchgate-{role}: {e}");
            std::process::exit(1);
        }
    }
}

/// Set by the supervisor in every child it starts (the inherited fd map).
pub const SUPERVISED_ENV: &str = "LATCHGATE_FDS";

/// Step 1 of confinement, while the process has one thread: become the role's
/// system user (only when started as root by the supervisor, which prepared
/// the ownership of the paths), set `no_new_privs`, drop every capability.
/// Standalone processes are started by systemd under `User=` already.
pub fn drop_identity(role: Role, cfg: &LoadedConfig) -> Result<(), StartError> {
    let supervised = std::env::var_os(SUPERVISED_ENV).is_some();
    let target = if supervised && nix::unistd::geteuid().is_root() && cfg.config.supervisor.drop_privileges {
        crate::confine::find_system_users()?.and_then(|users| users.identity(role))
    } else {
        None
    };
    crate::confine::drop_identity(target)?;
    Ok(())
}

/// Step 2, still single-threaded: load both profiles and apply Landlock.
/// The returned sealer applies seccomp (all threads) once set-up is done.
pub fn restrict_paths(role: Role, inputs: &crate::confine::SealInputs) -> Result<crate::confine::Sealer, StartError> {
    let mut sealer = crate::confine::Sealer::prepare(role, inputs)?;
    sealer.restrict_filesystem_and_network()?;
    Ok(sealer)
}

/// The whole life of a child process: load the config, drop identity, run
/// `prepare` (still single-threaded and before Landlock: the signer creates its
/// keys there, a process may widen its seal inputs), restrict paths, then run
/// `body` on the runtime. Any failure exits non-zero with its stable code logged.
pub fn run_child<P, E, F, Fut>(
    role: Role,
    code: fn(&E) -> &'static str,
    prepare: impl FnOnce(&LoadedConfig, &mut crate::confine::SealInputs) -> Result<P, E>,
    body: F,
) where
    E: std::fmt::Display,
    F: FnOnce(LoadedConfig, crate::confine::Sealer, P) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
{
    let cfg = exit_on_error(role, load_child_config(role), StartError::code);
    exit_on_error(role, drop_identity(role, &cfg), StartError::code);
    let mut inputs = crate::confine::SealInputs::from_config(&cfg, cfg.sandbox_profiles_dir());
    let prepared = exit_on_error(role, prepare(&cfg, &mut inputs), code);
    #[cfg(feature = "escape-probe")]
    let probe = std::env::var_os(crate::confine::escape_probe::PROBE_DIR_ENV).map(|dir| {
        exit_on_error(role, crate::confine::escape_probe::bind(dir.as_ref(), role.as_str()), |_| "probe_bind_failed")
    });
    let sealer = exit_on_error(role, restrict_paths(role, &inputs), StartError::code);
    #[cfg(feature = "escape-probe")]
    if let Some(listener) = probe {
        tracing::warn!("TEST-ONLY escape probe listening");
        exit_on_error(role, crate::confine::escape_probe::spawn(listener), |_| "probe_spawn_failed");
    }
    let rt = exit_on_error(role, runtime(2), StartError::code);
    let result = rt.block_on(body(cfg, sealer, prepared));
    exit_on_error(role, result, code);
}
