//! Seccomp allow-lists: `sandbox-profiles/<process>.json`, compiled at start
//! with `seccompiler` and installed on every thread (TSYNC).
//!
//! The file format is our own rather than seccompiler's so that a reason is
//! *required* for every allowed syscall and every argument pin (seccompiler
//! only tolerates an optional `comment`), and so that errors can name the file
//! and the entry. The translation to seccompiler's JSON happens in memory.

use super::error::ConfineError;
use crate::role::Role;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What the kernel does with a syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SeccompAction {
    Allow,
    /// Fail the syscall with this errno (e.g. 1 = `EPERM`).
    Errno(u32),
    KillProcess,
    KillThread,
    /// Deliver `SIGSYS` (useful when debugging a profile).
    Trap,
    Log,
}

/// Width of the compared argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArgWidth {
    Dword,
    Qword,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ArgCompare {
    Eq,
    Ne,
    Ge,
    Gt,
    Le,
    Lt,
    /// `(arg & mask) == val`.
    MaskedEq(u64),
}

/// One pinned argument. All pins of an entry must hold together.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgRule {
    pub index: u8,
    #[serde(rename = "type")]
    pub width: ArgWidth,
    pub op: ArgCompare,
    pub val: u64,
    pub comment: String,
}

/// One allowed syscall. Several entries for the same name are alternatives
/// (e.g. `socket` with `AF_INET` or with `AF_INET6`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyscallEntry {
    pub name: String,
    #[serde(default)]
    pub args: Vec<ArgRule>,
    pub comment: String,
}

/// A process's seccomp profile as written in the data file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeccompProfile {
    pub process: String,
    pub comment: String,
    pub default_action: SeccompAction,
    /// Why this process gets this default action (kill vs errno).
    pub default_action_reason: String,
    pub filter_action: SeccompAction,
    pub syscalls: Vec<SyscallEntry>,
}

/// A profile checked against the target architecture and ready to install.
pub struct CompiledFilter {
    pub path: PathBuf,
    pub default_action: SeccompAction,
    pub program: seccompiler::BpfProgram,
}

pub fn profile_path(profiles_dir: &Path, role: Role) -> PathBuf {
    profiles_dir.join(format!("{}.json", role.as_str()))
}

/// Read, validate and compile the profile of `role` from `profiles_dir`.
pub fn load(profiles_dir: &Path, role: Role) -> Result<CompiledFilter, ConfineError> {
    let path = profile_path(profiles_dir, role);
    super::reach::require_reachable(&path)?;
    let text = std::fs::read_to_string(&path)
        .map_err(|source| ConfineError::ProfileUnreadable { path: path.clone(), source })?;
    compile(&path, &text, role)
}

/// Validate and compile profile text; `path` is only used in error messages.
pub fn compile(path: &Path, text: &str, role: Role) -> Result<CompiledFilter, ConfineError> {
    let profile: SeccompProfile = serde_json::from_str(text)
        .map_err(|e| ConfineError::ProfileInvalid { path: path.to_path_buf(), message: e.to_string() })?;
    let arch = target_arch(path)?;
    validate(path, &profile, role, arch)?;

    let filter = serde_json::json!({
        role.as_str(): {
            "default_action": profile.default_action,
            "filter_action": profile.filter_action,
            "filter": profile.syscalls.iter().map(|entry| {
                let mut rule = serde_json::json!({ "syscall": entry.name });
                if !entry.args.is_empty() {
                    rule["args"] = entry.args.iter().map(|a| serde_json::json!({
                        "index": a.index, "type": a.width, "op": a.op, "val": a.val,
                    })).collect();
                }
                rule
            }).collect::<Vec<_>>(),
        }
    });
    let compile_error = |message: String| ConfineError::SeccompCompile { path: path.to_path_buf(), message };
    let bytes = serde_json::to_vec(&filter).map_err(|e| compile_error(e.to_string()))?;
    let mut programs =
        seccompiler::compile_from_json(bytes.as_slice(), arch).map_err(|e| compile_error(e.to_string()))?;
    let program = programs.remove(role.as_str()).ok_or_else(|| compile_error("no program produced".into()))?;
    Ok(CompiledFilter { path: path.to_path_buf(), default_action: profile.default_action, program })
}

fn target_arch(path: &Path) -> Result<seccompiler::TargetArch, ConfineError> {
    seccompiler::TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| ConfineError::SeccompCompile { path: path.to_path_buf(), message: format!("{e:?}") })
}

fn validate(
    path: &Path,
    profile: &SeccompProfile,
    role: Role,
    arch: seccompiler::TargetArch,
) -> Result<(), ConfineError> {
    let invalid = |message: String| ConfineError::ProfileInvalid { path: path.to_path_buf(), message };
    if profile.process != role.as_str() {
        return Err(invalid(format!("written for process {:?}, loaded for {}", profile.process, role)));
    }
    if profile.comment.trim().is_empty() || profile.default_action_reason.trim().is_empty() {
        return Err(invalid("comment and default_action_reason must say why".into()));
    }
    if profile.filter_action != SeccompAction::Allow {
        return Err(invalid("filter_action must be \"allow\": profiles are allow-lists".into()));
    }
    if matches!(profile.default_action, SeccompAction::Allow | SeccompAction::Log) {
        return Err(invalid("default_action must deny (kill_process, kill_thread, errno or trap)".into()));
    }
    if profile.syscalls.is_empty() {
        return Err(invalid("syscalls is empty".into()));
    }

    // Whether each name was seen with or without argument pins.
    let mut seen: BTreeMap<&str, bool> = BTreeMap::new();
    for (index, entry) in profile.syscalls.iter().enumerate() {
        let entry_error = |message: String| ConfineError::ProfileEntryInvalid {
            path: path.to_path_buf(),
            index,
            entry: entry.name.clone(),
            message,
        };
        if entry.comment.trim().is_empty() {
            return Err(entry_error("comment is empty: say which code path needs this syscall".into()));
        }
        if let Some(arg) = entry.args.iter().find(|a| a.comment.trim().is_empty()) {
            return Err(entry_error(format!("argument {} pin has an empty comment", arg.index)));
        }
        if let Some(arg) = entry.args.iter().find(|a| a.index > 5) {
            return Err(entry_error(format!("argument index {} out of range 0..=5", arg.index)));
        }
        if !syscall_exists(&entry.name, arch) {
            return Err(entry_error(format!("unknown syscall for {arch:?}")));
        }
        let pinned = !entry.args.is_empty();
        match seen.insert(&entry.name, pinned) {
            Some(false) => return Err(entry_error("already allowed unconditionally by an earlier entry".into())),
            Some(true) if !pinned => {
                return Err(entry_error("an unconditional entry would void the earlier argument pins".into()));
            }
            _ => {}
        }
    }
    Ok(())
}

