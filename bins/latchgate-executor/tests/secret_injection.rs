//! Secrets at the transport layer, with the real signer service in-process
//! (its grant key, grant book and SOPS vault): the destination receives the
//! injected credential, the provider only ever sees `[REDACTED:NAME]`, and a
//! grant obtains exactly its own approved secrets, once, while it is live.

mod common;

use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use latchgate_core::grant::SignedGrant;
use latchgate_core::manifest::{BasicAuthInjection, SecretInjection, SecretSpec};
use latchgate_core::receipt::{NormalizedResult, Receipt, VerificationOutcome};
use latchgate_core::role::Role;
use latchgate_executor::secrets::ReleaseFuture;
use latchgate_executor::{FailureClass, GrantKeys, RunError, RunTask, Runtime, SecretSource, SecretsRefused};
use latchgate_ipc::messages::broker_signer::{SignerReply, SignerRequest};
use latchgate_ipc::messages::executor_signer::SecretsReply;
use latchgate_ipc::messages::status::ProcessStatus;
use latchgate_signer::keystore::KeyStore;
use latchgate_signer::service::SignerService;
use latchgate_signer::sops::{AgeIdentities, DecryptedDocument, Format, replace_private_file};
use latchgate_signer::vault::{SecretsVault, VaultPaths};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

const TOKEN_A: &str = "tok-A-0123456789";
const TOKEN_B: &str = "tok-B-9876543210";
const QUERY_KEY: &str = "q secret&=";
const BASIC_PW: &str = "pw-basic-42";

struct Signer {
    _dir: tempfile::TempDir,
    service: Arc<SignerService>,
}

fn status() -> ProcessStatus {
    ProcessStatus::current(Role::Signer, true, None)
}

/// A signer with its own keys and a SOPS file holding both actions' secrets.
fn signer() -> Signer {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyStore::load_or_generate(&dir.path().join("keys")).unwrap();
    let paths = VaultPaths { secrets_file: dir.path().join("secrets.yaml"), key_file: dir.path().join("age.txt") };
    let ids = AgeIdentities::generate();
    replace_private_file(&paths.key_file, ids.to_file_text("now").as_bytes()).unwrap();
    let mut doc = DecryptedDocument::new_empty(&ids.primary_recipient(), Format::Yaml).unwrap();
    for (k, v) in [("A_TOKEN", TOKEN_A), ("B_TOKEN", TOKEN_B), ("QUERY_KEY", QUERY_KEY), ("BASIC_PW", BASIC_PW)] {
        doc.set(k, Zeroizing::new(v.into()));
    }
    replace_private_file(&paths.secrets_file, doc.encrypt(time::OffsetDateTime::now_utc()).unwrap().as_bytes())
        .unwrap();
    let service = SignerService::new(keys).with_secrets(SecretsVault::new(paths));
    Signer { _dir: dir, service: Arc::new(service) }
}

impl Signer {
    fn grant_keys(&self) -> GrantKeys {
        let keys = self.service.public_keys().unwrap().grant_keys;
        keys.into_iter().fold(GrantKeys::new(), |acc, k| {
            acc.with_key(k.kid, ed25519_dalek::VerifyingKey::from_bytes(&k.key).unwrap())
        })
    }

    /// The grant signed (and booked) by the signer, as the broker gets it.
    fn issue(&self, task: &mut RunTask, approved: &[&str]) {
        let mut grant = task.grant.grant.clone();
        grant.approved_secrets = approved.iter().map(|s| s.to_string()).collect();
        match self.service.handle_broker(SignerRequest::SignGrant { grant: Box::new(grant) }, status()) {
            SignerReply::Grant(signed) => task.grant = *signed,
            other => panic!("grant not signed: {other:?}"),
        }
    }

    /// Signs the receipt of `grant`: the grant is finalised.
    fn finalise(&self, grant: &SignedGrant) {
        let receipt = Receipt {
            receipt_id: "r1".into(),
            grant_id: grant.grant.grant_id.clone(),
            trace_id: grant.grant.trace_id.clone(),
            action_id: grant.grant.action_id.clone(),
            provider_module_digest: grant.grant.provider_module_digest.clone(),
            provider_receipt: json!({}),
            normalized_result: NormalizedResult { kind: "http".into(), details: Default::default() },
            verification_outcome: VerificationOutcome { status: "not_applicable".into(), details: Default::default() },
            result_hash: String::new(),
            receipt_signature: String::new(),
            signing_key_id: String::new(),
            started_at: "2026-01-01T00:00:00Z".into(),
            finished_at: "2026-01-01T00:00:01Z".into(),
            failure_class: None,
            approved_by: None,
            approved_by_jkt: None,
        };
        let receipt_json = serde_json::to_string(&receipt).unwrap();
        let reply = self.service.handle_broker(SignerRequest::SignReceipt { receipt_json }, status());
        assert!(matches!(reply, SignerReply::Receipt { .. }), "{reply:?}");
    }
}

/// The executor's link to the signer, without the socket.
struct InProcess(Arc<SignerService>);

