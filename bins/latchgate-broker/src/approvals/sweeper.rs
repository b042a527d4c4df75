//! Marks pending approvals expired once their `expires_at` has passed, each
//! with an `approval_expired` audit event. Runs for the life of the broker
//! (and so also catches up after a restart: expiry is in the ledger).

use super::{SWEEPER_OPERATOR, expire, record_outcome};
use crate::gate::Gate;
use crate::ledger::ledger_timestamp;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// A claimed approval that still has no outcome this long after its expiry
/// was abandoned (its decider crashed): it is expired without a claim. The
/// ledger's one-outcome rule still decides if a late decider shows up.
const ABANDONED_AFTER: time::Duration = time::Duration::seconds(60);

pub async fn run(gate: Arc<Gate>) {
    let interval = Duration::from_millis(gate.cfg.config.approvals.sweep_interval_ms);
    loop {
        tokio::time::sleep(interval).await;
        match sweep_once(&gate).await {
            Ok(0) => {}
            Ok(expired) => tracing::info!(expired, "approvals expired"),
            Err(e) => tracing::warn!(code = e.code.as_str(), "approval sweep failed; retrying"),
        }
    }
}

/// One pass; returns how many approvals this pass marked expired.
pub async fn sweep_once(gate: &Gate) -> Result<usize, latchgate_core::error::ApiError> {
    let now = OffsetDateTime::now_utc();
    let due = gate.ledger.expired_pending_approvals(now).await.map_err(super::read_error)?;
    let abandoned_before = ledger_timestamp(now - ABANDONED_AFTER);
    let mut expired = 0;
    for record in due {
        if expire(gate, &record).await? {
            expired += 1;
        } else if record.expires_at < abandoned_before && !gate.approvals.is_executing(&record.approval_id) {
            let payload = json!({"expires_at": record.expires_at, "abandoned_claim": true});
            let reason = Some("ttl_elapsed".to_string());
            if record_outcome(gate, &record, "expired", (SWEEPER_OPERATOR, None), reason, payload).await.is_ok() {
                expired += 1;
            }
        }
    }
    Ok(expired)
}
