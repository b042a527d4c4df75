//! latchgate-broker: decides. Registry, policy, state and the evidence ledger
//! live here; it asks the signer to sign and the executor to run.
#![forbid(unsafe_code)]

mod health;

use latchgate_core::confine::Sealer;
use latchgate_core::process;
use latchgate_core::role::Role;
use latchgate_ipc::child::ChildError;
use latchgate_ipc::link::{ClientLink, Endpoints, serve_link};
use latchgate_ipc::messages::front_broker::{FrontReply, FrontRequest};
use latchgate_ipc::{BrokerExecutor, BrokerSigner, ChannelKind, FrontBroker};
use std::sync::Arc;

const ROLE: Role = Role::Broker;

fn main() {
    process::run_child(ROLE, ChildError::code, run);
}

/// Links to the processes the broker drives.
pub struct Peers {
    pub signer: ClientLink<BrokerSigner>,
    pub executor: ClientLink<BrokerExecutor>,
    /// The broker's own status (its confinement is fixed once sealed).
    pub own: std::sync::OnceLock<latchgate_ipc::messages::status::ProcessStatus>,
}

async fn run(cfg: latchgate_core::config::LoadedConfig, sealer: Sealer) -> Result<(), ChildError> {
    let mut endpoints = Endpoints::for_process(ROLE, &cfg)?;
    let from_front = endpoints.source(ChannelKind::FrontBroker)?;
    let peers = Arc::new(Peers {
        signer: ClientLink::spawn(endpoints.source(ChannelKind::BrokerSigner)?),
        executor: ClientLink::spawn(endpoints.source(ChannelKind::BrokerExecutor)?),
        own: std::sync::OnceLock::new(),
    });
    let control = endpoints.start();
    let confinement = sealer.restrict_syscalls()?;
    tracing::info!(confinement = %confinement.summary(), "sealed");
    let own = latchgate_ipc::messages::status::ProcessStatus::current(ROLE, true, Some(confinement));

    let handler_peers = peers.clone();
    tokio::spawn(serve_link::<FrontBroker, _, _>(from_front, move |request| {
        let peers = handler_peers.clone();
        async move {
            match request {
                FrontRequest::Health { .. } => FrontReply::Health(health::report(&peers).await),
            }
        }
    }));

    let _ = peers.own.set(own.clone());
    control.ready(own).await?;
    tracing::info!("broker ready");
    latchgate_ipc::link::wait_for_shutdown(&control).await;
    tracing::info!("broker stopping");
    Ok(())
}
