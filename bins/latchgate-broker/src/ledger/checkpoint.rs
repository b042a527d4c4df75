//! WAL checkpoints off the commit path. With SQLite's autocheckpoint, the
//! COMMIT that pushes the WAL past 1000 pages also copies the WAL back into
//! the database file and fsyncs it, while every job of that batch waits for
//! its answer. The writer connection therefore runs with autocheckpoint off
//! and marks each committed batch; this thread looks every [`MIN_INTERVAL`]
//! and, when something committed, runs a PASSIVE checkpoint (it never blocks
//! the writer or a reader) on its own connection. Durability is unchanged: a
//! commit is durable once its WAL frames are fsynced (`synchronous=FULL`),
//! whether or not a checkpoint has copied them yet.
//!
//! SQLite starts the WAL over (writes it again from its first frame) only
//! when a write transaction begins after a checkpoint copied *every* frame.
//! Under commits that never pause, a checkpoint on another connection never
//! catches up: the WAL was appended to forever (hundreds of MB a minute) and
//! every commit's fsync also had to extend the file. So once the WAL is past
//! [`RESTART_FRAMES`], this thread copies the bulk and then asks the writer
//! to copy the few frames committed meanwhile, between two of its batches
//! ([`Signals::finish_on_writer`]), after which its next transaction starts
//! the WAL over.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusqlite::Connection;

/// At most one checkpoint per this interval while commits keep coming.
const MIN_INTERVAL: Duration = Duration::from_millis(200);
/// A WAL longer than this (in frames, 4 KiB pages each) is started over.
/// SQLite's own autocheckpoint threshold.
const RESTART_FRAMES: i64 = 1000;

/// What the writer and the checkpointer tell each other. Flags, not
/// messages: the writer never wakes the checkpointer (a wake-up per commit
/// costs the commit path more than the checkpoint saves); the checkpointer
/// looks every [`MIN_INTERVAL`], the writer after each batch.
#[derive(Default)]
struct Flags {
    /// A batch committed since the checkpointer last looked.
    dirty: AtomicBool,
    /// The checkpointer copied the bulk of a long WAL; the writer should copy the rest.
    finish_wanted: AtomicBool,
}

/// The writer's side of the flags.
#[derive(Clone)]
pub(super) struct Signals(Arc<Flags>);

impl Signals {
    pub fn committed(&self) {
        self.0.dirty.store(true, Ordering::Release);
    }

    /// The checkpointer is waiting for the writer to copy the rest of a WAL.
    pub fn finish_pending(&self) -> bool {
        self.0.finish_wanted.load(Ordering::Acquire)
    }

    /// Between two batches (no transaction open): if the checkpointer asked,
    /// copy what it could not, so that the next transaction starts the WAL over.
    pub fn finish_on_writer(&self, conn: &Connection) {
        if self.0.finish_wanted.swap(false, Ordering::AcqRel) {
            checkpoint(conn);
        }
    }
}

/// Starts the checkpointer for the ledger at `path`. It stops when every
/// [`Signals`] is dropped (the writer ended), after a last checkpoint.
pub(super) fn spawn(path: PathBuf) -> std::io::Result<Signals> {
    let flags = Arc::new(Flags::default());
    let watched = flags.clone();
    std::thread::Builder::new().name("ledger-checkpoint".into()).spawn(move || run(&path, &watched))?;
    Ok(Signals(flags))
}

fn run(path: &Path, flags: &Arc<Flags>) {
    let conn = match Connection::open(path)
        .and_then(|c| c.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA temp_store = MEMORY;").map(|()| c))
    {
        Ok(conn) => conn,
        Err(e) => {
            tracing::error!(error = %e, "ledger checkpointer cannot open the ledger; the WAL grows until restart");
            return;
        }
    };
    while wait_for_commits(flags, MIN_INTERVAL) {
        if checkpoint(&conn).is_some_and(needs_the_writer) {
            flags.finish_wanted.store(true, Ordering::Release);
        }
    }
    checkpoint(&conn);
}

/// Sleeps in `interval` steps until a batch committed (true) or every
/// [`Signals`] is gone (false): this thread then holds the only reference.
fn wait_for_commits(flags: &Arc<Flags>, interval: Duration) -> bool {
    loop {
        std::thread::sleep(interval);
        if flags.dirty.swap(false, Ordering::AcqRel) {
            return true;
        }
        if Arc::strong_count(flags) == 1 {
            return false;
        }
    }
}

/// A long WAL is left for the writer to finish: the checkpoint counted its
/// frames when it started, and commits that came while it copied are still
/// to copy (if none came, finishing costs the writer nothing).
fn needs_the_writer(wal_frames: i64) -> bool {
    wal_frames >= RESTART_FRAMES
}

/// A PASSIVE checkpoint; the frames the WAL held when it started.
fn checkpoint(conn: &Connection) -> Option<i64> {
    // A failed checkpoint loses nothing (the WAL keeps the frames); the next one retries.
    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1)) {
        Ok(wal_frames) => Some(wal_frames),
        Err(e) => {
            tracing::warn!(error = %e, "ledger checkpoint failed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_commit_is_seen_at_the_next_look_and_only_once() {
        let flags = Arc::new(Flags::default());
        let signals = Signals(flags.clone());
        signals.committed();
        assert!(wait_for_commits(&flags, Duration::from_millis(1)));
        assert!(!flags.dirty.load(Ordering::Acquire), "the flag is consumed");
        drop(signals);
        assert!(!wait_for_commits(&flags, Duration::from_millis(1)), "no writer, no commit: stop");
    }

    #[test]
    fn a_stopped_writer_ends_the_wait_within_an_interval() {
        let flags = Arc::new(Flags::default());
        let started = Instant::now();
        assert!(!wait_for_commits(&flags, Duration::from_millis(20)));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn only_a_long_wal_needs_the_writer() {
        assert!(needs_the_writer(RESTART_FRAMES + 500), "frames may have come during the copy");
        assert!(!needs_the_writer(10), "short: not worth a writer pause");
    }
}
