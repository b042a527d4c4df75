//! WAL checkpoints off the commit path. With SQLite's autocheckpoint, the
//! COMMIT that pushes the WAL past 1000 pages also copies the WAL back into
//! the database file and fsyncs it, while every job of that batch waits for
//! its answer. The writer connection therefore runs with autocheckpoint off
//! and marks each committed batch; this thread looks every [`MIN_INTERVAL`]
//! and, when something committed, runs a PASSIVE checkpoint (it never blocks
//! the writer or a reader) on its own connection. Durability is unchanged: a
//! commit is durable once its WAL frames are fsynced (`synchronous=FULL`),
//! whether or not a checkpoint has copied them yet.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusqlite::Connection;

/// At most one checkpoint per this interval while commits keep coming.
const MIN_INTERVAL: Duration = Duration::from_millis(200);

/// Tells the checkpointer that a batch committed. A flag, not a message: the
/// writer never wakes the checkpointer (a wake-up per commit costs the commit
/// path more than the checkpoint saves); the checkpointer looks every
/// [`MIN_INTERVAL`].
#[derive(Clone)]
pub(super) struct Nudge(Arc<AtomicBool>);

impl Nudge {
    pub fn committed(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Starts the checkpointer for the ledger at `path`. It stops when every
/// [`Nudge`] is dropped (the writer ended), after a last checkpoint.
pub(super) fn spawn(path: PathBuf) -> std::io::Result<Nudge> {
    let dirty = Arc::new(AtomicBool::new(false));
    let watched = dirty.clone();
    std::thread::Builder::new().name("ledger-checkpoint".into()).spawn(move || run(&path, &watched))?;
    Ok(Nudge(dirty))
}

fn run(path: &Path, dirty: &Arc<AtomicBool>) {
    let conn = match Connection::open(path)
        .and_then(|c| c.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA temp_store = MEMORY;").map(|()| c))
    {
        Ok(conn) => conn,
        Err(e) => {
            tracing::error!(error = %e, "ledger checkpointer cannot open the ledger; the WAL grows until restart");
            return;
        }
    };
    while wait_for_commits(dirty, MIN_INTERVAL) {
        checkpoint(&conn);
    }
    checkpoint(&conn);
}

/// Sleeps in `interval` steps until a batch committed (true) or every
/// [`Nudge`] is gone (false): this thread then holds the only reference.
fn wait_for_commits(dirty: &Arc<AtomicBool>, interval: Duration) -> bool {
    loop {
        std::thread::sleep(interval);
        if dirty.swap(false, Ordering::AcqRel) {
            return true;
        }
        if Arc::strong_count(dirty) == 1 {
            return false;
        }
    }
}

fn checkpoint(conn: &Connection) {
    // A failed checkpoint loses nothing (the WAL keeps the frames); the next one retries.
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
        tracing::warn!(error = %e, "ledger checkpoint failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_commit_is_seen_at_the_next_look_and_only_once() {
        let dirty = Arc::new(AtomicBool::new(false));
        let nudge = Nudge(dirty.clone());
        nudge.committed();
        assert!(wait_for_commits(&dirty, Duration::from_millis(1)));
        assert!(!dirty.load(Ordering::Acquire), "the flag is consumed");
        drop(nudge);
        assert!(!wait_for_commits(&dirty, Duration::from_millis(1)), "no writer, no commit: stop");
    }

    #[test]
    fn a_stopped_writer_ends_the_wait_within_an_interval() {
        let dirty = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        assert!(!wait_for_commits(&dirty, Duration::from_millis(20)));
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
