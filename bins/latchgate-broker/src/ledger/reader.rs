//! Read side: queries on a read-only connection. The writer is never involved,
//! so audit queries and exports do not delay commits.

use std::io::Write;

use rusqlite::{Connection, OptionalExtension, Row, ToSql};
use time::OffsetDateTime;

use latchgate_core::receipt::Receipt;

use super::LedgerError;
use super::event::{AuditEvent, ledger_timestamp};
use super::intent::{ApprovalFilter, ApprovalOutcome, ApprovalRecord, ExecutionIntent, IntentState};

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
        conn.prepare_cached(&format!("SELECT {INTENT_COLUMNS} FROM execution_intents WHERE intent_id = ?1"))?;
    let mut rows = statement.query([intent_id])?;
    rows.next()?.map(intent_from_row).transpose()
}

pub fn get_receipt(conn: &Connection, receipt_id: &str) -> Result<Option<Receipt>, LedgerError> {
    let json: Option<String> = conn
        .prepare_cached("SELECT json FROM receipts WHERE receipt_id = ?1")?
        .query_row([receipt_id], |r| r.get(0))
        .optional()?;
    json.map(|j| serde_json::from_str(&j).map_err(|e| LedgerError::CorruptRow(format!("receipt {receipt_id}: {e}"))))
        .transpose()
}

pub(super) const OUTCOME_COLUMNS: &str = "approval_id, outcome, operator, ts, plan_hash, reason, operator_jkt";

/// Maps a row of [`OUTCOME_COLUMNS`] starting at column `at`.
pub(super) fn outcome_from_row(r: &Row<'_>, at: usize) -> rusqlite::Result<ApprovalOutcome> {
    Ok(ApprovalOutcome {
        approval_id: r.get(at)?,
        outcome: r.get(at + 1)?,
        operator: r.get(at + 2)?,
        ts: r.get(at + 3)?,
        plan_hash: r.get(at + 4)?,
        reason: r.get(at + 5)?,
        operator_jkt: r.get(at + 6)?,
    })
}

pub fn get_approval_outcome(conn: &Connection, approval_id: &str) -> Result<Option<ApprovalOutcome>, LedgerError> {
    Ok(conn
        .query_row(
            &format!("SELECT {OUTCOME_COLUMNS} FROM approval_outcomes WHERE approval_id = ?1"),
            [approval_id],
            |r| outcome_from_row(r, 0),
        )
        .optional()?)
}

pub(super) const APPROVAL_COLUMNS: &str = "approval_id, trace_id, action_id, principal, session_id, request_hash, \
     plan_hash, plan, created_at, expires_at";

/// An approval row with its outcome and the latest execution of its trace.
const APPROVAL_SELECT: &str = "SELECT a.approval_id, a.trace_id, a.action_id, a.principal, a.session_id, \
     a.request_hash, a.plan_hash, a.plan, a.created_at, a.expires_at, \
     o.approval_id, o.outcome, o.operator, o.ts, o.plan_hash, o.reason, o.operator_jkt, \
     (SELECT i.state FROM execution_intents i WHERE i.trace_id = a.trace_id ORDER BY i.created_at DESC LIMIT 1), \
     (SELECT r.receipt_id FROM execution_intents i JOIN receipts r ON r.grant_id = i.grant_id \
        WHERE i.trace_id = a.trace_id ORDER BY r.created_at DESC LIMIT 1) \
     FROM approvals a LEFT JOIN approval_outcomes o ON o.approval_id = a.approval_id";

fn approval_from_row(r: &Row<'_>) -> Result<ApprovalRecord, LedgerError> {
    let outcome = match r.get::<_, Option<String>>(10)? {
        Some(_) => Some(outcome_from_row(r, 10)?),
        None => None,
    };
    let intent_state: Option<String> = r.get(17)?;
    let intent_state = intent_state
        .map(|s| IntentState::parse(&s).ok_or_else(|| LedgerError::CorruptRow(format!("intent state {s:?}"))))
        .transpose()?;
    Ok(ApprovalRecord {
        approval_id: r.get(0)?,
        trace_id: r.get(1)?,
        action_id: r.get(2)?,
        principal: r.get(3)?,
        session_id: r.get(4)?,
        request_hash: r.get(5)?,
        plan_hash: r.get(6)?,
        plan: r.get(7)?,
        created_at: r.get(8)?,
        expires_at: r.get(9)?,
        outcome,
        intent_state,
        receipt_id: r.get(18)?,
    })
}

fn approvals_where(conn: &Connection, clause: &str, args: &[&dyn ToSql]) -> Result<Vec<ApprovalRecord>, LedgerError> {
    let mut statement = conn.prepare(&format!("{APPROVAL_SELECT} {clause}"))?;
    let mut rows = statement.query(args)?;
    let mut found = Vec::new();
    while let Some(row) = rows.next()? {
        found.push(approval_from_row(row)?);
    }
    Ok(found)
}

