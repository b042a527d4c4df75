//! latchgate-executor: runs provider modules for the broker, one grant per call.
#![forbid(unsafe_code)]

use latchgate_core::config::LoadedConfig;
use latchgate_core::confine::{SealInputs, Sealer};
use latchgate_core::manifest::Registry;
use latchgate_core::process;
use latchgate_core::refresh_cache::RefreshingCache;
use latchgate_core::role::Role;
use latchgate_executor::egress::EgressConfig;
use latchgate_executor::{ActionSecrets, ExpectedDigests, GrantKeys, Runtime, RuntimeConfig};
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

/// What the executor reads before Landlock hides it.
struct Prepared {
    digests: ExpectedDigests,
    action_secrets: ActionSecrets,
    /// TEST ONLY: DER certificates of `egress.test_root_ca_file`.
    test_roots: Vec<Vec<u8>>,
}

/// Before Landlock hides the manifests: the digest every module must have is
/// the one its manifests pin, and how each action's secrets are injected.
/// Also opens TCP to the egress ports.
fn expected_modules(cfg: &LoadedConfig, inputs: &mut SealInputs) -> Result<Prepared, ChildError> {
    let registry = Registry::load(&cfg.manifests_dir()).map_err(|errors| {
        let first = errors.first().map(ToString::to_string).unwrap_or_default();
        ChildError::setup("manifest_invalid", format!("{} manifest error(s); first: {first}", errors.len()))
    })?;
    let providers_dir = cfg.providers_dir();
    let mut pairs = Vec::new();
    let mut action_secrets = ActionSecrets::new();
    for action in registry.iter() {
        let manifest = action.manifest();
        if !manifest.secrets.is_empty() {
            action_secrets.insert(manifest.action_id.clone(), manifest.secrets.clone());
        }
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
    let test_roots = match cfg.test_root_ca_file() {
        Some(path) => read_test_roots(&path)?,
        None => Vec::new(),
    };
    Ok(Prepared { digests: ExpectedDigests::from_pairs(pairs), action_secrets, test_roots })
}

/// The PEM certificates of the test-only root CA file.
fn read_test_roots(path: &std::path::Path) -> Result<Vec<Vec<u8>>, ChildError> {
    use rustls_pki_types::pem::PemObject;
    let invalid = |e: &dyn std::fmt::Display| {
        ChildError::setup("config_invalid", format!("egress.test_root_ca_file {}: {e}", path.display()))
    };
    let certs: Vec<Vec<u8>> = rustls_pki_types::CertificateDer::pem_file_iter(path)
        .map_err(|e| invalid(&e))?
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(&e))?;
    if certs.is_empty() {
        return Err(invalid(&"no certificate in the file"));
    }
    tracing::warn!(path = %path.display(), certificates = certs.len(),
        "TEST-ONLY egress.test_root_ca_file: these roots are trusted for HTTPS egress");
    Ok(certs)
}

fn runtime_config(cfg: &LoadedConfig, prepared: Prepared) -> Result<RuntimeConfig, ChildError> {
    let mut config = RuntimeConfig::new(cfg.providers_dir().join("dist"), prepared.digests, GrantKeys::new());
    config.action_secrets = prepared.action_secrets;
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
        extra_root_certs: prepared.test_roots,
        test_secrets_over_http: egress.test_secrets_over_http,
        dns_cache: std::time::Duration::from_secs(u64::from(egress.dns_cache_seconds)),
    };
    Ok(config)
}

async fn run(cfg: LoadedConfig, sealer: Sealer, prepared: Prepared) -> Result<(), ChildError> {
    let mut endpoints = Endpoints::for_process(ROLE, &cfg)?;
    let from_broker = endpoints.source(ChannelKind::BrokerExecutor)?;
    let signer = ClientLink::<ExecutorSigner>::spawn(endpoints.source(ChannelKind::ExecutorSigner)?);
    let control = endpoints.start();
    let mut config = runtime_config(&cfg, prepared)?;
    config.secret_source = Some(Arc::new(signer.clone()));
    // Compile everything (PROT_EXEC, the ticker thread) before seccomp forbids both.
    let runtime = Runtime::new(config).map_err(|e| ChildError::setup(e.code(), e))?;
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
