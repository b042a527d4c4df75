//! `latchgate up` / `latchgate serve`: start the four children with their
//! socketpairs, restart any that dies (its peers get the new channel ends over
//! their control sockets), and stop them in order on SIGTERM/SIGINT: the
//! broker first, which drains the executions in flight.
//!
//! While a child is down its peers see a closed channel and answer 503
//! `component_unavailable`: there is no fallback path around a missing process.

mod banner;
mod child;
pub mod first_run;
mod ownership;
mod wiring;

use latchgate_core::config::LoadedConfig;
use latchgate_core::role::Role;
use latchgate_ipc::control::ControlSocket;
use latchgate_ipc::messages::control::ControlMessage;
use latchgate_ipc::messages::status::ProcessStatus;
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use wiring::{ChildFds, channels_of, pair, peer_of};

/// A child that stayed up this long has its restart backoff reset.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// Order of shutdown (see `stop_all`).
const STOP_ORDER: [Role; 4] = [Role::Broker, Role::Front, Role::Executor, Role::Signer];
/// Time a draining broker gets beyond its in-flight grace to answer and exit.
const DRAIN_MARGIN: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("cannot bind {path}: {source}")]
    Bind { path: PathBuf, source: std::io::Error },
    #[error("{role} did not become ready: {why}")]
    StartFailed { role: Role, why: String },
    #[error(transparent)]
    FirstRun(#[from] first_run::FirstRunError),
    #[error(transparent)]
    Confine(#[from] latchgate_core::confine::ConfineError),
}

impl SupervisorError {
    pub fn code(&self) -> &'static str {
        match self {
            SupervisorError::Io(_) => "supervisor_io",
            SupervisorError::Bind { .. } => "listen_failed",
            SupervisorError::StartFailed { .. } => "child_start_failed",
            SupervisorError::FirstRun(e) => e.code(),
            SupervisorError::Confine(e) => e.code(),
        }
    }
}

enum Event {
    Ready { role: Role, generation: u64, status: ProcessStatus },
    Exited { role: Role, generation: u64, status: std::io::Result<ExitStatus> },
    RestartDue { role: Role },
}

struct Slot {
    generation: u64,
    pid: u32,
    control: Arc<ControlSocket>,
    alive: bool,
    ready: Option<ProcessStatus>,
    started: Instant,
    failures: u32,
}

pub struct Supervisor {
    cfg: LoadedConfig,
    bin_dir: PathBuf,
    client_listener: OwnedFd,
    admin_listener: OwnedFd,
    slots: HashMap<Role, Slot>,
    events_tx: mpsc::UnboundedSender<Event>,
    events: mpsc::UnboundedReceiver<Event>,
    next_generation: u64,
}

impl Supervisor {
    pub fn new(cfg: LoadedConfig) -> Result<Self, SupervisorError> {
        let bin_dir = std::env::current_exe()?
            .parent()
            .map(PathBuf::from)
            .ok_or_else(|| std::io::Error::other("cannot locate the latchgate binaries"))?;
        first_run::ensure_dir(&cfg.runtime_dir(), 0o755)?;
        first_run::ensure_dir(&cfg.state_dir(), 0o700)?;
        first_run::ensure_dir(&cfg.key_dir(), 0o700)?;
        let bind = |path: PathBuf, mode| {
            latchgate_core::paths::bind_unix_listener(&path, mode)
                .map(OwnedFd::from)
                .map_err(|source| SupervisorError::Bind { path, source })
        };
        let client_listener = bind(cfg.client_socket(), 0o666)?;
        let admin_listener = bind(cfg.admin_socket(), 0o660)?;
        if nix::unistd::geteuid().is_root() && cfg.config.supervisor.drop_privileges {
            ownership::prepare(&cfg)?;
        }
        let (events_tx, events) = mpsc::unbounded_channel();
        Ok(Supervisor {
            cfg,
            bin_dir,
            client_listener,
            admin_listener,
            slots: HashMap::new(),
            events_tx,
            events,
            next_generation: 1,
        })
    }

    /// Start everything, run until SIGTERM/SIGINT, stop everything.
    pub async fn run(mut self) -> Result<(), SupervisorError> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;

