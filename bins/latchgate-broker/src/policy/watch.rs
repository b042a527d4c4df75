//! Reload of `data.json` when it changes on disk (`latchgate policy grant|revoke`
//! edits it in place): polled by modification time and size, so it works
//! under Landlock and needs no inotify. A file that does not load leaves the
//! running policy in force.

use super::PolicyError;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

fn stamp(path: &PathBuf) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Runs for the life of the process; `reload` runs (on a blocking thread)
/// whenever the file changed.
pub async fn watch_data_file<F>(data_path: PathBuf, reload: F)
where
    F: Fn() -> Result<String, PolicyError> + Send + Sync + 'static,
{
    let reload = std::sync::Arc::new(reload);
    let mut last = stamp(&data_path);
    loop {
        tokio::time::sleep(POLL_INTERVAL).await;
        let now = stamp(&data_path);
        if now == last {
            continue;
        }
        last = now;
        let reload = reload.clone();
        match tokio::task::spawn_blocking(move || reload()).await {
            Ok(Ok(version)) => tracing::info!(%version, "policy data reloaded"),
            Ok(Err(e)) => {
                tracing::error!(code = e.code(), error = %e, "policy data not reloaded; previous data stays in force")
            }
            Err(e) => tracing::error!(error = %e, "policy reload task failed"),
        }
    }
}
