//! `latchgate ledger backup PATH`: a consistent copy of the evidence ledger
//! taken with SQLite's online backup API while the gate keeps running. The
//! copy is a single file that `latchgate verify --ledger PATH` checks like
//! the original.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use latchgate_broker::ledger::backup::{BackupError, backup};

use super::evidence::{ledger_path, open_ledger};
use super::output::{self, Exit, Failure, Progress, Tone};

#[derive(clap::Subcommand)]
pub enum LedgerCommand {
    /// Copy the live ledger to PATH (a new file, mode 0600), with progress.
    Backup(BackupArgs),
}

#[derive(clap::Args)]
pub struct BackupArgs {
    /// Where to write the copy; must not exist yet.
    #[arg(value_name = "PATH")]
    path: PathBuf,
    /// The ledger to copy instead of `<state_dir>/ledger.db` of the config.
    #[arg(long, value_name = "FILE")]
    ledger: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(config: &Path, command: LedgerCommand) -> ExitCode {
    match command {
        LedgerCommand::Backup(args) => output::finish(args.json, run_backup(config, &args)),
    }
}

fn run_backup(config: &Path, args: &BackupArgs) -> Result<Exit, Failure> {
    let source = ledger_path(config, args.ledger.as_deref())?;
    // Same checks and messages as `audit`/`verify` for a missing or unreadable ledger.
    drop(open_ledger(&source)?);
    let mut progress = Progress::new("copying pages", args.json);
    let result = backup(&source, &args.path, &mut |done, total| progress.update(done, total));
    progress.finish();
    let report = result.map_err(|e| {
        let remediation = match &e {
            BackupError::DestinationExists(_) => "pass a path that does not exist yet",
            BackupError::Destination { .. } => "choose a writable directory with enough free space",
            BackupError::Integrity(_) => "retry; if it fails again, run `latchgate verify` on the live ledger",
            BackupError::Ledger(_) => "run as root or as the broker's user (the state dir is private)",
        };
        Failure::new(e.code(), &e, remediation)
    })?;
    if args.json {
        output::print_json(&serde_json::json!({"ok": true, "backup": report}));
    } else {
        output::write_stdout(&format!(
            "{} {} -> {}: {} events (head seq {}), {} pages, {} bytes in {} ms\n  check it with: latchgate verify --ledger {}\n",
            Tone::Good.paint("backed up", output::stdout_colour()),
            report.source.display(),
            report.destination.display(),
            report.events,
            report.head_seq,
            report.pages,
            report.bytes,
            report.duration_ms,
            report.destination.display(),
        ));
    }
    Ok(Exit::Ok)
}