impl SecretSource for InProcess {
    fn release<'a>(&'a self, grant: &'a SignedGrant) -> ReleaseFuture<'a> {
        let reply = self.0.release_secrets(grant, now());
        Box::pin(async move {
            match reply {
                SecretsReply::Secrets(released) => Ok(released),
                SecretsReply::Refused { code, message } => Err(SecretsRefused { code, message }),
                other => panic!("unexpected {other:?}"),
            }
        })
    }
}

fn header(name: &str, format: &str) -> SecretInjection {
    SecretInjection { header: Some(name.into()), query: None, basic_auth: None, format: Some(format.into()) }
}

fn spec(name: &str, inject: SecretInjection) -> SecretSpec {
    SecretSpec { name: name.into(), required: true, inject }
}

/// What a destination saw: the request target and every header with its value.
#[derive(Clone, Debug)]
struct Seen {
    uri: String,
    headers: Vec<(String, String)>,
}

struct Echo {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Echo {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{TARGET_HOST}:{}{path}", self.addr.port())
    }
}

/// Reflects the whole request (uri, header names and values) in the body and
/// in `x-echo-*` response headers.
async fn echo() -> Echo {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let recorder = seen.clone();
    let (addr, task) = serve(move |req: Request<Incoming>| {
        let recorder = recorder.clone();
        async move {
            let uri = req.uri().to_string();
            let headers: Vec<(String, String)> =
                req.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
            let _ = req.into_body().collect().await;
            recorder.lock().unwrap().push(Seen { uri: uri.clone(), headers: headers.clone() });
            let mut response = Response::builder().header("content-type", "application/json");
            for (k, v) in &headers {
                response = response.header(format!("x-echo-{k}"), v.as_str());
            }
            let body = json!({"uri": uri, "headers": headers}).to_string();
            response.body(Full::new(Bytes::from(body))).unwrap()
        }
    })
    .await;
    Echo { addr, seen, task }
}

/// A runtime trusting the signer's grant key, with `specs` for action `test.http_api`.
fn runtime_for(signer: &Signer, target: SocketAddr, specs: Vec<SecretSpec>, over_http: bool) -> Runtime {
    let mut config = config_with(Some(target));
    config.grant_keys = signer.grant_keys();
    config.action_secrets.insert("test.http_api".into(), specs);
    config.secret_source = Some(Arc::new(InProcess(signer.service.clone())));
    config.egress.test_secrets_over_http = over_http;
    Runtime::new(config).unwrap()
}

fn output(outcome: &latchgate_executor::Outcome) -> Value {
    serde_json::from_str(outcome.output_json().unwrap_or_else(|| panic!("call failed: {outcome:?}"))).unwrap()
}

fn headers_named<'a>(seen: &'a Seen, name: &str) -> Vec<&'a str> {
    seen.headers.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
}

#[tokio::test]
async fn injected_secrets_reach_the_destination_and_come_back_redacted() {
    let signer = signer();
    let target = echo().await;
    let specs = vec![
        spec("A_TOKEN", header("Authorization", "Bearer {}")),
        spec("QUERY_KEY", SecretInjection { header: None, query: Some("key".into()), basic_auth: None, format: None }),
    ];
    let runtime = runtime_for(&signer, target.addr, specs, true);
    let mut template = get_template(&target.url("/echo?key=provider-chosen&keep=1"));
    // The provider's own values for the injected names are dropped.
    template.headers.insert("Authorization".into(), "Bearer from-the-template".into());
    let mut task = http_task(template, json!({}), &[]);
    signer.issue(&mut task, &["A_TOKEN", "QUERY_KEY"]);
    let outcome = runtime.run(task).await.unwrap();
    let out = output(&outcome);

    let seen = target.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(headers_named(&seen[0], "authorization"), vec![format!("Bearer {TOKEN_A}")]);
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(seen[0].uri.split_once('?').unwrap().1.as_bytes()).into_owned().collect();
    assert!(query.contains(&("key".into(), QUERY_KEY.into())), "{query:?}");
    assert!(query.contains(&("keep".into(), "1".into())), "{query:?}");
    assert!(!query.iter().any(|(_, v)| v == "provider-chosen"), "{query:?}");

    let text = out.to_string();
    for leaked in [TOKEN_A, "q+secret%26%3D", "q%20secret%26%3D", QUERY_KEY] {
        assert!(!text.contains(leaked), "{leaked} reached the provider: {text}");
    }
    assert!(text.contains("Bearer [REDACTED:A_TOKEN]"), "{text}");
    assert!(text.contains("[REDACTED:QUERY_KEY]"), "{text}");
    assert!(!format!("{outcome:?}").contains(TOKEN_A), "nothing in the outcome carries the value");
}

#[tokio::test]
async fn basic_auth_is_built_by_the_host_and_its_base64_is_redacted() {
    let signer = signer();
    let target = echo().await;
    let basic = SecretInjection {
        header: None,
        query: None,
        basic_auth: Some(BasicAuthInjection { username: "bot".into() }),
        format: None,
    };
    let runtime = runtime_for(&signer, target.addr, vec![spec("BASIC_PW", basic)], true);
    let mut task = http_task(get_template(&target.url("/basic")), json!({}), &[]);
    signer.issue(&mut task, &["BASIC_PW"]);
    let outcome = runtime.run(task).await.unwrap();
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("bot:{BASIC_PW}"));
    assert_eq!(headers_named(&target.seen()[0], "authorization"), vec![format!("Basic {encoded}")]);
    let text = output(&outcome).to_string();
    assert!(!text.contains(&encoded) && !text.contains(BASIC_PW), "{text}");
    assert!(text.contains("Basic [REDACTED:BASIC_PW]"), "{text}");
}

