//! `latchgate status`: `GET /v1/admin/status` — every process with its
//! confinement (each degraded layer named), dependencies, and the counters an
//! operator watches. Exit 0 when the gate is ok or degraded, 1 when a process
//! or a dependency is down.

use std::path::Path;
use std::process::ExitCode;

use serde_json::Value;

use super::admin_client::{AdminSession, OperatorArgs};
use super::output::{self, Exit, Failure, Table, Tone, value_text as text};

#[derive(clap::Args)]
pub struct StatusArgs {
    /// Print the gate's status document as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(config: &Path, operator: &OperatorArgs, args: StatusArgs) -> ExitCode {
    output::finish(args.json, status(config, operator, &args))
}

fn status(config: &Path, operator: &OperatorArgs, args: &StatusArgs) -> Result<Exit, Failure> {
    let mut session = AdminSession::connect(config, operator)?;
    let doc = session.get("/v1/admin/status")?;
    let healthy = doc["status"] != "unavailable";
    if args.json {
        output::print_json(&doc);
    } else {
        print_human(&doc);
    }
    Ok(if healthy { Exit::Ok } else { Exit::Error })
}

fn print_human(doc: &Value) {
    let colour = output::stdout_colour();
    let status = doc["status"].as_str().unwrap_or("unknown");
    let tone = match status {
        "ok" => Tone::Good,
        "degraded" => Tone::Warn,
        _ => Tone::Bad,
    };
    let uptime = doc["uptime_seconds"].as_u64().unwrap_or(0);
    let mut out = format!(
        "gate {} (version {}, {} mode, up {}h{:02}m{:02}s){}\n\n",
        tone.paint(status, colour),
        output::sanitize(&text(&doc["version"])),
        output::sanitize(&text(&doc["mode"])),
        uptime / 3600,
        uptime / 60 % 60,
        uptime % 60,
        if doc["draining"] == true {
            Tone::Warn.paint("  DRAINING: new executions are refused", colour)
        } else {
            String::new()
        },
    );
    let mut table = Table::new(&["PROCESS", "UP", "PID", "UID", "CONFINEMENT"]);
    let mut degraded = Vec::new();
    for role in ["front", "broker", "executor", "signer"] {
        let p = &doc["processes"][role];
        let up = p["up"] == true;
        let confinement = if up { text(&p["confinement"]) } else { format!("down: {}", text(&p["error"])) };
        let tone = if !up {
            Tone::Bad
        } else if p["degraded"] == true {
            Tone::Warn
        } else {
            Tone::Plain
        };
        table.row(vec![
            (role.to_string(), Tone::Plain),
            (if up { "yes" } else { "NO" }.to_string(), if up { Tone::Good } else { Tone::Bad }),
            (text(&p["pid"]), Tone::Dim),
            (text(&p["uid"]), Tone::Dim),
            (confinement, tone),
        ]);
        for layer in p["degraded_layers"].as_array().into_iter().flatten() {
            degraded.push(format!("{role}: {}", text(layer)));
        }
    }
    out.push_str(&table.render(colour));
    for line in &degraded {
        out.push_str(&format!("{} {}\n", Tone::Warn.paint("degraded", colour), output::sanitize(line)));
    }
    let deps = &doc["dependencies"];
    let mut dep_line = String::from("\ndependencies:");
    for name in ["state_store", "evidence_ledger", "policy_engine"] {
        let up = deps[name]["up"] == true;
        let backend = deps[name]["backend"].as_str().map(|b| format!(" ({})", output::sanitize(b))).unwrap_or_default();
        dep_line.push_str(&format!(
            " {name}{backend} {}",
            if up { Tone::Good.paint("ok", colour) } else { Tone::Bad.paint("FAILING", colour) }
        ));
    }
    out.push_str(&dep_line);
    if let Some(version) = doc["policy_version"].as_str() {
        out.push_str(&format!(" (policy {})", output::sanitize(version)));
    }
    out.push('\n');
    let pending = doc["pending_approvals"].as_u64().unwrap_or(0);
    let unresolved = doc["unresolved_intents"].as_u64().unwrap_or(0);
    out.push_str(&format!(
        "pending approvals {}  unresolved intents {}  in-flight executions {}  revocation epoch {}\n",
        if pending > 0 { Tone::Warn.paint(&pending.to_string(), colour) } else { pending.to_string() },
        if unresolved > 0 { Tone::Bad.paint(&unresolved.to_string(), colour) } else { unresolved.to_string() },
        text(&doc["in_flight_executions"]),
        text(&doc["revocation_epoch"]),
    ));
    let untrusted = doc["actions"]["untrusted"].as_array().map(Vec::len).unwrap_or(0);
    out.push_str(&format!("actions {} ({} untrusted)\n", text(&doc["actions"]["count"]), untrusted));
    if pending > 0 {
        out.push_str("  next: latchgate approvals list\n");
    }
    if unresolved > 0 {
        out.push_str("  next: latchgate intents (their outcome is unknown; check the effect by hand)\n");
    }
    output::write_stdout(&out);
}
