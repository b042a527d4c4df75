//! latchgate-executor: runs provider modules for the broker, one grant per call.
#![forbid(unsafe_code)]

use latchgate_core::process;
use latchgate_core::role::Role;
use latchgate_ipc::link::{ClientLink, Endpoints, serve_link};
use latchgate_ipc::messages::broker_executor::{ExecutorReply, ExecutorRequest};
use latchgate_ipc::messages::status::ProcessStatus;
use latchgate_ipc::{BrokerExecutor, ChannelKind, ExecutorSigner};

const ROLE: Role = Role::Executor;

fn main() {
    let cfg = process::exit_on_error(ROLE, process::load_child_config(ROLE), |e| e.code());
    let rt = process::exit_on_error(ROLE, process::runtime(2), |e| e.code());
    let result = rt.block_on(run(cfg));
    process::exit_on_error(ROLE, result, |e| e.code());
}

async fn run(cfg: latchgate_core::config::LoadedConfig) -> Result<(), latchgate_ipc::IpcError> {
    let mut endpoints = Endpoints::for_process(ROLE, &cfg)?;
    let from_broker = endpoints.source(ChannelKind::BrokerExecutor)?;
    let signer = ClientLink::<ExecutorSigner>::spawn(endpoints.source(ChannelKind::ExecutorSigner)?);
    let control = endpoints.start();

    let link = signer.clone();
    tokio::spawn(serve_link::<BrokerExecutor, _, _>(from_broker, move |request| {
        let signer = link.clone();
        async move {
            match request {
                ExecutorRequest::Ping => ExecutorReply::Pong { status: status(), signer_link_up: signer.is_up() },
            }
        }
    }));

    control.ready(status()).await?;
    tracing::info!("executor ready");
    latchgate_ipc::link::wait_for_shutdown(&control).await;
    tracing::info!("executor stopping");
    Ok(())
}

fn status() -> ProcessStatus {
    ProcessStatus::current(ROLE, true, vec![])
}
