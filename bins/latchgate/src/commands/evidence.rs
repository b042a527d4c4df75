//! Finding and opening the evidence ledger and the receipt keys for the
//! offline commands (`audit`, `verify`). The ledger is opened read-only
//! ([`LedgerReader`]), so these commands work while the gate is running and
//! can never change what they inspect.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;

use latchgate_broker::ledger::{LEDGER_FILE, LedgerError, LedgerReader};
use latchgate_core::config::LoadedConfig;
use latchgate_signer::keystore::RECEIPT_KEY_HISTORY_FILE;

use super::output::Failure;

/// Receipt verifying keys by key id.
pub type ReceiptKeys = HashMap<String, VerifyingKey>;

/// `--ledger FILE`, else `<state_dir>/ledger.db` of the config.
pub fn ledger_path(config: &Path, explicit: Option<&Path>) -> Result<PathBuf, Failure> {
    match explicit {
        Some(path) => Ok(path.to_path_buf()),
        None => Ok(LoadedConfig::load(config)?.state_dir().join(LEDGER_FILE)),
    }
}

pub fn open_ledger(path: &Path) -> Result<LedgerReader, Failure> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => {
            return Err(Failure::new(
                "ledger_not_found",
                format!("{} is not a file", path.display()),
                "pass the ledger database with --ledger FILE",
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Failure::new(
                "ledger_not_found",
                format!("no evidence ledger at {}", path.display()),
                "start the gate once (`latchgate up`) so it creates the ledger, or pass --config / --ledger FILE",
            ));
        }
        Err(e) => return Err(unreadable(path, &e.to_string())),
    }
    LedgerReader::open(path).map_err(|e| ledger_failure(path, &e))
}

/// A ledger failure that is not a verdict about the evidence (I/O, schema).
pub fn ledger_failure(path: &Path, e: &LedgerError) -> Failure {
    match e {
        LedgerError::SchemaTooNew { .. } => {
            Failure::new(e.code(), e, "use the latchgate binary of the gate that wrote this ledger (or newer)")
        }
        LedgerError::Persistence(detail) => unreadable(path, detail),
        _ => Failure::new(e.code(), e, "report this as a bug with the command line that produced it"),
    }
}

fn unreadable(path: &Path, detail: &str) -> Failure {
    Failure::new(
        "ledger_unreadable",
        format!("cannot read the evidence ledger {}: {detail}", path.display()),
        "run as root or as the broker's user (the state dir is private), or copy the ledger and pass --ledger FILE",
    )
}

/// `--jwks FILE`, else the signer's receipt-key history `<key_dir>/receipt-keys.jwks.json`
/// (every receipt key the gate ever used, so old receipts still verify).
pub fn receipt_keys_path(config: &Path, explicit: Option<&Path>) -> Result<PathBuf, Failure> {
    match explicit {
        Some(path) => Ok(path.to_path_buf()),
        None => Ok(LoadedConfig::load(config)?.key_dir().join(RECEIPT_KEY_HISTORY_FILE)),
    }
}

/// Reads a JWKS file (at most 1 MiB: it holds public keys only).
pub fn read_jwks_file(path: &Path) -> Result<String, Failure> {
    read_small_file(path, "receipt key set", 1 << 20).map_err(|(code, message)| {
        let remediation = if code == "file_not_found" {
            "start the gate once so the signer writes it, or pass --jwks FILE (e.g. saved from GET /v1/receipt-keys)"
        } else {
            "run as root or as the signer's user (the key dir is private), or pass --jwks FILE"
        };
        Failure::new(code, message, remediation)
    })
}

pub fn parse_receipt_keys(path: &Path, jwks: &str) -> Result<ReceiptKeys, Failure> {
    latchgate_core::receipt::receipt_keys_from_jwks(jwks).map_err(|e| {
        Failure::new(
            e.code(),
            format!("{}: {e}", path.display()),
            "pass the JWKS the gate publishes (GET /v1/receipt-keys or <key_dir>/receipt-keys.jwks.json)",
        )
    })
}

/// Reads a text file of at most `max` bytes; errors are `(code, message)`.
pub fn read_small_file(path: &Path, what: &str, max: u64) -> Result<String, (&'static str, String)> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::NotFound { "file_not_found" } else { "file_unreadable" };
        (code, format!("cannot read {what} {}: {e}", path.display()))
    })?;
    let mut text = String::new();
    file.take(max + 1)
        .read_to_string(&mut text)
        .map_err(|e| ("file_unreadable", format!("cannot read {what} {}: {e}", path.display())))?;
    if text.len() as u64 > max {
        return Err(("file_too_large", format!("{what} {} is larger than {max} bytes", path.display())));
    }
    Ok(text)
}
