//! Reload of `data.json` when it changes on disk (`latchgate policy grant|revoke`
//! edits it in place): polled by modification time and size, so it works
//! under Landlock and needs no inotify. A file that does not load leaves the
//! running policy in force.

use super::EmbeddedRego;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

fn stamp(path: &PathBuf) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Runs for the life of the process.
pub async fn watch_data_file(engine: Arc<EmbeddedRego>, data_path: PathBuf) {
    let mut last = stamp(&data_path);
    loop {
        tokio::time::sleep(POLL_INTERVAL).await;
        let now = stamp(&data_path);
        if now == last {
            continue;
        }
        last = now;
        let engine = engine.clone();
        match tokio::task::spawn_blocking(move || engine.reload()).await {
            Ok(Ok(version)) => tracing::info!(%version, "policy data reloaded"),
            Ok(Err(e)) => {
                tracing::error!(code = e.code(), error = %e, "policy data not reloaded; previous data stays in force")
            }
            Err(e) => tracing::error!(error = %e, "policy reload task failed"),
        }
    }
}