/// seccompiler keeps its syscall table private; compiling a one-entry filter
/// is how we ask it whether a name exists on this architecture.
fn syscall_exists(name: &str, arch: seccompiler::TargetArch) -> bool {
    let probe = serde_json::json!({
        "probe": { "default_action": "kill_process", "filter_action": "allow", "filter": [{ "syscall": name }] }
    });
    serde_json::to_vec(&probe).is_ok_and(|bytes| seccompiler::compile_from_json(bytes.as_slice(), arch).is_ok())
}

/// Install the filter on every thread of the process. Irreversible.
pub fn install(filter: &CompiledFilter) -> Result<(), ConfineError> {
    seccompiler::apply_filter_all_threads(&filter.program)
        .map_err(|e| ConfineError::SeccompApply { message: format!("{}: {e}", filter.path.display()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile_with(entries: &str) -> String {
        format!(
            r#"{{"process":"signer","comment":"test","default_action":"kill_process",
               "default_action_reason":"test","filter_action":"allow","syscalls":[{entries}]}}"#
        )
    }

    fn compile_signer(text: &str) -> Result<CompiledFilter, ConfineError> {
        compile(Path::new("sandbox-profiles/signer.json"), text, Role::Signer)
    }

    #[test]
    fn entry_without_comment_is_refused() {
        let e = compile_signer(&profile_with(r#"{"name":"read"}"#)).err().unwrap();
        assert_eq!(e.code(), "sandbox_profile_invalid");
        assert!(e.to_string().contains("comment"), "{e}");
    }

    #[test]
    fn blank_comment_is_refused_with_the_entry_named() {
        let e = compile_signer(&profile_with(r#"{"name":"read","comment":"ok"},{"name":"write","comment":"  "}"#))
            .err()
            .unwrap();
        assert_eq!(e.code(), "sandbox_profile_entry_invalid");
        let text = e.to_string();
        assert!(text.contains("signer.json") && text.contains("#1") && text.contains("write"), "{text}");
    }

    #[test]
    fn unknown_syscall_is_refused_with_file_and_entry_named() {
        let e = compile_signer(&profile_with(r#"{"name":"read","comment":"ok"},{"name":"reed","comment":"typo"}"#))
            .err()
            .unwrap();
        let text = e.to_string();
        assert_eq!(e.code(), "sandbox_profile_entry_invalid");
        assert!(text.contains("signer.json") && text.contains("reed") && text.contains("unknown syscall"), "{text}");
    }

    #[test]
    fn broken_json_is_a_clear_error() {
        let e = compile_signer("{\"process\": \"signer\", ").err().unwrap();
        assert_eq!(e.code(), "sandbox_profile_invalid");
        assert!(e.to_string().contains("signer.json") && e.to_string().contains("EOF"), "{e}");
    }

    #[test]
    fn unknown_field_is_refused() {
        let text = profile_with(r#"{"name":"read","comment":"ok","why":"x"}"#);
        assert!(compile_signer(&text).err().unwrap().to_string().contains("why"));
    }

    #[test]
    fn allow_all_default_is_refused() {
        let text = profile_with(r#"{"name":"read","comment":"ok"}"#).replace("\"kill_process\"", "\"allow\"");
        assert!(compile_signer(&text).is_err());
    }

    #[test]
    fn unconditional_entry_cannot_void_argument_pins() {
        let text = profile_with(
            r#"{"name":"socket","args":[{"index":0,"type":"dword","op":"eq","val":1,"comment":"AF_UNIX"}],"comment":"ipc"},
               {"name":"socket","comment":"oops"}"#,
        );
        let e = compile_signer(&text).err().unwrap();
        assert!(e.to_string().contains("void"), "{e}");
    }

    #[test]
    fn profile_for_another_process_is_refused() {
        let text = profile_with(r#"{"name":"read","comment":"ok"}"#);
        let e = compile(Path::new("front.json"), &text, Role::Front).err().unwrap();
        assert!(e.to_string().contains("loaded for front"), "{e}");
    }

    #[test]
    fn masked_argument_pin_compiles() {
        let text = profile_with(
            r#"{"name":"mprotect","args":[{"index":2,"type":"dword","op":{"masked_eq":4},"val":0,"comment":"no PROT_EXEC"}],"comment":"guard pages"}"#,
        );
        assert!(!compile_signer(&text).unwrap().program.is_empty());
    }

    #[test]
    fn shipped_profiles_load_and_explain_every_entry() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sandbox-profiles");
        for role in Role::CHILDREN {
            let filter = load(&dir, role).unwrap_or_else(|e| panic!("{role}: {e}"));
            assert!(!filter.program.is_empty());
        }
    }
}
