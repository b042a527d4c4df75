//! `latchgate receipts get|verify ID`: a receipt from the gate (any agent's),
//! and its verification against every receipt key the gate ever used
//! (`GET /v1/receipt-keys`) — the same check `latchgate receipt verify` runs
//! offline on a file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use latchgate_core::receipt::verify_with_jwks;
use serde_json::Value;

use super::admin_client::{AdminSession, OperatorArgs, path_segment};
use super::output::{self, Exit, Failure, sanitize};

#[derive(clap::Subcommand)]
pub enum ReceiptsCommand {
    /// Print (or save) one receipt as the gate stores it.
    Get(GetArgs),
    /// Fetch one receipt and the gate's receipt keys and verify the signature (exit 2 if invalid).
    Verify(VerifyArgs),
}

#[derive(clap::Args)]
pub struct GetArgs {
    receipt_id: String,
    /// Write the receipt JSON to FILE (for `latchgate receipt verify FILE --jwks ...`).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    receipt_id: String,
    #[arg(long)]
    json: bool,
}

pub fn run(config: &Path, operator: &OperatorArgs, command: ReceiptsCommand) -> ExitCode {
    match command {
        ReceiptsCommand::Get(args) => output::finish(args.json, get(config, operator, &args)),
        ReceiptsCommand::Verify(args) => output::finish(args.json, verify(config, operator, &args)),
    }
}

fn fetch(session: &mut AdminSession, receipt_id: &str) -> Result<Value, Failure> {
    session.get(&format!("/v1/receipts/{}", path_segment(receipt_id)?))
}

fn get(config: &Path, operator: &OperatorArgs, args: &GetArgs) -> Result<Exit, Failure> {
    let mut session = AdminSession::connect(config, operator)?;
    let receipt = fetch(&mut session, &args.receipt_id)?;
    if let Some(out) = &args.out {
        let text = serde_json::to_string(&receipt)
            .map_err(|e| Failure::new("output_encoding_failed", e, "report this as a bug"))?;
        std::fs::write(out, text).map_err(|e| {
            Failure::new("file_unwritable", format!("{}: {e}", out.display()), "pass a writable --out FILE")
        })?;
        if !args.json {
            output::write_stdout(&format!("wrote receipt {} to {}\n", sanitize(&args.receipt_id), out.display()));
            return Ok(Exit::Ok);
        }
    }
    if args.json {
        output::print_json(&receipt);
        return Ok(Exit::Ok);
    }
    let text = |k: &str| receipt[k].as_str().map(sanitize).unwrap_or_default();
    let mut out = format!("receipt {}\n", text("receipt_id"));
    for key in [
        "action_id",
        "trace_id",
        "grant_id",
        "started_at",
        "finished_at",
        "failure_class",
        "approved_by",
        "approved_by_jkt",
        "signing_key_id",
        "result_hash",
    ] {
        let value = text(key);
        if !value.is_empty() {
            out.push_str(&format!("  {key:<16} {value}\n"));
        }
    }
    out.push_str(&format!(
        "  {:<16} {}\n",
        "verification",
        sanitize(receipt["verification_outcome"]["status"].as_str().unwrap_or(""))
    ));
    output::write_stdout(&out);
    Ok(Exit::Ok)
}

fn verify(config: &Path, operator: &OperatorArgs, args: &VerifyArgs) -> Result<Exit, Failure> {
    let mut session = AdminSession::connect(config, operator)?;
    let receipt = fetch(&mut session, &args.receipt_id)?;
    let keys = session.get("/v1/receipt-keys")?;
    let result = verify_with_jwks(&receipt.to_string(), &keys.to_string());
    super::receipt::report_verdict(result, &args.receipt_id, "GET /v1/receipt-keys", args.json)
}
