//! Every way confinement can fail. A failure here means the process must not
//! go on to read untrusted input, so callers exit on `Err`.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("cannot read sandbox profile {path}: {source}")]
    ProfileUnreadable { path: PathBuf, source: std::io::Error },
    #[error(
        "{path} is out of reach of this process's user ({user}, uid {uid}): {blocked} does not let it through. \
         Started as root, each gate process runs as its own user, so every directory above the data, \
         state and key paths must be searchable by it: move them (e.g. out of /root) or `chmod o+x {blocked}`"
    )]
    PathUnreachable { path: PathBuf, blocked: PathBuf, user: String, uid: u32 },
    #[error("invalid sandbox profile {path}: {message}")]
    ProfileInvalid { path: PathBuf, message: String },
    #[error("sandbox profile {path}: entry #{index} ({entry}): {message}")]
    ProfileEntryInvalid { path: PathBuf, index: usize, entry: String, message: String },
    #[error("sandbox profile {path}: placeholder {{{placeholder}}} has no value for this process")]
    PlaceholderMissing { path: PathBuf, placeholder: String },
    #[error("cannot compile seccomp filter from {path}: {message}")]
    SeccompCompile { path: PathBuf, message: String },
    #[error("cannot install seccomp filter: {message}")]
    SeccompApply { message: String },
    #[error("cannot install landlock rule set: {message}")]
    LandlockApply { message: String },
    #[error("confinement = \"strict\" but the {layer} layer is not fully enforced on this host: {reason}")]
    LayerNotEnforced { layer: &'static str, reason: String },
    #[error("{step} must run while the process has one thread, but it has {threads}")]
    ThreadsAlreadyRunning { step: &'static str, threads: u32 },
    #[error("cannot switch identity: {step}: {source}")]
    IdentitySwitch { step: &'static str, source: nix::Error },
    #[error("cannot drop capabilities: {step}: {message}")]
    CapabilityDrop { step: &'static str, message: String },
    #[error("privileges still held after the drop: {0}")]
    PrivilegesRemain(String),
    #[error("cannot read /proc/self/status: {0}")]
    ProcStatus(String),
    #[error("cannot look up system user or group {name}: {message}")]
    UserLookup { name: String, message: String },
    #[error("cannot create system user or group {name}: {message}")]
    UserCreate { name: String, message: String },
    #[error("creating system users needs root (euid {euid})")]
    NotRoot { euid: u32 },
}

impl ConfineError {
    /// Stable code for logs, `doctor` and the supervisor's exit report.
    pub fn code(&self) -> &'static str {
        match self {
            ConfineError::ProfileUnreadable { .. } => "sandbox_profile_unreadable",
            ConfineError::PathUnreachable { .. } => "path_unreachable",
            ConfineError::ProfileInvalid { .. } => "sandbox_profile_invalid",
            ConfineError::ProfileEntryInvalid { .. } => "sandbox_profile_entry_invalid",
            ConfineError::PlaceholderMissing { .. } => "sandbox_profile_placeholder_missing",
            ConfineError::SeccompCompile { .. } => "seccomp_compile_failed",
            ConfineError::SeccompApply { .. } => "seccomp_apply_failed",
            ConfineError::LandlockApply { .. } => "landlock_apply_failed",
            ConfineError::LayerNotEnforced { .. } => "confinement_layer_unavailable",
            ConfineError::ThreadsAlreadyRunning { .. } => "confinement_after_threads_started",
            ConfineError::IdentitySwitch { .. } => "identity_switch_failed",
            ConfineError::CapabilityDrop { .. } => "capability_drop_failed",
            ConfineError::PrivilegesRemain(_) => "privileges_remain",
            ConfineError::ProcStatus(_) => "proc_status_unreadable",
            ConfineError::UserLookup { .. } => "system_user_lookup_failed",
            ConfineError::UserCreate { .. } => "system_user_create_failed",
            ConfineError::NotRoot { .. } => "system_user_needs_root",
        }
    }
}
