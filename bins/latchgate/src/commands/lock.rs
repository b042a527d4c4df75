//! Serialising operator edits of a file that is replaced by rename on every
//! edit: an exclusive `flock` on its directory (a lock on the file itself
//! would not outlive the first writer's rename), held until the guard drops.

use super::output::Failure;
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::path::Path;

pub fn lock_parent_dir(file: &Path, code: &str, remediation: &str) -> Result<Flock<File>, Failure> {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let handle = File::open(dir).map_err(|e| Failure::new(code, format!("{}: {e}", dir.display()), remediation))?;
    Flock::lock(handle, FlockArg::LockExclusive)
        .map_err(|(_, errno)| Failure::new(code, format!("cannot lock {}: {errno}", dir.display()), remediation))
}
