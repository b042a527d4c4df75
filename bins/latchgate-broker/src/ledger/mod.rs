//! The evidence ledger: hash-chained audit events, execution intents,
//! consumed grants, receipts and approval outcomes in one SQLite database
//! (WAL, `synchronous=FULL`). Writes go through a single writer thread that
//! groups concurrent commits into one fsync ([`writer`]); reads use their own
//! read-only connections.
//!
//! Call pattern in the broker's execute path:
//! 1. [`Ledger::record_intent_and_consume_grant`] before dispatch — a reused
//!    grant is refused with [`LedgerError::GrantConsumed`] (409).
//! 2. After the executor answered and the signer signed the receipt:
//!    [`Ledger::finalize`]; answer the client only when it returned `Ok`.
//!    A [`LedgerError::Persistence`] maps to `evidence_persistence_failed`
//!    and the intent stays pending (listed by [`Ledger::unresolved_intents`]).

pub mod backup;
mod checkpoint;
mod error;
mod event;
mod intent;
pub mod outbox;
mod reader;
mod records;
mod schema;
mod verify;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ed25519_dalek::VerifyingKey;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use latchgate_core::receipt::Receipt;

pub use error::LedgerError;
pub use event::{AuditEvent, GENESIS_PREV_HASH, NewAuditEvent, ReceiptWitness, Witness, ledger_timestamp};
pub use intent::{
    ApprovalFilter, ApprovalOutcome, ApprovalRecord, ExecutionIntent, Finalization, IntentResolution, IntentState,
    NewApproval, NewIntent,
};
pub use reader::{DEFAULT_EVENT_LIMIT, EventFilter, LearnedDomain, MAX_EVENT_LIMIT};
pub use records::{INTENT_FAILED_EVENT, INTENT_RECORDED_EVENT};
pub use schema::CURRENT_VERSION as SCHEMA_VERSION;
pub use verify::{BreakReason, ChainBreak, VerifyReport};

/// File name of the ledger inside the configured `state_dir`.
pub const LEDGER_FILE: &str = "ledger.db";

use writer::{Committer, FnJob, Writer};

/// How the ledger database is opened.
#[derive(Clone, Debug, Default)]
pub struct LedgerOptions {
    /// Caps the database at this many pages (`PRAGMA max_page_count`): past it
    /// every write fails with [`LedgerError::Persistence`], exactly as on a
    /// full disk. `None` = SQLite's default (effectively unlimited).
    pub max_page_count: Option<u64>,
    /// Webhook subscriptions: events they subscribe to get an outbox row in
    /// the transaction that appends the event.
    pub outbox_routes: outbox::OutboxRoutes,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LedgerStats {
    /// Transactions committed (one fsync each).
    pub batches_committed: u64,
    /// Of those, committed by the caller on its own thread because the
    /// writer was idle (at one call at a time, nearly all of them).
    pub batches_on_caller: u64,
    /// Jobs answered `Ok` or refused on their own inside committed batches.
    pub jobs_committed: u64,
    pub batches_failed: u64,
    /// Writes (each with its audit event) that did not become durable:
    /// `Persistence` or `WriterUnavailable` answers, one per failed job.
    pub write_errors: u64,
}

/// Handle to the ledger; cheap to clone, shared by all request tasks.
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Writer,
    counters: Arc<writer::WriterCounters>,
    readers: LedgerReader,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Prepared statements kept per connection: more than the writer and the
/// readers' hot queries use, so none is parsed twice.
const STATEMENT_CACHE_CAPACITY: usize = 64;

/// Bytes of WAL kept when SQLite starts it over (`journal_size_limit`).
const WAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

fn configure_writer(conn: &Connection, options: &LedgerOptions) -> Result<(), LedgerError> {
    // WAL: readers never block the writer. FULL: a COMMIT returns only after
    // the WAL is fsynced, which is what "durable before the response" means.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(LedgerError::Persistence(format!("journal_mode is {mode}, WAL required")));
    }
    // temp_store = MEMORY: statement journals and sorts never need a file
    // outside the state dir (Landlock allows the broker nothing else).
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA temp_store = MEMORY;",
    )?;
    // Checkpoints run on their own thread (see `checkpoint`), not inside a COMMIT.
    conn.query_row("PRAGMA wal_autocheckpoint = 0", [], |_| Ok(()))?;
    // A WAL that grew past this while it could not be started over (a long
    // read held it) is cut back to it when it is.
    conn.query_row(&format!("PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}"), [], |_| Ok(()))?;
    // Every statement of the writer stays prepared (rusqlite's default cache holds 16).
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    if let Some(pages) = options.max_page_count {
        conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
    }
    Ok(())
}

