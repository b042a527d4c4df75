//! Gate-wide operator actions: `revoke` (the kill switch), `intents`,
//! `drain`, `reload`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use serde_json::json;

use super::admin_client::{AdminSession, OperatorArgs};
use super::output::{self, Exit, Failure, Table, Tone, list_text, sanitize, value_text as text};

#[derive(clap::Args)]
pub struct JsonArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct RevokeArgs {
    /// Do not ask for confirmation.
    #[arg(short = 'y', long = "yes")]
    yes: bool,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct DrainArgs {
    /// Accept new executions again.
    #[arg(long)]
    resume: bool,
    #[arg(long)]
    json: bool,
}

pub fn revoke(config: &Path, operator: &OperatorArgs, args: RevokeArgs) -> ExitCode {
    output::finish(args.json, revoke_all(config, operator, &args))
}

fn confirm(question: &str) -> Result<bool, Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::new(
            "confirmation_required",
            "refusing to revoke every lease without confirmation (stdin is not a terminal)",
            "run it on a terminal, or pass -y if you mean it",
        ));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Failure::new("confirmation_required", e, "pass -y to skip the question"))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES"))
}

fn revoke_all(config: &Path, operator: &OperatorArgs, args: &RevokeArgs) -> Result<Exit, Failure> {
    if !args.yes
        && !confirm(
            "Revoke EVERY lease and grant issued so far? Every agent must lease again and pending approvals fail",
        )?
    {
        eprintln!("nothing revoked");
        return Ok(Exit::Error);
    }
    let mut session = AdminSession::connect(config, operator)?;
    let doc = session.post("/v1/admin/revoke-all", &json!({}))?;
    if args.json {
        output::print_json(&doc);
    } else {
        output::write_stdout(&format!(
            "{}: revocation epoch is now {}; every older lease and grant is refused\n",
            Tone::Warn.paint("revoked", output::stdout_colour()),
            text(&doc["revocation_epoch"])
        ));
    }
    Ok(Exit::Ok)
}

pub fn intents(config: &Path, operator: &OperatorArgs, args: JsonArgs) -> ExitCode {
    output::finish(args.json, list_intents(config, operator, &args))
}

fn list_intents(config: &Path, operator: &OperatorArgs, args: &JsonArgs) -> Result<Exit, Failure> {
    let mut session = AdminSession::connect(config, operator)?;
    let doc = session.get("/v1/admin/intents/unresolved")?;
    if args.json {
        output::print_json(&doc);
        return Ok(Exit::Ok);
    }
    let intents = doc["intents"].as_array().cloned().unwrap_or_default();
    if intents.is_empty() {
        output::write_stdout("no unresolved intents: every dispatched call has its outcome on record\n");
        return Ok(Exit::Ok);
    }
    let mut table = Table::new(&["INTENT", "ACTION", "CREATED", "TRACE", "GRANT"]);
    for i in &intents {
        table.row(vec![
            (text(&i["intent_id"]), Tone::Bad),
            (text(&i["action_id"]), Tone::Plain),
            (text(&i["created_at"]), Tone::Dim),
            (text(&i["trace_id"]), Tone::Dim),
            (text(&i["grant_id"]), Tone::Dim),
        ]);
    }
    output::write_stdout(&table.render(output::stdout_colour()));
    eprintln!(
        "these calls were dispatched and their outcome is unknown: check each effect (latchgate audit --trace-id TRACE)"
    );
    Ok(Exit::Ok)
}

pub fn drain(config: &Path, operator: &OperatorArgs, args: DrainArgs) -> ExitCode {
    output::finish(args.json, set_drain(config, operator, &args))
}

fn set_drain(config: &Path, operator: &OperatorArgs, args: &DrainArgs) -> Result<Exit, Failure> {
    let mut session = AdminSession::connect(config, operator)?;
    let path = if args.resume { "/v1/admin/resume" } else { "/v1/admin/drain" };
    let doc = session.post(path, &json!({}))?;
    if args.json {
        output::print_json(&doc);
    } else if args.resume {
        output::write_stdout("resumed: new executions are accepted\n");
    } else {
        output::write_stdout(&format!(
            "{}: new executions get 503 draining; {} in flight (watch: latchgate status)\n",
            Tone::Warn.paint("draining", output::stdout_colour()),
            text(&doc["in_flight_executions"])
        ));
    }
    Ok(Exit::Ok)
}

pub fn reload(config: &Path, operator: &OperatorArgs, args: JsonArgs) -> ExitCode {
    output::finish(args.json, do_reload(config, operator, &args))
}

fn do_reload(config: &Path, operator: &OperatorArgs, args: &JsonArgs) -> Result<Exit, Failure> {
    let mut session = AdminSession::connect(config, operator)?;
    let doc = session.post("/v1/admin/reload", &json!({}))?;
    if args.json {
        output::print_json(&doc);
        return Ok(Exit::Ok);
    }
    let m = &doc["manifests"];
    let mut out =
        format!("reloaded {} actions (policy {})\n", text(&m["actions"]), sanitize(&text(&doc["policy_version"])));
    for (label, key) in [("added", "added"), ("removed", "removed"), ("changed", "changed"), ("UNTRUSTED", "untrusted")]
    {
        let names = list_text(&m[key]);
        if !names.is_empty() {
            out.push_str(&format!("  {label:<9} {}\n", sanitize(&names)));
        }
    }
    output::write_stdout(&out);
    Ok(Exit::Ok)
}
