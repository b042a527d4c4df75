//! Kernel-enforced confinement of the four children (issue 6): their own
//! users, no capabilities, `no_new_privs`, a seccomp allow-list and a Landlock
//! rule set per process, all read from `sandbox-profiles/`.
//!
//! How a child uses it (see docs/security-model.md):
//! 1. `drop_identity(users.identity(role))` first thing in `main`, before the
//!    tokio runtime exists (capability sets are per thread);
//! 2. `Sealer::prepare(role, &inputs)` reads and compiles both profiles while
//!    the profiles dir is still readable;
//! 3. `sealer.restrict_filesystem_and_network()` while still single-threaded
//!    (Landlock before ABI 8 confines only the calling thread);
//! 4. set-up (open stores, compile every WASM module, bind sockets);
//! 5. `sealer.restrict_syscalls()` — seccomp on all threads (TSYNC), last.
//!
//! `seal(role, &inputs)` does 2, 3 and 5 in one go for processes whose set-up
//! is already done when they are still single-threaded.

pub mod error;
pub mod identity;
pub mod kernel;
pub mod landlock;
pub mod proc_status;
pub mod reach;
pub mod report;
pub mod seccomp;
pub mod users;

#[cfg(feature = "escape-probe")]
pub mod escape_probe;

pub use error::ConfineError;
pub use identity::{ProcessIdentity, drop_identity};
pub use kernel::{KernelSupport, probe};
pub use report::{ConfinementReport, LayerStatus};
pub use users::{ProcessUsers, ensure_system_users, find_system_users};

use crate::config::{Confinement, LoadedConfig};
use crate::role::Role;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Placeholders the rule files may use. `fs_root` and the `secrets_*` paths
/// are set only when the config has them (their rules are `optional`).
/// `secrets_dir`/`secrets_key_dir` are the directories of the SOPS file and
/// of its age key: both are replaced by rename on every edit, and a Landlock
/// rule on a file follows the old inode, not the path.
pub const PLACEHOLDERS: &[&str] = &[
    "config_file",
    "socket_dir",
    "admin_socket_dir",
    "runtime_dir",
    "ipc_dir",
    "state_dir",
    "manifests_dir",
    "policies_dir",
    "providers_dir",
    "key_dir",
    "secrets_file",
    "secrets_dir",
    "secrets_key_dir",
    "fs_root",
];

/// Everything `seal` needs from the process's config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealInputs {
    /// Directory holding `<process>.json` and `<process>.landlock.toml`.
    pub profiles_dir: PathBuf,
    /// Placeholder name (without braces) → absolute path.
    pub paths: BTreeMap<String, PathBuf>,
    /// Extra TCP ports the process may connect to (executor: egress proxy and
    /// test-allowed ports; broker: Redis/OPA/webhook ports).
    pub tcp_connect_ports: Vec<u16>,
    pub mode: Confinement,
}

impl SealInputs {
    /// Inputs with every placeholder the config can answer filled in.
    pub fn from_config(config: &LoadedConfig, profiles_dir: PathBuf) -> SealInputs {
        let parent = |p: PathBuf| p.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
        let paths = BTreeMap::from([
            ("config_file".to_string(), config.path.clone()),
            ("socket_dir".to_string(), parent(config.client_socket())),
            ("admin_socket_dir".to_string(), parent(config.admin_socket())),
            ("runtime_dir".to_string(), config.runtime_dir()),
            ("ipc_dir".to_string(), config.ipc_dir()),
            ("state_dir".to_string(), config.state_dir()),
            ("manifests_dir".to_string(), config.manifests_dir()),
            ("policies_dir".to_string(), config.policies_dir()),
            ("providers_dir".to_string(), config.providers_dir()),
            ("key_dir".to_string(), config.key_dir()),
        ]);
        let mut paths = paths;
        if let Some(fs_root) = config.fs_root() {
            paths.insert("fs_root".to_string(), fs_root);
        }
        if let Some((secrets_file, key_file)) = config.secrets_files() {
            paths.insert("secrets_dir".to_string(), parent(secrets_file.clone()));
            paths.insert("secrets_key_dir".to_string(), parent(key_file));
            paths.insert("secrets_file".to_string(), secrets_file);
        }
        SealInputs { profiles_dir, paths, tcp_connect_ports: Vec::new(), mode: config.config.confinement }
    }
}

/// Both profiles of one process, compiled and resolved, not yet applied.
pub struct Sealer {
    role: Role,
    mode: Confinement,
    kernel: KernelSupport,
    filter: seccomp::CompiledFilter,
    rules: landlock::ResolvedRules,
    /// Opened now so the report can be read after Landlock hides `/proc`.
    status_file: File,
    landlock: Option<landlock::LandlockOutcome>,
}

