//! latchgate-executor: runs provider modules for the broker, one grant per call.
#![forbid(unsafe_code)]

use latchgate_core::confine::Sealer;
use latchgate_core::process;
use latchgate_core::role::Role;
use latchgate_ipc::child::ChildError;
use latchgate_ipc::link::{ClientLink, Endpoints, serve_link};
use latchgate_ipc::messages::broker_executor::{ExecutorReply, ExecutorRequest};
use latchgate_ipc::messages::status::ProcessStatus;
use latchgate_ipc::{BrokerExecutor, ChannelKind, ExecutorSigner};

const ROLE: Role = Role::Executor;

fn main() {
    process::run_child(ROLE, ChildError::code, run);
}

async fn run(cfg: latchgate_core::config::LoadedConfig, sealer: Sealer) -> Result<(), ChildError> {
    let mut endpoints = Endpoints::for_process(ROLE, &cfg)?;
    let from_broker = endpoints.source(ChannelKind::BrokerExecutor)?;
    let signer = ClientLink::<ExecutorSigner>::spawn(endpoints.source(ChannelKind::ExecutorSigner)?);
    let control = endpoints.start();
    let confinement = sealer.restrict_syscalls()?;
    tracing::info!(confinement = %confinement.summary(), "sealed");
    let status = move || ProcessStatus::current(ROLE, true, Some(confinement.clone()));
    let pong_status = status.clone();

    let link = signer.clone();
    tokio::spawn(serve_link::<BrokerExecutor, _, _>(from_broker, move |request| {
        let signer = link.clone();
        let status = pong_status();
        async move {
            match request {
                ExecutorRequest::Ping => ExecutorReply::Pong { status, signer_link_up: signer.is_up() },
            }
        }
    }));

    control.ready(status()).await?;
    tracing::info!("executor ready");
    latchgate_ipc::link::wait_for_shutdown(&control).await;
    tracing::info!("executor stopping");
    Ok(())
}
