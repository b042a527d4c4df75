//! `latchgate verify`: walk the evidence ledger's hash chain, cross-check every
//! intent, consumed grant, receipt and approval row against its witness event,
//! and verify every receipt signature with the signer's published keys.
//!
//! Exit 0: intact. Exit 2: the first bad event is named (seq, event_id,
//! reason). Exit 1: the check could not be done (no ledger, no keys, I/O);
//! that is never reported as intact.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use latchgate_broker::ledger::{BreakReason, ChainBreak, LedgerError, LedgerReader, VerifyReport};
use serde::Serialize;

use super::admin_client::{AdminSession, OperatorArgs};
use super::evidence::{
    ledger_failure, ledger_path, open_ledger, parse_receipt_keys, read_jwks_file, receipt_keys_path,
};
use super::output::{self, Exit, Failure, Progress, Tone, sanitize};

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// Verify the ledger file directly instead of asking the gate (implied by --ledger or --jwks).
    #[arg(long)]
    offline: bool,
    /// The ledger database to verify instead of `<state_dir>/ledger.db` of the config.
    #[arg(long, value_name = "FILE")]
    ledger: Option<PathBuf>,
    /// Receipt keys (JWKS) instead of `<key_dir>/receipt-keys.jwks.json` of the config.
    #[arg(long, value_name = "FILE")]
    jwks: Option<PathBuf>,
    /// Print the verdict as JSON.
    #[arg(long)]
    json: bool,
}

/// The first event from which the ledger can no longer be trusted.
#[derive(Serialize)]
struct FirstBadEvent {
    /// `null` when the bad row has no witness event at all.
    seq: Option<u64>,
    /// `null` when no row holds that seq (it was deleted).
    event_id: Option<String>,
    /// Human-readable reason.
    reason: String,
    /// The same reason as data: `{"kind": "hash_mismatch", ...}`.
    detail: Option<BreakReason>,
}

#[derive(Serialize)]
struct Verdict<'a> {
    ok: bool,
    ledger: &'a Path,
    receipt_keys: &'a Path,
    #[serde(skip_serializing_if = "Option::is_none")]
    report: Option<&'a VerifyReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_bad_event: Option<&'a FirstBadEvent>,
}

pub fn run(config: &Path, operator: &OperatorArgs, args: VerifyArgs) -> ExitCode {
    if args.offline || args.ledger.is_some() || args.jwks.is_some() {
        return output::finish(args.json, verify(config, &args));
    }
    output::finish(args.json, verify_online(config, operator, &args))
}

/// `GET /v1/audit/verify`: the gate checks its own ledger against every receipt key it ever used.
fn verify_online(config: &Path, operator: &OperatorArgs, args: &VerifyArgs) -> Result<Exit, Failure> {
    let mut session = AdminSession::connect(config, operator)?;
    let doc = session.get("/v1/audit/verify")?;
    let ok = doc["ok"] == true;
    if args.json {
        output::print_json(&doc);
    } else {
        let colour = output::stdout_colour();
        if ok {
            let r = &doc["report"];
            output::write_stdout(&format!(
                "{} (checked by the gate): {} events (head seq {}), {} intents, {} receipts (signatures checked), \
                 {} approvals, {} approval outcomes\n",
                Tone::Good.paint("ledger intact", colour),
                r["events"],
                r["head_seq"],
                r["intents"],
                r["receipts"],
                r["approvals"],
                r["approval_outcomes"],
            ));
        } else {
            let bad = &doc["first_bad_event"];
            output::write_stdout(&format!(
                "{}: first bad event seq {} (event_id {}): {}\n",
                Tone::Bad.paint("LEDGER BROKEN", colour),
                bad["seq"],
                sanitize(bad["event_id"].as_str().unwrap_or("row missing")),
                sanitize(bad["reason"].as_str().unwrap_or("")),
            ));
            eprintln!("  fix: keep the ledger as evidence and trust nothing from this event on until it is explained");
        }
    }
    Ok(if ok { Exit::Ok } else { Exit::Invalid })
}

fn verify(config: &Path, args: &VerifyArgs) -> Result<Exit, Failure> {
    let path = ledger_path(config, args.ledger.as_deref())?;
    let keys_path = receipt_keys_path(config, args.jwks.as_deref())?;
    let keys = parse_receipt_keys(&keys_path, &read_jwks_file(&keys_path)?)?;
    let reader = open_ledger(&path)?;

    let mut progress = Progress::new("verifying events", args.json);
    let result = reader.verify_with_progress(Some(&keys), &mut |done, total| progress.update(done, total));
    progress.finish();

    let (report, bad) = match result {
        Ok(report) => (Some(report), None),
        Err(LedgerError::ChainBroken(chain_break)) => (None, Some(first_bad_event(&reader, chain_break))),
        // A row the reader cannot even decode is a break, not a tool failure.
        Err(e @ LedgerError::CorruptRow(_)) => {
            (None, Some(FirstBadEvent { seq: None, event_id: None, reason: e.to_string(), detail: None }))
        }
        Err(e) => return Err(ledger_failure(&path, &e)),
    };
    let verdict = Verdict {
        ok: bad.is_none(),
        ledger: &path,
        receipt_keys: &keys_path,
        report: report.as_ref(),
        first_bad_event: bad.as_ref(),
    };
    if args.json {
        output::print_json(&verdict);
    } else {
        print_human(&verdict, keys.len());
    }
    Ok(if verdict.ok { Exit::Ok } else { Exit::Invalid })
}

fn first_bad_event(reader: &LedgerReader, chain_break: ChainBreak) -> FirstBadEvent {
    // Best effort: the row may be gone (deleted event) or unreadable.
    let event_id = chain_break.seq.and_then(|seq| reader.event_id_at(seq).ok().flatten());
    FirstBadEvent {
        seq: chain_break.seq,
        event_id,
        reason: chain_break.reason.to_string(),
        detail: Some(chain_break.reason),
    }
}

fn print_human(verdict: &Verdict<'_>, key_count: usize) {
    let colour = output::stdout_colour();
    if let Some(report) = verdict.report {
        let text = format!(
            "{} {}: {} events (head seq {}, {}), {} intents, {} consumed grants, {} receipts \
             (signatures checked against {key_count} key(s)), {} approval outcomes\n",
            Tone::Good.paint("ledger intact", colour),
            verdict.ledger.display(),
            report.events,
            report.head_seq,
            report.head_hash,
            report.intents,
            report.consumed_grants,
            report.receipts,
            report.approval_outcomes,
        );
        output::write_stdout(&text);
    }
    if let Some(bad) = verdict.first_bad_event {
        let seq = bad.seq.map_or_else(|| "no witness event".to_owned(), |s| format!("seq {s}"));
        let event_id = bad.event_id.as_deref().map_or_else(|| "row missing".to_owned(), sanitize);
        let text = format!(
            "{} {}: first bad event {seq} (event_id {event_id}): {}\n",
            Tone::Bad.paint("LEDGER BROKEN", colour),
            verdict.ledger.display(),
            sanitize(&bad.reason),
        );
        output::write_stdout(&text);
        eprintln!(
            "  fix: the ledger was changed after it was written; keep this file as evidence, \
             and trust nothing from this event on until it is explained"
        );
    }
}