impl Sealer {
    /// Read and check both profiles. Fails on any profile error in either
    /// mode: a broken profile is never a reason to run unconfined.
    pub fn prepare(role: Role, inputs: &SealInputs) -> Result<Sealer, ConfineError> {
        let filter = seccomp::load(&inputs.profiles_dir, role)?;
        let rules = landlock::load(&inputs.profiles_dir, role, &inputs.paths, &inputs.tcp_connect_ports)?;
        let status_file =
            File::open("/proc/self/status").map_err(|e| ConfineError::ProcStatus(format!("/proc/self/status: {e}")))?;
        Ok(Sealer { role, mode: inputs.mode, kernel: probe(), filter, rules, status_file, landlock: None })
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Landlock. Call while the process has one thread (unless the kernel has ABI ≥ 8).
    pub fn restrict_filesystem_and_network(&mut self) -> Result<(), ConfineError> {
        if self.landlock.is_some() {
            return Ok(());
        }
        let outcome = landlock::install(&self.rules, self.kernel.landlock_abi)?;
        self.require("landlock", &outcome.status)?;
        self.landlock = Some(outcome);
        Ok(())
    }

    /// Seccomp on every thread, then read the result back from the kernel.
    pub fn restrict_syscalls(mut self) -> Result<ConfinementReport, ConfineError> {
        self.restrict_filesystem_and_network()?;
        let seccomp_status = if self.kernel.seccomp {
            seccomp::install(&self.filter)?;
            LayerStatus::Enforced
        } else {
            LayerStatus::Unavailable("kernel has no seccomp filter mode".into())
        };
        self.require("seccomp", &seccomp_status)?;

        let status = proc_status::ProcStatus::parse(&read_all(&self.status_file)?)?;
        if seccomp_status.is_enforced() && status.seccomp_mode != Some(2) {
            return Err(ConfineError::PrivilegesRemain(format!(
                "seccomp filter installed but the kernel reports mode {:?}",
                status.seccomp_mode
            )));
        }
        let landlock = self.landlock.take();
        Ok(ConfinementReport {
            seccomp: seccomp_status,
            landlock: landlock.as_ref().map_or(LayerStatus::Unavailable("not applied".into()), |l| l.status.clone()),
            landlock_abi: landlock.and_then(|l| l.abi),
            no_new_privs: status.no_new_privs,
            caps_dropped: status.holds_no_capabilities(),
            bounding_set_empty: status.cap_bnd == 0,
            uid: status.uids[1],
            gid: status.gids[1],
        })
    }

    fn require(&self, layer: &'static str, status: &LayerStatus) -> Result<(), ConfineError> {
        enforce_mode(self.mode, layer, status)
    }
}

/// `strict` refuses a layer that is not fully enforced; `best_effort` lets the
/// report carry it.
fn enforce_mode(mode: Confinement, layer: &'static str, status: &LayerStatus) -> Result<(), ConfineError> {
    match (mode, status) {
        (Confinement::Strict, LayerStatus::Degraded(reason) | LayerStatus::Unavailable(reason)) => {
            Err(ConfineError::LayerNotEnforced { layer, reason: reason.clone() })
        }
        _ => Ok(()),
    }
}

/// Apply Landlock then seccomp in one step (for a process still single-threaded).
pub fn seal(role: Role, inputs: &SealInputs) -> Result<ConfinementReport, ConfineError> {
    let mut sealer = Sealer::prepare(role, inputs)?;
    sealer.restrict_filesystem_and_network()?;
    sealer.restrict_syscalls()
}

/// procfs regenerates the file on each read from offset 0.
fn read_all(file: &File) -> Result<String, ConfineError> {
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = file
            .read_at(&mut buf[len..], len as u64)
            .map_err(|e| ConfineError::ProcStatus(format!("/proc/self/status: {e}")))?;
        if n == 0 {
            break;
        }
        len += n;
    }
    buf.truncate(len);
    String::from_utf8(buf).map_err(|_| ConfineError::ProcStatus("not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_mode_refuses_a_degraded_layer_and_names_it() {
        let degraded = LayerStatus::Degraded("landlock ABI 3: no TCP port rules".into());
        let e = enforce_mode(Confinement::Strict, "landlock", &degraded).unwrap_err();
        assert_eq!(e.code(), "confinement_layer_unavailable");
        assert!(e.to_string().contains("landlock layer") && e.to_string().contains("ABI 3"), "{e}");
        let missing = LayerStatus::Unavailable("kernel has no seccomp filter mode".into());
        assert!(enforce_mode(Confinement::Strict, "seccomp", &missing).unwrap_err().to_string().contains("seccomp"));
    }

    #[test]
    fn best_effort_mode_starts_with_a_degraded_layer() {
        let degraded = LayerStatus::Degraded("x".into());
        assert!(enforce_mode(Confinement::BestEffort, "landlock", &degraded).is_ok());
        assert!(enforce_mode(Confinement::Strict, "landlock", &LayerStatus::Enforced).is_ok());
    }

    #[test]
    fn inputs_from_config_fill_every_config_placeholder() {
        let config = LoadedConfig::from_str(Path::new("/etc/lg/latchgate.toml"), "").unwrap();
        let inputs = SealInputs::from_config(&config, PathBuf::from("/usr/share/latchgate/sandbox-profiles"));
        assert_eq!(inputs.paths["state_dir"], PathBuf::from("/etc/lg/state"));
        for name in inputs.paths.keys() {
            assert!(PLACEHOLDERS.contains(&name.as_str()), "{name} not documented in PLACEHOLDERS");
        }
        assert!(!inputs.paths.contains_key("fs_root"), "fs_root is only set when configured");
    }
}
