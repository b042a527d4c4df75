//! `latchgate verify`: walks the hash chain, recomputing every hash, then
//! checks every intent, consumed grant, receipt and approval row against the
//! witness written with it — and, given the receipt keys, every receipt
//! signature. The first problem (lowest event seq) is reported.

use std::collections::HashMap;

use ed25519_dalek::VerifyingKey;
use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;

use latchgate_core::receipt::Receipt;

use super::LedgerError;
use super::event::{GENESIS_PREV_HASH, ReceiptWitness, Witness};
use super::intent::{ApprovalOutcome, IntentState};
use super::reader::{
    APPROVAL_COLUMNS, EVENT_COLUMNS, INTENT_COLUMNS, OUTCOME_COLUMNS, event_from_row, intent_from_row, outcome_from_row,
};

/// Where the ledger stops being trustworthy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainBreak {
    /// The first bad event, or the event witnessing the bad row; `None` when a
    /// row has no witness at all.
    pub seq: Option<u64>,
    pub reason: BreakReason,
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "event {seq}: {}", self.reason),
            None => write!(f, "ledger: {}", self.reason),
        }
    }
}

impl std::error::Error for ChainBreak {}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BreakReason {
    #[error("row does not parse: {detail}")]
    MalformedEvent { detail: String },
    #[error("{table} row {id} does not parse: {detail}")]
    MalformedRow { table: &'static str, id: String, detail: String },
    #[error("sequence gap, expected seq {expected}")]
    SeqGap { expected: u64 },
    #[error("prev_hash does not match the previous event's hash")]
    PrevHashMismatch,
    #[error("hash does not match the event content")]
    HashMismatch,
    #[error("chain ends at seq {last_seq} but the recorded head is seq {head_seq}")]
    TruncatedOrExtended { last_seq: u64, head_seq: u64 },
    #[error("{table} row {id} has no witness event")]
    Unwitnessed { table: &'static str, id: String },
    #[error("{table} row {id} differs from its witness event")]
    RowMismatch { table: &'static str, id: String },
    #[error("{table} row {id} witnessed by this event is missing")]
    RowMissing { table: &'static str, id: String },
    #[error("{table} row {id} is witnessed twice")]
    DuplicateWitness { table: &'static str, id: String },
    #[error("receipt {id}: {detail}")]
    ReceiptInvalid { id: String, detail: String },
    #[error("receipt {id} is signed by unknown key {kid}")]
    ReceiptUnknownKey { id: String, kid: String },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub events: u64,
    pub head_seq: u64,
    pub head_hash: String,
    pub intents: u64,
    pub consumed_grants: u64,
    pub receipts: u64,
    pub approval_outcomes: u64,
    /// Held calls (`approvals` rows), each with its immutable plan.
    #[serde(default)]
    pub approvals: u64,
    /// True when receipt signatures were checked (keys were given).
    pub receipt_signatures_verified: bool,
}

struct Witnessed<T> {
    seq: u64,
    value: T,
}

#[derive(Default)]
struct Witnesses {
    recorded: HashMap<String, Witnessed<Witness>>,
    closed: HashMap<String, Witnessed<(IntentState, String)>>,
    receipts: HashMap<String, Witnessed<ReceiptWitness>>,
    approvals: HashMap<String, Witnessed<ApprovalOutcome>>,
    requested: HashMap<String, Witnessed<Witness>>,
}

fn at(seq: u64, reason: BreakReason) -> ChainBreak {
    ChainBreak { seq: Some(seq), reason }
}

/// Verifies the ledger in one read snapshot. `receipt_keys` (kid → key) adds
/// signature checks of every receipt.
pub fn verify(
    conn: &Connection,
    receipt_keys: Option<&HashMap<String, VerifyingKey>>,
) -> Result<VerifyReport, LedgerError> {
    verify_with_progress(conn, receipt_keys, &mut |_, _| {})
}

/// [`verify`], calling `progress(events_checked, head_seq)` after each event
/// of the chain walk (for a progress bar on long ledgers).
pub fn verify_with_progress(
    conn: &Connection,
    receipt_keys: Option<&HashMap<String, VerifyingKey>>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<VerifyReport, LedgerError> {
    let snapshot = conn.unchecked_transaction()?;
    let mut report = VerifyReport { receipt_signatures_verified: receipt_keys.is_some(), ..Default::default() };
    let witnesses = walk_chain(&snapshot, &mut report, progress).map_err(|e| e.into_ledger_error())?;
    let mut breaks = Vec::new();
    check_intents_and_grants(&snapshot, &witnesses, &mut report, &mut breaks)?;
    check_receipts(&snapshot, &witnesses, receipt_keys, &mut report, &mut breaks)?;
    check_approvals(&snapshot, &witnesses, &mut report, &mut breaks)?;
    check_approval_requests(&snapshot, &witnesses, &mut report, &mut breaks)?;
    snapshot.commit()?;
    match breaks.into_iter().min_by_key(|b| b.seq.unwrap_or(u64::MAX)) {
        Some(first) => Err(LedgerError::ChainBroken(first)),
        None => Ok(report),
    }
}

enum WalkError {
    Break(ChainBreak),
    Ledger(LedgerError),
}

impl WalkError {
    fn into_ledger_error(self) -> LedgerError {
        match self {
            WalkError::Break(b) => LedgerError::ChainBroken(b),
            WalkError::Ledger(e) => e,
        }
    }
}

impl From<rusqlite::Error> for WalkError {
    fn from(e: rusqlite::Error) -> Self {
        WalkError::Ledger(e.into())
    }
}

fn walk_chain(
    conn: &Connection,
    report: &mut VerifyReport,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Witnesses, WalkError> {
    let mut witnesses = Witnesses::default();
    let expected_total: i64 =
        conn.query_row("SELECT seq FROM chain_head WHERE id = 1", [], |r| r.get(0)).optional()?.unwrap_or(0);
    let expected_total = expected_total.max(0) as u64;
    let mut prev_seq = 0u64;
    let mut prev_hash = GENESIS_PREV_HASH.to_string();
    let mut statement = conn.prepare(&format!("SELECT {EVENT_COLUMNS} FROM audit_events ORDER BY seq"))?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let raw_seq: i64 = row.get(0)?;
        let expected = prev_seq + 1;
        let event = event_from_row(row).map_err(|e| {
            WalkError::Break(at(raw_seq.max(0) as u64, BreakReason::MalformedEvent { detail: e.to_string() }))
        })?;
        if event.seq != expected {
            return Err(WalkError::Break(at(expected, BreakReason::SeqGap { expected })));
        }
        if event.prev_hash != prev_hash {
            return Err(WalkError::Break(at(event.seq, BreakReason::PrevHashMismatch)));
        }
        if event.compute_hash().map_err(WalkError::Ledger)? != event.hash {
            return Err(WalkError::Break(at(event.seq, BreakReason::HashMismatch)));
        }
        if let Some(witness) = &event.witness {
            collect_witness(&mut witnesses, event.seq, witness).map_err(WalkError::Break)?;
        }
        prev_seq = event.seq;
        prev_hash = event.hash;
        report.events += 1;
        progress(report.events, expected_total);
    }
    let head: Option<(i64, String)> = conn
        .query_row("SELECT seq, hash FROM chain_head WHERE id = 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (head_seq, head_hash) = head.map(|(s, h)| (s.max(0) as u64, h)).unwrap_or((0, GENESIS_PREV_HASH.to_string()));
    if head_seq != prev_seq || head_hash != prev_hash {
        let reason = BreakReason::TruncatedOrExtended { last_seq: prev_seq, head_seq };
        return Err(WalkError::Break(at(prev_seq + 1, reason)));
    }
    report.head_seq = head_seq;
    report.head_hash = head_hash;
    Ok(witnesses)
}

fn collect_witness(witnesses: &mut Witnesses, seq: u64, witness: &Witness) -> Result<(), ChainBreak> {
    let duplicate =
        |table: &'static str, id: &str| at(seq, BreakReason::DuplicateWitness { table, id: id.to_string() });
    match witness {
        Witness::IntentRecorded { intent_id, .. } => {
            if witnesses.recorded.insert(intent_id.clone(), Witnessed { seq, value: witness.clone() }).is_some() {
                return Err(duplicate("execution_intents", intent_id));
            }
        }
        Witness::IntentClosed { intent_id, state, resolved_at, receipt } => {
            let closed = Witnessed { seq, value: (*state, resolved_at.clone()) };
            if witnesses.closed.insert(intent_id.clone(), closed).is_some() {
                return Err(duplicate("execution_intents", intent_id));
            }
            if let Some(receipt) = receipt
                && witnesses
                    .receipts
                    .insert(receipt.receipt_id.clone(), Witnessed { seq, value: receipt.clone() })
                    .is_some()
            {
                return Err(duplicate("receipts", &receipt.receipt_id));
            }
        }
        Witness::ApprovalOutcome { approval_id, outcome, operator, ts, plan_hash, reason, operator_jkt } => {
            let value = ApprovalOutcome {
                approval_id: approval_id.clone(),
                outcome: outcome.clone(),
                operator: operator.clone(),
                ts: ts.clone(),
                plan_hash: plan_hash.clone(),
                reason: reason.clone(),
                operator_jkt: operator_jkt.clone(),
            };
            if witnesses.approvals.insert(approval_id.clone(), Witnessed { seq, value }).is_some() {
                return Err(duplicate("approval_outcomes", approval_id));
            }
        }
        Witness::ApprovalRequested { approval_id, .. } => {
            let requested = Witnessed { seq, value: witness.clone() };
            if witnesses.requested.insert(approval_id.clone(), requested).is_some() {
                return Err(duplicate("approvals", approval_id));
            }
        }
    }
    Ok(())
}

fn check_intents_and_grants(
    conn: &Connection,
    witnesses: &Witnesses,
    report: &mut VerifyReport,
    breaks: &mut Vec<ChainBreak>,
) -> Result<(), LedgerError> {
    let mut seen_intents = std::collections::HashSet::new();
    let mut statement = conn.prepare(&format!("SELECT {INTENT_COLUMNS} FROM execution_intents"))?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let intent = match intent_from_row(row) {
            Ok(intent) => intent,
            Err(e) => {
                let id: String = row.get(0).unwrap_or_default();
                let reason = BreakReason::MalformedRow { table: "execution_intents", id, detail: e.to_string() };
                breaks.push(ChainBreak { seq: None, reason });
                continue;
            }
        };
        report.intents += 1;
        let id = intent.intent_id.clone();
        seen_intents.insert(id.clone());
        let table = "execution_intents";
        let Some(recorded) = witnesses.recorded.get(&id) else {
            breaks.push(ChainBreak { seq: None, reason: BreakReason::Unwitnessed { table, id } });
            continue;
        };
        let as_recorded = Witness::IntentRecorded {
            intent_id: intent.intent_id.clone(),
            grant_id: intent.grant_id.clone(),
            trace_id: intent.trace_id.clone(),
            action_id: intent.action_id.clone(),
            request_hash: intent.request_hash.clone(),
            created_at: intent.created_at.clone(),
        };
        if as_recorded != recorded.value {
            breaks.push(at(recorded.seq, BreakReason::RowMismatch { table, id: id.clone() }));
        }
        match (witnesses.closed.get(&id), intent.state, &intent.resolved_at) {
            (None, IntentState::Pending, None) => {}
            (Some(closed), state, Some(resolved_at)) if closed.value == (state, resolved_at.clone()) => {}
            (Some(closed), ..) => breaks.push(at(closed.seq, BreakReason::RowMismatch { table, id })),
            (None, ..) => breaks.push(at(recorded.seq, BreakReason::RowMismatch { table, id })),
        }
    }
    for (id, recorded) in &witnesses.recorded {
        if !seen_intents.contains(id) {
            let reason = BreakReason::RowMissing { table: "execution_intents", id: id.clone() };
            breaks.push(at(recorded.seq, reason));
        }
    }

    // A consumed grant is witnessed by the intent that consumed it, at the same instant.
    let by_grant: HashMap<&str, (u64, &str)> = witnesses
        .recorded
        .values()
        .filter_map(|w| match &w.value {
            Witness::IntentRecorded { grant_id, created_at, .. } => {
                Some((grant_id.as_str(), (w.seq, created_at.as_str())))
            }
            _ => None,
        })
        .collect();
    let mut seen_grants = std::collections::HashSet::new();
    let mut statement = conn.prepare("SELECT grant_id, consumed_at FROM consumed_grants")?;
    let mut rows = statement.query([])?;
    let table = "consumed_grants";
    while let Some(row) = rows.next()? {
        let grant_id: String = row.get(0)?;
        let consumed_at: String = row.get(1)?;
        report.consumed_grants += 1;
        match by_grant.get(grant_id.as_str()) {
            None => {
                breaks.push(ChainBreak { seq: None, reason: BreakReason::Unwitnessed { table, id: grant_id.clone() } })
            }
            Some((seq, created_at)) if *created_at != consumed_at => {
                breaks.push(at(*seq, BreakReason::RowMismatch { table, id: grant_id.clone() }))
            }
            Some(_) => {}
        }
        seen_grants.insert(grant_id);
    }
    for (grant_id, (seq, _)) in by_grant {
        if !seen_grants.contains(grant_id) {
            breaks.push(at(seq, BreakReason::RowMissing { table, id: grant_id.to_string() }));
        }
    }
    Ok(())
}

fn check_receipts(
    conn: &Connection,
    witnesses: &Witnesses,
    receipt_keys: Option<&HashMap<String, VerifyingKey>>,
    report: &mut VerifyReport,
    breaks: &mut Vec<ChainBreak>,
) -> Result<(), LedgerError> {
    let table = "receipts";
    let mut seen = std::collections::HashSet::new();
    let mut statement = conn.prepare("SELECT receipt_id, grant_id, json FROM receipts")?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let id: String = row.get(0)?;
        let grant_id: String = row.get(1)?;
        let json: String = row.get(2)?;
        report.receipts += 1;
        seen.insert(id.clone());
        let Some(witness) = witnesses.receipts.get(&id) else {
            breaks.push(ChainBreak { seq: None, reason: BreakReason::Unwitnessed { table, id } });
            continue;
        };
        let invalid = |detail: String| at(witness.seq, BreakReason::ReceiptInvalid { id: id.clone(), detail });
        let receipt: Receipt = match serde_json::from_str(&json) {
            Ok(receipt) => receipt,
            Err(e) => {
                breaks.push(invalid(format!("does not parse: {e}")));
                continue;
            }
        };
        let as_witnessed = ReceiptWitness {
            receipt_id: receipt.receipt_id.clone(),
            grant_id: receipt.grant_id.clone(),
            result_hash: receipt.result_hash.clone(),
        };
        if as_witnessed != witness.value || receipt.receipt_id != id || receipt.grant_id != grant_id {
            breaks.push(at(witness.seq, BreakReason::RowMismatch { table, id: id.clone() }));
            continue;
        }
        match receipt.compute_result_hash() {
            Ok(hash) if hash == receipt.result_hash => {}
            Ok(_) => {
                breaks.push(invalid("result_hash does not match its content".into()));
                continue;
            }
            Err(e) => {
                breaks.push(invalid(e.to_string()));
                continue;
            }
        }
        if let Some(keys) = receipt_keys {
            match keys.get(&receipt.signing_key_id) {
                None => breaks.push(at(
                    witness.seq,
                    BreakReason::ReceiptUnknownKey { id: id.clone(), kid: receipt.signing_key_id.clone() },
                )),
                Some(key) => {
                    if let Err(e) = receipt.verify(key) {
                        breaks.push(invalid(e.to_string()));
                    }
                }
            }
        }
    }
    for (id, witness) in &witnesses.receipts {
        if !seen.contains(id) {
            breaks.push(at(witness.seq, BreakReason::RowMissing { table, id: id.clone() }));
        }
    }
    Ok(())
}

fn check_approvals(
    conn: &Connection,
    witnesses: &Witnesses,
    report: &mut VerifyReport,
    breaks: &mut Vec<ChainBreak>,
) -> Result<(), LedgerError> {
    let table = "approval_outcomes";
    let mut seen = std::collections::HashSet::new();
    let columns = if has_column(conn, "approval_outcomes", "reason")? {
        OUTCOME_COLUMNS.to_string()
    } else {
        // Schema v1: no reason or key binding was recorded.
        "approval_id, outcome, operator, ts, plan_hash, NULL, NULL".to_string()
    };
    let mut statement = conn.prepare(&format!("SELECT {columns} FROM approval_outcomes"))?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let outcome = outcome_from_row(row, 0)?;
        report.approval_outcomes += 1;
        let id = outcome.approval_id.clone();
        seen.insert(id.clone());
        match witnesses.approvals.get(&id) {
            None => breaks.push(ChainBreak { seq: None, reason: BreakReason::Unwitnessed { table, id } }),
            Some(w) if w.value != outcome => breaks.push(at(w.seq, BreakReason::RowMismatch { table, id })),
            Some(_) => {}
        }
    }
    for (id, witness) in &witnesses.approvals {
        if !seen.contains(id) {
            breaks.push(at(witness.seq, BreakReason::RowMissing { table, id: id.clone() }));
        }
    }
    Ok(())
}

/// Every held call's row equals its witness, and its plan text still hashes
/// to the plan hash the operator saw (and the outcome names).
fn check_approval_requests(
    conn: &Connection,
    witnesses: &Witnesses,
    report: &mut VerifyReport,
    breaks: &mut Vec<ChainBreak>,
) -> Result<(), LedgerError> {
    let table = "approvals";
    // A ledger written before schema v2 (read by an offline tool) has no held calls.
    let exists: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'approvals'",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(());
    }
    let mut seen = std::collections::HashSet::new();
    let mut statement = conn.prepare(&format!("SELECT {APPROVAL_COLUMNS} FROM approvals"))?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let id: String = row.get(0)?;
        let plan: String = row.get(7)?;
        let as_row = Witness::ApprovalRequested {
            approval_id: id.clone(),
            trace_id: row.get(1)?,
            action_id: row.get(2)?,
            principal: row.get(3)?,
            session_id: row.get(4)?,
            request_hash: row.get(5)?,
            plan_hash: row.get(6)?,
            created_at: row.get(8)?,
            expires_at: row.get(9)?,
        };
        report.approvals += 1;
        seen.insert(id.clone());
        let Some(witness) = witnesses.requested.get(&id) else {
            breaks.push(ChainBreak { seq: None, reason: BreakReason::Unwitnessed { table, id } });
            continue;
        };
        let plan_hash = match &as_row {
            Witness::ApprovalRequested { plan_hash, .. } => plan_hash.clone(),
            _ => String::new(),
        };
        if as_row != witness.value || latchgate_core::jcs::sha256_tagged(plan.as_bytes()) != plan_hash {
            breaks.push(at(witness.seq, BreakReason::RowMismatch { table, id: id.clone() }));
            continue;
        }
        if let Some(decided) = witnesses.approvals.get(&id)
            && decided.value.plan_hash != plan_hash
        {
            breaks.push(at(decided.seq, BreakReason::RowMismatch { table: "approval_outcomes", id }));
        }
    }
    for (id, witness) in &witnesses.requested {
        if !seen.contains(id) {
            breaks.push(at(witness.seq, BreakReason::RowMissing { table, id: id.clone() }));
        }
    }
    Ok(())
}

fn has_column(conn: &Connection, table: &str, column: &str) -> Result<bool, LedgerError> {
    let mut statement = conn.prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        if row.get::<_, String>(0)? == column {
            return Ok(true);
        }
    }
    Ok(false)
}
