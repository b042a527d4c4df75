//! latchgate-front: the only process that parses HTTP. It owns both Unix
//! sockets, captures each connection's `SO_PEERCRED`, enforces size and time
//! limits, and hands typed requests to the broker.
#![forbid(unsafe_code)]

mod admin_routes;
mod auth;
mod listen;
mod reply;
mod routes;
mod server;

use latchgate_core::confine::Sealer;
use latchgate_core::process;
use latchgate_core::role::Role;
use latchgate_ipc::link::{ClientLink, Endpoints};
use latchgate_ipc::messages::status::ProcessStatus;
use latchgate_ipc::{ChannelKind, FrontBroker};
use std::sync::Arc;

const ROLE: Role = Role::Front;

fn main() {
    process::run_child(ROLE, FrontError::code, |_, _| Ok(()), run);
}

#[derive(Debug, thiserror::Error)]
enum FrontError {
    #[error(transparent)]
    Ipc(#[from] latchgate_ipc::IpcError),
    #[error(transparent)]
    Confine(#[from] latchgate_core::confine::ConfineError),
    #[error("invalid config: {0}")]
    Config(String),
    #[error("cannot listen on {path}: {source}")]
    Listen { path: std::path::PathBuf, source: std::io::Error },
}

impl FrontError {
    fn code(&self) -> &'static str {
        match self {
            FrontError::Ipc(e) => e.code(),
            FrontError::Confine(e) => e.code(),
            FrontError::Listen { .. } => "listen_failed",
            FrontError::Config(_) => "config_invalid",
        }
    }
}

/// What every request handler can reach.
pub struct FrontState {
    pub cfg: latchgate_core::config::LoadedConfig,
    pub broker: ClientLink<FrontBroker>,
    /// Lease verification keys, fetched through the broker (which has them from the signer).
    pub lease_keys: latchgate_core::refresh_cache::RefreshingCache<latchgate_core::jose::LeaseVerifier>,
    pub dpop: latchgate_core::jose::DpopVerifier,
    /// What the kernel enforces on the front itself.
    pub confinement: latchgate_core::confine::ConfinementReport,
    /// Requests being handled now (not idle keep-alive connections).
    pub requests_in_progress: std::sync::atomic::AtomicUsize,
}

/// On shutdown, how long requests already being handled get to be answered.
/// The broker stops first (draining executions), so what is left here is
/// writing answers already decided.
const ANSWER_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

async fn run(cfg: latchgate_core::config::LoadedConfig, sealer: Sealer, (): ()) -> Result<(), FrontError> {
    let mut endpoints = Endpoints::for_process(ROLE, &cfg)?;
    let broker = ClientLink::spawn(endpoints.source(ChannelKind::FrontBroker)?);
    let client_listener = listen::client_socket(&mut endpoints, &cfg)?;
    let admin_listener = listen::admin_socket(&mut endpoints, &cfg)?;
    let control = endpoints.start();
    let confinement = sealer.restrict_syscalls()?;
    tracing::info!(confinement = %confinement.summary(), "sealed");

    let dpop = latchgate_core::jose::DpopVerifier::new(&cfg.config.public_base_url)
        .map_err(|e| FrontError::Config(e.to_string()))?;
    let lease_keys = latchgate_core::refresh_cache::RefreshingCache::new(std::time::Duration::from_secs(1));
    let state = Arc::new(FrontState {
        cfg,
        broker,
        lease_keys,
        dpop,
        confinement: confinement.clone(),
        requests_in_progress: Default::default(),
    });
    tokio::spawn(server::serve(client_listener, server::Plane::Client, state.clone()));
    tokio::spawn(server::serve(admin_listener, server::Plane::Admin, state.clone()));

    control.ready(ProcessStatus::current(ROLE, true, Some(confinement))).await?;
    tracing::info!(client = %state.cfg.client_socket().display(), admin = %state.cfg.admin_socket().display(), "front ready");
    latchgate_ipc::link::wait_for_shutdown(&control).await;
    tracing::info!("front stopping");
    let deadline = tokio::time::Instant::now() + ANSWER_GRACE;
    while state.requests_in_progress.load(std::sync::atomic::Ordering::SeqCst) > 0
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Ok(())
}
