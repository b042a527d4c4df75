//! The webhook outbox: one row per (audit event, subscribed webhook), written
//! by the ledger writer **in the same transaction** as the audit event it
//! reports (`WriteCtx::append_event`). So an event is never lost on its way
//! to a receiver (the row commits with it) and nothing is ever delivered
//! without evidence (the row references a committed event, by foreign key).
//! The delivery side (`crate::webhooks`) only changes a row's delivery state.
//!
//! Rows are `pending` until delivered, `delivered` after a 2xx, `dead` after
//! a 4xx or once the retries are spent; a dead letter goes back to `pending`
//! with `latchgate webhooks replay ID`.

use std::collections::BTreeSet;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;
use serde_json::Value;

use super::LedgerError;
use super::event::{AuditEvent, now_timestamp};
use super::reader::{EVENT_COLUMNS, event_from_row};

/// Which webhooks subscribe to which webhook events (from `[[webhooks]]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutboxRoutes {
    hooks: Vec<(String, BTreeSet<String>)>,
}

impl OutboxRoutes {
    pub fn new<N: Into<String>, E: Into<String>>(hooks: impl IntoIterator<Item = (N, Vec<E>)>) -> Self {
        OutboxRoutes {
            hooks: hooks
                .into_iter()
                .map(|(name, events)| (name.into(), events.into_iter().map(Into::into).collect()))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.hooks.is_empty()
    }

    fn subscribers<'a>(&'a self, event: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.hooks.iter().filter(move |(_, events)| events.contains(event)).map(|(name, _)| name.as_str())
    }
}

/// The webhook events an audit event is reported as: the one mapping from
/// audit event types to `WEBHOOK_EVENTS`. Event types the approval and
/// revocation work adds map here by name; an unlisted type reports nothing.
pub fn webhook_events(event_type: &str, payload: &Value) -> Vec<&'static str> {
    let budget = payload.get("error").and_then(Value::as_str) == Some("budget_exhausted")
        || payload.get("deny_reason").and_then(Value::as_str) == Some("budget_exhausted");
    match event_type {
        "approval_pending" => vec!["approval.pending"],
        "approval_approved" => vec!["approval.granted"],
        "approval_denied" => vec!["approval.denied"],
        "approval_expired" => vec!["approval.expired"],
        // A budget refusal is an action denial and, for subscribers of that, its own event.
        "action_denied" if budget => vec!["action.denied", "budget.exhausted"],
        "action_denied" => vec!["action.denied"],
        "action_executed" => vec!["action.executed"],
        "action_failed" => vec!["action.failed"],
        "revocation_epoch_bumped" => vec!["revocation"],
        _ => Vec::new(),
    }
}

/// Inside the writer's transaction, right after `event` was appended.
pub(super) fn enqueue(conn: &Connection, event: &AuditEvent, routes: &OutboxRoutes) -> Result<usize, LedgerError> {
    if routes.is_empty() {
        return Ok(0);
    }
    let mut rows = 0;
    for kind in webhook_events(&event.event_type, &event.payload) {
        for webhook in routes.subscribers(kind) {
            conn.prepare_cached(
                "INSERT INTO webhook_outbox (delivery_id, webhook, event, event_seq, state, attempts, \
                 next_attempt_at, created_at) VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?5)",
            )?
            .execute(params![
                uuid::Uuid::now_v7().to_string(),
                webhook,
                kind,
                event.seq as i64,
                event.ts
            ])?;
            rows += 1;
        }
    }
    Ok(rows)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Delivered,
    Dead,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [DeliveryState::Pending, DeliveryState::Delivered, DeliveryState::Dead].into_iter().find(|s| s.as_str() == text)
    }
}

/// One row of the outbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutboxRow {
    pub delivery_id: String,
    pub webhook: String,
    pub event: String,
    pub event_seq: u64,
    pub state: DeliveryState,
    pub attempts: u32,
    pub next_attempt_at: String,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
}

const ROW_COLUMNS: &str = "o.delivery_id, o.webhook, o.event, o.event_seq, o.state, o.attempts, o.next_attempt_at, \
     o.last_status, o.last_error, o.created_at, o.delivered_at";

