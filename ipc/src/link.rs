//! Where a process's channels come from, and how they heal.
//!
//! Supervised (`latchgate up`): each channel end is an inherited socketpair fd;
//! when a peer is restarted the supervisor sends the new end over the control
//! socket and the link swaps it in. Standalone (systemd units): servers listen
//! on named sockets in the ipc directory, clients connect (with backoff) and
//! both sides check the other's `SO_PEERCRED` uid. After a connection exists,
//! both modes run the same code.

use crate::channel::{Channel, ChannelKind};
use crate::control::ControlSocket;
use crate::error::IpcError;
use crate::inherit::InheritedFds;
use crate::messages::control::ControlMessage;
use crate::peer::check_peer_uid;
use crate::rpc::{RpcClient, serve};
use latchgate_core::role::Role;
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_seqpacket::{UnixSeqpacket, UnixSeqpacketListener};

/// Sockets for one channel end, as they become available.
pub enum Source {
    Supervised(mpsc::UnboundedReceiver<UnixSeqpacket>),
    /// Standalone client end: connect to the server's named socket.
    Named {
        path: PathBuf,
        expected_uid: u32,
    },
    /// Standalone server end: bound during set-up, before the process seals itself.
    Listening {
        listener: UnixSeqpacketListener,
        expected_uid: u32,
    },
}

/// Backoff between connection attempts to a named socket.
const RECONNECT_MIN: Duration = Duration::from_millis(20);
const RECONNECT_MAX: Duration = Duration::from_millis(500);

/// A self-healing client end of a channel.
pub struct ClientLink<C: Channel> {
    current: Arc<RwLock<Option<RpcClient<C>>>>,
    up: watch::Receiver<bool>,
}

impl<C: Channel> Clone for ClientLink<C> {
    fn clone(&self) -> Self {
        ClientLink { current: self.current.clone(), up: self.up.clone() }
    }
}

impl<C: Channel> ClientLink<C> {
    pub fn spawn(source: Source) -> Self {
        let current = Arc::new(RwLock::new(None));
        let (up_tx, up) = watch::channel(false);
        tokio::spawn(maintain::<C>(source, current.clone(), up_tx));
        ClientLink { current, up }
    }

    fn client(&self) -> Option<RpcClient<C>> {
        let guard = self.current.read().ok()?;
        guard.as_ref().filter(|c| !c.is_closed()).cloned()
    }

    pub fn is_up(&self) -> bool {
        self.client().is_some()
    }

    /// Wait until the channel is up, at most `timeout`.
    pub async fn wait_up(&self, timeout: Duration) -> bool {
        let mut up = self.up.clone();
        tokio::time::timeout(timeout, up.wait_for(|u| *u)).await.is_ok_and(|r| r.is_ok())
    }

    /// Call the peer; fails at once with `Closed` while the peer is down.
    pub async fn call(&self, request: C::Request, timeout: Duration) -> Result<C::Reply, IpcError> {
        let client = self.client().ok_or(IpcError::Closed)?;
        client.call(request, timeout).await
    }
}

