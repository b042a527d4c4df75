//! Landlock rule sets: `sandbox-profiles/<process>.landlock.toml`.
//!
//! Every filesystem access right and TCP bind/connect known to the target ABI
//! is *handled*, so whatever a file does not grant is denied. Paths are
//! written with placeholders (`{state_dir}`) that the process fills from its
//! config, so the data file stays reviewable and the same on every host.

use super::error::ConfineError;
use super::report::LayerStatus;
use crate::role::Role;
use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, NetPort, PathBeneath, PathFd, RestrictSelfAttr, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Newest ABI whose rights we have reviewed and tested (the host kernel here
/// speaks v7). Newer kernels are used at this level; older ones degrade.
const TARGET_ABI: ABI = ABI::V7;
/// First ABI with TCP port rules.
const NETWORK_ABI: u8 = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathAccess {
    /// Read files and list directories. Never execute.
    Read,
    /// Read, create, write, truncate, rename and remove beneath the path. Never execute.
    ReadWrite,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathRule {
    /// Absolute path, or `{placeholder}` optionally followed by `/more/path`.
    pub path: String,
    pub access: PathAccess,
    pub comment: String,
    /// Skip the rule when the placeholder is not set or the path does not
    /// exist (e.g. `fs_root` when no fs action is configured).
    #[serde(default)]
    pub optional: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filesystem {
    pub comment: String,
    #[serde(default)]
    pub allow: Vec<PathRule>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortRule {
    /// A fixed port, or none when `ports_from_config` is set.
    pub port: Option<u16>,
    /// The ports the process passes in `SealInputs::tcp_connect_ports`.
    #[serde(default)]
    pub ports_from_config: bool,
    pub comment: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub comment: String,
    /// TCP connect destinations allowed; everything else (and every TCP bind) is denied.
    #[serde(default)]
    pub connect: Vec<PortRule>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scoping {
    pub comment: String,
    /// Refuse connecting to abstract UNIX sockets created outside this sandbox.
    pub abstract_unix_socket: bool,
    /// Refuse signalling processes outside this sandbox.
    pub signal: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LandlockProfile {
    pub process: String,
    pub comment: String,
    pub filesystem: Filesystem,
    pub network: Network,
    pub scope: Scoping,
}

/// A profile with its placeholders filled, ready to install.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedRules {
    pub path: PathBuf,
    pub read: Vec<PathBuf>,
    pub read_write: Vec<PathBuf>,
    pub tcp_connect: Vec<u16>,
    pub scope_abstract_unix_socket: bool,
    pub scope_signal: bool,
}

pub fn profile_path(profiles_dir: &Path, role: Role) -> PathBuf {
    profiles_dir.join(format!("{}.landlock.toml", role.as_str()))
}

pub fn load(
    profiles_dir: &Path,
    role: Role,
    paths: &BTreeMap<String, PathBuf>,
    tcp_connect_ports: &[u16],
) -> Result<ResolvedRules, ConfineError> {
    let path = profile_path(profiles_dir, role);
    super::reach::require_reachable(&path)?;
    let text = std::fs::read_to_string(&path)
        .map_err(|source| ConfineError::ProfileUnreadable { path: path.clone(), source })?;
    resolve(&path, &text, role, paths, tcp_connect_ports)
}

pub fn resolve(
    path: &Path,
    text: &str,
    role: Role,
    paths: &BTreeMap<String, PathBuf>,
    tcp_connect_ports: &[u16],
) -> Result<ResolvedRules, ConfineError> {
    let invalid = |message: String| ConfineError::ProfileInvalid { path: path.to_path_buf(), message };
    let profile: LandlockProfile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    if profile.process != role.as_str() {
        return Err(invalid(format!("written for process {:?}, loaded for {}", profile.process, role)));
    }
    for (what, comment) in [
        ("comment", &profile.comment),
        ("filesystem.comment", &profile.filesystem.comment),
        ("network.comment", &profile.network.comment),
        ("scope.comment", &profile.scope.comment),
    ] {
        if comment.trim().is_empty() {
            return Err(invalid(format!("{what} is empty")));
        }
    }

    let mut rules = ResolvedRules {
        path: path.to_path_buf(),
        read: Vec::new(),
        read_write: Vec::new(),
        tcp_connect: Vec::new(),
        scope_abstract_unix_socket: profile.scope.abstract_unix_socket,
        scope_signal: profile.scope.signal,
    };
    for (index, rule) in profile.filesystem.allow.iter().enumerate() {
        let entry_error = |message: String| ConfineError::ProfileEntryInvalid {
            path: path.to_path_buf(),
            index,
            entry: rule.path.clone(),
            message,
        };
        if rule.comment.trim().is_empty() {
            return Err(entry_error("comment is empty: say which code path needs this access".into()));
        }
        let resolved = match substitute(&rule.path, paths) {
            Ok(p) => p,
            Err(_) if rule.optional => continue,
            Err(placeholder) => return Err(ConfineError::PlaceholderMissing { path: path.to_path_buf(), placeholder }),
        };
        if !resolved.is_absolute() {
            return Err(entry_error(format!("resolves to a relative path {}", resolved.display())));
        }
        // Before `exists`, which answers "no" for a path we may not reach.
        super::reach::require_reachable(&resolved)?;
        if !resolved.exists() {
            if rule.optional {
                continue;
            }
            return Err(entry_error(format!("{} does not exist", resolved.display())));
        }
        match rule.access {
            PathAccess::Read => rules.read.push(resolved),
            PathAccess::ReadWrite => rules.read_write.push(resolved),
        }
    }
    for (index, rule) in profile.network.connect.iter().enumerate() {
        let entry_error = |message: String| ConfineError::ProfileEntryInvalid {
            path: path.to_path_buf(),
            index,
            entry: format!("network.connect port {:?}", rule.port),
            message,
        };
        if rule.comment.trim().is_empty() {
            return Err(entry_error("comment is empty".into()));
        }
        match (rule.port, rule.ports_from_config) {
            (Some(port), false) => rules.tcp_connect.push(port),
            (None, true) => rules.tcp_connect.extend_from_slice(tcp_connect_ports),
            _ => return Err(entry_error("set exactly one of port and ports_from_config".into())),
        }
    }
    rules.tcp_connect.sort_unstable();
    rules.tcp_connect.dedup();
    if rules.tcp_connect.contains(&0) {
        return Err(invalid("TCP port 0 cannot be allowed".into()));
    }
    Ok(rules)
}

/// Fill `{name}` placeholders; `Err(name)` names the first one without a value.
fn substitute(template: &str, paths: &BTreeMap<String, PathBuf>) -> Result<PathBuf, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after.find('}').ok_or_else(|| after.to_string())?;
        let name = &after[..end];
        let value = paths.get(name).ok_or_else(|| name.to_string())?;
        out.push_str(&value.to_string_lossy());
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(PathBuf::from(out))
}

/// What installing the rules achieved on this kernel.
pub struct LandlockOutcome {
    pub status: LayerStatus,
    pub abi: Option<u8>,
}

/// Install the rules on the calling process. Irreversible.
///
/// Before ABI v8 Landlock confines only the calling thread (and threads it
/// creates later), so this refuses to run once other threads exist rather
/// than leave them unconfined.
pub fn install(rules: &ResolvedRules, kernel_abi: Option<u8>) -> Result<LandlockOutcome, ConfineError> {
    let Some(abi_number) = kernel_abi else {
        return Ok(LandlockOutcome {
            status: LayerStatus::Unavailable("landlock is not enabled in this kernel".into()),
            abi: None,
        });
    };
    let threads = super::proc_status::ProcStatus::read_self()?.threads;
    if threads > 1 && abi_number < 8 {
        return Err(ConfineError::ThreadsAlreadyRunning { step: "landlock (ABI < 8 has no TSYNC)", threads });
    }
    let apply_error =
        |e: landlock::RulesetError| ConfineError::LandlockApply { message: format!("{}: {e}", rules.path.display()) };
    let path_error =
        |p: &Path, e: landlock::PathFdError| ConfineError::LandlockApply { message: format!("{}: {e}", p.display()) };

    let fs_all = AccessFs::from_all(TARGET_ABI);
    let read: BitFlags<AccessFs> = AccessFs::ReadFile | AccessFs::ReadDir;
    let read_write = fs_all & !BitFlags::from(AccessFs::Execute);
    let mut scope = BitFlags::<Scope>::empty();
    if rules.scope_abstract_unix_socket {
        scope |= Scope::AbstractUnixSocket;
    }
    if rules.scope_signal {
        scope |= Scope::Signal;
    }

    let mut ruleset = landlock::Ruleset::default()
        .handle_access(fs_all)
        .and_then(|r| r.handle_access(AccessNet::from_all(TARGET_ABI)))
        .map_err(apply_error)?;
    if !scope.is_empty() {
        ruleset = ruleset.scope(scope).map_err(apply_error)?;
    }
    let mut created = ruleset.create().map_err(apply_error)?;
    for (paths, access) in [(&rules.read, read), (&rules.read_write, read_write)] {
        for p in paths {
            let fd = PathFd::new(p).map_err(|e| path_error(p, e))?;
            // Directory-only rights on a file would make the kernel refuse the rule.
            let access = if p.is_dir() { access } else { access & AccessFs::from_file(TARGET_ABI) };
            created = created.add_rule(PathBeneath::new(fd, access)).map_err(apply_error)?;
        }
    }
    for port in &rules.tcp_connect {
        created = created.add_rule(NetPort::new(*port, AccessNet::ConnectTcp)).map_err(apply_error)?;
    }
    if threads > 1 {
        // Only reached with ABI >= 8. Not requested otherwise: on older kernels the
        // unsupported flag alone would mark the whole rule set "partially enforced".
        created = created.all_threads(true).map_err(apply_error)?;
    }
    let status = created.restrict_self().map_err(apply_error)?;
    if threads > 1 && !status.all_threads {
        return Err(ConfineError::LandlockApply {
            message: "the kernel applied the rules to the calling thread only".into(),
        });
    }

    let abi = Some(abi_number);
    let status = match status.ruleset {
        RulesetStatus::FullyEnforced => LayerStatus::Enforced,
        RulesetStatus::PartiallyEnforced if abi_number < NETWORK_ABI => {
            LayerStatus::Degraded(format!("landlock ABI {abi_number}: no TCP port rules (needs ABI {NETWORK_ABI})"))
        }
        RulesetStatus::PartiallyEnforced => {
            LayerStatus::Degraded(format!("landlock ABI {abi_number} lacks some rights of ABI {}", TARGET_ABI as u8))
        }
        RulesetStatus::NotEnforced => LayerStatus::Unavailable("landlock rule set not enforced by the kernel".into()),
    };
    Ok(LandlockOutcome { status, abi })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> BTreeMap<String, PathBuf> {
        BTreeMap::from([("state_dir".to_string(), std::env::temp_dir())])
    }

    const PROFILE: &str = r#"
process = "broker"
comment = "test"
[filesystem]
comment = "test"
[[filesystem.allow]]
path = "{state_dir}"
access = "read_write"
comment = "ledger"
[[filesystem.allow]]
path = "{fs_root}/x"
access = "read_write"
comment = "fs actions"
optional = true
[network]
comment = "test"
[[network.connect]]
port = 443
comment = "webhooks"
[[network.connect]]
ports_from_config = true
comment = "redis"
[scope]
comment = "test"
abstract_unix_socket = true
signal = true
"#;

    #[test]
    fn placeholders_and_config_ports_are_filled() {
        let r = resolve(Path::new("broker.landlock.toml"), PROFILE, Role::Broker, &inputs(), &[6379, 443]).unwrap();
        assert_eq!(r.read_write, vec![std::env::temp_dir()]);
        assert_eq!(r.tcp_connect, vec![443, 6379]);
    }

    #[test]
    fn missing_required_placeholder_is_named() {
        let e = resolve(Path::new("broker.landlock.toml"), PROFILE, Role::Broker, &BTreeMap::new(), &[]).unwrap_err();
        assert_eq!(e.code(), "sandbox_profile_placeholder_missing");
        assert!(e.to_string().contains("{state_dir}"), "{e}");
    }

    #[test]
    fn rule_without_comment_is_refused() {
        let text = PROFILE.replace("comment = \"ledger\"", "comment = \"\"");
        let e = resolve(Path::new("broker.landlock.toml"), &text, Role::Broker, &inputs(), &[]).unwrap_err();
        assert!(e.to_string().contains("{state_dir}") && e.to_string().contains("comment"), "{e}");
    }

    #[test]
    fn unknown_key_is_refused() {
        let text = PROFILE.replace("optional = true", "optional = true\nexecute = true");
        assert!(resolve(Path::new("b.toml"), &text, Role::Broker, &inputs(), &[]).is_err());
    }

    #[test]
    fn shipped_rule_files_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sandbox-profiles");
        let tmp = std::env::temp_dir();
        let paths: BTreeMap<String, PathBuf> =
            super::super::PLACEHOLDERS.iter().map(|p| (p.to_string(), tmp.clone())).collect();
        for role in Role::CHILDREN {
            let r = load(&dir, role, &paths, &[3128]).unwrap_or_else(|e| panic!("{role}: {e}"));
            if matches!(role, Role::Front | Role::Signer) {
                assert!(r.tcp_connect.is_empty(), "{role} must have no TCP");
            }
        }
    }
}
