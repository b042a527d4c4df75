//! Everything a broker request handler can reach, built once at start.

use crate::ledger::Ledger;
use crate::peers::Peers;
use crate::policy::PolicyEngine;
use crate::signer_keys::SignerKeys;
use crate::state::StateStore;
use latchgate_core::config::LoadedConfig;
use latchgate_core::error::{ApiError, ErrorCode};
use latchgate_core::jose::DpopVerifier;
use latchgate_core::manifest::{DigestTrust, Registry};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

pub struct Gate {
    pub cfg: LoadedConfig,
    pub registry: Registry,
    /// Which actions' provider modules match their pinned digests (checked at start).
    pub trust: DigestTrust,
    pub policy: Arc<dyn PolicyEngine>,
    pub state: Arc<dyn StateStore>,
    pub ledger: Ledger,
    pub peers: Arc<Peers>,
    pub keys: SignerKeys,
    pub dpop: DpopVerifier,
    /// Set by drain: new executions are refused with 503 `draining`.
    pub draining: AtomicBool,
    /// Executions past the drain check and not yet answered.
    pub in_flight: AtomicU64,
}

/// How a drain ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainOutcome {
    /// Every execution in flight was answered.
    Drained,
    /// The grace ran out with this many still running.
    GraceExpired { in_flight: u64 },
}

/// Counts one execution in flight for as long as it lives.
pub struct InFlight<'g> {
    gate: &'g Gate,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.gate.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How often a drain looks at the in-flight count.
const DRAIN_POLL: Duration = Duration::from_millis(20);

impl Gate {
    pub fn drain_guard(&self) -> Result<(), ApiError> {
        if self.draining.load(Ordering::SeqCst) {
            return Err(ApiError::new(ErrorCode::Draining).with_retry_after(5));
        }
        Ok(())
    }

    /// Admit one execution, unless draining. Counted before the flag is read,
    /// so a drain that sees zero in flight cannot miss one admitted meanwhile.
    pub fn begin_execution(&self) -> Result<InFlight<'_>, ApiError> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight { gate: self };
        self.drain_guard()?;
        Ok(guard)
    }

    /// Refuse new executions from now on and wait, at most `grace`, for the
    /// ones in flight to be answered (SIGTERM, and later `POST /v1/admin/drain`).
    pub async fn drain(&self, grace: Duration) -> DrainOutcome {
        self.draining.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let in_flight = self.in_flight.load(Ordering::SeqCst);
            if in_flight == 0 {
                return DrainOutcome::Drained;
            }
            if tokio::time::Instant::now() >= deadline {
                return DrainOutcome::GraceExpired { in_flight };
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
    }
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
