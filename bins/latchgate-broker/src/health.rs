//! Readiness of the whole gate as the broker sees it: itself, whatever the
//! signer and executor answer to a ping right now, and whether its state
//! store and policy engine answer a probe.

use crate::gate::Gate;
use crate::peers::Peers;
use crate::policy::PolicyEngine;
use crate::state::StateStore;
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

fn up(status: ProcessStatus) -> ProcessHealth {
    ProcessHealth { role: status.role, up: true, status: Some(status), error: None }
}

fn down(role: Role, error: String) -> ProcessHealth {
    ProcessHealth { role, up: false, status: None, error: Some(error) }
}
