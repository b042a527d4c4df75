//! Dropping to a process's own user and shedding every capability, before the
//! process reads untrusted input or starts its async runtime.
//!
//! Order matters and is verified against the kernel afterwards:
//! 1. the bounding set is cleared first, while `CAP_SETPCAP` is still held
//!    (`PR_CAPBSET_DROP` needs it, and the uid switch below takes it away);
//! 2. ambient and inheritable sets are emptied so nothing survives an exec;
//! 3. supplementary groups, then gid, then uid are switched (gid before uid:
//!    after `setresuid` the process could no longer change its gid);
//! 4. effective then permitted sets are emptied (the kernel already cleared
//!    them on the switch away from uid 0; this also covers a root start that
//!    keeps uid 0);
//! 5. `PR_SET_NO_NEW_PRIVS` so no later exec can gain privileges.
//!
//! Capability sets are per thread, so all of this must happen while the
//! process has exactly one thread; that is checked, not assumed.

use super::error::ConfineError;
use super::proc_status::ProcStatus;
use caps::{CapSet, Capability};
use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};
use serde::{Deserialize, Serialize};

/// The uid and gid a process runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessIdentity {
    pub uid: u32,
    pub gid: u32,
}

impl From<(u32, u32)> for ProcessIdentity {
    fn from((uid, gid): (u32, u32)) -> Self {
        ProcessIdentity { uid, gid }
    }
}

/// Switch to `target` (when the process was started as root and should run as
/// its own user), then drop every capability and set `no_new_privs`.
/// With `target = None` the uid is kept but the capability drop still happens.
pub fn drop_identity(target: Option<ProcessIdentity>) -> Result<(), ConfineError> {
    let before = ProcStatus::read_self()?;
    if before.threads != 1 {
        return Err(ConfineError::ThreadsAlreadyRunning { step: "drop_identity", threads: before.threads });
    }
    let could_clear_bounding = caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP)
        .map_err(|e| ConfineError::CapabilityDrop { step: "read effective set", message: e.to_string() })?;
    if could_clear_bounding {
        clear(CapSet::Bounding, "clear bounding set")?;
    }
    clear(CapSet::Ambient, "clear ambient set")?;
    clear(CapSet::Inheritable, "clear inheritable set")?;

    if let Some(id) = target {
        let (uid, gid) = (Uid::from_raw(id.uid), Gid::from_raw(id.gid));
        setgroups(&[]).map_err(|source| ConfineError::IdentitySwitch { step: "setgroups", source })?;
        setresgid(gid, gid, gid).map_err(|source| ConfineError::IdentitySwitch { step: "setresgid", source })?;
        setresuid(uid, uid, uid).map_err(|source| ConfineError::IdentitySwitch { step: "setresuid", source })?;
    }

    clear(CapSet::Effective, "clear effective set")?;
    clear(CapSet::Permitted, "clear permitted set")?;
    nix::sys::prctl::set_no_new_privs()
        .map_err(|source| ConfineError::IdentitySwitch { step: "PR_SET_NO_NEW_PRIVS", source })?;

    verify(&ProcStatus::read_self()?, target, could_clear_bounding)
}

/// Clears `set`, skipping the syscall when it is already empty: a systemd
/// unit (`CapabilityBoundingSet=`, `User=`) starts us with nothing, and its
/// syscall filter then need not allow `capset` at all.
fn clear(set: CapSet, step: &'static str) -> Result<(), ConfineError> {
    let error = |e: caps::errors::CapsError| ConfineError::CapabilityDrop { step, message: e.to_string() };
    if caps::read(None, set).map_err(error)?.is_empty() {
        return Ok(());
    }
    caps::clear(None, set).map_err(error)
}

/// The kernel's view must match what we asked for; anything else is fatal.
fn verify(
    status: &ProcStatus,
    target: Option<ProcessIdentity>,
    bounding_expected_empty: bool,
) -> Result<(), ConfineError> {
    let mut remaining = Vec::new();
    if !status.holds_no_capabilities() {
        remaining.push(format!(
            "CapInh={:x} CapPrm={:x} CapEff={:x} CapAmb={:x}",
            status.cap_inh, status.cap_prm, status.cap_eff, status.cap_amb
        ));
    }
    if bounding_expected_empty && status.cap_bnd != 0 {
        remaining.push(format!("CapBnd={:x} (capabilities unknown to the caps crate?)", status.cap_bnd));
    }
    if !status.no_new_privs {
        remaining.push("NoNewPrivs=0".into());
    }
    if let Some(id) = target {
        if status.uids.iter().any(|&u| u != id.uid) {
            remaining.push(format!("uids {:?}, wanted {}", status.uids, id.uid));
        }
        if status.gids.iter().any(|&g| g != id.gid) {
            remaining.push(format!("gids {:?}, wanted {}", status.gids, id.gid));
        }
        if !status.groups.is_empty() {
            remaining.push(format!("supplementary groups {:?}", status.groups));
        }
    }
    if remaining.is_empty() { Ok(()) } else { Err(ConfineError::PrivilegesRemain(remaining.join(", "))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confined(uid: u32) -> ProcStatus {
        ProcStatus {
            cap_inh: 0,
            cap_prm: 0,
            cap_eff: 0,
            cap_bnd: 0,
            cap_amb: 0,
            no_new_privs: true,
            seccomp_mode: Some(0),
            threads: 1,
            uids: [uid; 4],
            gids: [uid; 4],
            groups: vec![],
        }
    }

    #[test]
    fn saved_uid_left_at_root_is_refused() {
        let mut s = confined(990);
        s.uids[2] = 0;
        let e = verify(&s, Some(ProcessIdentity { uid: 990, gid: 990 }), true).unwrap_err();
        assert_eq!(e.code(), "privileges_remain");
        assert!(e.to_string().contains("uids"), "{e}");
    }

    #[test]
    fn leftover_supplementary_group_is_refused() {
        let mut s = confined(990);
        s.groups = vec![0];
        assert!(verify(&s, Some(ProcessIdentity { uid: 990, gid: 990 }), true).is_err());
    }

    #[test]
    fn bounding_set_left_full_is_refused_when_it_could_be_cleared() {
        let mut s = confined(990);
        s.cap_bnd = 0x1ff_ffff_ffff;
        assert!(verify(&s, None, true).is_err());
        // An unprivileged start cannot clear it; with no_new_privs it is inert.
        assert!(verify(&s, None, false).is_ok());
    }

    #[test]
    fn missing_no_new_privs_is_refused() {
        let mut s = confined(990);
        s.no_new_privs = false;
        assert!(verify(&s, None, false).is_err());
    }
}