fn row_from(row: &Row<'_>) -> Result<OutboxRow, LedgerError> {
    let state: String = row.get(4)?;
    let seq: i64 = row.get(3)?;
    let status: Option<i64> = row.get(7)?;
    Ok(OutboxRow {
        delivery_id: row.get(0)?,
        webhook: row.get(1)?,
        event: row.get(2)?,
        event_seq: u64::try_from(seq).map_err(|_| LedgerError::CorruptRow(format!("outbox event_seq {seq}")))?,
        state: DeliveryState::parse(&state)
            .ok_or_else(|| LedgerError::CorruptRow(format!("outbox state {state:?}")))?,
        attempts: row.get(5)?,
        next_attempt_at: row.get(6)?,
        last_status: status.and_then(|s| u16::try_from(s).ok()),
        last_error: row.get(8)?,
        created_at: row.get(9)?,
        delivered_at: row.get(10)?,
    })
}

/// A pending delivery that is due, with the audit event it reports.
#[derive(Clone, Debug)]
pub struct DueDelivery {
    pub row: OutboxRow,
    pub event: AuditEvent,
}

pub(super) fn due(conn: &Connection, now: &str, limit: u32) -> Result<Vec<DueDelivery>, LedgerError> {
    let sql = format!(
        "SELECT {ROW_COLUMNS} FROM webhook_outbox o WHERE o.state = 'pending' AND o.next_attempt_at <= ?1 \
         ORDER BY o.next_attempt_at, o.id LIMIT ?2"
    );
    let mut statement = conn.prepare(&sql)?;
    let mut rows = statement.query(params![now, limit])?;
    let mut due = Vec::new();
    while let Some(row) = rows.next()? {
        due.push(row_from(row)?);
    }
    let mut event_query = conn.prepare(&format!("SELECT {EVENT_COLUMNS} FROM audit_events WHERE seq = ?1"))?;
    let mut out = Vec::with_capacity(due.len());
    for row in due {
        // The foreign key makes a missing event impossible short of tampering.
        let event = event_query
            .query_row([row.event_seq as i64], |r| Ok(event_from_row(r)))
            .optional()?
            .ok_or_else(|| LedgerError::CorruptRow(format!("outbox row {} names no event", row.delivery_id)))??;
        out.push(DueDelivery { row, event });
    }
    Ok(out)
}

/// The outbox, newest first, optionally only rows in `state`.
pub fn list(conn: &Connection, state: Option<DeliveryState>, limit: u32) -> Result<Vec<OutboxRow>, LedgerError> {
    let sql = format!(
        "SELECT {ROW_COLUMNS} FROM webhook_outbox o WHERE (?1 IS NULL OR o.state = ?1) ORDER BY o.id DESC LIMIT ?2"
    );
    let mut statement = conn.prepare(&sql)?;
    let mut rows = statement.query(params![state.map(DeliveryState::as_str), limit])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(row_from(row)?);
    }
    Ok(out)
}

/// Rows per state, per webhook.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OutboxCounts {
    pub pending: u64,
    pub delivered: u64,
    pub dead: u64,
}

pub fn counts(conn: &Connection, webhook: Option<&str>) -> Result<OutboxCounts, LedgerError> {
    let mut statement =
        conn.prepare("SELECT state, count(*) FROM webhook_outbox WHERE (?1 IS NULL OR webhook = ?1) GROUP BY state")?;
    let mut rows = statement.query(params![webhook])?;
    let mut counts = OutboxCounts::default();
    while let Some(row) = rows.next()? {
        let (state, n): (String, i64) = (row.get(0)?, row.get(1)?);
        let n = n as u64;
        match DeliveryState::parse(&state) {
            Some(DeliveryState::Pending) => counts.pending = n,
            Some(DeliveryState::Delivered) => counts.delivered = n,
            Some(DeliveryState::Dead) => counts.dead = n,
            None => return Err(LedgerError::CorruptRow(format!("outbox state {state:?}"))),
        }
    }
    Ok(counts)
}

/// What one delivery attempt came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered {
        status: u16,
    },
    /// Try again at `next_attempt_at` (a ledger timestamp).
    Retry {
        status: Option<u16>,
        error: String,
        next_attempt_at: String,
    },
    Dead {
        status: Option<u16>,
        error: String,
    },
}

