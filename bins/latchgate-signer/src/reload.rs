//! A running signer picks up `latchgate keys rotate`: the key files are
//! polled (inode, mtime, size; no inotify under Landlock) and, when any
//! changed, the whole key set is loaded again read-only and swapped in. A set
//! that does not load (a rotation half-written, a wrong mode) leaves the keys
//! in use untouched and is retried on the next change.
//!
//! Under systemd the keys come from `$CREDENTIALS_DIRECTORY`, a copy made when
//! the unit starts: there is nothing to watch, and a rotation takes effect
//! with `systemctl restart latchgate-signer` (docs/deployment.md).

use crate::keystore::{KEY_DIR_FILES, KeyStore};
use crate::service::SignerService;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

type Stamp = Vec<Option<(u64, i64, i64, u64)>>;

fn stamp(dir: &Path) -> Stamp {
    KEY_DIR_FILES
        .iter()
        .map(|name| {
            let meta = std::fs::symlink_metadata(dir.join(name)).ok()?;
            Some((meta.ino(), meta.mtime(), meta.mtime_nsec(), meta.len()))
        })
        .collect()
}

/// Runs for the life of the process.
pub async fn watch_key_dir(service: Arc<SignerService>, dir: PathBuf) {
    let mut last = stamp(&dir);
    loop {
        tokio::time::sleep(POLL_INTERVAL).await;
        let now = stamp(&dir);
        if now == last {
            continue;
        }
        last = now;
        let load_dir = dir.clone();
        match tokio::task::spawn_blocking(move || KeyStore::load(&load_dir)).await {
            Ok(Ok(keys)) => {
                tracing::info!(?keys, "keys reloaded after a change in the key dir");
                service.replace_keys(keys);
            }
            Ok(Err(e)) => {
                tracing::error!(code = e.code(), error = %e, "keys not reloaded; the keys in use stay in force")
            }
            Err(e) => tracing::error!(error = %e, "key reload task failed"),
        }
    }
}
