//! latchgate-broker: decides. Registry, policy, state and the evidence ledger
//! live here; it asks the signer to sign and the executor to run.
#![forbid(unsafe_code)]

use latchgate_broker::gate::{DrainOutcome, Gate, GateParts};
use latchgate_broker::ledger::{LEDGER_FILE, Ledger, LedgerOptions};
use latchgate_broker::peers::Peers;
use latchgate_broker::webhooks::Webhooks;
use latchgate_core::config::LoadedConfig;
use latchgate_core::confine::{SealInputs, Sealer};
use latchgate_core::jose::DpopVerifier;
use latchgate_core::manifest::{DigestTrust, Registry};
use latchgate_core::process;
use latchgate_core::role::Role;
use latchgate_ipc::ChannelKind;
use latchgate_ipc::FrontBroker;
use latchgate_ipc::child::ChildError;
use latchgate_ipc::link::{ClientLink, Endpoints, serve_link};
use latchgate_ipc::messages::status::ProcessStatus;
use std::sync::Arc;

const ROLE: Role = Role::Broker;

fn main() {
    process::run_child(ROLE, ChildError::code, load_registry, run);
}

/// Before Landlock (the providers dir is not among the broker's paths):
/// load every manifest and hash every provider module once. Landlock lets
/// the broker connect only to the configured Redis, OPA and webhook ports.
fn load_registry(cfg: &LoadedConfig, inputs: &mut SealInputs) -> Result<(Registry, DigestTrust), ChildError> {
    inputs.tcp_connect_ports = cfg.broker_tcp_ports();
    let registry = Registry::load(&cfg.manifests_dir()).map_err(|errors| {
        for e in &errors {
            tracing::error!(error = %e, "manifest refused");
        }
        let first = errors.first().map(ToString::to_string).unwrap_or_default();
        ChildError::setup("manifest_invalid", format!("{} manifest error(s); first: {first}", errors.len()))
    })?;
    let trust = registry.verify_module_digests(&cfg.providers_dir());
    for failure in trust.failures() {
        tracing::error!(error = %failure, "provider digest mismatch: the action is refused until fixed");
    }
    tracing::info!(actions = registry.len(), all_trusted = trust.all_trusted(), "registry loaded");
    Ok((registry, trust))
}

async fn run(cfg: LoadedConfig, sealer: Sealer, (registry, trust): (Registry, DigestTrust)) -> Result<(), ChildError> {
    let mut endpoints = Endpoints::for_process(ROLE, &cfg)?;
    let from_front = endpoints.source(ChannelKind::FrontBroker)?;
    let peers = Arc::new(Peers {
        signer: ClientLink::spawn(endpoints.source(ChannelKind::BrokerSigner)?),
        executor: ClientLink::spawn(endpoints.source(ChannelKind::BrokerExecutor)?),
        own: std::sync::OnceLock::new(),
    });
    let control = endpoints.start();
    let state_dir = cfg.state_dir();
    let webhooks = Arc::new(Webhooks::from_config(&cfg).map_err(|e| ChildError::setup(e.code(), e))?);
    let options = LedgerOptions { outbox_routes: webhooks.routes(), ..Default::default() };
    let ledger =
        Ledger::open_with(&state_dir.join(LEDGER_FILE), options).map_err(|e| ChildError::setup(e.code(), e))?;
    if !webhooks.is_empty() {
        tracing::info!(webhooks = ?webhooks.endpoints(), "webhook deliveries enabled");
        tokio::spawn(latchgate_broker::webhooks::run_deliveries(ledger.clone(), webhooks.clone()));
    }
    let state = latchgate_broker::backends::open_state_store(&cfg).await?;
    let policy = latchgate_broker::backends::open_policy_engine(&cfg)?;
    let dpop = DpopVerifier::new(&cfg.config.public_base_url).map_err(|e| ChildError::setup("config_invalid", e))?;
    let confinement = sealer.restrict_syscalls()?;
    tracing::info!(confinement = %confinement.summary(), "sealed");
    let own = ProcessStatus::current(ROLE, true, Some(confinement));
    let _ = peers.own.set(own.clone());

    let data_file = cfg.policies_dir().join(latchgate_broker::policy::DATA_FILE);
    let gate = Arc::new(Gate::new(GateParts { cfg, registry, trust, policy, state, ledger, peers, dpop }));
    let watched = gate.clone();
    tokio::spawn(latchgate_broker::policy::watch::watch_data_file(data_file, move || watched.reload_policy()));
    tokio::spawn(latchgate_broker::approvals::sweeper::run(gate.clone()));
    let handler_gate = gate.clone();
    tokio::spawn(serve_link::<FrontBroker, _, _>(from_front, move |request| {
        let gate = handler_gate.clone();
        async move { latchgate_broker::router::handle(&gate, request).await }
    }));

    control.ready(own).await?;
    tracing::info!("broker ready");
    latchgate_ipc::link::wait_for_shutdown(&control).await;
    let grace = std::time::Duration::from_millis(gate.cfg.config.shutdown.in_flight_grace_ms);
    tracing::info!(
        in_flight = gate.in_flight.load(std::sync::atomic::Ordering::SeqCst),
        grace_ms = grace.as_millis() as u64,
        "broker stopping: new executions get 503 draining; waiting for the ones in flight"
    );
    match gate.drain(grace).await {
        DrainOutcome::Drained => tracing::info!("drained: every execution in flight was answered"),
        DrainOutcome::GraceExpired { in_flight } => tracing::warn!(
            in_flight,
            "grace expired: abandoning executions in flight; their intents stay unresolved for an operator"
        ),
    }
    Ok(())
}
