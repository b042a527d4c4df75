//! Readiness of the whole gate as the broker sees it: itself, whatever the
//! signer and executor answer to a ping right now, and whether its state
//! store and policy engine answer a probe.

use crate::gate::Gate;
use crate::peers::Peers;
use crate::policy::PolicyEngine;
use crate::state::StateStore;
use latchgate_core::confine::{ConfinementReport, LayerStatus};
use latchgate_core::role::Role;
use latchgate_ipc::messages::broker_executor::{ExecutorReply, ExecutorRequest};
use latchgate_ipc::messages::broker_signer::{SignerReply, SignerRequest};
use latchgate_ipc::messages::status::{
    DependencyHealth, HealthReport, POLICY_ENGINE, ProcessHealth, ProcessStatus, STATE_STORE,
};
use std::time::Duration;

/// A peer that does not answer a ping this fast is treated as down.
const PING_TIMEOUT: Duration = Duration::from_millis(500);
/// Bound of a dependency probe beyond the dependency's own timeouts (which
/// are at most `MAX_DEPENDENCY_TIMEOUT_MS`): `/readyz` must answer.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

fn own_status(peers: &Peers) -> ProcessStatus {
    peers.own.get().cloned().unwrap_or_else(|| ProcessStatus::current(Role::Broker, false, None))
}

pub async fn report(gate: &Gate) -> HealthReport {
    let (processes, state, policy) =
        tokio::join!(processes(&gate.peers), state_store(gate.state.as_ref()), policy_engine(gate.policy.as_ref()));
    HealthReport { processes, dependencies: vec![state, policy] }
}

async fn processes(peers: &Peers) -> Vec<ProcessHealth> {
    let (signer, executor) = tokio::join!(
        peers.signer.call(SignerRequest::Ping, PING_TIMEOUT),
        peers.executor.call(ExecutorRequest::Ping, PING_TIMEOUT),
    );
    let signer = match signer {
        Ok(SignerReply::Pong(status)) => up(status),
        Ok(other) => down(Role::Signer, format!("unexpected reply {other:?}")),
        Err(e) => down(Role::Signer, e.code().to_string()),
    };
    let executor = match executor {
        Ok(ExecutorReply::Pong { status, signer_link_up: true }) => up(status),
        Ok(ExecutorReply::Pong { signer_link_up: false, .. }) => {
            down(Role::Executor, "executor_signer_link_down".to_string())
        }
        Ok(other) => down(Role::Executor, format!("unexpected reply {other:?}")),
        Err(e) => down(Role::Executor, e.code().to_string()),
    };
    vec![up(own_status(peers)), signer, executor]
}

pub async fn state_store(store: &dyn StateStore) -> DependencyHealth {
    let probed = tokio::time::timeout(PROBE_TIMEOUT, store.probe()).await;
    let (up, error, detail) = match probed {
        Ok(Ok(())) => (true, None, store.replay_fence().map(|f| format!("lost its data at unix time {f}"))),
        Ok(Err(e)) => (false, Some(e.code().to_string()), Some(e.to_string())),
        Err(_) => (false, Some("store_unavailable".to_string()), Some("probe timed out".to_string())),
    };
    DependencyHealth {
        name: STATE_STORE.into(),
        backend: store.backend().into(),
        endpoint: Some(store.endpoint()),
        up,
        error,
        detail,
    }
}

pub async fn policy_engine(engine: &dyn PolicyEngine) -> DependencyHealth {
    let probed = tokio::time::timeout(PROBE_TIMEOUT, engine.probe()).await;
    let (up, error, detail) = match probed {
        Ok(Ok(version)) => (true, None, Some(format!("policy version {version}"))),
        Ok(Err(e)) => (false, Some(e.error_code().as_str().to_string()), Some(e.to_string())),
        Err(_) => (false, Some("policy_engine_timeout".to_string()), Some("probe timed out".to_string())),
    };
    DependencyHealth {
        name: POLICY_ENGINE.into(),
        backend: engine.backend().into(),
        endpoint: Some(engine.endpoint()),
        up,
        error,
        detail,
    }
}

