//! Read side: queries on a read-only connection. The writer is never involved,
//! so audit queries and exports do not delay commits.

use std::io::Write;

use rusqlite::{Connection, OptionalExtension, Row, ToSql};
use time::OffsetDateTime;

use latchgate_core::receipt::Receipt;

use super::LedgerError;
use super::event::{AuditEvent, ledger_timestamp};
use super::intent::{ApprovalOutcome, ExecutionIntent, IntentState};

/// Default and maximum number of events one query returns.
pub const DEFAULT_EVENT_LIMIT: u32 = 100;
pub const MAX_EVENT_LIMIT: u32 = 10_000;

/// Filters of `GET /v1/audit/events` / `latchgate audit`. All given filters must match.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub trace_id: Option<String>,
    pub event_type: Option<String>,
    pub action_id: Option<String>,
    pub principal: Option<String>,
    pub session_id: Option<String>,
    pub decision: Option<String>,
    /// Strictly after / before this instant.
    pub after: Option<OffsetDateTime>,
    pub before: Option<OffsetDateTime>,
    /// Only events with a larger seq (paging).
    pub after_seq: Option<u64>,
    /// Defaults to [`DEFAULT_EVENT_LIMIT`], capped at [`MAX_EVENT_LIMIT`].
    pub limit: Option<u32>,
}

pub(super) const EVENT_COLUMNS: &str = "seq, event_id, ts, event_type, trace_id, action_id, principal, session_id, \
     decision, payload, witness, prev_hash, hash";

/// Maps a row of [`EVENT_COLUMNS`]; a payload or witness that does not parse
/// is reported as a corrupt row, never as a panic.
pub(super) fn event_from_row(row: &Row<'_>) -> Result<AuditEvent, LedgerError> {
    let seq: i64 = row.get(0)?;
    let payload: String = row.get(9)?;
    let witness: Option<String> = row.get(10)?;
    let corrupt = |what: &str, e: serde_json::Error| LedgerError::CorruptRow(format!("event {seq}: {what}: {e}"));
    Ok(AuditEvent {
        seq: u64::try_from(seq).map_err(|_| LedgerError::CorruptRow(format!("negative seq {seq}")))?,
        event_id: row.get(1)?,
        ts: row.get(2)?,
        event_type: row.get(3)?,
        trace_id: row.get(4)?,
        action_id: row.get(5)?,
        principal: row.get(6)?,
        session_id: row.get(7)?,
        decision: row.get(8)?,
        payload: serde_json::from_str(&payload).map_err(|e| corrupt("payload", e))?,
        witness: witness.map(|w| serde_json::from_str(&w)).transpose().map_err(|e| corrupt("witness", e))?,
        prev_hash: row.get(11)?,
        hash: row.get(12)?,
    })
}

pub(super) fn intent_from_row(row: &Row<'_>) -> Result<ExecutionIntent, LedgerError> {
    let state: String = row.get(6)?;
    Ok(ExecutionIntent {
        intent_id: row.get(0)?,
        grant_id: row.get(1)?,
        trace_id: row.get(2)?,
        action_id: row.get(3)?,
        request_hash: row.get(4)?,
        created_at: row.get(5)?,
        state: IntentState::parse(&state).ok_or_else(|| LedgerError::CorruptRow(format!("intent state {state:?}")))?,
        resolved_at: row.get(7)?,
    })
}

pub(super) const INTENT_COLUMNS: &str =
    "intent_id, grant_id, trace_id, action_id, request_hash, created_at, state, resolved_at";

