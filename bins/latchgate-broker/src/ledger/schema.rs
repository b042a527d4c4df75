//! Ledger schema and its forward-only migrations. Each migration runs in the
//! same transaction as the bump of `schema_version`, so a crash leaves the
//! database at one version or the next, never between.

use rusqlite::{Connection, OptionalExtension};

use super::LedgerError;

/// Migrations in order; index + 1 is the version a migration produces.
const MIGRATIONS: &[&str] = &[
    // v1: the evidence tables. `audit_events.hash` chains every event to the
    // previous one; `chain_head` remembers the last link so that truncating the
    // tail of the chain is detected too. `witness` ties a row of another table
    // to the event written in the same transaction (see `event::Witness`).
    r#"
    CREATE TABLE audit_events (
        seq         INTEGER PRIMARY KEY,
        event_id    TEXT NOT NULL UNIQUE,
        ts          TEXT NOT NULL,
        event_type  TEXT NOT NULL,
        trace_id    TEXT,
        action_id   TEXT,
        principal   TEXT,
        session_id  TEXT,
        decision    TEXT,
        payload     TEXT NOT NULL,
        witness     TEXT,
        prev_hash   TEXT NOT NULL,
        hash        TEXT NOT NULL
    );
    CREATE INDEX audit_events_trace ON audit_events(trace_id);
    CREATE INDEX audit_events_type_ts ON audit_events(event_type, ts);
    CREATE INDEX audit_events_ts ON audit_events(ts);
    CREATE TABLE chain_head (
        id   INTEGER PRIMARY KEY CHECK (id = 1),
        seq  INTEGER NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE TABLE execution_intents (
        intent_id    TEXT PRIMARY KEY,
        grant_id     TEXT NOT NULL UNIQUE,
        trace_id     TEXT NOT NULL,
        action_id    TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        created_at   TEXT NOT NULL,
        state        TEXT NOT NULL CHECK (state IN ('pending', 'resolved', 'failed')),
        resolved_at  TEXT
    );
    CREATE INDEX execution_intents_state ON execution_intents(state);
    CREATE TABLE receipts (
        receipt_id TEXT PRIMARY KEY,
        grant_id   TEXT NOT NULL,
        json       TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX receipts_grant ON receipts(grant_id);
    CREATE TABLE consumed_grants (
        grant_id    TEXT PRIMARY KEY,
        consumed_at TEXT NOT NULL
    );
    CREATE TABLE approval_outcomes (
        approval_id TEXT PRIMARY KEY,
        outcome     TEXT NOT NULL,
        operator    TEXT NOT NULL,
        ts          TEXT NOT NULL,
        plan_hash   TEXT NOT NULL
    );
    "#,
    // v2: held calls. `approvals` keeps the immutable plan of each held call
    // (its `plan_hash` is the SHA-256 of the stored plan text); the decision
    // stays in `approval_outcomes`, which now also records why (deny reason,
    // failed re-check) and the deciding operator's DPoP key thumbprint.
    r#"
    CREATE TABLE approvals (
        approval_id  TEXT PRIMARY KEY,
        trace_id     TEXT NOT NULL,
        action_id    TEXT NOT NULL,
        principal    TEXT NOT NULL,
        session_id   TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        plan_hash    TEXT NOT NULL,
        plan         TEXT NOT NULL,
        created_at   TEXT NOT NULL,
        expires_at   TEXT NOT NULL
    );
    CREATE INDEX approvals_expires ON approvals(expires_at);
    CREATE INDEX approvals_created ON approvals(created_at);
    ALTER TABLE approval_outcomes ADD COLUMN reason TEXT;
    ALTER TABLE approval_outcomes ADD COLUMN operator_jkt TEXT;
    CREATE INDEX execution_intents_trace ON execution_intents(trace_id);
    "#,
    // v3: the webhook outbox (see `outbox`). Rows are written in the
    // transaction of the audit event they report and reference it; only
    // their delivery state changes afterwards, so they are not chained.
    r#"
    CREATE TABLE webhook_outbox (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        delivery_id     TEXT NOT NULL UNIQUE,
        webhook         TEXT NOT NULL,
        event           TEXT NOT NULL,
        event_seq       INTEGER NOT NULL REFERENCES audit_events(seq),
        state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
        attempts        INTEGER NOT NULL,
        next_attempt_at TEXT NOT NULL,
        last_status     INTEGER,
        last_error      TEXT,
        created_at      TEXT NOT NULL,
        delivered_at    TEXT
    );
    CREATE INDEX webhook_outbox_due ON webhook_outbox(state, next_attempt_at);
    "#,
];

pub const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

pub fn migrate(conn: &mut Connection) -> Result<(), LedgerError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    let found: i64 = conn.query_row("SELECT version FROM schema_version", [], |r| r.get(0)).optional()?.unwrap_or(0);
    if found > CURRENT_VERSION {
        return Err(LedgerError::SchemaTooNew { found, supported: CURRENT_VERSION });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = index as i64 + 1;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.execute("DELETE FROM schema_version", [])?;
        tx.execute("INSERT INTO schema_version (version) VALUES (?1)", [version])?;
        tx.commit()?;
    }
    Ok(())
}
