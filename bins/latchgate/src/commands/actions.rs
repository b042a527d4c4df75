//! `latchgate actions [ID]`: the registered actions and their digest trust,
//! or one action in detail (`GET /v1/admin/actions[/{id}]`).

use std::path::Path;
use std::process::ExitCode;

use serde_json::Value;

use super::admin_client::{AdminSession, OperatorArgs, path_segment};
use super::output::{self, Exit, Failure, Table, Tone, list_text, sanitize, value_text as text};

#[derive(clap::Args)]
pub struct ActionsArgs {
    /// Show this action in detail.
    action_id: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(config: &Path, operator: &OperatorArgs, args: ActionsArgs) -> ExitCode {
    output::finish(args.json, actions(config, operator, &args))
}

fn egress_text(egress: &Value) -> String {
    match egress {
        Value::String(s) => s.clone(),
        other => list_text(&other["proxy_allowlist"]["allowed_domains"]),
    }
}

fn actions(config: &Path, operator: &OperatorArgs, args: &ActionsArgs) -> Result<Exit, Failure> {
    let mut session = AdminSession::connect(config, operator)?;
    let colour = output::stdout_colour();
    match &args.action_id {
        None => {
            let doc = session.get("/v1/admin/actions")?;
            if args.json {
                output::print_json(&doc);
                return Ok(Exit::Ok);
            }
            let mut table = Table::new(&["ACTION", "VERSION", "RISK", "TRUSTED", "EGRESS"]);
            for a in doc["actions"].as_array().into_iter().flatten() {
                let risk = text(&a["risk_level"]);
                let risk_tone = if matches!(risk.as_str(), "high" | "critical") { Tone::Warn } else { Tone::Plain };
                let trusted = a["trusted"] == true;
                table.row(vec![
                    (text(&a["action_id"]), Tone::Plain),
                    (text(&a["version"]), Tone::Dim),
                    (risk, risk_tone),
                    (if trusted { "yes" } else { "NO" }.into(), if trusted { Tone::Good } else { Tone::Bad }),
                    (egress_text(&a["egress"]), Tone::Dim),
                ]);
            }
            output::write_stdout(&table.render(colour));
        }
        Some(id) => {
            let path = format!("/v1/admin/actions/{}", path_segment(id)?);
            let doc = session.get(&path)?;
            if args.json {
                output::print_json(&doc);
                return Ok(Exit::Ok);
            }
            let trusted = doc["trusted"] == true;
            let mut out = format!(
                "{} {} ({}, risk {}) — {}\n",
                sanitize(&text(&doc["action_id"])),
                sanitize(&text(&doc["version"])),
                sanitize(&text(&doc["provider"])),
                sanitize(&text(&doc["risk_level"])),
                if trusted { Tone::Good.paint("trusted", colour) } else { Tone::Bad.paint("NOT TRUSTED", colour) },
            );
            for (label, value) in [
                ("description", text(&doc["description"])),
                ("source", text(&doc["source"])),
                ("module digest", text(&doc["provider_module_digest"])),
                ("definition hash", text(&doc["definition_hash"])),
                ("required scopes", list_text(&doc["required_scopes"])),
                ("egress", egress_text(&doc["egress"])),
                ("operator-allowed", list_text(&doc["operator_allowed_domains"])),
                ("verifier", text(&doc["verifier_kind"])),
                ("trust failure", text(&doc["trust_failure"]["message"])),
            ] {
                if !value.is_empty() {
                    out.push_str(&format!("  {label:<16} {}\n", sanitize(&value)));
                }
            }
            output::write_stdout(&out);
        }
    }
    Ok(Exit::Ok)
}