/// A process that answered (or, for the front, reported itself) with `status`.
pub fn up(status: ProcessStatus) -> ProcessHealth {
    ProcessHealth { role: status.role, up: true, status: Some(status), error: None }
}

fn down(role: Role, error: String) -> ProcessHealth {
    ProcessHealth { role, up: false, status: None, error: Some(error) }
}

/// Each confinement layer of `report` that is not fully enforced: the
/// layer's name and what is wrong with it.
pub fn confinement_findings(report: &ConfinementReport) -> Vec<(&'static str, String)> {
    let mut findings = Vec::new();
    for (name, status) in [("seccomp", &report.seccomp), ("landlock", &report.landlock)] {
        match status {
            LayerStatus::Enforced => {}
            LayerStatus::Degraded(why) => findings.push((name, format!("degraded ({why})"))),
            LayerStatus::Unavailable(why) => findings.push((name, format!("unavailable ({why})"))),
        }
    }
    if !report.no_new_privs {
        findings.push(("no_new_privs", "not set".into()));
    }
    if !report.caps_dropped {
        findings.push(("capabilities", "still held".into()));
    }
    findings
}

/// What a readiness or status probe found wrong with the processes, as the
/// bounded `reason` labels of `readyz_degraded_total`: `<role>_down`,
/// `<role>_unconfined` (no confinement report), `<role>_<layer>`.
pub fn degraded_reasons(processes: &[ProcessHealth]) -> Vec<String> {
    let mut reasons = Vec::new();
    for p in processes {
        let role = p.role.as_str();
        match p.status.as_ref().and_then(|s| s.confinement.as_ref()) {
            _ if !p.up => reasons.push(format!("{role}_down")),
            None => reasons.push(format!("{role}_unconfined")),
            Some(report) => {
                reasons.extend(confinement_findings(report).into_iter().map(|(layer, _)| format!("{role}_{layer}")))
            }
        }
    }
    reasons
}

/// The dependencies of `report` that did not answer their probe, by name
/// ([`STATE_STORE`], [`POLICY_ENGINE`]).
pub fn failing_dependencies(report: &HealthReport) -> impl Iterator<Item = &str> {
    report.dependencies.iter().filter(|d| !d.up).map(|d| d.name.as_str())
}

/// Counts what one probe found in `readyz_degraded_total`: each of
/// [`degraded_reasons`] of `processes`, and each failing dependency by name.
pub fn count_probe<'a>(processes: &[ProcessHealth], failing_dependencies: impl IntoIterator<Item = &'a str>) {
    let metrics = crate::metrics::gate_metrics();
    for reason in degraded_reasons(processes) {
        metrics.readyz_degraded(&reason);
    }
    for dependency in failing_dependencies {
        metrics.readyz_degraded(dependency);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enforced() -> ConfinementReport {
        ConfinementReport {
            seccomp: LayerStatus::Enforced,
            landlock: LayerStatus::Enforced,
            landlock_abi: Some(7),
            no_new_privs: true,
            caps_dropped: true,
            bounding_set_empty: true,
            uid: 998,
            gid: 998,
        }
    }

    fn process(role: Role, up: bool, confinement: Option<ConfinementReport>) -> ProcessHealth {
        let status = up.then_some(ProcessStatus { role, pid: 1, uid: 998, ready: true, confinement });
        ProcessHealth { role, up, status, error: None }
    }

    #[test]
    fn each_degraded_layer_and_each_down_process_is_one_bounded_reason() {
        let mut landlock_less = enforced();
        landlock_less.landlock = LayerStatus::Unavailable("kernel without landlock".into());
        landlock_less.caps_dropped = false;
        let processes = [
            process(Role::Front, true, Some(enforced())),
            process(Role::Broker, true, Some(landlock_less)),
            process(Role::Signer, true, None),
            process(Role::Executor, false, None),
        ];
        assert_eq!(
            degraded_reasons(&processes),
            vec!["broker_landlock", "broker_capabilities", "signer_unconfined", "executor_down"]
        );
        assert!(degraded_reasons(&processes[..1]).is_empty(), "a fully confined process is not degraded");
    }
}
