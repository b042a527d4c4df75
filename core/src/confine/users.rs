//! The system users the four children run as, and the operators group that
//! may use the admin socket. Created with Debian's `useradd`/`groupadd` (the
//! tools that also keep `/etc/shadow`, `/etc/gshadow` and nscd consistent)
//! rather than by editing the account files ourselves.

use super::error::ConfineError;
use super::identity::ProcessIdentity;
use crate::role::Role;
use nix::unistd::{Group, User};
use std::process::Command;

/// Group whose members may connect to the admin socket.
pub const OPERATORS_GROUP: &str = "latchgate-operators";

const NOLOGIN_SHELL: &str = "/usr/sbin/nologin";
/// The users own no files outside what the supervisor hands them.
const NO_HOME: &str = "/nonexistent";

/// The identity of every child, and the operators group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessUsers {
    pub front: ProcessIdentity,
    pub broker: ProcessIdentity,
    pub executor: ProcessIdentity,
    pub signer: ProcessIdentity,
    pub operators_gid: u32,
}

impl ProcessUsers {
    /// The identity a child of `role` switches to; `None` for the supervisor,
    /// which keeps the identity it was started with.
    pub fn identity(&self, role: Role) -> Option<ProcessIdentity> {
        match role {
            Role::Front => Some(self.front),
            Role::Broker => Some(self.broker),
            Role::Executor => Some(self.executor),
            Role::Signer => Some(self.signer),
            Role::Supervisor => None,
        }
    }
}

/// Create (or reuse) the four users and the operators group. Needs root.
pub fn ensure_system_users() -> Result<ProcessUsers, ConfineError> {
    let euid = nix::unistd::geteuid();
    if !euid.is_root() {
        return Err(ConfineError::NotRoot { euid: euid.as_raw() });
    }
    let operators_gid = ensure_group(OPERATORS_GROUP)?;
    Ok(ProcessUsers {
        front: ensure_user(Role::Front.system_user())?,
        broker: ensure_user(Role::Broker.system_user())?,
        executor: ensure_user(Role::Executor.system_user())?,
        signer: ensure_user(Role::Signer.system_user())?,
        operators_gid,
    })
}

/// Look the users up without creating anything (for `doctor`, or a non-root
/// supervisor that wants to know whether a root install was done).
pub fn find_system_users() -> Result<Option<ProcessUsers>, ConfineError> {
    let operators = find_group(OPERATORS_GROUP)?;
    let ids = [Role::Front, Role::Broker, Role::Executor, Role::Signer].map(|role| find_user(role.system_user()));
    match (operators, ids) {
        (Some(operators_gid), [Ok(Some(front)), Ok(Some(broker)), Ok(Some(executor)), Ok(Some(signer))]) => {
            Ok(Some(ProcessUsers { front, broker, executor, signer, operators_gid }))
        }
        (_, ids) => {
            for id in ids {
                id?;
            }
            Ok(None)
        }
    }
}

fn find_user(name: &str) -> Result<Option<ProcessIdentity>, ConfineError> {
    User::from_name(name)
        .map(|u| u.map(|u| ProcessIdentity { uid: u.uid.as_raw(), gid: u.gid.as_raw() }))
        .map_err(|e| ConfineError::UserLookup { name: name.into(), message: e.to_string() })
}

fn find_group(name: &str) -> Result<Option<u32>, ConfineError> {
    Group::from_name(name)
        .map(|g| g.map(|g| g.gid.as_raw()))
        .map_err(|e| ConfineError::UserLookup { name: name.into(), message: e.to_string() })
}

fn ensure_user(name: &str) -> Result<ProcessIdentity, ConfineError> {
    if let Some(id) = find_user(name)? {
        return refuse_root(name, id);
    }
    let outcome = Command::new("useradd")
        .args(["--system", "--user-group", "--no-create-home", "--home-dir", NO_HOME, "--shell", NOLOGIN_SHELL])
        .arg(name)
        .output();
    // Another supervisor may have created it meanwhile: trust the lookup, not the exit code.
    match find_user(name)? {
        Some(id) => refuse_root(name, id),
        None => Err(ConfineError::UserCreate { name: name.into(), message: describe(outcome) }),
    }
}

fn ensure_group(name: &str) -> Result<u32, ConfineError> {
    if let Some(gid) = find_group(name)? {
        return Ok(gid);
    }
    let outcome = Command::new("groupadd").args(["--system", name]).output();
    find_group(name)?.ok_or_else(|| ConfineError::UserCreate { name: name.into(), message: describe(outcome) })
}

/// A pre-existing account mapped to uid or gid 0 would make the drop a no-op.
fn refuse_root(name: &str, id: ProcessIdentity) -> Result<ProcessIdentity, ConfineError> {
    if id.uid == 0 || id.gid == 0 {
        return Err(ConfineError::UserLookup {
            name: name.into(),
            message: format!("resolves to uid {} gid {}: refusing a root identity", id.uid, id.gid),
        });
    }
    Ok(id)
}

fn describe(outcome: std::io::Result<std::process::Output>) -> String {
    match outcome {
        Ok(out) => format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
        Err(e) => e.to_string(),
    }
}
