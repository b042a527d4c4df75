//! The two HTTP sockets: inherited from the supervisor (so they outlive a
//! front restart: clients wait in the backlog instead of being refused), or
//! bound here in standalone mode.

use crate::FrontError;
use latchgate_core::config::LoadedConfig;
use latchgate_ipc::link::Endpoints;
use std::path::Path;
use tokio::net::UnixListener;

/// Names of the inherited listening fds (see the supervisor's wiring).
pub const CLIENT_LISTENER_FD: &str = "client-listener";
pub const ADMIN_LISTENER_FD: &str = "admin-listener";

/// Agents of several uids must be able to connect: identity is `SO_PEERCRED`, not the file mode.
pub const CLIENT_SOCKET_MODE: u32 = 0o666;
/// Operators only (owner, and the operators group once it exists).
pub const ADMIN_SOCKET_MODE: u32 = 0o660;

pub fn client_socket(endpoints: &mut Endpoints, cfg: &LoadedConfig) -> Result<UnixListener, FrontError> {
    obtain(endpoints, CLIENT_LISTENER_FD, &cfg.client_socket(), CLIENT_SOCKET_MODE)
}

pub fn admin_socket(endpoints: &mut Endpoints, cfg: &LoadedConfig) -> Result<UnixListener, FrontError> {
    obtain(endpoints, ADMIN_LISTENER_FD, &cfg.admin_socket(), ADMIN_SOCKET_MODE)
}

fn obtain(endpoints: &mut Endpoints, fd_name: &str, path: &Path, mode: u32) -> Result<UnixListener, FrontError> {
    let listen_err = |source: std::io::Error| FrontError::Listen { path: path.to_path_buf(), source };
    if let Some(fd) = endpoints.take_listener(fd_name)? {
        let std_listener = std::os::unix::net::UnixListener::from(fd);
        std_listener.set_nonblocking(true).map_err(listen_err)?;
        return UnixListener::from_std(std_listener).map_err(listen_err);
    }
    let std_listener = latchgate_core::paths::bind_unix_listener(path, mode).map_err(listen_err)?;
    std_listener.set_nonblocking(true).map_err(listen_err)?;
    UnixListener::from_std(std_listener).map_err(listen_err)
}
