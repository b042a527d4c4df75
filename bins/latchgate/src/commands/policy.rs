//! `latchgate policy grant|revoke|show`: the per-principal ACL in
//! `<policies_dir>/data.json`. Edits go through the broker's ACL editor
//! (pattern grammar checks, `acl_revision` bump, atomic rewrite); the running
//! gate reloads the file.
//!
//! Concurrent edits are serialised with an exclusive `flock` on the policies
//! directory: the file itself is replaced by rename on every edit, so a lock on
//! it would not outlive the first writer, and without a lock two operators
//! could each read revision N and one grant would silently be lost.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use latchgate_broker::policy::{self as acl, AclEditError, AclEntries, DATA_FILE};
use latchgate_core::config::LoadedConfig;
use nix::fcntl::Flock;
use serde::Serialize;
use serde_json::Value;

use super::output::{self, Exit, Failure, Table, Tone};

#[derive(clap::Subcommand)]
pub enum PolicyCommand {
    /// Allow PRINCIPAL to run actions matching ACTION_PATTERN (`http_fetch`, `github.*`, `fs.**`, `**`).
    Grant(EditArgs),
    /// Remove exactly ACTION_PATTERN from PRINCIPAL (a broader pattern it also has stays).
    Revoke(EditArgs),
    /// Print the ACL, or PRINCIPAL's entries plus those of `*` (which apply to every principal).
    Show(ShowArgs),
}

#[derive(clap::Args)]
pub struct EditArgs {
    /// The principal (as the lease's `sub`), or `*` for every principal.
    principal: String,
    /// An action id, `<prefix>*`, `<prefix>.**` or `**`.
    action_pattern: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct ShowArgs {
    principal: Option<String>,
    /// Print the ACL as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct EditResult<'a> {
    ok: bool,
    changed: bool,
    principal: &'a str,
    pattern: &'a str,
    /// The principal's entries after the edit.
    patterns: Vec<String>,
    acl_revision: u64,
    file: &'a Path,
}

#[derive(Serialize)]
struct ShowResult<'a> {
    acl_revision: u64,
    file: &'a Path,
    acl: AclEntries,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Edit {
    Grant,
    Revoke,
}

pub fn run(config: &Path, command: PolicyCommand) -> ExitCode {
    match command {
        PolicyCommand::Grant(args) => output::finish(args.json, edit(config, Edit::Grant, &args)),
        PolicyCommand::Revoke(args) => output::finish(args.json, edit(config, Edit::Revoke, &args)),
        PolicyCommand::Show(args) => output::finish(args.json, show(config, &args)),
    }
}

fn data_file(config: &Path) -> Result<PathBuf, Failure> {
    Ok(LoadedConfig::load(config)?.policies_dir().join(DATA_FILE))
}

fn edit(config: &Path, edit: Edit, args: &EditArgs) -> Result<Exit, Failure> {
    let path = data_file(config)?;
    let _lock = lock_policies_dir(&path)?;
    let (principal, pattern) = (args.principal.as_str(), args.action_pattern.as_str());
    let mut data = acl::read_data_file(&path).map_err(|e| acl_failure(&path, e))?;
    let changed = match edit {
        Edit::Grant => acl::grant(&mut data, principal, pattern),
        Edit::Revoke => acl::revoke(&mut data, principal, pattern),
    }
    .map_err(|e| acl_failure(&path, e))?;
    if changed {
        acl::write_data_file(&path, &data).map_err(|e| acl_failure(&path, e))?;
    }
    let entries = acl::show(&data).map_err(|e| acl_failure(&path, e))?;
    let result = EditResult {
        ok: true,
        changed,
        principal,
        pattern,
        patterns: entries.get(principal).cloned().unwrap_or_default(),
        acl_revision: acl_revision(&data),
        file: &path,
    };
    if args.json {
        output::print_json(&result);
    } else {
        print_edit(edit, &result);
    }
    Ok(Exit::Ok)
}

fn print_edit(edit: Edit, r: &EditResult<'_>) {
    let text = match (edit, r.changed) {
        (Edit::Grant, true) => format!(
            "granted {} to {} (acl_revision {}); the running gate reloads {}\n",
            r.pattern,
            r.principal,
            r.acl_revision,
            r.file.display()
        ),
        (Edit::Grant, false) => format!("{} already has {}; nothing changed\n", r.principal, r.pattern),
        (Edit::Revoke, true) => format!(
            "revoked {} from {} (acl_revision {}); the running gate reloads {}\n",
            r.pattern,
            r.principal,
            r.acl_revision,
            r.file.display()
        ),
        (Edit::Revoke, false) if r.patterns.is_empty() => {
            format!("{} has no ACL entries; nothing changed\n", r.principal)
        }
        (Edit::Revoke, false) => format!(
            "{} has no entry {} (its entries: {}); nothing changed\n",
            r.principal,
            r.pattern,
            r.patterns.join(", ")
        ),
    };
    output::write_stdout(&text);
}

fn show(config: &Path, args: &ShowArgs) -> Result<Exit, Failure> {
    let path = data_file(config)?;
    let data = acl::read_data_file(&path).map_err(|e| acl_failure(&path, e))?;
    let mut entries = acl::show(&data).map_err(|e| acl_failure(&path, e))?;
    if let Some(principal) = &args.principal {
        entries.retain(|p, _| p == principal || p == "*");
    }
    let result = ShowResult { acl_revision: acl_revision(&data), file: &path, acl: entries };
    if args.json {
        output::print_json(&result);
        return Ok(Exit::Ok);
    }
    let mut table = Table::new(&["PRINCIPAL", "ACTION PATTERNS"]);
    for (principal, patterns) in &result.acl {
        let tone = if principal == "*" { Tone::Warn } else { Tone::Plain };
        table.row(vec![(principal.clone(), tone), (patterns.join(", "), Tone::Plain)]);
    }
    let mut text = format!("acl_revision {} ({})\n", result.acl_revision, path.display());
    if table.is_empty() {
        text.push_str("no ACL entries: every action is denied\n");
    } else {
        text.push_str(&table.render(output::stdout_colour()));
        if result.acl.contains_key("*") {
            text.push_str("(`*` applies to every principal)\n");
        }
    }
    output::write_stdout(&text);
    Ok(Exit::Ok)
}

fn acl_revision(data: &Value) -> u64 {
    data.pointer("/policy_data/acl_revision").and_then(Value::as_u64).unwrap_or(0)
}

/// Holds an exclusive lock on the directory of `data_file` until dropped.
fn lock_policies_dir(data_file: &Path) -> Result<Flock<File>, Failure> {
    let remediation = "run as a user that can read and write the policies dir, or pass --config FILE";
    super::lock::lock_parent_dir(data_file, "policy_data_io_error", remediation)
}

fn acl_failure(path: &Path, e: AclEditError) -> Failure {
    let remediation = match &e {
        AclEditError::InvalidPrincipal(_) => {
            "a principal is 1-128 letters, digits or `_ . @ : -` (or `*` for every principal)"
        }
        AclEditError::InvalidPattern(_) => {
            "use an action id (http_fetch), `<prefix>*` (github.issue_*), `<prefix>.**` (github.**) or `**`"
        }
        AclEditError::Malformed(_) => "repair data.json: policy_data.acl must map principals to lists of patterns",
        AclEditError::Io { .. } => "check that the policies dir exists and is writable by you, or pass --config FILE",
    };
    let message = match &e {
        AclEditError::Malformed(_) => format!("{}: {e}", path.display()),
        _ => e.to_string(),
    };
    Failure::new(e.code(), message, remediation)
}
