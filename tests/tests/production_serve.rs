//! `latchgate serve` and `latchgate doctor` with the real binaries: serve
//! refuses every unsafe setting with one precise message and exit 1, starts
//! on a clean production config (real Redis, the OPA test server, strict
//! confinement), and doctor passes on that set-up and names each part that
//! is then broken.

use latchgate_client::{DpopKey, GateClient, LeaseBudgets};
use latchgate_tests::opa_server::OpaServer;
use latchgate_tests::redis_server::RedisServer;
use latchgate_tests::secrets::secrets_cli;
use latchgate_tests::serve::{ACCEPT_DEVELOPMENT_BUILD, run_cli, start_serve};
use latchgate_tests::{GateDir, bin_dir, principal_config, repo_root, wait_for_status};
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

const CLEAN_TOP: &str = "mode = \"production\"\nconfinement = \"strict\"\n";

/// A clean production config; `top` lines go first, `tables` last.
fn write_production_config(dir: &GateDir, redis_url: &str, opa_url: &str, top: &str, tables: &str) {
    let extra = format!(
        "{}\n[redis]\nurl = \"{redis_url}\"\nkey_prefix = \"serve:\"\n\n[opa]\nurl = \"{opa_url}\"\n\n{tables}",
        principal_config("agent-dev", &["http.fetch"])
    );
    dir.write_config(&format!("{CLEAN_TOP}{top}"), &extra);
}

/// The violation ids `serve` printed (`  - field: message [id]`).
fn violation_ids(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.starts_with("  - "))
        .filter_map(|l| l.rsplit_once('[').and_then(|(_, id)| id.strip_suffix(']')).map(str::to_string))
        .collect()
}

