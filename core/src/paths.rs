//! Default locations, following API.md: sockets under `$XDG_RUNTIME_DIR/latchgate`
//! or `/tmp/latchgate-<uid>`.

use std::path::{Path, PathBuf};

pub const CLIENT_SOCKET_NAME: &str = "gate.sock";
pub const ADMIN_SOCKET_NAME: &str = "gate-admin.sock";
pub const IPC_DIR_NAME: &str = "ipc";

/// Set by the supervisor for its children: the runtime directory it resolved
/// for itself. A child has already switched to its own uid, so resolving
/// `/tmp/latchgate-<uid>` again would name another directory.
pub const RUNTIME_DIR_ENV: &str = "LATCHGATE_RUNTIME_DIR";

/// The runtime directory for sockets when the config names none.
pub fn default_runtime_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(RUNTIME_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => Path::new(&dir).join("latchgate"),
        _ => PathBuf::from(format!("/tmp/latchgate-{}", nix::unistd::getuid().as_raw())),
    }
}

/// Resolve a config path relative to the directory holding the config file.
pub fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() { p.to_path_buf() } else { base.join(p) }
}

/// Bind a listening Unix stream socket at `path` with file `mode`, replacing a
/// stale socket file but never any other kind of file. Used by the supervisor
/// (which holds the sockets across front restarts) and by a standalone front.
pub fn bind_unix_listener(path: &Path, mode: u32) -> std::io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket; refusing to remove it", path.display()),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = std::os::unix::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(listener)
}
