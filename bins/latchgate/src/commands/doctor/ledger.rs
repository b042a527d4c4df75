//! `ledger.*`: the evidence ledger's schema version is one this binary
//! reads, and its hash chain (with every receipt signature, when the receipt
//! key history is readable) is intact — the same walk as `latchgate verify`.

use latchgate_broker::ledger::{LEDGER_FILE, LedgerError, LedgerReader, SCHEMA_VERSION};
use latchgate_signer::keystore::RECEIPT_KEY_HISTORY_FILE;

use super::{Check, Context};

pub fn checks(ctx: &Context) -> Vec<Check> {
    let Some(cfg) = &ctx.cfg else { return Vec::new() };
    let path = cfg.state_dir().join(LEDGER_FILE);
    match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return vec![Check::skip(
                "ledger.schema",
                format!("no ledger at {} yet (the broker creates it at first start)", path.display()),
            )];
        }
        Err(e) => {
            return vec![Check::warn(
                "ledger.schema",
                format!("{} cannot be inspected: {e}", path.display()),
                "run latchgate doctor as root",
            )];
        }
        Ok(_) => {}
    }
    let reader = match LedgerReader::open(&path) {
        Ok(reader) => reader,
        Err(e @ LedgerError::SchemaTooNew { .. }) => {
            return vec![Check::error(
                "ledger.schema",
                format!("{}: {e}", path.display()),
                "use the latchgate binary that wrote this ledger, or newer",
            )];
        }
        Err(e) => {
            return vec![Check::error(
                "ledger.schema",
                format!("{} cannot be opened: {e}", path.display()),
                "run as root; if it persists the file is damaged: keep it as evidence",
            )];
        }
    };
    let version =
        reader.with_connection(|c| Ok(c.query_row("SELECT version FROM schema_version", [], |r| r.get::<_, i64>(0))?));
    let mut out = vec![match version {
        Ok(v) => Check::ok(
            "ledger.schema",
            format!("{} has schema version {v} (this binary supports up to {SCHEMA_VERSION})", path.display()),
        ),
        Err(e) => {
            return vec![Check::error(
                "ledger.schema",
                format!("schema version unreadable: {e}"),
                "keep the file as evidence; restore from backup",
            )];
        }
    }];
    let keys_path = cfg.key_dir().join(RECEIPT_KEY_HISTORY_FILE);
    let keys = std::fs::read_to_string(&keys_path)
        .ok()
        .and_then(|jwks| latchgate_core::receipt::receipt_keys_from_jwks(&jwks).ok());
    if keys.is_none() {
        out.push(Check::warn(
            "ledger.receipt_keys",
            format!("receipt key history {} not readable: receipt signatures are not checked", keys_path.display()),
            "run latchgate doctor as root (or latchgate verify --jwks FILE)",
        ));
    }
    out.push(match reader.unresolved_intents() {
        Ok(intents) if intents.is_empty() => Check::ok("ledger.unresolved", "no execution intent is unresolved"),
        Ok(intents) => Check::warn(
            "ledger.unresolved",
            format!(
                "{} dispatched call(s) have no recorded outcome (oldest: {} {})",
                intents.len(),
                intents[0].action_id,
                intents[0].intent_id
            ),
            "latchgate intents lists them: check each action's side effect at its destination",
        ),
        Err(e) => Check::error("ledger.unresolved", format!("intents unreadable: {e}"), "run latchgate doctor as root"),
    });
    out.push(match reader.verify(keys.as_ref()) {
        Ok(report) => Check::ok(
            "ledger.chain",
            format!(
                "hash chain intact: {} events, {} receipts{}",
                report.events,
                report.receipts,
                if keys.is_some() { " (signatures verified)" } else { "" }
            ),
        ),
        Err(LedgerError::ChainBroken(b)) => Check::error(
            "ledger.chain",
            format!("LEDGER BROKEN at seq {:?}: {}", b.seq, b.reason),
            "keep this file as evidence and run latchgate verify for the details; trust nothing from that event on",
        ),
        Err(e) => Check::error(
            "ledger.chain",
            format!("the chain could not be walked: {e}"),
            "run latchgate verify for the details",
        ),
    });
    out
}
