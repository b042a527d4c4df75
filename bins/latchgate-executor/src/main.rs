//! latchgate-executor: runs provider modules for the broker, one grant per call.
#![forbid(unsafe_code)]

use latchgate_core::config::LoadedConfig;
use latchgate_core::confine::{SealInputs, Sealer};
use latchgate_core::manifest::Registry;
use latchgate_core::process;
use latchgate_core::refresh_cache::RefreshingCache;
use latchgate_core::role::Role;
use latchgate_executor::egress::EgressConfig;
use latchgate_executor::{ExpectedDigests, GrantKeys, Runtime, RuntimeConfig};
use latchgate_ipc::child::ChildError;
use latchgate_ipc::link::{ClientLink, Endpoints, serve_link};
use latchgate_ipc::messages::broker_executor::{ExecutorReply, ExecutorRequest, RunTask};
use latchgate_ipc::messages::broker_signer::GrantPublicKey;
use latchgate_ipc::messages::executor_signer::{SecretsReply, SecretsRequest};
use latchgate_ipc::messages::status::ProcessStatus;
use latchgate_ipc::{BrokerExecutor, ChannelKind, ExecutorSigner};
use std::sync::Arc;
use std::time::Duration;

const ROLE: Role = Role::Executor;
/// How long start-up waits for the signer's grant keys.
const GRANT_KEYS_TIMEOUT: Duration = Duration::from_secs(20);

fn main() {
    process::run_child(ROLE, ChildError::code, expected_modules, run);
}

/// Before Landlock hides the manifests: the digest every module must have is
/// the one its manifests pin. Also opens TCP to the egress ports.
fn expected_modules(cfg: &LoadedConfig, inputs: &mut SealInputs) -> Result<ExpectedDigests, ChildError> {
    let registry = Registry::load(&cfg.manifests_dir()).map_err(|errors| {
        let first = errors.first().map(ToString::to_string).unwrap_or_default();
        ChildError::setup("manifest_invalid", format!("{} manifest error(s); first: {first}", errors.len()))
    })?;
    let providers_dir = cfg.providers_dir();
    let mut pairs = Vec::new();
    for action in registry.iter() {
        let manifest = action.manifest();
        let path = manifest.module_path(&providers_dir);
        let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        if let Some((_, other)) =
            pairs.iter().find(|(f, d): &&(String, String)| *f == file && *d != manifest.provider_module_digest)
        {
            return Err(ChildError::setup(
                "manifest_digest_conflict",
                format!("{file}: manifests pin two digests ({other} and {})", manifest.provider_module_digest),
            ));
        }
        pairs.push((file, manifest.provider_module_digest.clone()));
    }
    inputs.tcp_connect_ports = cfg.egress_ports();
    Ok(ExpectedDigests::from_pairs(pairs))
}

fn runtime_config(cfg: &LoadedConfig, expected: ExpectedDigests) -> Result<RuntimeConfig, ChildError> {
    let mut config = RuntimeConfig::new(cfg.providers_dir().join("dist"), expected, GrantKeys::new());
    config.max_concurrent_calls = cfg.config.executor.max_concurrent_calls;
    config.max_memory_mb = cfg.config.executor.max_memory_mb;
    let egress = &cfg.config.egress;
    config.egress = EgressConfig {
        proxy_url: match &egress.proxy_url {
            Some(u) => {
                Some(u.parse().map_err(|e| ChildError::setup("config_invalid", format!("egress.proxy_url: {e}")))?)
            }
            None => None,
        },
        sink_policy: latchgate_core::egress::SinkPolicy { extra_ports: egress.extra_ports.clone() },
        allow_private_destinations: egress.allow_private_destinations.clone(),
        extra_root_certs: Vec::new(),
    };
    Ok(config)
}