/// Whether the build under test carries the test-only escape probe, read from
/// a child binary of the same build (only its code path logs this line).
fn binary_has_escape_probe() -> bool {
    let bytes = std::fs::read(bin_dir().join("latchgate-broker")).expect("read latchgate-broker binary");
    let needle = b"TEST-ONLY escape probe listening";
    bytes.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn serve_refuses_each_unsafe_setting_with_one_named_violation() {
    let dir = GateDir::new();
    let (redis, opa) = ("unix:///nonexistent/redis.sock", "http://127.0.0.1:9");
    let operator = |name: &str, key: &str, jkt: Option<&str>| {
        let jkt = jkt.map(|j| format!("dpop_jkt = \"{j}\"\n")).unwrap_or_default();
        format!("[operator_credentials.{name}]\napi_key = \"{key}\"\n{jkt}")
    };
    let cases: Vec<(&str, String, String)> = vec![
        ("identity_provider_none", String::new(), "[identity]\nprovider = \"none\"\n".into()),
        ("allow_unmapped", String::new(), "[identity.peercred]\nallow_unmapped = true\n".into()),
        ("operator_credential_without_dpop_jkt", String::new(), operator("ops", "k1", None)),
        (
            "operator_api_key_shared",
            String::new(),
            format!("{}{}", operator("alice", "same", Some("jkt-a")), operator("bob", "same", Some("jkt-b"))),
        ),
        ("tcp_listener_without_unsafe_expose_http", "listen_tcp_addr = \"127.0.0.1:8080\"\n".into(), String::new()),
        ("response_schema_enforcement_warn", "response_schema_enforcement = \"warn\"\n".into(), String::new()),
        ("confinement_not_strict", "confinement = \"best_effort\"\n".into(), String::new()),
        (
            "private_destinations_allowed",
            String::new(),
            "[egress]\nallow_private_destinations = [\"127.0.0.1:9\"]\n".into(),
        ),
    ];
    for (id, top, tables) in &cases {
        write_production_config(&dir, redis, opa, top, tables);
        if id == &"confinement_not_strict" {
            // Two `confinement` keys would not parse: replace the clean one.
            let text = std::fs::read_to_string(dir.config_path()).unwrap();
            std::fs::write(dir.config_path(), text.replacen("confinement = \"strict\"\n", "", 1)).unwrap();
        }
        let (code, _, stderr) = run_cli(&dir.config_path(), &["serve"], &[ACCEPT_DEVELOPMENT_BUILD]);
        assert_eq!(code, 1, "{id}: {stderr}");
        assert_eq!(violation_ids(&stderr), vec![id.to_string()], "{id}: {stderr}");
        assert!(stderr.contains("refusing to start: 1 production-safety violation"), "{id}: {stderr}");
    }

    // Keys dir not written in the file: the gate would sign with keys from an implicit place.
    write_production_config(&dir, redis, opa, "", "");
    let text = std::fs::read_to_string(dir.config_path()).unwrap();
    let without_keys: String =
        text.lines().filter(|l| *l != "[keys]" && !l.starts_with("dir = ")).map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.config_path(), without_keys).unwrap();
    let (code, _, stderr) = run_cli(&dir.config_path(), &["serve"], &[ACCEPT_DEVELOPMENT_BUILD]);
    assert_eq!((code, violation_ids(&stderr)), (1, vec!["key_paths_unset".to_string()]), "{stderr}");

    // A key file others can read.
    write_production_config(&dir, redis, opa, "", "");
    let keys = dir.root.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700)).unwrap();
    let key = keys.join("grant-ed25519.p8");
    std::fs::write(&key, b"not really a key").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, stderr) = run_cli(&dir.config_path(), &["serve"], &[ACCEPT_DEVELOPMENT_BUILD]);
    assert_eq!((code, violation_ids(&stderr)), (1, vec!["key_file_permissions".to_string()]), "{stderr}");
    assert!(stderr.contains("grant-ed25519.p8") && stderr.contains("0644"), "{stderr}");
    std::fs::remove_dir_all(&keys).unwrap();

    // Several at once: every one is named, not just the first.
    write_production_config(
        &dir,
        redis,
        opa,
        "response_schema_enforcement = \"warn\"\n",
        "[identity]\nprovider = \"none\"\n",
    );
    let (code, _, stderr) = run_cli(&dir.config_path(), &["serve"], &[ACCEPT_DEVELOPMENT_BUILD]);
    assert_eq!(code, 1);
    assert_eq!(violation_ids(&stderr).len(), 2, "{stderr}");

    // A development build is refused unless a test explicitly accepts it.
    write_production_config(&dir, redis, opa, "", "[identity]\nprovider = \"none\"\n");
    let (code, _, stderr) = run_cli(&dir.config_path(), &["serve"], &[]);
    assert_eq!(code, 1, "{stderr}");
    let ids = violation_ids(&stderr);
    if binary_has_escape_probe() {
        assert_eq!(ids, vec!["identity_provider_none", "development_build"], "{stderr}");
        assert!(stderr.contains("escape-probe"), "{stderr}");
    } else {
        assert_eq!(ids, vec!["identity_provider_none"], "a release build has no development feature: {stderr}");
    }

    // An embedded config is not served at all.
    dir.write_config("", "");
    let (code, _, stderr) = run_cli(&dir.config_path(), &["serve"], &[ACCEPT_DEVELOPMENT_BUILD]);
    assert_eq!(code, 1);
    assert!(stderr.contains("needs a production config"), "{stderr}");
}

fn doctor(config: &Path) -> (i32, BTreeMap<String, (String, String)>, Value) {
    let (code, stdout, stderr) = run_cli(config, &["doctor", "--json"], &[ACCEPT_DEVELOPMENT_BUILD]);
    let report: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("doctor --json: {e}: {stdout}\n{stderr}"));
    let mut checks = BTreeMap::new();
    for check in report["checks"].as_array().expect("checks") {
        let id = check["id"].as_str().unwrap().to_string();
        let status = check["status"].as_str().unwrap().to_string();
        let message = check["message"].as_str().unwrap().to_string();
        // Several checks may share an id (one per file): the worst wins.
        let rank = |s: &str| ["skip", "ok", "warn", "error"].iter().position(|x| *x == s).unwrap_or(0);
        let keep = checks.get(&id).is_none_or(|(old, _): &(String, String)| rank(&status) > rank(old));
        if keep {
            checks.insert(id, (status, message));
        }
    }
    assert_eq!(report["ok"], code == 0, "{report}");
    (code, checks, report)
}