pub fn query_events(conn: &Connection, filter: &EventFilter) -> Result<Vec<AuditEvent>, LedgerError> {
    let mut sql = format!("SELECT {EVENT_COLUMNS} FROM audit_events WHERE 1 = 1");
    let mut args: Vec<Box<dyn ToSql>> = Vec::new();
    for (column, value) in [
        ("trace_id", &filter.trace_id),
        ("event_type", &filter.event_type),
        ("action_id", &filter.action_id),
        ("principal", &filter.principal),
        ("session_id", &filter.session_id),
        ("decision", &filter.decision),
    ] {
        if let Some(value) = value {
            args.push(Box::new(value.clone()));
            sql.push_str(&format!(" AND {column} = ?{}", args.len()));
        }
    }
    // Ledger timestamps have a fixed width, so text comparison is time comparison.
    if let Some(after) = filter.after {
        args.push(Box::new(ledger_timestamp(after)));
        sql.push_str(&format!(" AND ts > ?{}", args.len()));
    }
    if let Some(before) = filter.before {
        args.push(Box::new(ledger_timestamp(before)));
        sql.push_str(&format!(" AND ts < ?{}", args.len()));
    }
    if let Some(after_seq) = filter.after_seq {
        args.push(Box::new(i64::try_from(after_seq).unwrap_or(i64::MAX)));
        sql.push_str(&format!(" AND seq > ?{}", args.len()));
    }
    let limit = filter.limit.unwrap_or(DEFAULT_EVENT_LIMIT).min(MAX_EVENT_LIMIT);
    sql.push_str(&format!(" ORDER BY seq ASC LIMIT {limit}"));
    let mut statement = conn.prepare(&sql)?;
    let params: Vec<&dyn ToSql> = args.iter().map(|a| a.as_ref()).collect();
    let mut rows = statement.query(params.as_slice())?;
    let mut events = Vec::new();
    while let Some(row) = rows.next()? {
        events.push(event_from_row(row)?);
    }
    Ok(events)
}

pub fn unresolved_intents(conn: &Connection) -> Result<Vec<ExecutionIntent>, LedgerError> {
    let mut statement = conn.prepare(&format!(
        "SELECT {INTENT_COLUMNS} FROM execution_intents WHERE state = 'pending' ORDER BY created_at"
    ))?;
    let mut rows = statement.query([])?;
    let mut intents = Vec::new();
    while let Some(row) = rows.next()? {
        intents.push(intent_from_row(row)?);
    }
    Ok(intents)
}

pub fn get_intent(conn: &Connection, intent_id: &str) -> Result<Option<ExecutionIntent>, LedgerError> {
    let mut statement =
        conn.prepare(&format!("SELECT {INTENT_COLUMNS} FROM execution_intents WHERE intent_id = ?1"))?;
    let mut rows = statement.query([intent_id])?;
    rows.next()?.map(intent_from_row).transpose()
}

pub fn get_receipt(conn: &Connection, receipt_id: &str) -> Result<Option<Receipt>, LedgerError> {
    let json: Option<String> =
        conn.query_row("SELECT json FROM receipts WHERE receipt_id = ?1", [receipt_id], |r| r.get(0)).optional()?;
    json.map(|j| serde_json::from_str(&j).map_err(|e| LedgerError::CorruptRow(format!("receipt {receipt_id}: {e}"))))
        .transpose()
}

pub fn get_approval_outcome(conn: &Connection, approval_id: &str) -> Result<Option<ApprovalOutcome>, LedgerError> {
    Ok(conn
        .query_row(
            "SELECT approval_id, outcome, operator, ts, plan_hash FROM approval_outcomes WHERE approval_id = ?1",
            [approval_id],
            |r| {
                Ok(ApprovalOutcome {
                    approval_id: r.get(0)?,
                    outcome: r.get(1)?,
                    operator: r.get(2)?,
                    ts: r.get(3)?,
                    plan_hash: r.get(4)?,
                })
            },
        )
        .optional()?)
}

/// Writes every event, in chain order, one JSON object per line. Returns the count.
pub fn export_jsonl(conn: &Connection, out: &mut dyn Write) -> Result<u64, LedgerError> {
    let mut statement = conn.prepare(&format!("SELECT {EVENT_COLUMNS} FROM audit_events ORDER BY seq"))?;
    let mut rows = statement.query([])?;
    let mut count = 0;
    while let Some(row) = rows.next()? {
        let event = event_from_row(row)?;
        serde_json::to_writer(&mut *out, &event)?;
        out.write_all(b"\n").map_err(|e| LedgerError::Persistence(format!("export write: {e}")))?;
        count += 1;
    }
    Ok(count)
}