#[tokio::test]
async fn secrets_are_never_sent_over_plain_http() {
    let signer = signer();
    let target = echo().await;
    let runtime = runtime_for(&signer, target.addr, vec![spec("A_TOKEN", header("X-Api-Token", "{}"))], false);
    let mut task = http_task(get_template(&target.url("/plain")), json!({}), &[]);
    signer.issue(&mut task, &["A_TOKEN"]);
    let outcome = runtime.run(task).await.unwrap();
    assert_eq!(outcome.failure_class(), Some(FailureClass::EgressDenied), "{outcome:?}");
    assert!(format!("{:?}", outcome.result).contains("only over https"), "{outcome:?}");
    assert!(target.seen().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn a_grant_obtains_its_secrets_once() {
    let signer = signer();
    let target = echo().await;
    let runtime = runtime_for(&signer, target.addr, vec![spec("A_TOKEN", header("X-Api-Token", "{}"))], true);
    let mut task = http_task(get_template(&target.url("/once")), json!({}), &[]);
    signer.issue(&mut task, &["A_TOKEN"]);
    runtime.run(task.clone()).await.unwrap();
    let replayed = runtime.run(task).await.unwrap_err();
    assert_eq!(
        replayed,
        RunError::SecretsRefused { code: "secrets_already_released".into(), message: replayed_message(&replayed) }
    );
    assert_eq!(target.seen().len(), 1, "the replay reached nobody");
}

fn replayed_message(e: &RunError) -> String {
    match e {
        RunError::SecretsRefused { message, .. } => message.clone(),
        _ => String::new(),
    }
}

#[tokio::test]
async fn a_consumed_grant_obtains_nothing_and_nothing_runs() {
    let signer = signer();
    let target = echo().await;
    let runtime = runtime_for(&signer, target.addr, vec![spec("A_TOKEN", header("X-Api-Token", "{}"))], true);
    let mut task = http_task(get_template(&target.url("/consumed")), json!({}), &[]);
    signer.issue(&mut task, &["A_TOKEN"]);
    signer.finalise(&task.grant);
    let err = runtime.run(task).await.unwrap_err();
    assert_eq!(err.code(), "secrets_refused");
    assert!(err.to_string().contains("grant_not_outstanding"), "{err}");
    assert!(target.seen().is_empty());
}

#[tokio::test]
async fn an_expired_grant_obtains_nothing() {
    let signer = signer();
    let mut task = http_task(get_template("http://target.test/x"), json!({}), &[]);
    signer.issue(&mut task, &["A_TOKEN"]);
    let after_expiry = task.grant.grant.expires_at;
    match signer.service.release_secrets(&task.grant, after_expiry) {
        SecretsReply::Refused { code, .. } => assert_eq!(code, "grant_expired"),
        other => panic!("released after expiry: {other:?}"),
    }
}

#[tokio::test]
async fn a_grant_for_action_a_cannot_obtain_action_b_secrets() {
    let signer = signer();
    let target = echo().await;
    // Action A declares only A_TOKEN; the secrets file also holds B_TOKEN.
    let runtime = runtime_for(&signer, target.addr, vec![spec("A_TOKEN", header("X-Api-Token", "{}"))], true);
    let mut task = http_task(get_template(&target.url("/a")), json!({}), &[]);
    signer.issue(&mut task, &["A_TOKEN"]);

    // The grant's approved_secrets widened to B_TOKEN: its signature breaks.
    let mut widened = task.grant.clone();
    widened.grant.approved_secrets.push("B_TOKEN".into());
    match signer.service.release_secrets(&widened, now()) {
        SecretsReply::Refused { code, .. } => assert_eq!(code, "grant_signature_invalid"),
        other => panic!("widened grant released: {other:?}"),
    }
    // The genuine grant releases A_TOKEN only, and only A_TOKEN is sent.
    let outcome = runtime.run(task).await.unwrap();
    assert!(outcome.output_json().is_some(), "{outcome:?}");
    let seen = target.seen();
    assert_eq!(headers_named(&seen[0], "x-api-token"), vec![TOKEN_A]);
    assert!(!format!("{seen:?}").contains(TOKEN_B), "action B's secret left the signer: {seen:?}");

    // A grant booked for A whose secrets were approved as B's (the broker
    // lying) still cannot move B_TOKEN into action A: A's specs don't name it.
    let mut lying = http_task(get_template(&target.url("/a2")), json!({}), &[]);
    signer.issue(&mut lying, &["A_TOKEN", "B_TOKEN"]);
    runtime.run(lying).await.unwrap();
    assert!(!format!("{:?}", target.seen()).contains(TOKEN_B), "B_TOKEN injected into action A");
}
