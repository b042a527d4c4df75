//! What the running kernel can enforce, for `latchgate doctor` and for
//! deciding between "enforced" and "unavailable" before trying.
//
// This is the one place in the crate with `unsafe`: the Landlock ABI version
// is only available through the raw `landlock_create_ruleset` syscall with the
// VERSION flag (the `landlock` crate keeps its probe private and deliberately
// hides the number). The call takes no pointers we own and creates no fd.
#![allow(unsafe_code)]

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelSupport {
    /// Seccomp filter mode with the kill-process and errno actions.
    pub seccomp: bool,
    /// Landlock ABI version, `None` when Landlock is not built in or not enabled.
    pub landlock_abi: Option<u8>,
}

pub fn probe() -> KernelSupport {
    KernelSupport { seccomp: seccomp_filter_available(), landlock_abi: landlock_abi() }
}

fn seccomp_filter_available() -> bool {
    // The file exists only with CONFIG_SECCOMP_FILTER; the actions we rely on must be listed.
    std::fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail").is_ok_and(|actions| {
        let actions: Vec<&str> = actions.split_whitespace().collect();
        actions.contains(&"kill_process") && actions.contains(&"errno")
    })
}

fn landlock_abi() -> Option<u8> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute pointer, size 0 and the VERSION flag the
    // kernel reads no memory and returns the ABI number (or -1 with errno).
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    u8::try_from(version).ok().filter(|v| *v > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_agrees_with_proc_status() {
        let k = probe();
        let has_seccomp_line = std::fs::read_to_string("/proc/self/status").unwrap().contains("\nSeccomp:");
        if k.seccomp {
            assert!(has_seccomp_line);
        }
    }
}
