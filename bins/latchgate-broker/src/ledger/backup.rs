//! `latchgate ledger backup PATH`: a consistent copy of a live ledger with
//! SQLite's online backup API, taken while the broker keeps writing.
//!
//! The source connection is read-only and holds one read transaction for the
//! whole copy. In WAL mode that snapshot never changes under it (writers
//! append to the WAL, they never touch the pages a reader sees), so the copy
//! can go step by step with progress and never has to restart. The copy is
//! written to a private temp file beside `PATH`, switched to a rollback
//! journal (one self-contained file), integrity-checked, fsynced and only then
//! renamed to `PATH`: a failed or interrupted backup leaves no file at `PATH`.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use super::LedgerError;

/// Pages copied per step: small enough for a live progress line, large
/// enough that a big ledger takes few steps (4 KiB pages: 4 MiB a step).
const PAGES_PER_STEP: i32 = 1024;
/// Wait between retries when the source is momentarily locked (checkpoint).
const BUSY_PAUSE: Duration = Duration::from_millis(20);
const MAX_BUSY_RETRIES: u32 = 500;

/// What a finished backup holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackupReport {
    pub source: PathBuf,
    pub destination: PathBuf,
    pub pages: u64,
    pub bytes: u64,
    /// Audit events in the copy and the seq of its last one.
    pub events: u64,
    pub head_seq: u64,
    pub duration_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} already exists; choose a new file (a backup never overwrites)")]
    DestinationExists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Destination { path: PathBuf, source: std::io::Error },
    #[error("backup copy failed its integrity check: {0}")]
    Integrity(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl BackupError {
    pub fn code(&self) -> &'static str {
        match self {
            BackupError::DestinationExists(_) => "backup_destination_exists",
            BackupError::Destination { .. } => "backup_destination_unwritable",
            BackupError::Integrity(_) => "backup_integrity_failed",
            BackupError::Ledger(e) => e.code(),
        }
    }
}

impl From<rusqlite::Error> for BackupError {
    fn from(e: rusqlite::Error) -> Self {
        BackupError::Ledger(e.into())
    }
}

/// Copy the ledger at `source` to the new file `destination`; `progress`
/// gets `(pages copied, total pages)` after every step.
pub fn backup(
    source: &Path,
    destination: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<BackupReport, BackupError> {
    let started = Instant::now();
    if destination.exists() {
        return Err(BackupError::DestinationExists(destination.to_path_buf()));
    }
    let dest_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BackupError::Destination { path, source }
    };
    let src = Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    src.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA temp_store = MEMORY;")?;
    // Start the read transaction (the snapshot) before the first page is copied.
    src.execute_batch("BEGIN")?;
    src.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0))?;

    let tmp = temp_path(destination);
    let _ = std::fs::remove_file(&tmp);
    // Evidence is private: the copy is 0600 from its first byte.
    OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(dest_err(&tmp))?;
    let result = copy_and_check(&src, &tmp, progress);
    let _ = src.execute_batch("COMMIT");
    let (pages, events, head_seq) = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let finish = || -> std::io::Result<u64> {
        let file = std::fs::File::open(&tmp)?;
        file.sync_all()?;
        let bytes = file.metadata()?.len();
        // No-clobber rename: another backup to the same path meanwhile wins, ours is dropped.
        std::fs::hard_link(&tmp, destination)?;
        std::fs::remove_file(&tmp)?;
        let parent = destination.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::File::open(parent)?.sync_all()?;
        Ok(bytes)
    };
    let bytes = finish().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            BackupError::DestinationExists(destination.to_path_buf())
        } else {
            BackupError::Destination { path: destination.to_path_buf(), source: e }
        }
    })?;
    Ok(BackupReport {
        source: source.to_path_buf(),
        destination: destination.to_path_buf(),
        pages,
        bytes,
        events,
        head_seq,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// Returns (pages, events, head seq) of the finished copy at `tmp`.
fn copy_and_check(
    src: &Connection,
    tmp: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(u64, u64, u64), BackupError> {
    let mut dst = Connection::open(tmp)?;
    let pages = {
        let backup = Backup::new(src, &mut dst)?;
        let mut busy = 0;
        loop {
            let step = backup.step(PAGES_PER_STEP)?;
            let p = backup.progress();
            let total = p.pagecount.max(0) as u64;
            progress(total.saturating_sub(p.remaining.max(0) as u64), total);
            match step {
                StepResult::Done => break total,
                StepResult::More => busy = 0,
                StepResult::Busy | StepResult::Locked => {
                    busy += 1;
                    if busy > MAX_BUSY_RETRIES {
                        return Err(
                            LedgerError::Persistence("the ledger stayed locked during the backup".into()).into()
                        );
                    }
                    std::thread::sleep(BUSY_PAUSE);
                }
                // Future variants of the enum: treat as "call again".
                _ => std::thread::sleep(BUSY_PAUSE),
            }
        }
    };
    // The copied header says WAL; one self-contained file is what a backup should be.
    let mode: String = dst.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(BackupError::Integrity(format!("journal_mode stayed {mode}")));
    }
    let check: String = dst.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(BackupError::Integrity(check));
    }
    let (events, head_seq): (i64, i64) =
        dst.query_row("SELECT count(*), coalesce(max(seq), 0) FROM audit_events", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
    dst.close().map_err(|(_, e)| BackupError::from(e))?;
    Ok((pages, events as u64, head_seq as u64))
}

fn temp_path(destination: &Path) -> PathBuf {
    let name = destination.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    destination.with_file_name(format!(".{name}.{}.partial", std::process::id()))
}
