//! `latchgate policy grant|revoke|show`: the per-principal ACL in
//! `<policies_dir>/data.json`, through the admin socket by default (the
//! broker edits and reloads before answering), or `--offline` on the file.
//! Both use the broker's ACL editor (pattern grammar checks, `acl_revision`
//! bump, atomic rewrite under an exclusive `flock` on the policies dir, so two
//! concurrent edits never both read revision N and lose one).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use latchgate_broker::policy::{self as acl, AclEditError, AclEntries, DATA_FILE};
use latchgate_core::config::LoadedConfig;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::admin_client::{AdminSession, OperatorArgs};
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
    /// Edit data.json directly instead of through the gate (the gate reloads it within a second).
    #[arg(long)]
    offline: bool,
}

#[derive(clap::Args)]
pub struct ShowArgs {
    principal: Option<String>,
    /// Print the ACL as JSON.
    #[arg(long)]
    json: bool,
    /// Read data.json directly instead of asking the gate.
    #[arg(long)]
    offline: bool,
}

#[derive(Serialize, Deserialize)]
struct EditResult {
    ok: bool,
    changed: bool,
    principal: String,
    pattern: String,
    /// The principal's entries after the edit.
    patterns: Vec<String>,
    acl_revision: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<PathBuf>,
}

#[derive(Serialize, Deserialize)]
struct ShowResult {
    acl_revision: u64,
    file: PathBuf,
    acl: AclEntries,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Edit {
    Grant,
    Revoke,
}

pub fn run(config: &Path, operator: &OperatorArgs, command: PolicyCommand) -> ExitCode {
    match command {
        PolicyCommand::Grant(args) => output::finish(args.json, edit(config, operator, Edit::Grant, &args)),
        PolicyCommand::Revoke(args) => output::finish(args.json, edit(config, operator, Edit::Revoke, &args)),
        PolicyCommand::Show(args) => output::finish(args.json, show(config, operator, &args)),
    }
}

fn data_file(config: &Path) -> Result<PathBuf, Failure> {
    Ok(LoadedConfig::load(config)?.policies_dir().join(DATA_FILE))
}

fn edit(config: &Path, operator: &OperatorArgs, edit: Edit, args: &EditArgs) -> Result<Exit, Failure> {
    let result =
        if args.offline { edit_offline(config, edit, args)? } else { edit_online(config, operator, edit, args)? };
    if args.json {
        output::print_json(&result);
    } else {
        print_edit(edit, &result);
    }
    Ok(Exit::Ok)
}

fn edit_online(config: &Path, operator: &OperatorArgs, edit: Edit, args: &EditArgs) -> Result<EditResult, Failure> {
    let mut session = AdminSession::connect(config, operator)?;
    let path = match edit {
        Edit::Grant => "/v1/admin/policy/grant",
        Edit::Revoke => "/v1/admin/policy/revoke",
    };
    let doc = session.post(path, &json!({"principal": args.principal, "action_pattern": args.action_pattern}))?;
    serde_json::from_value(doc).map_err(|e| {
        Failure::new("unexpected_response", format!("the gate's answer does not parse: {e}"), "use a matching CLI")
    })
}

fn edit_offline(config: &Path, edit: Edit, args: &EditArgs) -> Result<EditResult, Failure> {
    let path = data_file(config)?;
    let (principal, pattern) = (args.principal.as_str(), args.action_pattern.as_str());
    let (changed, data) = acl::locked_update(&path, |data| match edit {
        Edit::Grant => acl::grant(data, principal, pattern),
        Edit::Revoke => acl::revoke(data, principal, pattern),
    })
    .map_err(|e| acl_failure(&path, e))?;
    let entries = acl::show(&data).map_err(|e| acl_failure(&path, e))?;
    Ok(EditResult {
        ok: true,
        changed,
        principal: principal.to_string(),
        pattern: pattern.to_string(),
        patterns: entries.get(principal).cloned().unwrap_or_default(),
        acl_revision: acl_revision(&data),
        file: Some(path),
    })
}

fn print_edit(edit: Edit, r: &EditResult) {
    let applied = match &r.file {
        Some(file) => format!("the running gate reloads {}", file.display()),
        None => "in force now".to_string(),
    };
    let text = match (edit, r.changed) {
        (Edit::Grant, true) => {
            format!("granted {} to {} (acl_revision {}); {applied}\n", r.pattern, r.principal, r.acl_revision)
        }
        (Edit::Grant, false) => format!("{} already has {}; nothing changed\n", r.principal, r.pattern),
        (Edit::Revoke, true) => {
            format!("revoked {} from {} (acl_revision {}); {applied}\n", r.pattern, r.principal, r.acl_revision)
        }
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

fn show(config: &Path, operator: &OperatorArgs, args: &ShowArgs) -> Result<Exit, Failure> {
    let mut result = if args.offline {
        let path = data_file(config)?;
        let data = acl::read_data_file(&path).map_err(|e| acl_failure(&path, e))?;
        let acl = acl::show(&data).map_err(|e| acl_failure(&path, e))?;
        ShowResult { acl_revision: acl_revision(&data), file: path, acl }
    } else {
        let mut session = AdminSession::connect(config, operator)?;
        let doc = session.get("/v1/admin/policy/acl")?;
        serde_json::from_value(doc).map_err(|e| {
            Failure::new("unexpected_response", format!("the gate's answer does not parse: {e}"), "use a matching CLI")
        })?
    };
    if let Some(principal) = &args.principal {
        result.acl.retain(|p, _| p == principal || p == "*");
    }
    let path = result.file.clone();
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

fn acl_failure(path: &Path, e: AclEditError) -> Failure {
    let remediation = match &e {
        AclEditError::InvalidPrincipal(_) => {
            "a principal is 1-128 letters, digits or `_ . @ : -` (or `*` for every principal)"
        }
        AclEditError::InvalidPattern(_) => {
            "use an action id (http_fetch), `<prefix>*` (github.issue_*), `<prefix>.**` (github.**) or `**`"
        }
        AclEditError::InvalidHost(_) => "a host is a lower-case name or IP address, without wildcard",
        AclEditError::Malformed(_) => "repair data.json: policy_data.acl must map principals to lists of patterns",
        AclEditError::Io { .. } => "check that the policies dir exists and is writable by you, or pass --config FILE",
    };
    let message = match &e {
        AclEditError::Malformed(_) => format!("{}: {e}", path.display()),
        _ => e.to_string(),
    };
    Failure::new(e.code(), message, remediation)
}