async fn maintain<C: Channel>(mut source: Source, current: Arc<RwLock<Option<RpcClient<C>>>>, up: watch::Sender<bool>) {
    let mut backoff = RECONNECT_MIN;
    let mut arrived: Option<UnixSeqpacket> = None;
    loop {
        let sock = match (arrived.take(), &mut source) {
            (Some(sock), _) => sock,
            (None, source) => match source {
                Source::Supervised(rx) => match rx.recv().await {
                    Some(sock) => sock,
                    None => return,
                },
                Source::Listening { .. } => {
                    tracing::error!(channel = %C::KIND, "a client link was given a listening socket");
                    return;
                }
                Source::Named { path, expected_uid } => match UnixSeqpacket::connect(&*path).await {
                    Ok(sock) => match check_peer_uid(&sock, *expected_uid) {
                        Ok(()) => sock,
                        Err(e) => {
                            tracing::error!(channel = %C::KIND, code = e.code(), error = %e, path = %path.display(), "refusing server");
                            tokio::time::sleep(RECONNECT_MAX).await;
                            continue;
                        }
                    },
                    Err(_) => {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(RECONNECT_MAX);
                        continue;
                    }
                },
            },
        };
        let client = match RpcClient::<C>::connect(sock).await {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(channel = %C::KIND, code = e.code(), error = %e, "handshake failed");
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        backoff = RECONNECT_MIN;
        tracing::info!(channel = %C::KIND, "channel up");
        if let Ok(mut slot) = current.write()
            && let Some(old) = slot.replace(client.clone())
        {
            old.close();
        }
        let _ = up.send(true);
        match &mut source {
            // A replacement may arrive before we notice the old end died: take whichever comes first.
            Source::Supervised(rx) => {
                tokio::select! {
                    _ = client.closed() => {}
                    next = rx.recv() => match next {
                        Some(sock) => {
                            let _ = up.send(false);
                            arrived = Some(sock);
                            continue;
                        }
                        None => return,
                    },
                }
            }
            Source::Named { .. } | Source::Listening { .. } => client.closed().await,
        }
        let _ = up.send(false);
        tracing::warn!(channel = %C::KIND, "channel down");
    }
}

/// Serve every connection of a channel with `handler` for as long as the process lives.
pub async fn serve_link<C, H, F>(source: Source, handler: H)
where
    C: Channel,
    H: Fn(C::Request) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = C::Reply> + Send + 'static,
{
    match source {
        Source::Supervised(mut rx) => {
            while let Some(sock) = rx.recv().await {
                tokio::spawn(serve::<C, _, _>(sock, handler.clone()));
            }
        }
        Source::Named { path, .. } => {
            tracing::error!(channel = %C::KIND, path = %path.display(), "a server link was given a socket to connect to");
        }
        Source::Listening { mut listener, expected_uid } => loop {
            match listener.accept().await {
                Ok(sock) => match check_peer_uid(&sock, expected_uid) {
                    Ok(()) => {
                        tokio::spawn(serve::<C, _, _>(sock, handler.clone()));
                    }
                    Err(e) => {
                        tracing::warn!(channel = %C::KIND, code = e.code(), error = %e, "refusing client");
                    }
                },
                Err(e) => {
                    tracing::warn!(channel = %C::KIND, error = %e, "accept failed");
                    tokio::time::sleep(RECONNECT_MIN).await;
                }
            }
        },
    }
}

/// Bind a named seqpacket socket, replacing a stale one. The file mode lets
/// peers of other uids connect: who may talk is decided by `SO_PEERCRED`.
fn bind_named(path: &std::path::Path) -> std::io::Result<UnixSeqpacketListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixSeqpacketListener::bind(path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(listener)
}

/// How a child process finds its channels: inherited fds plus a control socket
/// (supervised), or named sockets in `ipc_dir` (standalone).
pub struct Endpoints {
    role: Role,
    supervised: Option<Supervised>,
    ipc_dir: PathBuf,
    expected_uids: HashMap<Role, u32>,
}

struct Supervised {
    fds: InheritedFds,
    control: Arc<ControlSocket>,
    routes: HashMap<ChannelKind, mpsc::UnboundedSender<UnixSeqpacket>>,
}

/// Handle to the supervisor, when there is one.
#[derive(Clone)]
pub struct ControlHandle {
    control: Option<Arc<ControlSocket>>,
    shutdown: watch::Receiver<bool>,
    /// Standalone: nobody else holds the sender, and a dropped sender would read as "shut down".
    _standalone: Option<Arc<watch::Sender<bool>>>,
}

impl ControlHandle {
    /// Tell the supervisor set-up is done. A no-op in standalone mode.
    pub async fn ready(&self, status: crate::messages::status::ProcessStatus) -> Result<(), IpcError> {
        match &self.control {
            Some(c) => c.send(&ControlMessage::Ready(status), None).await,
            None => Ok(()),
        }
    }

    /// Resolves when the supervisor asks for shutdown or disappears.
    pub async fn shutdown_requested(&self) {
        let mut rx = self.shutdown.clone();
        let _ = rx.wait_for(|s| *s).await;
    }

    pub fn is_supervised(&self) -> bool {
        self.control.is_some()
    }
}

impl Endpoints {
    /// Supervised when `LATCHGATE_FDS` is set, standalone otherwise.
    pub fn from_env(role: Role, ipc_dir: PathBuf, expected_uids: HashMap<Role, u32>) -> Result<Self, IpcError> {
        let supervised = match InheritedFds::from_env()? {
            Some(mut fds) => {
                let control = fds
                    .take_seqpacket("control")?
                    .ok_or_else(|| IpcError::FdPassing("supervised child started without a control fd".into()))?;
                let control = Arc::new(ControlSocket::new(crate::frame::adopt(control)?));
                Some(Supervised { fds, control, routes: HashMap::new() })
            }
            None => None,
        };
        Ok(Endpoints { role, supervised, ipc_dir, expected_uids })
    }

    /// Endpoints of `role` as configured: ipc dir and expected peer uids from `cfg`.
    pub fn for_process(role: Role, cfg: &latchgate_core::config::LoadedConfig) -> Result<Self, IpcError> {
        let uids = [Role::Front, Role::Broker, Role::Executor, Role::Signer]
            .into_iter()
            .map(|r| (r, cfg.expected_peer_uid(r)))
            .collect();
        Self::from_env(role, cfg.ipc_dir(), uids)
    }

    pub fn is_supervised(&self) -> bool {
        self.supervised.is_some()
    }

    /// The source of sockets for our end of `kind`.
    pub fn source(&mut self, kind: ChannelKind) -> Result<Source, IpcError> {
        let peer = if kind.client() == self.role { kind.server() } else { kind.client() };
        match &mut self.supervised {
            Some(sup) => {
                let (tx, rx) = mpsc::unbounded_channel();
                let initial = sup
                    .fds
                    .take_seqpacket(kind.name())?
                    .ok_or_else(|| IpcError::FdPassing(format!("no inherited fd for channel {kind}")))?;
                let _ = tx.send(crate::frame::adopt(initial)?);
                sup.routes.insert(kind, tx);
                Ok(Source::Supervised(rx))
            }
            None => {
                let path = kind.socket_path(&self.ipc_dir);
                let expected_uid =
                    self.expected_uids.get(&peer).copied().unwrap_or_else(|| nix::unistd::geteuid().as_raw());
                if kind.server() == self.role {
                    let listener = bind_named(&path)?;
                    Ok(Source::Listening { listener, expected_uid })
                } else {
                    Ok(Source::Named { path, expected_uid })
                }
            }
        }
    }

    /// Take an inherited listening socket (front only); `None` when standalone.
    pub fn take_listener(&mut self, name: &str) -> Result<Option<std::os::fd::OwnedFd>, IpcError> {
        match &mut self.supervised {
            Some(sup) => sup.fds.take_listener(name),
            None => Ok(None),
        }
    }

    /// Start routing control messages; call after every `source()`.
    pub fn start(self) -> ControlHandle {
        let (shutdown_tx, shutdown) = watch::channel(false);
        let Some(sup) = self.supervised else {
            return ControlHandle { control: None, shutdown, _standalone: Some(Arc::new(shutdown_tx)) };
        };
        let control = sup.control.clone();
        let reader = sup.control;
        let routes = sup.routes;
        tokio::spawn(async move {
            loop {
                match reader.recv().await {
                    Ok(Some((ControlMessage::ReplacePeer { channel }, Some(fd)))) => {
                        match (routes.get(&channel), crate::frame::adopt(fd)) {
                            (Some(route), Ok(sock)) => {
                                tracing::info!(channel = %channel, "peer replaced by supervisor");
                                let _ = route.send(sock);
                            }
                            _ => {
                                tracing::warn!(channel = %channel, "replacement for a channel this process does not use")
                            }
                        }
                    }
                    Ok(Some((ControlMessage::Shutdown, _))) => {
                        let _ = shutdown_tx.send(true);
                    }
                    Ok(Some((other, _))) => tracing::warn!(message = ?other, "unexpected control message"),
                    Ok(None) => {
                        tracing::warn!("supervisor gone; shutting down");
                        let _ = shutdown_tx.send(true);
                        return;
                    }
                    Err(e) => {
                        tracing::error!(code = e.code(), error = %e, "control channel failed; shutting down");
                        let _ = shutdown_tx.send(true);
                        return;
                    }
                }
            }
        });
        ControlHandle { control: Some(control), shutdown, _standalone: None }
    }
}

/// Wait for SIGTERM, SIGINT, or the supervisor's shutdown request.
pub async fn wait_for_shutdown(control: &ControlHandle) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; relying on the supervisor");
        control.shutdown_requested().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
        _ = control.shutdown_requested() => tracing::info!("shutdown requested"),
    }
}
