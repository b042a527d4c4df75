//! Fixtures shared by the executor's integration tests: a runtime over the
//! committed provider modules, a grant signer, tasks, a loopback HTTP target
//! and a resolver that makes any name point anywhere.
#![allow(dead_code)]

use ed25519_dalek::{Signer, SigningKey};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use latchgate_core::action::{EgressProfile, EgressRules, HostImport, HttpTemplate, ResourceLimits};
use latchgate_core::grant::{Grant, SignedGrant};
use latchgate_core::jcs;
use latchgate_executor::egress::{Resolve, ResolveFuture};
use latchgate_executor::{ExpectedDigests, GrantKeys, RunTask, Runtime, RuntimeConfig};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub const KID: &str = "grant-key-1";
/// The name tests use for the loopback target; `MapResolver` points it at 127.0.0.1.
pub const TARGET_HOST: &str = "target.test";

fn providers_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../providers")
}

/// The production modules (builtin providers only), as a deployment ships them.
pub fn dist_dir() -> PathBuf {
    providers_root().join("dist")
}

/// Pins of [`dist_dir`].
pub fn expected_digests() -> ExpectedDigests {
    let text = std::fs::read_to_string(providers_root().join("digests.txt")).unwrap();
    ExpectedDigests::parse(&text).unwrap()
}

/// Pins of the test-only `hostile_*` fixtures in `providers/dist-test/`.
fn fixture_digests() -> ExpectedDigests {
    let text = std::fs::read_to_string(providers_root().join("digests-test.txt")).unwrap();
    ExpectedDigests::parse(&text).unwrap()
}

/// Digest of `module` among the builtin providers, else among the fixtures.
pub fn digest_of(module: &str) -> String {
    let file = format!("{module}.wasm");
    let digest = expected_digests().digest_of(&file).map(str::to_string);
    digest.or_else(|| fixture_digests().digest_of(&file).map(str::to_string)).unwrap()
}

/// A providers directory holding the builtin providers and the fixtures, with
/// the pins of both: the fixtures never sit in the production `dist/`.
/// Built once per test process under the target dir (each file written whole
/// and renamed into place).
pub fn providers_with_fixtures() -> (PathBuf, ExpectedDigests) {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("providers-with-fixtures");
        std::fs::create_dir_all(&dir).unwrap();
        let sources = [dist_dir(), providers_root().join("dist-test")];
        let wanted: Vec<std::ffi::OsString> =
            sources.iter().flat_map(|src| std::fs::read_dir(src).unwrap().map(|e| e.unwrap().file_name())).collect();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if !wanted.contains(&entry.file_name()) {
                std::fs::remove_file(entry.path()).unwrap();
            }
        }
        for src in &sources {
            for entry in std::fs::read_dir(src).unwrap() {
                let entry = entry.unwrap();
                let tmp = dir.join(format!(".{}.{}", entry.file_name().to_string_lossy(), std::process::id()));
                std::fs::copy(entry.path(), &tmp).unwrap();
                std::fs::rename(&tmp, dir.join(entry.file_name())).unwrap();
            }
        }
        dir
    });
    let text = [providers_root().join("digests.txt"), providers_root().join("digests-test.txt")]
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    (dir.clone(), ExpectedDigests::parse(&text).unwrap())
}

pub fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

/// Resolves names from a fixed table; anything else does not resolve.
#[derive(Default, Clone)]
pub struct MapResolver(pub Arc<Mutex<HashMap<String, Vec<IpAddr>>>>);

impl MapResolver {
    pub fn with(self, name: &str, ips: &[&str]) -> Self {
        self.0.lock().unwrap().insert(name.into(), ips.iter().map(|s| s.parse().unwrap()).collect());
        self
    }
}

impl Resolve for MapResolver {
    fn resolve<'a>(&'a self, host: &'a str, _port: u16) -> ResolveFuture<'a> {
        let found = self.0.lock().unwrap().get(host).cloned();
        Box::pin(async move { found.ok_or_else(|| std::io::Error::other("no such name")) })
    }
}

pub fn config_with(target: Option<SocketAddr>) -> RuntimeConfig {
    let keys = GrantKeys::new().with_key(KID, signing_key().verifying_key());
    let mut config = RuntimeConfig::new(dist_dir(), expected_digests(), keys);
    config.max_concurrent_calls = 4;
    config.resolver = Some(Arc::new(MapResolver::default().with(TARGET_HOST, &["127.0.0.1"])));
    if let Some(addr) = target {
        config.egress.sink_policy.extra_ports = vec![addr.port()];
        config.egress.allow_private_destinations = vec![addr];
    }
    config
}

