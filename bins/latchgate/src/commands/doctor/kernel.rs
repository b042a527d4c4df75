//! `kernel.*`: what this host's kernel can enforce. With `confinement =
//! "strict"` a missing layer is an error (the gate would refuse to start);
//! with `best_effort` it is a warning (the gate starts degraded).

use latchgate_core::config::Confinement;
use latchgate_core::confine::probe;

use super::{Check, Context};

/// First Landlock ABI with TCP port rules (network confinement of the executor and broker).
const NETWORK_ABI: u8 = 4;

pub fn checks(ctx: &Context) -> Vec<Check> {
    let strict = ctx.cfg.as_ref().is_some_and(|c| c.config.confinement == Confinement::Strict);
    let missing = |id: &str, message: String, fix: &str| {
        if strict { Check::error(id, message, fix) } else { Check::warn(id, message, fix) }
    };
    let kernel = probe();
    let mut out = vec![if kernel.seccomp {
        Check::ok("kernel.seccomp", "seccomp filter mode with kill_process and errno actions is available")
    } else {
        missing(
            "kernel.seccomp",
            "the kernel has no seccomp filter mode (CONFIG_SECCOMP_FILTER)".into(),
            "run the gate on a kernel built with seccomp filters",
        )
    }];
    out.push(match kernel.landlock_abi {
        Some(abi) if abi >= NETWORK_ABI => {
            Check::ok("kernel.landlock", format!("Landlock ABI {abi}: filesystem and TCP port rules are enforced"))
        }
        Some(abi) => missing(
            "kernel.landlock",
            format!("Landlock ABI {abi}: no TCP port rules (needs ABI {NETWORK_ABI}, Linux 6.7)"),
            "upgrade the kernel to 6.7 or newer",
        ),
        None => missing(
            "kernel.landlock",
            "Landlock is not enabled in this kernel".into(),
            "enable Landlock (CONFIG_SECURITY_LANDLOCK, lsm=landlock,... on the kernel command line)",
        ),
    });
    out
}
