//! Readiness of the whole gate as the broker sees it: itself, and whatever the
//! signer and executor answer to a ping right now.

use crate::peers::Peers;
use latchgate_core::role::Role;
use latchgate_ipc::messages::broker_executor::{ExecutorReply, ExecutorRequest};
use latchgate_ipc::messages::broker_signer::{SignerReply, SignerRequest};
use latchgate_ipc::messages::status::{HealthReport, ProcessHealth, ProcessStatus};
use std::time::Duration;

/// A peer that does not answer a ping this fast is treated as down.
const PING_TIMEOUT: Duration = Duration::from_millis(500);

fn own_status(peers: &Peers) -> ProcessStatus {
    peers.own.get().cloned().unwrap_or_else(|| ProcessStatus::current(Role::Broker, false, None))
}

pub async fn report(peers: &Peers) -> HealthReport {
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
    HealthReport { processes: vec![up(own_status(peers)), signer, executor] }
}

fn up(status: ProcessStatus) -> ProcessHealth {
    ProcessHealth { role: status.role, up: true, status: Some(status), error: None }
}

fn down(role: Role, error: String) -> ProcessHealth {
    ProcessHealth { role, up: false, status: None, error: Some(error) }
}