        let result = self.start_all().await;
        if let Err(e) = result {
            self.stop_all().await;
            self.remove_sockets();
            return Err(e);
        }
        banner::print(&self.cfg, &self.statuses());

        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
                _ = int.recv() => { tracing::info!("SIGINT: stopping"); break; }
                Some(event) = self.events.recv() => self.on_event(event).await,
            }
        }
        self.stop_all().await;
        self.remove_sockets();
        tracing::info!("stopped");
        Ok(())
    }

    async fn start_all(&mut self) -> Result<(), SupervisorError> {
        // One pair per channel; each end goes to the role on that side.
        let mut ends: HashMap<Role, ChildFds> = HashMap::new();
        for kind in latchgate_ipc::ChannelKind::ALL {
            let (client_end, server_end) = pair()?;
            ends.entry(kind.client()).or_default().add(kind.name(), client_end);
            ends.entry(kind.server()).or_default().add(kind.name(), server_end);
        }
        for role in Role::CHILDREN {
            let fds = ends.remove(&role).unwrap_or_default();
            self.spawn(role, fds)?;
            self.await_ready(role).await?;
        }
        Ok(())
    }

    fn spawn(&mut self, role: Role, mut fds: ChildFds) -> Result<(), SupervisorError> {
        if role == Role::Front {
            fds.add("client-listener", self.client_listener.try_clone()?);
            fds.add("admin-listener", self.admin_listener.try_clone()?);
        }
        let spawned = child::spawn(role, &self.bin_dir, &self.cfg.path, fds)?;
        let generation = self.next_generation;
        self.next_generation += 1;
        tracing::info!(%role, pid = spawned.pid, generation, "started");

        let events = self.events_tx.clone();
        let mut process = spawned.child;
        tokio::spawn(async move {
            let status = process.wait().await;
            let _ = events.send(Event::Exited { role, generation, status });
        });
        let events = self.events_tx.clone();
        let control = spawned.control.clone();
        tokio::spawn(async move {
            loop {
                match control.recv().await {
                    Ok(Some((ControlMessage::Ready(status), _))) => {
                        let _ = events.send(Event::Ready { role, generation, status });
                    }
                    Ok(Some((other, _))) => {
                        tracing::warn!(%role, message = ?other, "unexpected control message from child")
                    }
                    Ok(None) => return,
                    Err(e) => {
                        tracing::warn!(%role, code = e.code(), error = %e, "control channel to child failed");
                        return;
                    }
                }
            }
        });
        let failures = self.slots.get(&role).map_or(0, |s| s.failures);
        self.slots.insert(
            role,
            Slot {
                generation,
                pid: spawned.pid,
                control: spawned.control,
                alive: true,
                ready: None,
                started: Instant::now(),
                failures,
            },
        );
        Ok(())
    }

    /// During start-up, a child must report ready in time; if it dies first, start-up fails.
    async fn await_ready(&mut self, role: Role) -> Result<(), SupervisorError> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(self.cfg.config.supervisor.ready_timeout_ms);
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv()).await.map_err(|_| {
                SupervisorError::StartFailed { role, why: "timed out waiting for its ready message".into() }
            })?;
            match event {
                Some(Event::Exited { role: r, generation, status }) => {
                    // Dead already: the stop that follows must not wait its grace period for it.
                    if let Some(slot) = self.slots.get_mut(&r).filter(|s| s.generation == generation) {
                        slot.alive = false;
                    }
                    return Err(SupervisorError::StartFailed {
                        role: r,
                        why: format!("exited during start-up ({}); see its log above", describe(&status)),
                    });
                }
                Some(Event::Ready { role: r, generation, status }) => {
                    self.mark_ready(r, generation, status);
                    if r == role {
                        return Ok(());
                    }
                }
                Some(Event::RestartDue { .. }) | None => {}
            }
        }
    }

    fn mark_ready(&mut self, role: Role, generation: u64, status: ProcessStatus) {
        if let Some(slot) = self.slots.get_mut(&role).filter(|s| s.generation == generation) {
            tracing::info!(%role, pid = status.pid, "ready");
            slot.ready = Some(status);
        }
    }

    async fn on_event(&mut self, event: Event) {
        match event {
            Event::Ready { role, generation, status } => self.mark_ready(role, generation, status),
            Event::Exited { role, generation, status } => {
                let Some(slot) = self.slots.get_mut(&role).filter(|s| s.generation == generation) else {
                    return;
                };
                slot.alive = false;
                slot.ready = None;
                slot.failures = if slot.started.elapsed() >= STABLE_AFTER { 1 } else { slot.failures + 1 };
                let (failures, pid) = (slot.failures, slot.pid);
                let delay = self.restart_delay(failures);
                tracing::error!(%role, pid, status = %describe(&status), restart_in_ms = delay.as_millis() as u64,
                    "child died; its routes answer 503 component_unavailable until it is back");
                let events = self.events_tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = events.send(Event::RestartDue { role });
                });
            }
            Event::RestartDue { role } => {
                if let Err(e) = self.restart(role).await {
                    tracing::error!(%role, code = e.code(), error = %e, "restart failed; retrying");
                    let failures = self.slots.get(&role).map_or(1, |s| s.failures);
                    let delay = self.restart_delay(failures + 1);
                    let events = self.events_tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let _ = events.send(Event::RestartDue { role });
                    });
                }
            }
        }
    }

    fn restart_delay(&self, failures: u32) -> Duration {
        let s = &self.cfg.config.supervisor;
        let exp = failures.saturating_sub(1).min(16);
        Duration::from_millis(s.restart_initial_ms.saturating_mul(1 << exp).min(s.restart_max_ms))
    }

    /// New pairs for every channel of `role`; the peers get their new ends now.
    async fn restart(&mut self, role: Role) -> Result<(), SupervisorError> {
        let mut fds = ChildFds::default();
        for kind in channels_of(role) {
            let (client_end, server_end) = pair()?;
            let (ours, theirs) =
                if kind.client() == role { (client_end, server_end) } else { (server_end, client_end) };
            fds.add(kind.name(), ours);
            let peer = peer_of(kind, role);
            if let Some(slot) = self.slots.get(&peer).filter(|s| s.alive)
                && let Err(e) = slot.control.send(&ControlMessage::ReplacePeer { channel: kind }, Some(&theirs)).await
            {
                tracing::warn!(%peer, channel = %kind, code = e.code(), "could not hand over the new channel end");
            }
        }
        self.spawn(role, fds)
    }

    fn statuses(&self) -> Vec<(Role, u32, Option<ProcessStatus>)> {
        Role::CHILDREN.iter().filter_map(|r| self.slots.get(r).map(|s| (*r, s.pid, s.ready.clone()))).collect()
    }

    /// Broker first: it refuses new executions (503 `draining`) and waits up
    /// to `[shutdown] in_flight_grace_ms` for the ones in flight, while the
    /// front stays up to deliver their answers. Then the front, the executor,
    /// and the signer last (others may still need a signature).
    async fn stop_all(&mut self) {
        let s = &self.cfg.config;
        let grace = Duration::from_millis(s.supervisor.shutdown_grace_ms);
        let broker_grace = grace.max(Duration::from_millis(s.shutdown.in_flight_grace_ms) + DRAIN_MARGIN);
        for role in STOP_ORDER {
            let Some(slot) = self.slots.get(&role).filter(|s| s.alive) else { continue };
            let (pid, generation) = (slot.pid, slot.generation);
            let _ = slot.control.send(&ControlMessage::Shutdown, None).await;
            signal(pid, nix::sys::signal::Signal::SIGTERM);
            let limit = if role == Role::Broker { broker_grace } else { grace };
            if !self.wait_exit(role, generation, limit).await {
                tracing::warn!(%role, pid, "did not stop in time; killing");
                signal(pid, nix::sys::signal::Signal::SIGKILL);
                self.wait_exit(role, generation, Duration::from_secs(5)).await;
            }
        }
    }

    async fn wait_exit(&mut self, role: Role, generation: u64, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Event::Exited { role: r, generation: g, status })) => {
                    if let Some(slot) = self.slots.get_mut(&r).filter(|s| s.generation == g) {
                        slot.alive = false;
                        tracing::info!(role = %r, status = %describe(&status), "exited");
                    }
                    if r == role && g == generation {
                        return true;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return false,
            }
        }
    }

    fn remove_sockets(&self) {
        for path in [self.cfg.client_socket(), self.cfg.admin_socket()] {
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove socket");
            }
        }
    }
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

fn describe(status: &std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("wait failed: {e}"),
    }
}