pub fn get_approval(conn: &Connection, approval_id: &str) -> Result<Option<ApprovalRecord>, LedgerError> {
    Ok(approvals_where(conn, "WHERE a.approval_id = ?1", &[&approval_id])?.pop())
}

/// Newest first.
pub fn list_approvals(
    conn: &Connection,
    filter: ApprovalFilter,
    limit: u32,
) -> Result<Vec<ApprovalRecord>, LedgerError> {
    let limit = i64::from(limit.min(MAX_EVENT_LIMIT));
    match filter {
        ApprovalFilter::All => approvals_where(conn, "ORDER BY a.created_at DESC LIMIT ?1", &[&limit]),
        ApprovalFilter::Pending => {
            approvals_where(conn, "WHERE o.approval_id IS NULL ORDER BY a.created_at DESC LIMIT ?1", &[&limit])
        }
        ApprovalFilter::Outcome(outcome) => {
            approvals_where(conn, "WHERE o.outcome = ?1 ORDER BY a.created_at DESC LIMIT ?2", &[&outcome, &limit])
        }
    }
}

/// Approvals without an outcome whose `expires_at` is at or before `now` (a ledger timestamp).
pub fn expired_pending_approvals(conn: &Connection, now: &str) -> Result<Vec<ApprovalRecord>, LedgerError> {
    approvals_where(conn, "WHERE o.approval_id IS NULL AND a.expires_at <= ?1 ORDER BY a.expires_at", &[&now])
}

pub fn count_pending_approvals(conn: &Connection) -> Result<u64, LedgerError> {
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM approvals a LEFT JOIN approval_outcomes o ON o.approval_id = a.approval_id \
         WHERE o.approval_id IS NULL",
        [],
        |r| r.get(0),
    )?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Intents dispatched whose outcome is not recorded (`latchgate_unresolved_intents`).
pub fn count_unresolved_intents(conn: &Connection) -> Result<u64, LedgerError> {
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM execution_intents WHERE state = 'pending'", [], |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// `created_at` of the oldest approval still waiting for an operator.
pub fn oldest_pending_approval(conn: &Connection) -> Result<Option<String>, LedgerError> {
    let oldest: Option<String> = conn.query_row(
        "SELECT MIN(a.created_at) FROM approvals a LEFT JOIN approval_outcomes o ON o.approval_id = a.approval_id \
         WHERE o.approval_id IS NULL",
        [],
        |r| r.get(0),
    )?;
    Ok(oldest)
}

/// A destination agents asked an action to reach that its allowlist refused.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LearnedDomain {
    pub action_id: String,
    pub domain: String,
    pub count: u64,
    pub first_seen: String,
    pub last_seen: String,
}

/// Aggregated from the `action_denied` events that name `refused_sinks`:
/// the evidence is the record, so nothing else has to be kept in step.
pub fn learned_domains(conn: &Connection) -> Result<Vec<LearnedDomain>, LedgerError> {
    let mut statement = conn.prepare(
        "SELECT e.action_id, s.value, COUNT(*), MIN(e.ts), MAX(e.ts) \
         FROM audit_events e, json_each(e.payload, '$.refused_sinks') s \
         WHERE e.event_type = 'action_denied' AND e.action_id IS NOT NULL AND s.type = 'text' \
         GROUP BY e.action_id, s.value ORDER BY MAX(e.ts) DESC LIMIT 1000",
    )?;
    let mut rows = statement.query([])?;
    let mut found = Vec::new();
    while let Some(r) = rows.next()? {
        let count: i64 = r.get(2)?;
        found.push(LearnedDomain {
            action_id: r.get(0)?,
            domain: r.get(1)?,
            count: u64::try_from(count).unwrap_or(0),
            first_seen: r.get(3)?,
            last_seen: r.get(4)?,
        });
    }
    Ok(found)
}

/// Events after `after_seq` as JSONL, stopping after `max_events` or once the
/// text passes `max_bytes`. Returns the text and the seq of its last event.
pub fn export_page(
    conn: &Connection,
    after_seq: u64,
    max_events: u32,
    max_bytes: usize,
) -> Result<(String, Option<u64>), LedgerError> {
    let mut statement =
        conn.prepare(&format!("SELECT {EVENT_COLUMNS} FROM audit_events WHERE seq > ?1 ORDER BY seq LIMIT ?2"))?;
    let mut rows = statement.query(rusqlite::params![i64::try_from(after_seq).unwrap_or(i64::MAX), max_events])?;
    let mut text = String::new();
    let mut last = None;
    while let Some(row) = rows.next()? {
        let event = event_from_row(row)?;
        text.push_str(&serde_json::to_string(&event)?);
        text.push('\n');
        last = Some(event.seq);
        if text.len() >= max_bytes {
            break;
        }
    }
    Ok((text, last))
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
