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
    let cfg = process::exit_on_error(ROLE, process::load_child_config(ROLE), |e| e.code());
    process::exit_on_error(ROLE, process::drop_identity(ROLE, &cfg), |e| e.code());
    let sealer = process::exit_on_error(ROLE, process::restrict_paths(ROLE, &cfg, |_| {}), |e| e.code());
    let rt = process::exit_on_error(ROLE, process::runtime(2), |e| e.code());
    let result = rt.block_on(run(cfg, sealer));
    process::exit_on_error(ROLE, result, |e| e.code());
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
