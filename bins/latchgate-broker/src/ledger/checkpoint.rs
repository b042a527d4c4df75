//! WAL checkpoints off the commit path. With SQLite's autocheckpoint, the
//! COMMIT that pushes the WAL past 1000 pages also copies the WAL back into
//! the database file and fsyncs it, while every job of that batch waits for
//! its answer. The writer connection therefore runs with autocheckpoint off
//! and nudges this thread after each committed batch; the thread runs a
//! PASSIVE checkpoint (it never blocks the writer or a reader) on its own
//! connection at most every [`MIN_INTERVAL`]. Durability is unchanged: a
//! commit is durable once its WAL frames are fsynced (`synchronous=FULL`),
//! whether or not a checkpoint has copied them yet.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// At most one checkpoint per this interval while commits keep coming.
const MIN_INTERVAL: Duration = Duration::from_millis(200);

/// Tells the checkpointer that a batch committed; never blocks the writer.
#[derive(Clone)]
pub(super) struct Nudge(SyncSender<()>);

impl Nudge {
    pub fn committed(&self) {
        // Full = a nudge is already pending; gone = the checkpointer stopped
        // (SQLite still checkpoints when the last connection closes).
        match self.0.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }
}

/// Starts the checkpointer for the ledger at `path`. It stops when every
/// [`Nudge`] is dropped (the writer ended), after a last checkpoint.
pub(super) fn spawn(path: PathBuf) -> std::io::Result<Nudge> {
    let (sender, receiver) = sync_channel(1);
    std::thread::Builder::new().name("ledger-checkpoint".into()).spawn(move || run(&path, &receiver))?;
    Ok(Nudge(sender))
}

fn run(path: &Path, nudges: &Receiver<()>) {
    let conn = match Connection::open(path)
        .and_then(|c| c.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA temp_store = MEMORY;").map(|()| c))
    {
        Ok(conn) => conn,
        Err(e) => {
            tracing::error!(error = %e, "ledger checkpointer cannot open the ledger; the WAL grows until restart");
            return;
        }
    };
    let mut last = Instant::now().checked_sub(MIN_INTERVAL).unwrap_or_else(Instant::now);
    while nudges.recv().is_ok() {
        // Let more commits gather before copying them.
        let wait = MIN_INTERVAL.saturating_sub(last.elapsed());
        if !wait.is_zero() {
            match nudges.recv_timeout(wait) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        checkpoint(&conn);
        last = Instant::now();
    }
    checkpoint(&conn);
}

fn checkpoint(conn: &Connection) {
    // A failed checkpoint loses nothing (the WAL keeps the frames); the next one retries.
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
        tracing::warn!(error = %e, "ledger checkpoint failed");
    }
}