async fn run(cfg: LoadedConfig, sealer: Sealer, expected: ExpectedDigests) -> Result<(), ChildError> {
    let mut endpoints = Endpoints::for_process(ROLE, &cfg)?;
    let from_broker = endpoints.source(ChannelKind::BrokerExecutor)?;
    let signer = ClientLink::<ExecutorSigner>::spawn(endpoints.source(ChannelKind::ExecutorSigner)?);
    let control = endpoints.start();
    // Compile everything (PROT_EXEC, the ticker thread) before seccomp forbids both.
    let runtime = Runtime::new(runtime_config(&cfg, expected)?).map_err(|e| ChildError::setup(e.code(), e))?;
    let prepared = runtime.seal_ready();
    let confinement = sealer.restrict_syscalls()?;
    tracing::info!(modules = prepared.modules, confinement = %confinement.summary(), "sealed");
    runtime.set_grant_keys(fetch_grant_keys(&signer).await?);
    let runtime = Arc::new(runtime);
    let key_refresh = Arc::new(RefreshingCache::new(Duration::from_secs(1)));
    let fs_root = cfg.fs_root();
    let status = move || ProcessStatus::current(ROLE, true, Some(confinement.clone()));
    let pong_status = status.clone();

    tokio::spawn(serve_link::<BrokerExecutor, _, _>(from_broker, move |request| {
        let (signer, runtime, fs_root, status, key_refresh) =
            (signer.clone(), runtime.clone(), fs_root.clone(), pong_status.clone(), key_refresh.clone());
        async move {
            match request {
                ExecutorRequest::Ping => ExecutorReply::Pong { status: status(), signer_link_up: signer.is_up() },
                ExecutorRequest::Run { task, revocation_epoch } => {
                    runtime.set_revocation_epoch(revocation_epoch);
                    if !runtime.knows_grant_key(&task.grant.kid) {
                        refresh_grant_keys(&signer, &runtime, &key_refresh).await;
                    }
                    run_task(&runtime, *task, fs_root.as_deref()).await
                }
            }
        }
    }));

    control.ready(status()).await?;
    tracing::info!("executor ready");
    latchgate_ipc::link::wait_for_shutdown(&control).await;
    tracing::info!("executor stopping");
    Ok(())
}

/// The fs root is the executor's own configured one, never the broker's word.
async fn run_task(runtime: &Runtime, mut task: RunTask, fs_root: Option<&std::path::Path>) -> ExecutorReply {
    if task.fs_root.is_some() {
        match fs_root {
            Some(root) => task.fs_root = Some(root.to_path_buf()),
            None => {
                return ExecutorReply::Refused {
                    code: "fs_root_not_configured".into(),
                    message: "an fs action was dispatched but fs_root is not configured".into(),
                };
            }
        }
    }
    match runtime.run(task).await {
        Ok(outcome) => ExecutorReply::Ran(Box::new(outcome)),
        Err(e) => {
            tracing::warn!(code = e.code(), error = %e, "task refused");
            ExecutorReply::Refused { code: e.code().into(), message: e.to_string() }
        }
    }
}

/// A grant names a key id we do not know: the signer rotated its grant key.
/// Asked at most once a second (a caller inside the interval waits for it),
/// so forged kids cannot make us flood the signer; a grant whose kid is still
/// unknown afterwards is refused (`grant_key_unknown`).
async fn refresh_grant_keys(signer: &ClientLink<ExecutorSigner>, runtime: &Runtime, limiter: &RefreshingCache<()>) {
    let fetched = limiter
        .refresh_when_allowed(|| async {
            match signer.call(SecretsRequest::GrantKeys, Duration::from_secs(2)).await {
                Ok(SecretsReply::GrantKeys(list)) => {
                    runtime.set_grant_keys(grant_keys_from(list)?);
                    tracing::info!("grant keys refreshed from the signer");
                    Ok(())
                }
                Ok(other) => Err(ChildError::setup("signer_reply_unexpected", format!("{other:?}"))),
                Err(e) => Err(ChildError::setup("signer_unreachable", e)),
            }
        })
        .await;
    if let Err(e) = fetched {
        tracing::warn!(code = e.code(), error = %e, "grant keys not refreshed");
    }
}

fn grant_keys_from(list: Vec<GrantPublicKey>) -> Result<GrantKeys, ChildError> {
    let mut keys = GrantKeys::new();
    for k in list {
        let key =
            ed25519_dalek::VerifyingKey::from_bytes(&k.key).map_err(|e| ChildError::setup("grant_key_invalid", e))?;
        keys = keys.with_key(k.kid, key);
    }
    Ok(keys)
}

async fn fetch_grant_keys(signer: &ClientLink<ExecutorSigner>) -> Result<GrantKeys, ChildError> {
    let deadline = tokio::time::Instant::now() + GRANT_KEYS_TIMEOUT;
    loop {
        match signer.call(SecretsRequest::GrantKeys, Duration::from_secs(2)).await {
            Ok(SecretsReply::GrantKeys(list)) => return grant_keys_from(list),
            Ok(other) => return Err(ChildError::setup("signer_reply_unexpected", format!("{other:?}"))),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(code = e.code(), "signer not reachable yet");
                signer.wait_up(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(ChildError::setup("signer_unreachable", e)),
        }
    }
}