#[track_caller]
fn status_of<'a>(checks: &'a BTreeMap<String, (String, String)>, id: &str) -> (&'a str, &'a str) {
    let (status, message) = checks.get(id).unwrap_or_else(|| panic!("no check {id}: {checks:?}"));
    (status.as_str(), message.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_production_config_serves_and_doctor_names_each_broken_part() {
    let mut redis = RedisServer::start();
    let opa = OpaServer::start(&repo_root().join("policies"));
    let dir = GateDir::new();
    write_production_config(&dir, &redis.url(), &opa.url(), "", "");
    // Every secret a shipped action requires, so doctor's secrets group passes.
    let (code, init) = secrets_cli(&dir.config_path(), &["init"], None);
    assert_eq!(code, 0, "{init}");
    for name in ["GITHUB_TOKEN", "GMAIL_OAUTH_TOKEN", "SLACK_BOT_TOKEN"] {
        let (code, set) = secrets_cli(&dir.config_path(), &["set", name], Some("test-value-not-used"));
        assert_eq!(code, 0, "{set}");
    }
    // An operator with a DPoP key binding, so doctor's operators.credentials passes.
    let (code, _, stderr) = run_cli(&dir.config_path(), &["config", "add-operator", "--name", "ops"], &[]);
    assert_eq!(code, 0, "{stderr}");
    let mut gate = start_serve(&dir, &[ACCEPT_DEVELOPMENT_BUILD]);
    let ready = match wait_for_status(&dir.client_socket(), "/readyz", 200, Duration::from_secs(60)).await {
        Ok(body) => body,
        Err(e) => panic!("{e}\n{}", dir.log("gate")),
    };
    assert_eq!(ready["status"], "ready", "strict confinement, every layer enforced: {ready}");
    assert_eq!(ready["dependencies"]["state_store"]["backend"], "redis", "{ready}");
    assert_eq!(ready["dependencies"]["policy_engine"]["backend"], "opa", "{ready}");
    let log = dir.log("gate");
    assert!(log.contains("production (Redis state, OPA)"), "{log}");
    assert!(
        log.contains("use egress proxy_allowlist but egress.proxy_url is not set") && log.contains("http_fetch"),
        "proxy warning missing: {log}"
    );
    let mut agent =
        GateClient::connect(dir.client_socket(), "http://localhost:3000", DpopKey::generate().unwrap()).await.unwrap();
    agent.request_lease(&["http.fetch"], LeaseBudgets::default()).await.unwrap();

    // --- a good set-up: no error anywhere --------------------------------------
    let (code, checks, report) = doctor(&dir.config_path());
    assert_eq!(code, 0, "{report}");
    for id in [
        "config.parse",
        "config.production_safety",
        "keys.lease-es256",
        "keys.grant-ed25519",
        "keys.receipt-ed25519",
        "keys.receipt-keys",
        "keys.permissions",
        "state_store.redis",
        "state_store.persistence",
        "policy_engine.opa",
        "policy_engine.version",
        "manifests.valid",
        "manifests.digests",
        "kernel.seccomp",
        "kernel.landlock",
        "confinement.mode",
        "confinement.front",
        "confinement.broker",
        "confinement.executor",
        "confinement.signer",
        "ledger.schema",
        "ledger.chain",
        "secrets.configured",
        "secrets.key_file",
        "secrets.file_decrypts",
        "secrets.required_present",
        "webhooks.dead_letters",
        "ledger.unresolved",
        "config.mode",
        "users.system",
        "admin.socket",
        "operators.credentials",
    ] {
        assert_eq!(status_of(&checks, id).0, "ok", "{id}: {report}");
    }
    assert_eq!(status_of(&checks, "egress.proxy").0, "warn", "proxy_allowlist actions without a proxy");
    assert_eq!(status_of(&checks, "webhooks.endpoints").0, "skip");
    for id in ["ipc.peer_uids", "paths.hidden", "systemd.units", "shutdown.grace"] {
        assert_eq!(status_of(&checks, id).0, "skip", "no units installed: {id}: {report}");
    }

    // --- a webhook whose secret names an unset variable -------------------------
    let good_config = std::fs::read_to_string(dir.config_path()).unwrap();
    let hook = "\n[[webhooks]]\nname = \"ops\"\nurl = \"https://hooks.example.com/latchgate\"\nsecret = \"${LG_DOCTOR_NEVER_SET}\"\n";
    std::fs::write(dir.config_path(), format!("{good_config}{hook}")).unwrap();
    let (code, checks, report) = doctor(&dir.config_path());
    let (status, message) = status_of(&checks, "webhooks.endpoints");
    assert_eq!((code, status), (1, "error"), "{report}");
    assert!(message.contains("LG_DOCTOR_NEVER_SET"), "{message}");
    assert_eq!(status_of(&checks, "webhooks.dead_letters").0, "ok", "{report}");
    std::fs::write(dir.config_path(), good_config).unwrap();

    // --- OPA without the policy: the decision path is empty ---------------------
    opa.set_mode("undefined");
    let (code, checks, _) = doctor(&dir.config_path());
    let (status, message) = status_of(&checks, "policy_engine.opa");
    assert_eq!((code, status), (1, "error"), "{message}");
    assert!(message.contains("undefined"), "{message}");
    opa.set_mode("normal");

    // --- a key file others can read --------------------------------------------
    let key = dir.root.join("keys/receipt-ed25519.p8");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, checks, _) = doctor(&dir.config_path());
    let (status, message) = status_of(&checks, "keys.permissions");
    assert_eq!((code, status), (1, "error"), "{message}");
    assert!(message.contains("receipt-ed25519.p8"), "{message}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // --- Redis without persistence (a warning), then Redis gone (an error) -----
    redis.command(&["CONFIG", "SET", "appendonly", "no"]);
    let (code, checks, report) = doctor(&dir.config_path());
    assert_eq!(status_of(&checks, "state_store.persistence").0, "warn", "{report}");
    assert_eq!(code, 0, "a warning alone does not fail doctor: {report}");
    redis.command(&["CONFIG", "SET", "appendonly", "yes"]);
    redis.stop();
    let (code, checks, _) = doctor(&dir.config_path());
    assert_eq!((code, status_of(&checks, "state_store.redis").0), (1, "error"));
    redis.restart();

    // --- the gate stopped: live confinement is not checked, and says so --------
    let status = gate.terminate(Duration::from_secs(60)).expect("serve stops on SIGTERM");
    assert!(status.success(), "{status:?}\n{}", dir.log("gate"));
    let (_, checks, _) = doctor(&dir.config_path());
    assert_eq!(status_of(&checks, "confinement.processes").0, "skip");

    // --- a tampered ledger --------------------------------------------------------
    let ledger = rusqlite::Connection::open(dir.root.join("state/ledger.db")).unwrap();
    ledger.execute(r#"UPDATE audit_events SET payload = '{"forged":true}' WHERE seq = 1"#, []).unwrap();
    drop(ledger);
    let (code, checks, _) = doctor(&dir.config_path());
    let (status, message) = status_of(&checks, "ledger.chain");
    assert_eq!((code, status), (1, "error"), "{message}");
    assert!(message.contains("LEDGER BROKEN"), "{message}");

    // --- a broken manifest and a provider that does not match its digest --------
    let manifests = dir.root.join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    for entry in std::fs::read_dir(repo_root().join("manifests")).unwrap().flatten() {
        if entry.path().is_file() {
            std::fs::copy(entry.path(), manifests.join(entry.file_name())).unwrap();
        }
    }
    let schemas = repo_root().join("manifests/schemas");
    if schemas.is_dir() {
        copy_tree(&schemas, &manifests.join("schemas"));
    }
    let text = std::fs::read_to_string(dir.config_path()).unwrap();
    let broken = dir.root.join("broken.toml");
    let with_manifests = text.replace(
        &format!("manifests_dir = \"{}\"", repo_root().join("manifests").display()),
        &format!("manifests_dir = \"{}\"", manifests.display()),
    );
    assert_ne!(with_manifests, text, "the config names the checkout's manifests");
    std::fs::write(&broken, &with_manifests).unwrap();
    let (_, checks, report) = doctor(&broken);
    assert_eq!(status_of(&checks, "manifests.valid").0, "ok", "the copy is valid: {report}");
    let victim = std::fs::read_dir(&manifests)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "yaml"))
        .unwrap();
    let yaml = std::fs::read_to_string(&victim).unwrap();
    std::fs::write(&victim, format!("{yaml}\nnot_a_manifest_field: true\n")).unwrap();
    let (code, checks, _) = doctor(&broken);
    let (status, message) = status_of(&checks, "manifests.valid");
    assert_eq!((code, status), (1, "error"), "{message}");
    assert!(message.contains("not_a_manifest_field"), "{message}");

    // --- a config that does not parse ---------------------------------------------
    std::fs::write(&broken, "mode = \"production\"\nno_such_key = 1\n").unwrap();
    let (code, checks, _) = doctor(&broken);
    let (status, message) = status_of(&checks, "config.parse");
    assert_eq!((code, status), (1, "error"));
    assert!(message.contains("no_such_key"), "{message}");
    assert_eq!(status_of(&checks, "ledger.all").0, "skip");
    assert!(matches!(status_of(&checks, "kernel.landlock").0, "ok" | "warn"), "host checks still run");
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
