//! Secrets end to end with the real processes: `latchgate secrets init/set`
//! writes the SOPS file, the signer releases it per grant, the executor
//! injects it over HTTPS (a local echo server with a test CA), and a hostile
//! provider tries every route it has to the value — echoed headers and
//! query, forged credential headers, its output, its error message, its log
//! lines, plain http. Afterwards the value is looked for in every answer,
//! every receipt, and every byte under the gate's directory (state dir with
//! the ledger and audit rows, keys, config, logs).
//!
//! The hostile module is `providers/dist-test/hostile_secret_thief.wasm`,
//! placed in the `http_api` slot of a private providers dir and pinned by
//! private manifests: the production `providers/dist/` never holds it.

use latchgate_client::{DpopKey, GateClient, LeaseBudgets};
use latchgate_tests::secrets::{EchoServer, TestCa, files_containing};
use latchgate_tests::{Gate, GateDir, principal_config, repo_root, wait_for_status};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const BASE: &str = "http://localhost:3000";

fn secrets_cli(dir: &GateDir, args: &[&str], stdin: Option<&str>) -> (i32, Value) {
    latchgate_tests::secrets::secrets_cli(&dir.config_path(), args, stdin)
}

fn manifest(action_id: &str, digest: &str, secrets: &str) -> String {
    format!(
        r#"action_id: {action_id}
version: 1.0.0
description: Test-only hostile action for the secrets tests.
provider: http_api
provider_module_digest: {digest}
required_imports: ["latchgate:io/http", "latchgate:io/log"]
template:
  method: GET
  url_template: "{{{{url}}}}"
io:
  request_schema:
    type: object
    required: [url]
    properties:
      url: {{type: string, maxLength: 512}}
      mode: {{type: string, enum: [output, error, plain_http]}}
      http_url: {{type: string, maxLength: 512}}
    additionalProperties: false
  max_request_bytes: 4096
  max_response_bytes: 262144
resource_limits:
  fuel: 200000000
  memory_mb: 32
  timeout_seconds: 20
  max_io_calls: 4
  max_host_response_bytes: 65536
egress:
  profile: proxy_allowlist
  allowed_domains: [localhost]
  allowed_methods: [GET]
secrets:
{secrets}risk_level: low
verifier_kind: none
required_scopes: [hostile.run]
"#
    )
}

/// Providers dir whose `http_api` slot holds the hostile module, and
/// manifests for action A, action B and an action whose secret is missing.
fn hostile_fixture(dir: &GateDir) -> (std::path::PathBuf, std::path::PathBuf) {
    let providers = dir.root.join("providers");
    std::fs::create_dir_all(providers.join("dist")).unwrap();
    let module = repo_root().join("providers/dist-test/hostile_secret_thief.wasm");
    std::fs::copy(&module, providers.join("dist/http_api.wasm")).expect("built fixture (make providers)");
    let digest = latchgate_core::manifest::module_digest(&module).unwrap();
    let manifests = dir.root.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let a = "  - name: THIEF_TOKEN\n    inject: {header: Authorization, format: \"Bearer {}\"}\n  - name: THIEF_QUERY\n    inject: {query: key}\n";
    std::fs::write(manifests.join("thief_a.yaml"), manifest("hostile.thief_a", &digest, a)).unwrap();
    let b = "  - name: B_ONLY_TOKEN\n    inject: {header: X-B-Token, format: \"{}\"}\n";
    std::fs::write(manifests.join("thief_b.yaml"), manifest("hostile.thief_b", &digest, b)).unwrap();
    let missing = "  - name: MISSING_TOKEN\n    required: true\n    inject: {header: X-Missing, format: \"{}\"}\n";
    std::fs::write(manifests.join("needs_missing.yaml"), manifest("hostile.needs_missing", &digest, missing)).unwrap();
    (providers, manifests)
}

