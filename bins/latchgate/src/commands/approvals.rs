//! `latchgate approvals list|show|approve|deny`: held calls waiting for an
//! operator (docs/approvals.md).

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;

use super::admin_client::{AdminSession, OperatorArgs, path_segment, query_string};
use super::output::{self, Exit, Failure, Table, Tone, list_text, sanitize, value_text as text};

#[derive(clap::Subcommand)]
pub enum ApprovalsCommand {
    /// Approvals, newest first (default: pending ones).
    List(ListArgs),
    /// One approval with its whole plan (what would run).
    Show(IdArgs),
    /// Re-check the plan against the gate as it is now and run it.
    Approve(ApproveArgs),
    /// Refuse the plan, with a reason the agent sees.
    Deny(DenyArgs),
}

#[derive(clap::Args)]
pub struct ListArgs {
    /// pending, approved, denied, expired, failed or all.
    #[arg(long, default_value = "pending")]
    status: String,
    #[arg(long, default_value_t = 100)]
    limit: u32,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct IdArgs {
    approval_id: String,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct ApproveArgs {
    approval_id: String,
    /// A note recorded with the approval.
    #[arg(long)]
    comment: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct DenyArgs {
    approval_id: String,
    /// Why (recorded, and shown to the agent).
    #[arg(long)]
    reason: String,
    #[arg(long)]
    json: bool,
}

pub fn run(config: &Path, operator: &OperatorArgs, command: ApprovalsCommand) -> ExitCode {
    match command {
        ApprovalsCommand::List(args) => output::finish(args.json, list(config, operator, &args)),
        ApprovalsCommand::Show(args) => output::finish(args.json, show(config, operator, &args)),
        ApprovalsCommand::Approve(args) => output::finish(args.json, approve(config, operator, &args)),
        ApprovalsCommand::Deny(args) => output::finish(args.json, deny(config, operator, &args)),
    }
}

fn status_tone(status: &str) -> Tone {
    match status {
        "executed" => Tone::Good,
        "pending" | "deciding" | "executing" | "outcome_unknown" => Tone::Warn,
        "denied" | "expired" | "failed" | "execution_failed" | "not_executed" => Tone::Bad,
        _ => Tone::Plain,
    }
}

fn list(config: &Path, operator: &OperatorArgs, args: &ListArgs) -> Result<Exit, Failure> {
    let mut session = AdminSession::connect(config, operator)?;
    let query = query_string(&[("status", Some(args.status.clone())), ("limit", Some(args.limit.to_string()))]);
    let doc = session.get(&format!("/v1/approvals{query}"))?;
    if args.json {
        output::print_json(&doc);
        return Ok(Exit::Ok);
    }
    let approvals = doc["approvals"].as_array().cloned().unwrap_or_default();
    if approvals.is_empty() {
        eprintln!("no {} approvals", args.status);
        return Ok(Exit::Ok);
    }
    let mut table = Table::new(&["APPROVAL", "STATUS", "ACTION", "PRINCIPAL", "CREATED", "EXPIRES", "DECIDED BY"]);
    for a in &approvals {
        let status = text(&a["status"]);
        table.row(vec![
            (text(&a["approval_id"]), Tone::Plain),
            (status.clone(), status_tone(&status)),
            (text(&a["action_id"]), Tone::Plain),
            (text(&a["principal"]), Tone::Plain),
            (text(&a["created_at"]), Tone::Dim),
            (text(&a["expires_at"]), Tone::Dim),
            (text(&a["decided_by"]), Tone::Plain),
        ]);
    }
    output::write_stdout(&table.render(output::stdout_colour()));
    if args.status == "pending" {
        eprintln!("inspect with: latchgate approvals show <id>");
    }
    Ok(Exit::Ok)
}

fn show(config: &Path, operator: &OperatorArgs, args: &IdArgs) -> Result<Exit, Failure> {
    let mut session = AdminSession::connect(config, operator)?;
    let doc = session.get(&format!("/v1/approvals/{}", path_segment(&args.approval_id)?))?;
    if args.json {
        output::print_json(&doc);
        return Ok(Exit::Ok);
    }
    let colour = output::stdout_colour();
    let status = text(&doc["status"]);
    let mut out =
        format!("approval {} {}\n", sanitize(&text(&doc["approval_id"])), status_tone(&status).paint(&status, colour));
    let plan = &doc["plan"];
    for (label, value) in [
        ("action", format!("{} {}", text(&doc["action_id"]), text(&plan["action_version"]))),
        ("risk", text(&plan["risk_level"])),
        ("principal", text(&doc["principal"])),
        ("session", text(&doc["session_id"])),
        ("created", text(&doc["created_at"])),
        ("expires", text(&doc["expires_at"])),
        ("sinks", list_text(&plan["allowed_sinks"])),
        ("secrets", list_text(&plan["approved_secrets"])),
        ("request hash", text(&doc["request_hash"])),
        ("plan hash", text(&doc["plan_hash"])),
        ("decided by", text(&doc["decided_by"])),
        ("reason", text(&doc["reason"])),
        ("receipt", text(&doc["receipt_id"])),
    ] {
        if !value.trim().is_empty() {
            out.push_str(&format!("  {label:<13} {}\n", sanitize(&value)));
        }
    }
    let params = serde_json::to_string_pretty(&plan["params"]).unwrap_or_default();
    out.push_str("  params:\n");
    for line in params.lines() {
        out.push_str(&format!("    {}\n", sanitize(line)));
    }
    if status == "pending" {
        out.push_str("decide with: latchgate approvals approve <id>  |  latchgate approvals deny <id> --reason TEXT\n");
    }
    output::write_stdout(&out);
    Ok(Exit::Ok)
}

fn approve(config: &Path, operator: &OperatorArgs, args: &ApproveArgs) -> Result<Exit, Failure> {
    let mut session = AdminSession::connect(config, operator)?;
    let path = format!("/v1/approvals/{}/approve", path_segment(&args.approval_id)?);
    let body = match &args.comment {
        Some(comment) => json!({"comment": comment}),
        None => json!({}),
    };
    let (status, doc) = session.raw(http::Method::POST, &path, Some(body.to_string().into_bytes()))?;
    // 502: approved and ran, but the action failed; it has a receipt.
    if status != 200 && status != 502 {
        return Err(super::admin_client::api_failure(status, &doc));
    }
    if args.json {
        output::print_json(&doc);
    } else {
        let colour = output::stdout_colour();
        let line = if status == 200 {
            format!(
                "{} approval {}: {} executed, receipt {}\n",
                Tone::Good.paint("approved", colour),
                sanitize(&args.approval_id),
                sanitize(&text(&doc["action_id"])),
                sanitize(&text(&doc["receipt_id"])),
            )
        } else {
            format!(
                "{} approval {}: the action ran and failed ({}), receipt {}\n",
                Tone::Bad.paint("approved", colour),
                sanitize(&args.approval_id),
                sanitize(&text(&doc["failure_class"])),
                sanitize(&text(&doc["receipt_id"])),
            )
        };
        output::write_stdout(&line);
    }
    Ok(if status == 200 { Exit::Ok } else { Exit::Error })
}

fn deny(config: &Path, operator: &OperatorArgs, args: &DenyArgs) -> Result<Exit, Failure> {
    let mut session = AdminSession::connect(config, operator)?;
    let path = format!("/v1/approvals/{}/deny", path_segment(&args.approval_id)?);
    let doc = session.post(&path, &json!({"reason": args.reason}))?;
    if args.json {
        output::print_json(&doc);
    } else {
        output::write_stdout(&format!(
            "{} approval {}: {}\n",
            Tone::Bad.paint("denied", output::stdout_colour()),
            sanitize(&args.approval_id),
            sanitize(&args.reason)
        ));
    }
    Ok(Exit::Ok)
}
