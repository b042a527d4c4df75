//! What the gate counts, for `GET /metrics` on the admin socket (Prometheus
//! text format 0.0.4; every family is listed in docs/metrics.md).
//!
//! Two kinds of values:
//! - **event counters and histograms** ([`GateMetrics`]), bumped where the
//!   event happens. They live for the whole broker process (one gate per
//!   process), so error paths that hold no [`crate::gate::Gate`] (a state
//!   store failure mapped in `auth::state_error`) count too. An increment is
//!   an atomic add after a lookup of the label child under a read lock
//!   (held for the lookup only, never across an await); nothing allocates
//!   once a label combination exists.
//! - **levels** (unresolved intents, pending approvals, the webhook outbox,
//!   in-flight executions, the epoch, process health, the ledger writer's
//!   counters): read from their source when scraped ([`scrape`]), so they
//!   can never drift from the ledger or the state store.
//!
//! Label values are bounded: actions are registry ids (anything else is
//! [`UNKNOWN_ACTION`]), decisions, roles, dependencies and codes are fixed
//! vocabularies, never request text.

pub mod scrape;

use latchgate_core::error::ApiError;
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};
use std::sync::LazyLock;
use std::time::Duration;

/// The `action` label of a call naming no registered action.
pub const UNKNOWN_ACTION: &str = "_unknown";

/// Upper bounds (seconds) of the action latency buckets: sub-millisecond
/// gate overhead up to the longest action timeouts.
const DURATION_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// How one call to an action ended, as the `decision` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallDecision {
    /// 200: the provider ran and its receipt is durable.
    Executed,
    /// The gate could not carry the call out: the provider failed (502 with
    /// a receipt), the executor was lost, evidence was not persisted, or a
    /// dependency was unavailable or draining (5xx).
    Failed,
    /// The gate refused the call: authentication, registry, schema, egress,
    /// policy, budget, revocation (4xx).
    Denied,
    /// 202: held for an operator.
    PendingApproval,
}

impl CallDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            CallDecision::Executed => "executed",
            CallDecision::Failed => "failed",
            CallDecision::Denied => "denied",
            CallDecision::PendingApproval => "pending_approval",
        }
    }

    /// From the HTTP status the call is answered with.
    pub fn of_status(status: u16) -> CallDecision {
        match status {
            202 => CallDecision::PendingApproval,
            200..=299 => CallDecision::Executed,
            400..=499 => CallDecision::Denied,
            _ => CallDecision::Failed,
        }
    }

    pub fn of_error(error: &ApiError) -> CallDecision {
        CallDecision::of_status(error.code.http_status())
    }
}

/// A dependency whose failures are counted by code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dependency {
    StateStore,
    PolicyEngine,
    Signer,
    Executor,
}

impl Dependency {
    pub fn as_str(self) -> &'static str {
        match self {
            Dependency::StateStore => "state_store",
            Dependency::PolicyEngine => "policy_engine",
            Dependency::Signer => "signer",
            Dependency::Executor => "executor",
        }
    }

    /// The dependency a component name of `peers::unavailable` stands for.
    pub fn of_component(component: &str) -> Option<Dependency> {
        match component {
            "signer" => Some(Dependency::Signer),
            "executor" => Some(Dependency::Executor),
            _ => None,
        }
    }
}

/// The event counters and histograms of this broker process.
pub struct GateMetrics {
    registry: Registry,
    action_calls: IntCounterVec,
    action_duration: HistogramVec,
    budget_exhausted: IntCounter,
    readyz_degraded: IntCounterVec,
    dependency_errors: IntCounterVec,
}

static METRICS: LazyLock<GateMetrics> = LazyLock::new(GateMetrics::new);

/// The process's metrics.
pub fn gate_metrics() -> &'static GateMetrics {
    &METRICS
}

