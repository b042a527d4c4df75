//! Starting one child: its binary, `--config`, and exactly the fds it needs
//! mapped to fixed numbers (3 = control, then its channels), named in
//! `LATCHGATE_FDS`. The child gets its own process group so a terminal's
//! Ctrl-C reaches only the supervisor, which then stops children in order.

use super::wiring::{ChildFds, pair};
use command_fds::{CommandFdExt, FdMapping};
use latchgate_core::role::Role;
use latchgate_ipc::control::ControlSocket;
use latchgate_ipc::inherit::FDS_ENV;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

/// Fd number of the control socket in every child.
const CONTROL_FD: i32 = 3;

pub struct Spawned {
    pub child: tokio::process::Child,
    pub pid: u32,
    pub control: Arc<ControlSocket>,
}

pub fn spawn(role: Role, bin_dir: &Path, config: &Path, fds: ChildFds) -> std::io::Result<Spawned> {
    let (ours, theirs) = pair()?;
    let binary = bin_dir.join(role.binary_name());
    let mut command = tokio::process::Command::new(&binary);
    command.arg("--config").arg(config).stdin(Stdio::null()).kill_on_drop(true).process_group(0);

    let mut mappings = vec![FdMapping { parent_fd: theirs, child_fd: CONTROL_FD }];
    let mut spec = vec![format!("control={CONTROL_FD}")];
    for (index, (name, fd)) in fds.named.into_iter().enumerate() {
        let child_fd = CONTROL_FD + 1 + index as i32;
        spec.push(format!("{name}={child_fd}"));
        mappings.push(FdMapping { parent_fd: fd, child_fd });
    }
    command.env(FDS_ENV, spec.join(","));
    // The children run under other uids: they must not re-derive the default
    // `/tmp/latchgate-<uid>` runtime dir on their own.
    command.env(latchgate_core::paths::RUNTIME_DIR_ENV, latchgate_core::paths::default_runtime_dir());
    command.fd_mappings(mappings).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    let child = command
        .spawn()
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot start {}: {e}", binary.display())))?;
    // Dropping `command` closes our copies of the child's ends.
    drop(command);
    let pid = child.id().unwrap_or(0);
    let control = Arc::new(ControlSocket::new(latchgate_ipc::frame::adopt(ours)?));
    Ok(Spawned { child, pid, control })
}
