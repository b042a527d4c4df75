//! The single ledger writer: one std thread takes every job waiting in its
//! queue, runs them in ONE transaction (each in its own SAVEPOINT, so a
//! failing job is rolled back alone), commits once — with `synchronous=FULL`
//! that is one fsync for the whole batch — and only then answers each job.
//! Concurrent callers therefore share fsyncs (group commit) and nobody is
//! answered before their own data is durable.
//!
//! When nothing is queued and nobody is committing, the caller commits its
//! job itself, the same way (a batch of one). That blocks its runtime thread
//! for one commit, which is about what it would have waited for the writer,
//! and only while the ledger is otherwise idle: under load the queue is
//! never empty and every job goes to the writer thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use super::LedgerError;
use super::checkpoint::Signals;
use super::event::{AuditEvent, GENESIS_PREV_HASH, NewAuditEvent, Witness, now_timestamp};
use super::outbox::{self, OutboxRoutes};

/// Upper bound on jobs per transaction: bounds the latency added to the first
/// job of a batch and the size of a rollback.
const MAX_BATCH: usize = 512;

/// The last link of the chain, as the writer knows it.
#[derive(Clone, Debug)]
pub(super) struct ChainHead {
    pub seq: u64,
    pub hash: String,
}

pub(super) fn load_head(conn: &Connection) -> Result<ChainHead, LedgerError> {
    let head = conn
        .query_row("SELECT seq, hash FROM chain_head WHERE id = 1", [], |r| {
            Ok(ChainHead { seq: r.get::<_, i64>(0)? as u64, hash: r.get(1)? })
        })
        .optional()?;
    Ok(head.unwrap_or(ChainHead { seq: 0, hash: GENESIS_PREV_HASH.to_string() }))
}

/// What a job may do inside the batch transaction.
pub(super) struct WriteCtx<'c> {
    pub conn: &'c Connection,
    head: &'c mut ChainHead,
    routes: &'c OutboxRoutes,
}