impl GateMetrics {
    fn new() -> GateMetrics {
        let registry = Registry::new();
        // Names, label names and buckets are constants: these cannot fail
        // except by a programming error caught by the first test that scrapes.
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let vec = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
            registry.register(Box::new(vec.clone())).expect("metric registered once");
            vec
        };
        let action_calls = counter_vec(
            "latchgate_action_calls_total",
            "Calls to protected actions by how they ended (executed, failed, denied, pending_approval).",
            &["action", "decision"],
        );
        let readyz_degraded = counter_vec(
            "readyz_degraded_total",
            "Degraded confinement layers, processes down and failing dependencies seen by /readyz and status probes.",
            &["reason"],
        );
        let dependency_errors = counter_vec(
            "latchgate_dependency_errors_total",
            "Failures of the state store, policy engine, signer and executor, by stable error code.",
            &["dependency", "code"],
        );
        let action_duration = HistogramVec::new(
            HistogramOpts::new(
                "latchgate_action_duration_seconds",
                "Broker time of calls that ended executed or failed, from admission to the answer (evidence committed).",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["action"],
        )
        .expect("valid metric definition");
        registry.register(Box::new(action_duration.clone())).expect("metric registered once");
        let budget_exhausted = IntCounter::new(
            "latchgate_budget_exhausted_total",
            "Calls refused because the session's budget (calls or cost) was spent.",
        )
        .expect("valid metric definition");
        registry.register(Box::new(budget_exhausted.clone())).expect("metric registered once");
        GateMetrics { registry, action_calls, action_duration, budget_exhausted, readyz_degraded, dependency_errors }
    }

    /// One call to `action` (a registry id or [`UNKNOWN_ACTION`]) ended as
    /// `decision` after `elapsed`; the latency is recorded for calls that
    /// ended executed or failed (refusals are not timed).
    pub fn record_call(&self, action: &str, decision: CallDecision, elapsed: Duration) {
        self.action_calls.with_label_values(&[action, decision.as_str()]).inc();
        if matches!(decision, CallDecision::Executed | CallDecision::Failed) {
            self.action_duration.with_label_values(&[action]).observe(elapsed.as_secs_f64());
        }
    }

    pub fn budget_exhausted(&self) {
        self.budget_exhausted.inc();
    }

    pub fn dependency_error(&self, dependency: Dependency, code: &str) {
        self.dependency_errors.with_label_values(&[dependency.as_str(), code]).inc();
    }

    /// A probe saw `reason` (see [`crate::health::degraded_reasons`]).
    pub fn readyz_degraded(&self, reason: &str) {
        self.readyz_degraded.with_label_values(&[reason]).inc();
    }

    fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.registry.gather()
    }
}

/// The `action` label for `action_id`: itself when registered, else [`UNKNOWN_ACTION`].
pub fn action_label<'a>(registry: &latchgate_core::manifest::Registry, action_id: &'a str) -> &'a str {
    if registry.get(action_id).is_some() { action_id } else { UNKNOWN_ACTION }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchgate_core::error::ErrorCode;

    fn decision_of_code(code: ErrorCode) -> CallDecision {
        CallDecision::of_error(&ApiError::new(code))
    }

    #[test]
    fn decisions_follow_the_answer_status() {
        assert_eq!(CallDecision::of_status(200), CallDecision::Executed);
        assert_eq!(CallDecision::of_status(202), CallDecision::PendingApproval);
        assert_eq!(decision_of_code(ErrorCode::PolicyDenied), CallDecision::Denied);
        assert_eq!(decision_of_code(ErrorCode::BudgetExhausted), CallDecision::Denied);
        assert_eq!(decision_of_code(ErrorCode::ActionNotFound), CallDecision::Denied);
        assert_eq!(decision_of_code(ErrorCode::ActionExecutionFailed), CallDecision::Failed);
        assert_eq!(decision_of_code(ErrorCode::EvidencePersistenceFailed), CallDecision::Failed);
        assert_eq!(decision_of_code(ErrorCode::Draining), CallDecision::Failed);
    }

    #[test]
    fn counting_a_call_moves_its_family_and_refusals_are_not_timed() {
        let metrics = gate_metrics();
        let count = |decision: &str| metrics.action_calls.with_label_values(&["unit.test", decision]).get();
        let timed = || metrics.action_duration.with_label_values(&["unit.test"]).get_sample_count();
        let (before, timed_before) = (count("denied"), timed());
        metrics.record_call("unit.test", CallDecision::Denied, Duration::from_millis(1));
        assert_eq!((count("denied"), timed()), (before + 1, timed_before), "a refusal is not timed");
        metrics.record_call("unit.test", CallDecision::Executed, Duration::from_millis(3));
        assert_eq!(timed(), timed_before + 1);
    }
}