impl Ledger {
    /// Opens (creating and migrating as needed) the ledger at `path`.
    pub fn open(path: &Path) -> Result<Ledger, LedgerError> {
        Ledger::open_with(path, LedgerOptions::default())
    }

    pub fn open_with(path: &Path, options: LedgerOptions) -> Result<Ledger, LedgerError> {
        let mut conn = Connection::open(path)?;
        configure_writer(&conn, &options)?;
        schema::migrate(&mut conn)?;
        let head = writer::load_head(&conn)?;
        let counters = Arc::new(writer::WriterCounters::default());
        let checkpoints = checkpoint::spawn(path.to_path_buf())
            .map_err(|e| LedgerError::Persistence(format!("cannot start ledger checkpointer: {e}")))?;
        let committer = Committer::new(conn, head, options.outbox_routes.clone(), Arc::clone(&counters), checkpoints);
        let (writer, handle) = writer::spawn(committer)
            .map_err(|e| LedgerError::Persistence(format!("cannot start ledger writer: {e}")))?;
        Ok(Ledger {
            inner: Arc::new(Inner {
                writer,
                counters,
                readers: LedgerReader::open(path)?,
                writer_thread: Mutex::new(Some(handle)),
            }),
        })
    }

    /// Writer counters since open. `jobs_committed / batches_committed` is
    /// the average number of commits that shared one fsync.
    pub fn stats(&self) -> LedgerStats {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.inner.counters;
        LedgerStats {
            batches_committed: c.batches_committed.load(Relaxed),
            batches_on_caller: c.batches_on_caller.load(Relaxed),
            jobs_committed: c.jobs_in_committed_batches.load(Relaxed),
            batches_failed: c.batches_failed.load(Relaxed),
            write_errors: c.write_errors.load(Relaxed),
        }
    }

    /// Every event as JSONL in chain order (blocking read); returns the count.
    pub fn export_jsonl(&self, out: &mut dyn std::io::Write) -> Result<u64, LedgerError> {
        self.inner.readers.export_jsonl(out)
    }

    /// The read side, for queries outside the async API.
    pub fn reader(&self) -> &LedgerReader {
        &self.inner.readers
    }

    async fn submit<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut writer::WriteCtx<'_>) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let (job, answer) = FnJob::boxed(Box::new(work));
        let result = match self.inner.writer.submit(job).await {
            Ok(()) => answer.await.unwrap_or(Err(LedgerError::WriterUnavailable)),
            Err(_) => Err(LedgerError::WriterUnavailable),
        };
        if let Err(LedgerError::Persistence(_) | LedgerError::WriterUnavailable) = &result {
            self.inner.counters.write_errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        result
    }

    /// Writes the execution intent and consumes its grant in one transaction.
    pub async fn record_intent_and_consume_grant(&self, intent: NewIntent) -> Result<ExecutionIntent, LedgerError> {
        self.submit(move |ctx| records::record_intent(ctx, intent)).await
    }

    /// Stores the receipt, resolves the intent and appends the final audit
    /// event, in one transaction. Returns the committed event.
    pub async fn finalize(&self, finalization: Finalization) -> Result<AuditEvent, LedgerError> {
        self.submit(move |ctx| records::finalize(ctx, finalization)).await
    }

    /// Closes a pending intent as failed without a receipt (e.g. dispatch
    /// failed before the executor ran), with its audit event.
    pub async fn fail_intent(&self, intent_id: String, event: NewAuditEvent) -> Result<AuditEvent, LedgerError> {
        self.submit(move |ctx| records::fail_intent(ctx, intent_id, event)).await
    }

    pub async fn append_event(&self, event: NewAuditEvent) -> Result<AuditEvent, LedgerError> {
        self.submit(move |ctx| ctx.append_event(event, None)).await
    }

    /// Records an operator's decision once; a second outcome for the same
    /// approval is refused with [`LedgerError::ApprovalAlreadyDecided`].
    pub async fn record_approval_outcome(
        &self,
        outcome: ApprovalOutcome,
        event: NewAuditEvent,
    ) -> Result<AuditEvent, LedgerError> {
        self.submit(move |ctx| records::record_approval_outcome(ctx, outcome, event)).await
    }