fn assert_clean(what: &str, text: &str, values: &[&str]) {
    for v in values {
        assert!(!text.contains(v), "a secret value reached {what}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_provider_finds_no_route_to_a_secret() {
    let dir = GateDir::new();
    let ca = TestCa::new();
    let ca_file = dir.root.join("test-ca.pem");
    ca.write_ca(&ca_file);
    let echo = EchoServer::start(&ca);
    let (providers, manifests) = hostile_fixture(&dir);
    let policies = dir.copy_policies();
    latchgate_broker::policy::update_data_file(&policies.join("data.json"), |d| {
        latchgate_broker::policy::grant(d, "agent-thief", "hostile.**")
    })
    .unwrap();
    let top = format!(
        "providers_dir = \"{}\"\nmanifests_dir = \"{}\"\npolicies_dir = \"{}\"",
        providers.display(),
        manifests.display(),
        policies.display()
    );
    let extra = format!("{}\n{}", echo.egress_config(&ca_file), principal_config("agent-thief", &["hostile.run"]));
    dir.write_config(&top, &extra);

    // Unique values: any occurrence anywhere later is a leak.
    let token = format!("lgA-{}", uuid::Uuid::new_v4().simple());
    let query = format!("lgQ {}&=", uuid::Uuid::new_v4().simple());
    let b_token = format!("lgB-{}", uuid::Uuid::new_v4().simple());
    let (code, init) = secrets_cli(&dir, &["init"], None);
    assert_eq!(code, 0, "{init}");
    assert_eq!(init["config_updated"], true, "{init}");
    for (name, value) in [("THIEF_TOKEN", &token), ("THIEF_QUERY", &query), ("B_ONLY_TOKEN", &b_token)] {
        let (code, set) = secrets_cli(&dir, &["set", name], Some(value));
        assert_eq!((code, &set["created"]), (0, &json!(true)), "{set}");
    }
    let (code, listed) = secrets_cli(&dir, &["list"], None);
    assert_eq!(code, 0, "{listed}");
    assert_clean("`secrets list`", &listed.to_string(), &[&token, &b_token]);
    let missing = listed["secrets"].as_array().unwrap().iter().find(|s| s["name"] == "MISSING_TOKEN").unwrap();
    assert_eq!((&missing["present"], &missing["required_by"]), (&json!(false), &json!(["hostile.needs_missing"])));

    let gate = Gate::start_with_env(&dir, &[("RUST_LOG", "debug")]);
    if let Err(e) = wait_for_status(&dir.client_socket(), "/readyz", 200, Duration::from_secs(90)).await {
        panic!("{e}\n{}", dir.log("gate"));
    }
    let mut agent = GateClient::connect(dir.client_socket(), BASE, DpopKey::generate().unwrap()).await.unwrap();
    agent.request_lease(&["hostile.run"], LeaseBudgets::default()).await.unwrap();
    let url = format!("https://localhost:{}/steal", echo.https.port());
    let values = [token.as_str(), query.as_str(), b_token.as_str()];
    let mut answers = Vec::new();
    let mut receipts = Vec::new();

    // 1. Everything it got back, as its output.
    let (status, body) = agent.execute("hostile.thief_a", &json!({"url": url, "mode": "output"})).await.unwrap();
    assert_eq!(status.as_u16(), 200, "{body}\n{}", dir.log("gate"));
    let text = body.to_string();
    assert!(text.contains("Bearer [REDACTED:THIEF_TOKEN]"), "the echo came back, scrubbed: {text}");
    assert!(text.contains("[REDACTED:THIEF_QUERY]"), "{text}");
    assert!(text.contains("x-echo-authorization"), "echoed response headers reached the provider: {text}");
    let seen = echo.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for request in &seen {
        assert!(request.tls, "secrets went over TLS");
        let auth: Vec<&String> = request.headers.iter().filter(|(k, _)| k == "authorization").map(|(_, v)| v).collect();
        assert_eq!(auth, vec![&format!("Bearer {token}")], "only the host's credential: {request:?}");
        assert!(!request.headers.iter().any(|(k, v)| k == "x-api-key" || v.contains("forged-by-provider")));
        let pairs: Vec<(String, String)> = url_query(&request.target);
        assert!(pairs.contains(&("key".into(), query.clone())), "{pairs:?}");
        assert!(!pairs.iter().any(|(_, v)| v == "provider-chosen"), "{pairs:?}");
    }
    assert!(!format!("{seen:?}").contains(&b_token), "action B's secret was sent for action A");
    receipts.push(body["receipt_id"].as_str().unwrap().to_string());
    answers.push(text);

    // 2. The same loot inside the provider error.
    let (status, body) = agent.execute("hostile.thief_a", &json!({"url": url, "mode": "error"})).await.unwrap();
    assert_eq!((status.as_u16(), body["failure_class"].as_str()), (502, Some("provider_error")), "{body}");
    receipts.push(body["receipt_id"].as_str().unwrap().to_string());
    answers.push(body.to_string());

    // 3. Plain http to the same host: the host refuses to send secrets there.
    let http_url = format!("http://localhost:{}/plain", echo.http.port());
    let (status, body) = agent
        .execute("hostile.thief_a", &json!({"url": url, "mode": "plain_http", "http_url": http_url}))
        .await
        .unwrap();
    assert_eq!((status.as_u16(), body["failure_class"].as_str()), (502, Some("egress_denied")), "{body}");
    assert!(echo.seen().iter().all(|r| r.tls), "nothing went out over plain http");
    receipts.push(body["receipt_id"].as_str().unwrap().to_string());
    answers.push(body.to_string());

    // 4. A required secret that is not in the file: 403 naming it, before anything runs.
    let before = echo.seen().len();
    let (status, body) = agent.execute("hostile.needs_missing", &json!({"url": url})).await.unwrap();
    assert_eq!(status.as_u16(), 403, "{body}");
    assert_eq!(
        (body["error"].as_str(), body["deny_reason"].as_str()),
        (Some("policy_denied"), Some("missing_required_secret"))
    );
    assert!(body["reason"].as_str().unwrap().contains("MISSING_TOKEN"), "{body}");
    assert_eq!(echo.seen().len(), before);
    answers.push(body.to_string());

    // 5. A value changed while the gate runs is injected on the next call (the
    //    signer re-reads the replaced file, which kept its owner).
    let rotated = format!("lgA2-{}", uuid::Uuid::new_v4().simple());
    let (code, set) = secrets_cli(&dir, &["set", "THIEF_TOKEN"], Some(&rotated));
    assert_eq!((code, &set["created"]), (0, &json!(false)), "{set}");
    let (status, body) = agent.execute("hostile.thief_a", &json!({"url": url})).await.unwrap();
    assert_eq!(status.as_u16(), 200, "{body}\n{}", dir.log("gate"));
    let last = echo.seen().pop().unwrap();
    assert!(last.headers.contains(&("authorization".into(), format!("Bearer {rotated}"))), "{last:?}");
    receipts.push(body["receipt_id"].as_str().unwrap().to_string());
    answers.push(body.to_string());

    for id in &receipts {
        let (status, receipt) = agent.get_authed(&format!("/v1/receipts/{id}")).await.unwrap();
        assert_eq!(status.as_u16(), 200, "{receipt}");
        answers.push(receipt.to_string());
    }
    let values = [values[0], values[1], values[2], rotated.as_str()];
    for answer in &answers {
        assert_clean("an answer or receipt", answer, &values);
    }

    // Stop the gate so every log line and the ledger are on disk, then grep everything.
    let mut gate = gate;
    gate.terminate(Duration::from_secs(60));
    let log = dir.log("gate");
    assert!(log.contains("secrets released"), "the signer logged the release (names only)");
    // The provider logged its loot: the log holds it, scrubbed (and proves the grep below sees the log).
    let marked = files_containing(&dir.root, b"[REDACTED:THIEF_TOKEN]");
    assert!(marked.contains(&dir.log_path("gate")), "{marked:?}");
    for v in values {
        let leaks = files_containing(&dir.root, v.as_bytes());
        assert!(leaks.is_empty(), "secret value found in {leaks:?}");
        // The basic forms it could take in a file: URL- and JSON-escaped.
        let encoded: String = url::form_urlencoded::byte_serialize(v.as_bytes()).collect();
        assert!(files_containing(&dir.root, encoded.as_bytes()).is_empty(), "url-encoded value on disk");
    }
}

fn url_query(target: &str) -> Vec<(String, String)> {
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    url::form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

#[test]
fn gate_refuses_to_start_with_a_key_file_others_can_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = GateDir::new();
    dir.write_config("", "");
    let (code, init) = secrets_cli(&dir, &["init"], None);
    assert_eq!(code, 0, "{init}");
    let key = Path::new(init["key_file"].as_str().unwrap()).to_path_buf();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, checked) = secrets_cli(&dir, &["check"], None);
    assert_eq!(code, 2, "{checked}");
    let finding =
        checked["findings"].as_array().unwrap().iter().find(|f| f["check"] == "secrets.key_file").unwrap().clone();
    assert_eq!(finding["status"], "fail", "{checked}");
    assert!(finding["remediation"].as_str().unwrap().contains("chmod 600"), "{finding}");
    let _gate = Gate::start(&dir);
    // The signer refuses to start (and is retried): the gate never becomes ready.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !dir.log("gate").contains("sops_key_insecure_permissions") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = dir.log("gate");
    assert!(log.contains("sops_key_insecure_permissions") && log.contains("chmod 600"), "{log}");
}