pub fn runtime(target: Option<SocketAddr>) -> Runtime {
    Runtime::new(config_with(target)).unwrap()
}

/// [`runtime`] that can also run the `hostile_*` fixtures.
pub fn runtime_with_fixtures(target: Option<SocketAddr>) -> Runtime {
    let mut config = config_with(target);
    (config.providers_dir, config.expected_digests) = providers_with_fixtures();
    Runtime::new(config).unwrap()
}

pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

pub fn sign(grant: Grant, key: &SigningKey) -> SignedGrant {
    let signature = key.sign(&jcs::canonical_bytes(&grant).unwrap()).to_bytes().to_vec();
    SignedGrant { grant, kid: KID.into(), signature }
}

pub fn grant_for(action: &str, digest: &str, sinks: &[&str]) -> Grant {
    Grant {
        grant_id: format!("grant-{action}-{}", rand::random::<u32>()),
        trace_id: "trace-1".into(),
        action_id: action.into(),
        action_version: "1.0.0".into(),
        provider_module_digest: digest.into(),
        request_hash: "sha256:00".into(),
        principal: "agent-1".into(),
        session_id: "session-1".into(),
        epoch: 0,
        issued_at: now() - 1,
        expires_at: now() + 60,
        allowed_sinks: sinks.iter().map(|s| s.to_string()).collect(),
        approved_secrets: vec![],
        approved_by: None,
        approved_by_jkt: None,
    }
}

/// A task for `module` with a valid grant, no egress and the default limits.
pub fn task(module: &str, imports: &[HostImport], params: serde_json::Value) -> RunTask {
    let digest = digest_of(module);
    RunTask {
        action_id: format!("test.{module}"),
        module_digest: digest.clone(),
        params_json: params.to_string(),
        template: None,
        required_imports: imports.to_vec(),
        limits: ResourceLimits::default(),
        egress: EgressRules::none(),
        fs_root: None,
        grant: sign(grant_for(&format!("test.{module}"), &digest, &[]), &signing_key()),
    }
}

/// An `http_api` task against `url_template` on the loopback target, allowed by rules and grant.
pub fn http_task(template: HttpTemplate, params: serde_json::Value, methods: &[&str]) -> RunTask {
    let mut t = task("http_api", &[HostImport::Http], params);
    t.template = Some(template);
    t.egress = EgressRules {
        profile: EgressProfile::ProxyAllowlist,
        allowed_domains: vec![TARGET_HOST.into()],
        allowed_methods: methods.iter().map(|m| m.to_string()).collect(),
    };
    t.grant = sign(grant_for(&t.action_id, &t.module_digest, &[TARGET_HOST]), &signing_key());
    t
}

pub fn get_template(url_template: &str) -> HttpTemplate {
    HttpTemplate {
        method: "GET".into(),
        url_template: url_template.into(),
        headers: Default::default(),
        body_template: None,
    }
}

/// What the loopback target saw of one request.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A loopback HTTP/1.1 server: `/redirect` answers 302, `/big` 64 KiB,
/// everything else echoes the request as JSON. It records every request.
pub struct Target {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<SeenRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Target {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn start_target() -> Target {
    let seen: Arc<Mutex<Vec<SeenRequest>>> = Arc::default();
    let recorder = seen.clone();
    let (addr, task) = serve(move |req| answer(req, recorder.clone())).await;
    Target { addr, seen, task }
}

/// A loopback HTTP/1.1 server answering every request with `respond`; the
/// task serves until it is aborted.
pub async fn serve<F, Fut>(respond: F) -> (SocketAddr, tokio::task::JoinHandle<()>)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let respond = respond.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let respond = respond.clone();
                    async move { Ok::<_, std::convert::Infallible>(respond(req).await) }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    (addr, task)
}

async fn answer(req: Request<Incoming>, recorder: Arc<Mutex<Vec<SeenRequest>>>) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let headers: Vec<(String, String)> =
        req.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
    let body = req.into_body().collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
    recorder.lock().unwrap().push(SeenRequest {
        method: method.clone(),
        uri: uri.clone(),
        headers: headers.clone(),
        body: body.clone(),
    });
    if uri.starts_with("/redirect") {
        return Response::builder()
            .status(302)
            .header("location", "http://169.254.169.254/latest/meta-data/")
            .body(Full::new(Bytes::new()))
            .unwrap();
    }
    if uri.starts_with("/big") {
        return Response::new(Full::new(Bytes::from(vec![b'x'; 64 * 1024])));
    }
    let echo = serde_json::json!({
        "method": method,
        "uri": uri,
        "header_names": headers.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        "body": String::from_utf8_lossy(&body),
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(echo.to_string())))
        .unwrap()
}
