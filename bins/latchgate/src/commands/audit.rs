//! `latchgate audit`: query the audit events of the evidence ledger through
//! the admin socket (`GET /v1/audit/events`, `--export` for all as JSONL), or
//! read-only from the ledger file itself (`--offline` / `--ledger FILE`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use latchgate_broker::ledger::{AuditEvent, DEFAULT_EVENT_LIMIT, EventFilter, MAX_EVENT_LIMIT};
use time::OffsetDateTime;

use super::admin_client::{AdminSession, OperatorArgs, query_string};
use super::evidence::{ledger_failure, ledger_path, open_ledger};
use super::output::{self, Exit, Failure, Table, Tone};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditFormat {
    /// Aligned columns (coloured on a terminal).
    Table,
    /// One JSON document: `{"count": N, "events": [...]}`.
    Json,
    /// One event per line.
    Jsonl,
}

/// Every given filter must match. Events come in chain order (oldest first).
#[derive(clap::Args)]
pub struct AuditArgs {
    #[arg(long)]
    trace_id: Option<String>,
    /// e.g. action_executed, action_denied, lease_issued.
    #[arg(long)]
    event_type: Option<String>,
    #[arg(long)]
    action_id: Option<String>,
    #[arg(long)]
    principal: Option<String>,
    #[arg(long)]
    session_id: Option<String>,
    /// e.g. executed, denied, failed, pending_approval.
    #[arg(long)]
    decision: Option<String>,
    /// Only events strictly after this instant (RFC 3339, e.g. 2026-01-31T12:00:00Z).
    #[arg(long, value_parser = parse_rfc3339)]
    after: Option<OffsetDateTime>,
    /// Only events strictly before this instant (RFC 3339).
    #[arg(long, value_parser = parse_rfc3339)]
    before: Option<OffsetDateTime>,
    /// Only events with a larger seq (to page on from the last seq shown).
    #[arg(long)]
    after_seq: Option<u64>,
    /// Maximum number of events.
    #[arg(long, default_value_t = DEFAULT_EVENT_LIMIT,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_EVENT_LIMIT)))]
    limit: u32,
    #[arg(long, value_enum, default_value_t = AuditFormat::Table)]
    format: AuditFormat,
    /// Same as --format json.
    #[arg(long, conflicts_with = "format")]
    json: bool,
    /// Read the ledger file directly instead of asking the gate (implied by --ledger).
    #[arg(long)]
    offline: bool,
    /// The ledger database to read instead of `<state_dir>/ledger.db` of the config (offline).
    #[arg(long, value_name = "FILE")]
    ledger: Option<PathBuf>,
    /// Every event, in chain order, as JSONL (GET /v1/audit/export); filters do not apply.
    #[arg(long, conflicts_with_all = ["offline", "ledger"])]
    export: bool,
}

fn parse_rfc3339(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("not an RFC 3339 timestamp (e.g. 2026-01-31T12:00:00Z): {e}"))
}

pub fn run(config: &Path, operator: &OperatorArgs, args: AuditArgs) -> ExitCode {
    let format = if args.json { AuditFormat::Json } else { args.format };
    if args.export {
        return output::finish(format != AuditFormat::Table, export(config, operator));
    }
    if args.offline || args.ledger.is_some() {
        return output::finish(format != AuditFormat::Table, audit(config, args, format));
    }
    output::finish(format != AuditFormat::Table, audit_online(config, operator, args, format))
}

fn rfc3339(t: Option<OffsetDateTime>) -> Option<String> {
    t.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
}

/// `GET /v1/audit/events` with the same filters.
fn audit_online(config: &Path, operator: &OperatorArgs, args: AuditArgs, format: AuditFormat) -> Result<Exit, Failure> {
    let mut session = AdminSession::connect(config, operator)?;
    let query = query_string(&[
        ("trace_id", args.trace_id),
        ("event_type", args.event_type),
        ("action_id", args.action_id),
        ("principal", args.principal),
        ("session_id", args.session_id),
        ("decision", args.decision),
        ("after", rfc3339(args.after)),
        ("before", rfc3339(args.before)),
        ("after_seq", args.after_seq.map(|s| s.to_string())),
        ("limit", Some(args.limit.to_string())),
    ]);
    let doc = session.get(&format!("/v1/audit/events{query}"))?;
    let events: Vec<AuditEvent> = serde_json::from_value(doc["events"].clone()).map_err(|e| {
        Failure::new(
            "unexpected_response",
            format!("the gate's events do not parse: {e}"),
            "use a matching latchgate CLI",
        )
    })?;
    match format {
        AuditFormat::Json => output::print_json(&serde_json::json!({"count": events.len(), "events": events})),
        AuditFormat::Jsonl => output::print_json_lines(&events)?,
        AuditFormat::Table => print_table(&events, args.limit),
    }
    Ok(Exit::Ok)
}

/// The whole chain as JSONL, as the gate streams it.
fn export(config: &Path, operator: &OperatorArgs) -> Result<Exit, Failure> {
    let mut session = AdminSession::connect(config, operator)?;
    let bytes = session.get_bytes("/v1/audit/export")?;
    output::write_stdout(&String::from_utf8_lossy(&bytes));
    Ok(Exit::Ok)
}

fn audit(config: &Path, args: AuditArgs, format: AuditFormat) -> Result<Exit, Failure> {
    let path = ledger_path(config, args.ledger.as_deref())?;
    let reader = open_ledger(&path)?;
    let filter = EventFilter {
        trace_id: args.trace_id,
        event_type: args.event_type,
        action_id: args.action_id,
        principal: args.principal,
        session_id: args.session_id,
        decision: args.decision,
        after: args.after,
        before: args.before,
        after_seq: args.after_seq,
        limit: Some(args.limit),
    };
    let events = reader.query_events(&filter).map_err(|e| ledger_failure(&path, &e))?;
    match format {
        AuditFormat::Json => output::print_json(&serde_json::json!({"count": events.len(), "events": events})),
        AuditFormat::Jsonl => output::print_json_lines(&events)?,
        AuditFormat::Table => print_table(&events, args.limit),
    }
    Ok(Exit::Ok)
}

fn print_table(events: &[AuditEvent], limit: u32) {
    if events.is_empty() {
        eprintln!("no audit events match");
        return;
    }
    let colour = output::stdout_colour();
    let mut table = Table::new(&["SEQ", "TIME", "EVENT", "DECISION", "ACTION", "PRINCIPAL", "SESSION", "TRACE"]);
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    for event in events {
        table.row(vec![
            (event.seq.to_string(), Tone::Plain),
            (event.ts.clone(), Tone::Dim),
            (event.event_type.clone(), Tone::Plain),
            (text(&event.decision), decision_tone(event.decision.as_deref())),
            (text(&event.action_id), Tone::Plain),
            (text(&event.principal), Tone::Plain),
            (text(&event.session_id), Tone::Plain),
            (text(&event.trace_id), Tone::Dim),
        ]);
    }
    output::write_stdout(&table.render(colour));
    if events.len() as u64 >= u64::from(limit)
        && let Some(last) = events.last()
    {
        eprintln!("(first {limit} events shown; continue with --after-seq {})", last.seq);
    }
}

fn decision_tone(decision: Option<&str>) -> Tone {
    match decision {
        Some("executed" | "allowed" | "allow" | "approved" | "issued") => Tone::Good,
        Some("denied" | "deny" | "failed" | "rejected" | "expired") => Tone::Bad,
        Some("pending_approval") => Tone::Warn,
        _ => Tone::Plain,
    }
}
