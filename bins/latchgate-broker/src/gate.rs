//! Everything a broker request handler can reach, built once at start.

use crate::admin::evidence::ExportCursors;
use crate::admin::throttle::OperatorThrottle;
use crate::approvals::ApprovalDesk;
use crate::catalog::ActionCatalog;
use crate::ledger::Ledger;
use crate::peers::Peers;
use crate::policy::egress_allow::EgressAllowances;
use crate::policy::{AclEditError, DATA_FILE, PolicyEngine, PolicyError, read_data_file};
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
    /// The registered actions and their digest trust (reloadable).
    pub actions: ActionCatalog,
    pub policy: Arc<dyn PolicyEngine>,
    /// Hosts operators allowed per action in the policy data (`egress_allow`).
    pub egress_allow: EgressAllowances,
    pub state: Arc<dyn StateStore>,
    pub ledger: Ledger,
    pub peers: Arc<Peers>,
    pub keys: SignerKeys,
    pub dpop: DpopVerifier,
    /// Set by drain: new executions are refused with 503 `draining`.
    pub draining: AtomicBool,
    /// Executions past the drain check and not yet answered.
    pub in_flight: AtomicU64,
    /// Approvals being executed right now (for the agent's poll).
    pub approvals: ApprovalDesk,
    /// Token buckets of the admin socket, per operator.
    pub throttle: OperatorThrottle,
    /// Audit exports in progress (continuations of their pages).
    pub exports: ExportCursors,
    /// When this broker started (uptime in the admin status).
    pub started: std::time::Instant,
}

/// What the broker process hands to [`Gate::new`].
pub struct GateParts {
    pub cfg: LoadedConfig,
    pub registry: Registry,
    pub trust: DigestTrust,
    pub policy: Arc<dyn PolicyEngine>,
    pub state: Arc<dyn StateStore>,
    pub ledger: Ledger,
    pub peers: Arc<Peers>,
    pub dpop: DpopVerifier,
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
    pub fn new(parts: GateParts) -> Gate {
        let GateParts { cfg, registry, trust, policy, state, ledger, peers, dpop } = parts;
        let egress_allow = EgressAllowances::default();
        // A data file the policy engine accepted but whose allowances do not
        // parse allows nothing extra (and says so), rather than failing start.
        match read_data_file(&cfg.policies_dir().join(DATA_FILE)).and_then(|d| egress_allow.load_from(&d)) {
            Ok(count) if count > 0 => tracing::info!(count, "operator egress allowances loaded"),
            Ok(_) => {}
            Err(e) => tracing::error!(code = e.code(), error = %e, "egress allowances not loaded; none in force"),
        }
        let throttle = OperatorThrottle::new(&cfg.config.operator_limits);
        Gate {
            cfg,
            actions: ActionCatalog::new(registry, trust),
            policy,
            egress_allow,
            state,
            ledger,
            peers,
            keys: SignerKeys::default(),
            dpop,
            draining: Default::default(),
            in_flight: Default::default(),
            approvals: ApprovalDesk::default(),
            throttle,
            exports: ExportCursors::default(),
            started: std::time::Instant::now(),
        }
    }

    pub fn drain_guard(&self) -> Result<(), ApiError> {
        if self.draining.load(Ordering::SeqCst) {
            return Err(ApiError::new(ErrorCode::Draining).with_retry_after(5));
        }
        Ok(())
    }

    /// Load the policy data again: the engine first (it self-checks and keeps
    /// the old data on error), then the egress allowances of the same file.
    pub fn reload_policy(&self) -> Result<String, PolicyError> {
        let version = self.policy.reload()?;
        let data = read_data_file(&self.cfg.policies_dir().join(DATA_FILE)).map_err(acl_load_error)?;
        self.egress_allow.load_from(&data).map_err(acl_load_error)?;
        Ok(version)
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

fn acl_load_error(e: AclEditError) -> PolicyError {
    PolicyError::Load(e.to_string())
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