impl WriteCtx<'_> {
    /// Appends the next link of the chain.
    pub fn append_event(&mut self, new: NewAuditEvent, witness: Option<Witness>) -> Result<AuditEvent, LedgerError> {
        let mut event = AuditEvent {
            seq: self.head.seq + 1,
            event_id: uuid::Uuid::now_v7().to_string(),
            ts: now_timestamp(),
            event_type: new.event_type,
            trace_id: new.trace_id,
            action_id: new.action_id,
            principal: new.principal,
            session_id: new.session_id,
            decision: new.decision,
            payload: new.payload,
            witness,
            prev_hash: self.head.hash.clone(),
            hash: String::new(),
        };
        event.hash = event.compute_hash()?;
        let witness_json = event.witness.as_ref().map(serde_json::to_string).transpose()?;
        self.conn
            .prepare_cached(
                "INSERT INTO audit_events (seq, event_id, ts, event_type, trace_id, action_id, principal, \
             session_id, decision, payload, witness, prev_hash, hash) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?
            .execute(params![
                event.seq as i64,
                event.event_id,
                event.ts,
                event.event_type,
                event.trace_id,
                event.action_id,
                event.principal,
                event.session_id,
                event.decision,
                serde_json::to_string(&event.payload)?,
                witness_json,
                event.prev_hash,
                event.hash,
            ])?;
        self.conn
            .prepare_cached(
                "INSERT INTO chain_head (id, seq, hash) VALUES (1, ?1, ?2) \
                 ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            )?
            .execute(params![event.seq as i64, event.hash])?;
        self.head.seq = event.seq;
        self.head.hash = event.hash.clone();
        // Same savepoint as the event: both commit or neither does.
        outbox::enqueue(self.conn, &event, self.routes)?;
        Ok(event)
    }
}

/// A unit of work for the writer; answered after the batch commits.
pub(super) trait Job: Send {
    /// Runs inside the job's savepoint; `false` means roll the savepoint back.
    fn apply(&mut self, ctx: &mut WriteCtx<'_>) -> bool;
    /// Called once, after the batch committed (`Ok`) or failed (`Err`).
    fn reply(self: Box<Self>, batch: &Result<(), String>);
}

type Work<T> = Box<dyn FnOnce(&mut WriteCtx<'_>) -> Result<T, LedgerError> + Send>;

pub(super) struct FnJob<T> {
    work: Option<Work<T>>,
    result: Option<Result<T, LedgerError>>,
    answer: oneshot::Sender<Result<T, LedgerError>>,
}

impl<T: Send + 'static> FnJob<T> {
    pub fn boxed(work: Work<T>) -> (Box<dyn Job>, oneshot::Receiver<Result<T, LedgerError>>) {
        let (answer, receiver) = oneshot::channel();
        (Box::new(FnJob { work: Some(work), result: None, answer }), receiver)
    }
}

impl<T: Send + 'static> Job for FnJob<T> {
    fn apply(&mut self, ctx: &mut WriteCtx<'_>) -> bool {
        let Some(work) = self.work.take() else { return false };
        let result = work(ctx);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn reply(self: Box<Self>, batch: &Result<(), String>) {
        let answer = match (self.result, batch) {
            // The job's own failure wins: it was rolled back regardless of the batch.
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (_, Err(detail)) => Err(LedgerError::Persistence(detail.clone())),
            (None, Ok(())) => Err(LedgerError::WriterUnavailable),
        };
        // The caller may have gone away (request cancelled); the data is committed either way.
        let _ = self.answer.send(answer);
    }
}

type JobSender = mpsc::Sender<Box<dyn Job>>;

/// Queue depth; callers wait (asynchronously) when the writer falls this far behind.
const QUEUE_DEPTH: usize = 4096;

/// Counters of the writer, for `/metrics` and the group-commit tests.
#[derive(Debug, Default)]
pub(super) struct WriterCounters {
    pub batches_committed: AtomicU64,
    /// Of those, batches the caller committed on its own thread.
    pub batches_on_caller: AtomicU64,
    pub jobs_in_committed_batches: AtomicU64,
    pub batches_failed: AtomicU64,
    /// Counted by `Ledger::submit` (per job, not per batch).
    pub write_errors: AtomicU64,
}

/// The write connection and the chain head, with what a commit updates:
/// whoever holds it commits. That is the writer thread, or — when the writer
/// is idle and nothing is queued — the caller itself ([`Writer::submit`]),
/// which saves two thread wake-ups per commit (one to start the writer, one
/// to hand the answer back): at one call at a time those were a sixth of a
/// commit's latency.
pub(super) struct Committer {
    conn: Connection,
    head: ChainHead,
    routes: OutboxRoutes,
    counters: Arc<WriterCounters>,
    checkpoints: Signals,
}

impl Committer {
    pub fn new(
        conn: Connection,
        head: ChainHead,
        routes: OutboxRoutes,
        counters: Arc<WriterCounters>,
        checkpoints: Signals,
    ) -> Committer {
        Committer { conn, head, routes, counters, checkpoints }
    }

    /// Runs `batch` in one transaction and answers every job of it; `true`
    /// when the transaction committed.
    fn commit(&mut self, mut batch: Vec<Box<dyn Job>>) -> bool {
        let head_before = self.head.clone();
        let outcome = run_batch(&self.conn, &mut self.head, &self.routes, &mut batch).map_err(|e| {
            tracing::error!(error = %e, code = e.code(), jobs = batch.len(), "ledger batch not committed");
            // The database is the truth after a failed batch; the head from
            // before the batch is the fallback if it cannot even be read.
            self.head = load_head(&self.conn).unwrap_or(head_before);
            e.to_string()
        });
        if outcome.is_ok() {
            self.counters.batches_committed.fetch_add(1, Ordering::Relaxed);
            self.counters.jobs_in_committed_batches.fetch_add(batch.len() as u64, Ordering::Relaxed);
            self.checkpoints.committed();
        } else {
            self.counters.batches_failed.fetch_add(1, Ordering::Relaxed);
        }
        for job in batch {
            job.reply(&outcome);
        }
        outcome.is_ok()
    }
}

/// The way into the [`Committer`]: the queue of the writer thread, or the
/// caller's own thread when nobody else is committing.
pub(super) struct Writer {
    jobs: JobSender,
    committer: Arc<Mutex<Committer>>,
    checkpoints: Signals,
}

impl Writer {
    /// Commits `job` on this thread if the writer is idle and its queue
    /// empty (a batch of one either way); otherwise queues it for the writer
    /// thread, which groups it with whatever else is waiting. `Err` only
    /// when the writer thread is gone (the job is dropped unanswered).
    pub async fn submit(&self, job: Box<dyn Job>) -> Result<(), ()> {
        let job = match self.commit_here_if_idle(job) {
            None => return Ok(()),
            Some(job) => job,
        };
        self.jobs.send(job).await.map_err(|_| ())
    }

    fn commit_here_if_idle(&self, job: Box<dyn Job>) -> Option<Box<dyn Job>> {
        // Queued jobs are older and would be grouped by the writer anyway; a
        // checkpoint to finish is the writer thread's (it may take a while).
        if self.jobs.capacity() < self.jobs.max_capacity() || self.checkpoints.finish_pending() {
            return Some(job);
        }
        match self.committer.try_lock() {
            Ok(mut committer) => {
                if committer.commit(vec![job]) {
                    committer.counters.batches_on_caller.fetch_add(1, Ordering::Relaxed);
                }
                None
            }
            // Busy (the writer is committing) or poisoned (a commit panicked):
            // the writer thread answers, refusing if the committer is poisoned.
            Err(_) => Some(job),
        }
    }
}

pub(super) fn spawn(committer: Committer) -> std::io::Result<(Writer, std::thread::JoinHandle<()>)> {
    let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
    let checkpoints = committer.checkpoints.clone();
    let committer = Arc::new(Mutex::new(committer));
    let shared = Arc::clone(&committer);
    let handle = std::thread::Builder::new().name("ledger-writer".into()).spawn(move || run(&shared, receiver))?;
    Ok((Writer { jobs: sender, committer, checkpoints }, handle))
}

fn run(committer: &Mutex<Committer>, mut jobs: mpsc::Receiver<Box<dyn Job>>) {
    while let Some(first) = jobs.blocking_recv() {
        let mut guard = match committer.lock() {
            Ok(guard) => guard,
            Err(_) => {
                // A commit panicked midway: its transaction state is unknown,
                // so nothing more is written (failing closed, never answering falsely).
                first.reply(&Err("ledger writer failed".into()));
                continue;
            }
        };
        // Taken after the lock: jobs that queued while a caller committed
        // on its own thread join this batch.
        let mut batch = Vec::with_capacity(16);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        guard.commit(batch);
        guard.checkpoints.finish_on_writer(&guard.conn);
    }
}

fn run_batch(
    conn: &Connection,
    head: &mut ChainHead,
    routes: &OutboxRoutes,
    batch: &mut [Box<dyn Job>],
) -> Result<(), LedgerError> {
    control(conn, "BEGIN IMMEDIATE")?;
    let result = apply_all(conn, head, routes, batch).and_then(|()| control(conn, "COMMIT"));
    if result.is_err() && !conn.is_autocommit() {
        // Best effort: if even ROLLBACK fails, the connection's next BEGIN fails too
        // and every later job is refused — failing closed, never answering falsely.
        let _ = control(conn, "ROLLBACK");
    }
    result
}

/// One transaction-control statement, from the connection's statement cache:
/// the writer runs several per job, and parsing them anew each time showed
/// up in profiles.
fn control(conn: &Connection, sql: &str) -> Result<(), LedgerError> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

fn apply_all(
    conn: &Connection,
    head: &mut ChainHead,
    routes: &OutboxRoutes,
    batch: &mut [Box<dyn Job>],
) -> Result<(), LedgerError> {
    for job in batch.iter_mut() {
        control(conn, "SAVEPOINT ledger_job")?;
        let head_before = head.clone();
        let ok = job.apply(&mut WriteCtx { conn, head, routes });
        if !ok {
            *head = head_before;
            control(conn, "ROLLBACK TO ledger_job")?;
        }
        control(conn, "RELEASE ledger_job")?;
        // SQLite rolls the whole transaction back by itself after some errors
        // (full disk, I/O): then nothing of this batch can commit.
        if conn.is_autocommit() {
            return Err(LedgerError::Persistence("transaction rolled back by SQLite".into()));
        }
    }
    Ok(())
}
