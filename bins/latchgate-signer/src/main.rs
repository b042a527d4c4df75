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
use std::path::PathBuf;
use std::sync::Arc;

const ROLE: Role = Role::Signer;

/// Set by systemd for a unit with `LoadCredential=`: a private, read-only copy of the keys.
const CREDENTIALS_ENV: &str = "CREDENTIALS_DIRECTORY";

fn main() {
    // Keys are loaded (and generated on first run) before Landlock makes the key dir read-only.
    process::run_child(ROLE, ChildError::code, load_keys, run);
}

/// Where the keys come from, whether the running signer watches it for
/// rotations, and the secrets vault when `[secrets]` is configured.
struct Loaded {
    keys: KeyStore,
    watch: Option<PathBuf>,
    secrets: Option<SecretsVault>,
}

fn load_keys(
    cfg: &latchgate_core::config::LoadedConfig,
    inputs: &mut latchgate_core::confine::SealInputs,
) -> Result<Loaded, ChildError> {
    let setup = |e: latchgate_signer::keystore::KeyStoreError| ChildError::setup(e.code(), e);
    let (keys, watch) = match std::env::var_os(CREDENTIALS_ENV).filter(|d| !d.is_empty()) {
        // systemd: the copy never changes while the unit runs, and nothing may be generated in it.
        Some(dir) => {
            let dir = PathBuf::from(dir);
            let keys = KeyStore::load(&dir).map_err(setup)?;
            tracing::info!(?keys, credentials = %dir.display(), "keys loaded from systemd credentials");
            // Landlock's `{key_dir}` rule then covers the directory the keys really come from.
            inputs.paths.insert("key_dir".into(), dir);
            (keys, None)
        }
        None => {
            let keys = KeyStore::load_or_generate(&cfg.key_dir()).map_err(setup)?;
            tracing::info!(?keys, "keys loaded");
            (keys, Some(cfg.key_dir()))
        }
    };
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
    Ok(Loaded { keys, watch, secrets })
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
    if let Some(dir) = loaded.watch {
        tokio::spawn(latchgate_signer::reload::watch_key_dir(service.clone(), dir));
    }

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
