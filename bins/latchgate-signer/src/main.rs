//! latchgate-signer: the only process holding private keys and secrets.
//! It answers the broker and the executor, nobody else, and never opens a
//! network socket.
#![forbid(unsafe_code)]

use latchgate_core::confine::Sealer;
use latchgate_core::process;
use latchgate_core::role::Role;
use latchgate_ipc::child::ChildError;
use latchgate_ipc::link::{Endpoints, serve_link};
use latchgate_ipc::messages::status::ProcessStatus;
use latchgate_ipc::{BrokerSigner, ChannelKind, ExecutorSigner};
use latchgate_signer::keystore::KeyStore;
use latchgate_signer::service::SignerService;
use latchgate_signer::vault::{SecretsVault, VaultPaths};
use std::sync::Arc;

const ROLE: Role = Role::Signer;

fn main() {
    // Keys are loaded (and generated on first run) before Landlock makes the key dir read-only.
    process::run_child(ROLE, ChildError::code, load_keys, run);
}

struct Loaded {
    keys: KeyStore,
    secrets: Option<SecretsVault>,
}

fn load_keys(
    cfg: &latchgate_core::config::LoadedConfig,
    _: &mut latchgate_core::confine::SealInputs,
) -> Result<Loaded, ChildError> {
    let keys = KeyStore::load_or_generate(&cfg.key_dir()).map_err(|e| ChildError::setup(e.code(), e))?;
    tracing::info!(?keys, "keys loaded");
    // A configured secrets file that cannot be decrypted (missing, tampered,
    // key file readable by others) stops the start: better than a gate that
    // denies every secret-bearing call for a reason nobody sees.
    let secrets = match cfg.secrets_files() {
        None => None,
        Some((secrets_file, key_file)) => {
            let vault = SecretsVault::new(VaultPaths { secrets_file, key_file });
            let count = vault.load().map_err(|e| ChildError::setup(e.code(), e))?;
            tracing::info!(paths = ?vault.paths(), values = count, "secrets file decrypted");
            vault.forget();
            Some(vault)
        }
    };
    Ok(Loaded { keys, secrets })
}

async fn run(cfg: latchgate_core::config::LoadedConfig, sealer: Sealer, loaded: Loaded) -> Result<(), ChildError> {
    let mut endpoints = Endpoints::for_process(ROLE, &cfg)?;
    let from_broker = endpoints.source(ChannelKind::BrokerSigner)?;
    let from_executor = endpoints.source(ChannelKind::ExecutorSigner)?;
    let control = endpoints.start();
    let confinement = sealer.restrict_syscalls()?;
    tracing::info!(confinement = %confinement.summary(), "sealed");
    let status = move || ProcessStatus::current(ROLE, true, Some(confinement.clone()));
    let mut service = SignerService::new(loaded.keys);
    if let Some(vault) = loaded.secrets {
        service = service.with_secrets(vault);
    }
    let service = Arc::new(service);

    let (for_broker, for_executor) = (status.clone(), status.clone());
    let broker_service = service.clone();
    tokio::spawn(serve_link::<BrokerSigner, _, _>(from_broker, move |request| {
        let reply = broker_service.handle_broker(request, for_broker());
        async move { reply }
    }));
    tokio::spawn(serve_link::<ExecutorSigner, _, _>(from_executor, move |request| {
        let reply = service.handle_executor(request, for_executor());
        async move { reply }
    }));

    control.ready(status()).await?;
    tracing::info!("signer ready");
    latchgate_ipc::link::wait_for_shutdown(&control).await;
    tracing::info!("signer stopping");
    Ok(())
}
