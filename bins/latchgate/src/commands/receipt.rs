//! `latchgate receipt verify FILE --jwks FILE`: check one receipt offline,
//! exactly as a third party would: its `result_hash` over the JSON as given,
//! and its Ed25519 signature by a key of the published receipt JWKS.
//!
//! Exit 0: valid. Exit 2: invalid, with the reason code
//! (`receipt_bad_signature`, `receipt_result_hash_mismatch`, …). Exit 1: the
//! check could not be done (unreadable file, malformed JWKS).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use latchgate_core::receipt::{ReceiptError, verify_with_jwks};

use super::evidence::{read_jwks_file, read_small_file};
use super::output::{self, Exit, Failure, Tone, sanitize};

/// Receipts are small; anything larger is refused before parsing.
const MAX_RECEIPT_BYTES: u64 = 4 << 20;

#[derive(clap::Subcommand)]
pub enum ReceiptCommand {
    /// Verify one receipt offline against a JWKS of receipt keys (exit 0 valid, 2 invalid).
    Verify(VerifyReceiptArgs),
}

#[derive(clap::Args)]
pub struct VerifyReceiptArgs {
    /// The receipt JSON (as served by GET /v1/receipts/{id}); `-` reads stdin.
    #[arg(value_name = "FILE")]
    receipt: PathBuf,
    /// The receipt keys (GET /v1/receipt-keys, or <key_dir>/receipt-keys.jwks.json).
    #[arg(long, value_name = "FILE")]
    jwks: PathBuf,
    /// Print the verdict as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(command: ReceiptCommand) -> ExitCode {
    match command {
        ReceiptCommand::Verify(args) => output::finish(args.json, verify(&args)),
    }
}

fn verify(args: &VerifyReceiptArgs) -> Result<Exit, Failure> {
    let receipt_json = read_receipt(&args.receipt)?;
    let jwks_json = read_jwks_file(&args.jwks)?;
    let jwks = args.jwks.display().to_string();
    report_verdict(verify_with_jwks(&receipt_json, &jwks_json), &args.receipt.display().to_string(), &jwks, args.json)
}

/// Prints the verdict on one receipt (`what` names it, `jwks` the key set) and
/// maps it to the exit status: 0 valid, 2 invalid; an unusable key set is a
/// failure to check (1), never a verdict.
pub fn report_verdict(
    result: Result<latchgate_core::receipt::Receipt, ReceiptError>,
    what: &str,
    jwks: &str,
    json: bool,
) -> Result<Exit, Failure> {
    let colour = output::stdout_colour();
    match result {
        Ok(receipt) => {
            if json {
                output::print_json(&serde_json::json!({
                    "ok": true,
                    "receipt_id": receipt.receipt_id,
                    "action_id": receipt.action_id,
                    "trace_id": receipt.trace_id,
                    "grant_id": receipt.grant_id,
                    "signing_key_id": receipt.signing_key_id,
                    "result_hash": receipt.result_hash,
                    "finished_at": receipt.finished_at,
                    "approved_by": receipt.approved_by,
                    "approved_by_jkt": receipt.approved_by_jkt,
                }));
            } else {
                output::write_stdout(&format!(
                    "{} receipt {}: action {}, trace {}, signed by key {}\n",
                    Tone::Good.paint("valid", colour),
                    sanitize(&receipt.receipt_id),
                    sanitize(&receipt.action_id),
                    sanitize(&receipt.trace_id),
                    sanitize(&receipt.signing_key_id),
                ));
            }
            Ok(Exit::Ok)
        }
        // The key set itself is unusable: nothing was decided about the receipt.
        Err(e @ ReceiptError::MalformedJwks(_)) => Err(Failure::new(
            e.code(),
            format!("{jwks}: {e}"),
            "pass the JWKS the gate publishes (GET /v1/receipt-keys or <key_dir>/receipt-keys.jwks.json)",
        )),
        Err(e) => {
            if json {
                output::print_json(&serde_json::json!({"ok": false, "code": e.code(), "reason": e.to_string()}));
            } else {
                output::write_stdout(&format!(
                    "{} receipt {}: {} [{}]\n",
                    Tone::Bad.paint("INVALID", colour),
                    sanitize(what),
                    sanitize(&e.to_string()),
                    e.code(),
                ));
                eprintln!("  fix: {}", remediation(&e));
            }
            Ok(Exit::Invalid)
        }
    }
}

fn remediation(e: &ReceiptError) -> &'static str {
    match e {
        ReceiptError::UnknownKey(_) => {
            "use the gate's full key history (receipt-keys.jwks.json keeps every receipt key ever used)"
        }
        ReceiptError::Malformed(_) | ReceiptError::Canonicalize(_) => {
            "pass the receipt JSON exactly as GET /v1/receipts/{id} served it"
        }
        _ => "the receipt was altered or was not signed by this gate; do not rely on it",
    }
}

fn read_receipt(path: &Path) -> Result<String, Failure> {
    let remediation = "pass the receipt JSON file (or `-` for stdin)";
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().take(MAX_RECEIPT_BYTES + 1).read_to_string(&mut text).map_err(|e| {
            Failure::new("file_unreadable", format!("cannot read the receipt from stdin: {e}"), remediation)
        })?;
        if text.len() as u64 > MAX_RECEIPT_BYTES {
            return Err(Failure::new("file_too_large", "the receipt on stdin is too large", remediation));
        }
        return Ok(text);
    }
    read_small_file(path, "receipt", MAX_RECEIPT_BYTES)
        .map_err(|(code, message)| Failure::new(code, message, remediation))
}
