//! latchgate-signer: the only process holding private keys and secrets.
//! It answers the broker and the executor, nobody else, and never opens a
//! network socket.
#![forbid(unsafe_code)]

use latchgate_core::confine::Sealer;
use latchgate_core::process;
use latchgate_core::role::Role;
use latchgate_ipc::child::ChildError;
use latchgate_ipc::link::{Endpoints, serve_link};
use latchgate_ipc::messages::broker_signer::{SignerReply, SignerRequest};
use latchgate_ipc::messages::executor_signer::{SecretsReply, SecretsRequest};
use latchgate_ipc::messages::status::ProcessStatus;
use latchgate_ipc::{BrokerSigner, ChannelKind, ExecutorSigner};

const ROLE: Role = Role::Signer;

fn main() {
    process::run_child(ROLE, ChildError::code, run);
}

async fn run(cfg: latchgate_core::config::LoadedConfig, sealer: Sealer) -> Result<(), ChildError> {
    let mut endpoints = Endpoints::for_process(ROLE, &cfg)?;
    let from_broker = endpoints.source(ChannelKind::BrokerSigner)?;
    let from_executor = endpoints.source(ChannelKind::ExecutorSigner)?;
    let control = endpoints.start();
    let confinement = sealer.restrict_syscalls()?;
    tracing::info!(confinement = %confinement.summary(), "sealed");
    let status = move || ProcessStatus::current(ROLE, true, Some(confinement.clone()));
    let (for_broker, for_executor) = (status.clone(), status.clone());

    tokio::spawn(serve_link::<BrokerSigner, _, _>(from_broker, move |request| {
        let status = for_broker();
        async move {
            match request {
                SignerRequest::Ping => SignerReply::Pong(status),
            }
        }
    }));
    tokio::spawn(serve_link::<ExecutorSigner, _, _>(from_executor, move |request| {
        let status = for_executor();
        async move {
            match request {
                SecretsRequest::Ping => SecretsReply::Pong(status),
            }
        }
    }));

    control.ready(status()).await?;
    tracing::info!("signer ready");
    latchgate_ipc::link::wait_for_shutdown(&control).await;
    tracing::info!("signer stopping");
    Ok(())
}
