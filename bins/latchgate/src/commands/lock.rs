//! Serialising operator edits of a file that is replaced by rename on every
//! edit: the same directory `flock` the policy ACL editor holds, with the
//! failure given the caller's code and remediation.

use super::output::Failure;
use nix::fcntl::Flock;
use std::fs::File;
use std::path::Path;

pub fn lock_parent_dir(file: &Path, code: &str, remediation: &str) -> Result<Flock<File>, Failure> {
    latchgate_broker::policy::lock_dir_of(file).map_err(|e| Failure::new(code, e.to_string(), remediation))
}
