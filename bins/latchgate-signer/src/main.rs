//! latchgate-signer: the only process holding private keys and secrets.
//! It answers the broker and the executor, nobody else, and never opens a
//! network socket.
#![forbid(unsafe_code)]

use latchgate_core::process;
use latchgate_core::role::Role;
use latchgate_ipc::link::{Endpoints, serve_link};
use latchgate_ipc::messages::broker_signer::{SignerReply, SignerRequest};
use latchgate_ipc::messages::executor_signer::{SecretsReply, SecretsRequest};
use latchgate_ipc::messages::status::ProcessStatus;
use latchgate_ipc::{BrokerSigner, ChannelKind, ExecutorSigner};

const ROLE: Role = Role::Signer;

fn main() {
    let cfg = process::exit_on_error(ROLE, process::load_child_config(ROLE), |e| e.code());
    let rt = process::exit_on_error(ROLE, process::runtime(2), |e| e.code());
    let result = rt.block_on(run(cfg));
    process::exit_on_error(ROLE, result, |e| e.code());
}

async fn run(cfg: latchgate_core::config::LoadedConfig) -> Result<(), latchgate_ipc::IpcError> {
    let mut endpoints = Endpoints::for_process(ROLE, &cfg)?;
    let from_broker = endpoints.source(ChannelKind::BrokerSigner)?;
    let from_executor = endpoints.source(ChannelKind::ExecutorSigner)?;
    let control = endpoints.start();

    tokio::spawn(serve_link::<BrokerSigner, _, _>(from_broker, |request| async move {
        match request {
            SignerRequest::Ping => SignerReply::Pong(status()),
        }
    }));
    tokio::spawn(serve_link::<ExecutorSigner, _, _>(from_executor, |request| async move {
        match request {
            SecretsRequest::Ping => SecretsReply::Pong(status()),
        }
    }));

    control.ready(status()).await?;
    tracing::info!("signer ready");
    latchgate_ipc::link::wait_for_shutdown(&control).await;
    tracing::info!("signer stopping");
    Ok(())
}

fn status() -> ProcessStatus {
    ProcessStatus::current(ROLE, true, vec![])
}