    /// Stores a held call (immutable plan) with its audit event, in one transaction.
    pub async fn record_approval(
        &self,
        approval: NewApproval,
        event: NewAuditEvent,
    ) -> Result<ApprovalRecord, LedgerError> {
        self.submit(move |ctx| records::record_approval(ctx, approval, event)).await
    }

    pub async fn get_approval(&self, approval_id: String) -> Result<Option<ApprovalRecord>, LedgerError> {
        self.read(move |c| reader::get_approval(c, &approval_id)).await
    }

    pub async fn list_approvals(&self, filter: ApprovalFilter, limit: u32) -> Result<Vec<ApprovalRecord>, LedgerError> {
        self.read(move |c| reader::list_approvals(c, filter, limit)).await
    }

    /// Pending approvals whose expiry is at or before `now`.
    pub async fn expired_pending_approvals(
        &self,
        now: time::OffsetDateTime,
    ) -> Result<Vec<ApprovalRecord>, LedgerError> {
        let now = ledger_timestamp(now);
        self.read(move |c| reader::expired_pending_approvals(c, &now)).await
    }

    pub async fn count_pending_approvals(&self) -> Result<u64, LedgerError> {
        self.read(reader::count_pending_approvals).await
    }

    pub async fn count_unresolved_intents(&self) -> Result<u64, LedgerError> {
        self.read(reader::count_unresolved_intents).await
    }

    /// When the oldest approval still pending was created (ledger timestamp).
    pub async fn oldest_pending_approval(&self) -> Result<Option<String>, LedgerError> {
        self.read(reader::oldest_pending_approval).await
    }

    pub async fn learned_domains(&self) -> Result<Vec<LearnedDomain>, LedgerError> {
        self.read(reader::learned_domains).await
    }

    /// One page of the JSONL export: events after `after_seq`, at most
    /// `max_events` and about `max_bytes`. Returns the text and the last seq
    /// written (`None` when no event is left).
    pub async fn export_page(
        &self,
        after_seq: u64,
        max_events: u32,
        max_bytes: usize,
    ) -> Result<(String, Option<u64>), LedgerError> {
        self.read(move |c| reader::export_page(c, after_seq, max_events, max_bytes)).await
    }

    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let readers = self.inner.readers.clone();
        tokio::task::spawn_blocking(move || readers.with_connection(query))
            .await
            .map_err(|e| LedgerError::Persistence(format!("ledger read task failed: {e}")))?
    }

    /// Pending webhook deliveries whose time has come, with their audit events.
    pub async fn due_deliveries(&self, limit: u32) -> Result<Vec<outbox::DueDelivery>, LedgerError> {
        self.read(move |c| outbox::due(c, &event::now_timestamp(), limit)).await
    }

    /// The result of one delivery attempt (delivery state only: no audit event).
    pub async fn record_delivery_attempt(
        &self,
        delivery_id: String,
        outcome: outbox::AttemptOutcome,
    ) -> Result<(), LedgerError> {
        self.submit(move |ctx| outbox::record_attempt(ctx.conn, &delivery_id, &outcome)).await
    }

    pub async fn outbox_counts(&self) -> Result<outbox::OutboxCounts, LedgerError> {
        self.read(|c| outbox::counts(c, None)).await
    }

    pub async fn unresolved_intents(&self) -> Result<Vec<ExecutionIntent>, LedgerError> {
        self.read(reader::unresolved_intents).await
    }

    pub async fn get_intent(&self, intent_id: String) -> Result<Option<ExecutionIntent>, LedgerError> {
        self.read(move |c| reader::get_intent(c, &intent_id)).await
    }

    pub async fn get_receipt(&self, receipt_id: String) -> Result<Option<Receipt>, LedgerError> {
        self.read(move |c| reader::get_receipt(c, &receipt_id)).await
    }

    pub async fn get_approval_outcome(&self, approval_id: String) -> Result<Option<ApprovalOutcome>, LedgerError> {
        self.read(move |c| reader::get_approval_outcome(c, &approval_id)).await
    }

    pub async fn query_events(&self, filter: EventFilter) -> Result<Vec<AuditEvent>, LedgerError> {
        self.read(move |c| reader::query_events(c, &filter)).await
    }

    /// Walks the chain and cross-checks every row (no signature checks).
    pub async fn verify_chain(&self) -> Result<VerifyReport, LedgerError> {
        self.read(|c| verify::verify(c, None)).await
    }

    /// [`Ledger::verify_chain`] plus every receipt's signature, keys by kid.
    pub async fn verify_chain_and_receipts(
        &self,
        receipt_keys: HashMap<String, VerifyingKey>,
    ) -> Result<VerifyReport, LedgerError> {
        self.read(move |c| verify::verify(c, Some(&receipt_keys))).await
    }

    /// Stops the writer after it has answered every queued job. Other clones
    /// keep working until they are dropped; this waits only if it is the last.
    pub async fn shutdown(self) {
        let Ok(inner) = Arc::try_unwrap(self.inner) else { return };
        let Inner { writer, readers, writer_thread, .. } = inner;
        drop(writer);
        drop(readers);
        let handle = writer_thread.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }
}

