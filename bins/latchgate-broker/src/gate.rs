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
use std::sync::atomic::{AtomicBool, AtomicU64};

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
    pub in_flight: AtomicU64,
}

impl Gate {
    pub fn drain_guard(&self) -> Result<(), ApiError> {
        if self.draining.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ApiError::new(ErrorCode::Draining).with_retry_after(5));
        }
        Ok(())
    }
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
