//! Default locations, following API.md: sockets under `$XDG_RUNTIME_DIR/latchgate`
//! or `/tmp/latchgate-<uid>`.

use std::path::{Path, PathBuf};

pub const CLIENT_SOCKET_NAME: &str = "gate.sock";
pub const ADMIN_SOCKET_NAME: &str = "gate-admin.sock";
pub const IPC_DIR_NAME: &str = "ipc";

/// The runtime directory for sockets when the config names none.
pub fn default_runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => Path::new(&dir).join("latchgate"),
        _ => PathBuf::from(format!("/tmp/latchgate-{}", nix::unistd::getuid().as_raw())),
    }
}

/// Resolve a config path relative to the directory holding the config file.
pub fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() { p.to_path_buf() } else { base.join(p) }
}

/// Named SOCK_SEQPACKET socket of a server role in standalone mode.
pub fn ipc_socket(ipc_dir: &Path, server: crate::role::Role) -> PathBuf {
    ipc_dir.join(format!("{}.sock", server.as_str()))
}
