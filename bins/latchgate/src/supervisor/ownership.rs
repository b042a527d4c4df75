//! Started as root, the supervisor makes sure each process's user exists and
//! owns exactly the paths that process writes: the broker its state dir, the
//! signer its key dir and the SOPS secrets and age key files (the files only:
//! their directories must let the signer's user through, which `latchgate
//! secrets init` arranges by putting them in the key dir); the admin socket
//! belongs to the operators group.

use super::SupervisorError;
use latchgate_core::config::LoadedConfig;
use latchgate_core::confine::{ProcessIdentity, ensure_system_users};
use latchgate_core::role::Role;
use nix::unistd::{Gid, Uid, chown};
use std::path::Path;

pub fn prepare(cfg: &LoadedConfig) -> Result<(), SupervisorError> {
    let users = ensure_system_users()?;
    let owner =
        |role: Role| users.identity(role).ok_or_else(|| std::io::Error::other(format!("no system user for {role}")));
    chown_tree(&cfg.state_dir(), owner(Role::Broker)?)?;
    chown_tree(&cfg.key_dir(), owner(Role::Signer)?)?;
    if let Some((secrets_file, key_file)) = cfg.secrets_files() {
        for file in [secrets_file, key_file] {
            // Missing files are the signer's error to report (with the fix), not ours.
            if std::fs::symlink_metadata(&file).is_ok_and(|m| m.is_file()) {
                chown_tree(&file, owner(Role::Signer)?)?;
            }
        }
    }
    chown(&cfg.admin_socket(), None, Some(Gid::from_raw(users.operators_gid))).map_err(std::io::Error::from)?;
    Ok(())
}

/// `chown -R` without following symlinks out of the tree.
fn chown_tree(path: &Path, id: ProcessIdentity) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        path,
        Some(Uid::from_raw(id.uid)),
        Some(Gid::from_raw(id.gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(std::io::Error::from)?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), id)?;
        }
    }
    Ok(())
}