/// Read-only access to a ledger file: a small pool of read-only connections.
/// Used by the broker's queries and by offline tools (`latchgate verify`,
/// `latchgate audit`) that must not write.
#[derive(Clone)]
pub struct LedgerReader {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
}

/// Idle read connections kept open.
const MAX_IDLE_READERS: usize = 4;

impl LedgerReader {
    /// Opens an existing ledger read-only (fails if it does not exist).
    pub fn open(path: &Path) -> Result<LedgerReader, LedgerError> {
        let reader = LedgerReader { path: path.to_path_buf(), idle: Arc::new(Mutex::new(Vec::new())) };
        let conn = reader.connect()?;
        let version: i64 = conn.query_row("SELECT version FROM schema_version", [], |r| r.get(0))?;
        if version > schema::CURRENT_VERSION {
            return Err(LedgerError::SchemaTooNew { found: version, supported: schema::CURRENT_VERSION });
        }
        reader.release(conn);
        Ok(reader)
    }

    fn connect(&self) -> Result<Connection, LedgerError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        conn.execute_batch("PRAGMA query_only = ON; PRAGMA busy_timeout = 5000; PRAGMA temp_store = MEMORY;")?;
        Ok(conn)
    }

    fn release(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE_READERS
        {
            idle.push(conn);
        }
    }

    /// Runs `query` on a pooled read connection (blocking).
    pub fn with_connection<T>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match pooled {
            Some(conn) => conn,
            None => self.connect()?,
        };
        let result = query(&conn);
        self.release(conn);
        result
    }

    pub fn query_events(&self, filter: &EventFilter) -> Result<Vec<AuditEvent>, LedgerError> {
        self.with_connection(|c| reader::query_events(c, filter))
    }

    pub fn get_receipt(&self, receipt_id: &str) -> Result<Option<Receipt>, LedgerError> {
        self.with_connection(|c| reader::get_receipt(c, receipt_id))
    }

    pub fn unresolved_intents(&self) -> Result<Vec<ExecutionIntent>, LedgerError> {
        self.with_connection(reader::unresolved_intents)
    }

    /// The webhook outbox, newest first (`latchgate webhooks list|dead-letters`).
    pub fn outbox(
        &self,
        state: Option<outbox::DeliveryState>,
        limit: u32,
    ) -> Result<Vec<outbox::OutboxRow>, LedgerError> {
        self.with_connection(|c| outbox::list(c, state, limit))
    }

    pub fn outbox_counts(&self, webhook: Option<&str>) -> Result<outbox::OutboxCounts, LedgerError> {
        self.with_connection(|c| outbox::counts(c, webhook))
    }

    /// Writes every event as JSONL in chain order; returns the number written.
    pub fn export_jsonl(&self, out: &mut dyn std::io::Write) -> Result<u64, LedgerError> {
        self.with_connection(|c| reader::export_jsonl(c, out))
    }

    pub fn verify(&self, receipt_keys: Option<&HashMap<String, VerifyingKey>>) -> Result<VerifyReport, LedgerError> {
        self.with_connection(|c| verify::verify(c, receipt_keys))
    }

    /// [`LedgerReader::verify`], reporting `(events_checked, head_seq)` as the chain walk goes.
    pub fn verify_with_progress(
        &self,
        receipt_keys: Option<&HashMap<String, VerifyingKey>>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<VerifyReport, LedgerError> {
        self.with_connection(|c| verify::verify_with_progress(c, receipt_keys, progress))
    }

    /// The `event_id` stored at `seq`, read raw (so it is found even when the
    /// rest of the row no longer parses); `None` when no row has that seq.
    pub fn event_id_at(&self, seq: u64) -> Result<Option<String>, LedgerError> {
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        self.with_connection(|c| {
            let id: Option<Option<String>> = c
                .query_row("SELECT CAST(event_id AS TEXT) FROM audit_events WHERE seq = ?1", [seq], |r| r.get(0))
                .optional()?;
            Ok(id.flatten())
        })
    }
}