pub(super) fn record_attempt(
    conn: &Connection,
    delivery_id: &str,
    outcome: &AttemptOutcome,
) -> Result<(), LedgerError> {
    let now = now_timestamp();
    let changed = match outcome {
        AttemptOutcome::Delivered { status } => conn.execute(
            "UPDATE webhook_outbox SET state = 'delivered', attempts = attempts + 1, last_status = ?2, \
             last_error = NULL, delivered_at = ?3 WHERE delivery_id = ?1 AND state = 'pending'",
            params![delivery_id, status, now],
        )?,
        AttemptOutcome::Retry { status, error, next_attempt_at } => conn.execute(
            "UPDATE webhook_outbox SET attempts = attempts + 1, last_status = ?2, last_error = ?3, \
             next_attempt_at = ?4 WHERE delivery_id = ?1 AND state = 'pending'",
            params![delivery_id, status, error, next_attempt_at],
        )?,
        AttemptOutcome::Dead { status, error } => conn.execute(
            "UPDATE webhook_outbox SET state = 'dead', attempts = attempts + 1, last_status = ?2, last_error = ?3 \
             WHERE delivery_id = ?1 AND state = 'pending'",
            params![delivery_id, status, error],
        )?,
    };
    if changed == 0 {
        return Err(LedgerError::Persistence(format!("outbox row {delivery_id} is not pending")));
    }
    Ok(())
}

/// `latchgate webhooks replay ID`: a dead letter goes back to pending with a
/// fresh retry budget. Returns the row as it is now; `None` if there is no
/// such delivery.
pub fn replay(conn: &Connection, delivery_id: &str) -> Result<Option<OutboxRow>, ReplayError> {
    let tx = conn.unchecked_transaction().map_err(LedgerError::from)?;
    let sql = format!("SELECT {ROW_COLUMNS} FROM webhook_outbox o WHERE o.delivery_id = ?1");
    let row = tx.query_row(&sql, [delivery_id], |r| Ok(row_from(r))).optional().map_err(LedgerError::from)?;
    let Some(row) = row.transpose()? else { return Ok(None) };
    if row.state != DeliveryState::Dead {
        return Err(ReplayError::NotDead(row.state));
    }
    tx.execute(
        "UPDATE webhook_outbox SET state = 'pending', attempts = 0, next_attempt_at = ?2 WHERE delivery_id = ?1",
        params![delivery_id, now_timestamp()],
    )
    .map_err(LedgerError::from)?;
    let row = tx.query_row(&sql, [delivery_id], |r| Ok(row_from(r))).map_err(LedgerError::from)??;
    tx.commit().map_err(LedgerError::from)?;
    Ok(Some(row))
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("delivery is {} (only dead letters are replayed)", .0.as_str())]
    NotDead(DeliveryState),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl ReplayError {
    pub fn code(&self) -> &'static str {
        match self {
            ReplayError::NotDead(_) => "webhook_delivery_not_dead",
            ReplayError::Ledger(e) => e.code(),
        }
    }
}

/// A read-write connection for the operator CLI (`latchgate webhooks replay`),
/// used while the broker runs: SQLite's locking orders it with the writer.
pub fn open_for_operator(path: &std::path::Path) -> Result<Connection, LedgerError> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    conn.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;")?;
    let has_outbox: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'webhook_outbox')",
        [],
        |r| r.get(0),
    )?;
    if !has_outbox {
        return Err(LedgerError::Persistence("this ledger has no webhook outbox yet (start the gate once)".into()));
    }
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn audit_event_types_map_to_webhook_events() {
        assert_eq!(webhook_events("action_executed", &json!({})), ["action.executed"]);
        assert_eq!(webhook_events("action_denied", &json!({"error": "policy_denied"})), ["action.denied"]);
        assert_eq!(
            webhook_events("action_denied", &json!({"error": "budget_exhausted"})),
            ["action.denied", "budget.exhausted"]
        );
        assert_eq!(webhook_events("approval_pending", &json!({})), ["approval.pending"]);
        assert_eq!(webhook_events("approval_approved", &json!({})), ["approval.granted"]);
        assert_eq!(webhook_events("revocation_epoch_bumped", &json!({})), ["revocation"]);
        assert!(webhook_events("execution_intent_recorded", &json!({})).is_empty(), "bookkeeping is not reported");
        for kinds in [
            "approval_pending",
            "approval_approved",
            "approval_denied",
            "approval_expired",
            "action_denied",
            "action_executed",
            "action_failed",
            "revocation_epoch_bumped",
        ]
        .map(|t| webhook_events(t, &json!({"error": "budget_exhausted"})))
        {
            for kind in kinds {
                assert!(latchgate_core::config::WEBHOOK_EVENTS.contains(&kind), "{kind} is not a configurable event");
            }
        }
    }
}
