//! The `latchgate` CLI against a running gate, over the admin socket: every
//! command with `--json` parsed and checked, a few human outputs, and the
//! config editing commands (`add-operator` creates the operator this gate is
//! started with). One gate for the file.

use latchgate_client::{DpopKey, GateClient, LeaseBudgets};
use latchgate_tests::operator::{BASE, EditableHome};
use latchgate_tests::{Gate, GateDir, bin_dir, principal_config, wait_for_status};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

struct Fixture {
    dir: GateDir,
    home: EditableHome,
    _gate: Gate,
}

fn latchgate(config: &Path, args: &[&str]) -> Output {
    Command::new(bin_dir().join("latchgate"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .env_remove("LATCHGATE_CONFIG")
        .env_remove("LATCHGATE_OPERATOR")
        .env_remove("LATCHGATE_API_KEY")
        .env_remove("LATCHGATE_OPERATOR_KEY")
        .env_remove("LATCHGATE_ADMIN_SOCKET")
        .stdin(Stdio::null())
        .output()
        .expect("run latchgate")
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Fixture {
    fn config(&self) -> PathBuf {
        self.dir.config_path()
    }

    fn run(&self, args: &[&str]) -> Output {
        latchgate(&self.config(), args)
    }

    /// Runs with `--json`, expects exit `status`, returns stdout parsed.
    #[track_caller]
    fn json(&self, args: &[&str], status: i32) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        let out = self.run(&args);
        assert_eq!(out.status.code(), Some(status), "{args:?}: {}", describe(&out));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", describe(&out)))
    }

    #[track_caller]
    fn human(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", describe(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    async fn held_write(&self, file: &str) -> (GateClient, String) {
        let mut agent =
            GateClient::connect(self.dir.client_socket(), BASE, DpopKey::generate().unwrap()).await.unwrap();
        agent.request_lease(&["fs.write"], LeaseBudgets::default()).await.unwrap();
        let (status, body) =
            agent.execute("fs.write", &json!({"op": "create", "path": file, "content": "cli"})).await.unwrap();
        assert_eq!(status.as_u16(), 202, "{body}");
        (agent, body["approval_id"].as_str().unwrap().to_string())
    }
}

async fn start() -> Fixture {
    let dir = GateDir::new();
    let home = EditableHome::create(&dir);
    let extra = format!(
        "{}\n# Operators of this gate; keep this comment.\n[operator_limits]\nwrites_per_second = 1000\n",
        principal_config("agent-dev", &["fs.write"])
    );
    dir.write_config(&home.top_config(), &extra);

    // The operator is created by the CLI itself, before the gate starts.
    let created = latchgate(&dir.config_path(), &["config", "add-operator", "--name", "ops", "--json"]);
    assert_eq!(created.status.code(), Some(0), "{}", describe(&created));
    let created: Value = serde_json::from_slice(&created.stdout).unwrap();
    let key_file = PathBuf::from(created["key_file"].as_str().unwrap());
    assert_eq!(key_file, dir.root.join("operators/ops.pem"));
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600, "private key is 0600");
    }
    let text = std::fs::read_to_string(dir.config_path()).unwrap();
    assert!(text.contains("# Operators of this gate; keep this comment."), "layout and comments stay:\n{text}");
    assert!(text.contains("[operator_credentials.ops]"), "{text}");
    assert!(text.contains(&format!("dpop_jkt = \"{}\"", created["dpop_jkt"].as_str().unwrap())), "{text}");
    let again = latchgate(&dir.config_path(), &["config", "add-operator", "--name", "ops", "--json"]);
    assert_eq!(again.status.code(), Some(1), "a second ops is refused: {}", describe(&again));

    let gate = Gate::start(&dir);
    if let Err(e) = wait_for_status(&dir.client_socket(), "/readyz", 200, Duration::from_secs(90)).await {
        panic!("{e}\n{}", dir.log("gate"));
    }
    Fixture { dir, home, _gate: gate }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_over_the_admin_socket() {
    let fx = start().await;
    status_reports_every_process(&fx);
    actions_list_and_detail(&fx);
    approvals_list_show_approve_deny(&fx).await;
    audit_verify_and_export(&fx);
    receipts_get_and_verify(&fx).await;
    intents_drain_reload(&fx);
    policy_through_the_gate(&fx);
    egress_learned(&fx);
    revoke_needs_confirmation(&fx);
    config_commands(&fx);
    errors_name_the_remediation(&fx);
}

fn status_reports_every_process(fx: &Fixture) {
    let doc = fx.json(&["status"], 0);
    assert!(matches!(doc["status"].as_str(), Some("ok" | "degraded")), "{doc}");
    for role in ["front", "broker", "executor", "signer"] {
        assert_eq!(doc["processes"][role]["up"], true, "{doc}");
    }
    let text = fx.human(&["status"]);
    let header = text.lines().find(|l| l.starts_with("PROCESS")).unwrap_or_else(|| panic!("table:\n{text}"));
    let broker = text.lines().find(|l| l.starts_with("broker")).unwrap_or_else(|| panic!("table:\n{text}"));
    assert_eq!(header.find("UP"), broker.find("yes"), "aligned columns:\n{text}");
    assert!(!text.contains('\u{1b}'), "no colour off a terminal");
}

fn actions_list_and_detail(fx: &Fixture) {
    let doc = fx.json(&["actions"], 0);
    let ids: Vec<&str> = doc["actions"].as_array().unwrap().iter().map(|a| a["action_id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"fs.write") && ids.contains(&"http_fetch"), "{doc}");
    let one = fx.json(&["actions", "fs.write"], 0);
    assert_eq!((one["risk_level"].as_str(), one["trusted"].as_bool()), (Some("high"), Some(true)), "{one}");
    assert!(one["definition_hash"].as_str().unwrap().starts_with("sha256:"));
    let text = fx.human(&["actions"]);
    assert!(text.starts_with("ACTION"), "{text}");
    let missing = fx.json(&["actions", "no_such_action"], 1);
    assert_eq!(missing["error"]["code"], "action_not_found", "{missing}");
}

async fn approvals_list_show_approve_deny(fx: &Fixture) {
    let (mut agent, approve_id) = fx.held_write("cli-approved.txt").await;
    let (_other, deny_id) = fx.held_write("cli-denied.txt").await;
    let list = fx.json(&["approvals", "list"], 0);
    let ids: Vec<&str> =
        list["approvals"].as_array().unwrap().iter().map(|a| a["approval_id"].as_str().unwrap()).collect();
    assert!(ids.contains(&approve_id.as_str()) && ids.contains(&deny_id.as_str()), "{list}");
    let table = fx.human(&["approvals", "list"]);
    assert!(table.starts_with("APPROVAL") && table.contains(&approve_id), "{table}");
    let shown = fx.json(&["approvals", "show", &approve_id], 0);
    assert_eq!(shown["plan"]["params"]["path"], "cli-approved.txt", "{shown}");
    let text = fx.human(&["approvals", "show", &approve_id]);
    assert!(text.contains("cli-approved.txt") && text.contains("plan hash"), "{text}");

    let approved = fx.json(&["approvals", "approve", &approve_id, "--comment", "looks fine"], 0);
    assert_eq!((approved["status"].as_str(), approved["approved_by"].as_str()), (Some("approved"), Some("ops")));
    assert!(fx.home.fs_root.join("cli-approved.txt").exists());
    let (_, poll) = agent.get_authed(&format!("/v1/approvals/{approve_id}/poll")).await.unwrap();
    assert_eq!(poll["status"], "approved", "{poll}");

    let denied = fx.json(&["approvals", "deny", &deny_id, "--reason", "no"], 0);
    assert_eq!(denied["status"], "denied");
    let twice = fx.json(&["approvals", "approve", &deny_id], 1);
    assert_eq!(twice["error"]["code"], "approval_already_decided", "{twice}");
    assert!(twice["error"]["remediation"].as_str().is_some_and(|r| !r.is_empty()), "{twice}");
    let all = fx.json(&["approvals", "list", "--status", "all"], 0);
    assert!(all["count"].as_u64().unwrap() >= 2);
    let bad = fx.json(&["approvals", "show", "../etc"], 1);
    assert_eq!(bad["error"]["code"], "invalid_id", "{bad}");
}

fn audit_verify_and_export(fx: &Fixture) {
    let doc = fx.json(&["audit", "--event-type", "approval_approved"], 0);
    assert!(doc["count"].as_u64().unwrap() >= 1, "{doc}");
    assert!(doc["events"].as_array().unwrap().iter().all(|e| e["event_type"] == "approval_approved"));
    let table = fx.human(&["audit", "--event-type", "approval_denied"]);
    assert!(table.starts_with("SEQ") && table.contains("approval_denied"), "{table}");

    let verified = fx.json(&["verify"], 0);
    assert_eq!(verified["ok"], true, "{verified}");
    assert!(fx.human(&["verify"]).contains("ledger intact"));

    let out = fx.run(&["audit", "--export"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let lines: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("JSONL")).collect();
    let seqs: Vec<u64> = lines.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs[0] == 1 && seqs.windows(2).all(|w| w[1] == w[0] + 1), "export is the chain in order");
    // Everything verified before, plus the operator requests made since.
    assert!(seqs.len() as u64 > verified["report"]["events"].as_u64().unwrap(), "export has the whole chain");

    // Offline mode still reads the file itself.
    let ledger = fx.dir.root.join("state/ledger.db");
    let offline = fx.json(&["audit", "--ledger", ledger.to_str().unwrap(), "--event-type", "approval_approved"], 0);
    assert_eq!(offline["count"], doc["count"]);
}

async fn receipts_get_and_verify(fx: &Fixture) {
    let doc = fx.json(&["audit", "--event-type", "action_executed", "--limit", "1"], 0);
    let receipt_id = doc["events"][0]["payload"]["receipt_id"].as_str().unwrap().to_string();
    let receipt = fx.json(&["receipts", "get", &receipt_id], 0);
    assert_eq!(
        (receipt["receipt_id"].as_str(), receipt["approved_by"].as_str()),
        (Some(receipt_id.as_str()), Some("ops"))
    );
    let verified = fx.json(&["receipts", "verify", &receipt_id], 0);
    assert_eq!(verified["ok"], true, "{verified}");
    let saved = fx.dir.root.join("receipt.json");
    fx.human(&["receipts", "get", &receipt_id, "--out", saved.to_str().unwrap()]);
    let on_disk: Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(on_disk, receipt);
    let missing = fx.json(&["receipts", "get", "no-such-receipt"], 1);
    assert_eq!(missing["error"]["code"], "not_found");
}

fn intents_drain_reload(fx: &Fixture) {
    let intents = fx.json(&["intents"], 0);
    assert_eq!(intents["count"], 0, "{intents}");
    let drained = fx.json(&["drain"], 0);
    assert_eq!(drained["draining"], true);
    assert_eq!(fx.json(&["status"], 0)["draining"], true);
    let resumed = fx.json(&["drain", "--resume"], 0);
    assert_eq!(resumed["draining"], false);
    let reloaded = fx.json(&["reload"], 0);
    assert!(reloaded["manifests"]["actions"].as_u64().unwrap() >= 12, "{reloaded}");
    assert!(reloaded["policy_version"].as_str().is_some());
}

fn policy_through_the_gate(fx: &Fixture) {
    let granted = fx.json(&["policy", "grant", "agent-cli", "http_fetch"], 0);
    assert_eq!(
        (granted["changed"].as_bool(), granted["patterns"].clone()),
        (Some(true), json!(["http_fetch"])),
        "{granted}"
    );
    let shown = fx.json(&["policy", "show", "agent-cli"], 0);
    assert_eq!(shown["acl"]["agent-cli"], json!(["http_fetch"]), "{shown}");
    let data: Value =
        serde_json::from_str(&std::fs::read_to_string(fx.home.policies.join("data.json")).unwrap()).unwrap();
    assert_eq!(data["policy_data"]["acl"]["agent-cli"], json!(["http_fetch"]), "the gate wrote data.json");
    let revoked = fx.json(&["policy", "revoke", "agent-cli", "http_fetch"], 0);
    assert_eq!(revoked["changed"], true);
    let bad = fx.json(&["policy", "grant", "agent-cli", "bad pattern!"], 1);
    assert_eq!(bad["error"]["code"], "bad_request", "{bad}");
    let offline = fx.json(&["policy", "show", "--offline"], 0);
    assert_eq!(offline["acl_revision"], revoked["acl_revision"]);
}

fn egress_learned(fx: &Fixture) {
    let learned = fx.json(&["egress", "learned"], 0);
    assert!(learned["domains"].is_array(), "{learned}");
    let refused = fx.json(&["egress", "allow", "fs.write", "example.org"], 1);
    assert_eq!(refused["error"]["code"], "bad_request", "{refused}");
    let allowed = fx.json(&["egress", "allow", "http_fetch", "api.example.org"], 0);
    assert_eq!(allowed["allowed_domains"], json!(["api.example.org"]), "{allowed}");
    let withdrawn = fx.json(&["egress", "disallow", "http_fetch", "api.example.org"], 0);
    assert_eq!(withdrawn["changed"], true);
}

fn revoke_needs_confirmation(fx: &Fixture) {
    let out = fx.run(&["revoke"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("-y"), "says how to confirm: {}", describe(&out));
    let before = fx.json(&["status"], 0)["revocation_epoch"].as_u64().unwrap();
    let revoked = fx.json(&["revoke", "-y"], 0);
    assert_eq!(revoked["revocation_epoch"].as_u64(), Some(before + 1), "{revoked}");
}

fn config_commands(fx: &Fixture) {
    // Edits go to a copy: the running gate keeps its config.
    let copy = fx.dir.root.join("copy.toml");
    std::fs::copy(fx.config(), &copy).unwrap();
    let valid = latchgate_json(&copy, &["config", "validate"], 0);
    assert_eq!((valid["ok"].as_bool(), valid["operators"].clone()), (Some(true), json!(["ops"])), "{valid}");
    let ttl = latchgate_json(&copy, &["config", "get", "approvals.ttl_seconds"], 0);
    assert_eq!(ttl["value"], 300, "defaults are effective values: {ttl}");
    let redacted = latchgate_json(&copy, &["config", "get", "operator_credentials.ops.api_key"], 0);
    assert_eq!(redacted["value"], "<redacted>");
    latchgate_json(&copy, &["config", "set", "approvals.ttl_seconds", "900"], 0);
    assert_eq!(latchgate_json(&copy, &["config", "get", "approvals.ttl_seconds"], 0)["value"], 900);
    let invalid = latchgate_json(&copy, &["config", "set", "approvals.ttl_seconds", "0"], 1);
    assert_eq!(invalid["error"]["code"], "config_invalid", "{invalid}");
    let unknown = latchgate_json(&copy, &["config", "set", "no_such_key", "1"], 1);
    assert_eq!(unknown["error"]["code"], "config_parse_error", "unknown keys are refused: {unknown}");
    let added = latchgate_json(
        &copy,
        &["config", "add-principal", "--uid", "4242", "--principal", "agent-x", "--scope", "http.fetch"],
        0,
    );
    assert_eq!(added["principal"], "agent-x");
    assert_eq!(
        latchgate_json(&copy, &["config", "get", "identity.peercred.principals.4242.principal"], 0)["value"],
        "agent-x"
    );
    let removed = latchgate_json(&copy, &["config", "remove-operator", "--name", "ops", "--keep-key"], 0);
    assert_eq!(removed["key_file_removed"], false);
    assert_eq!(latchgate_json(&copy, &["config", "validate"], 0)["operators"], json!([]));
    assert!(std::fs::read_to_string(&copy).unwrap().contains("# Operators of this gate; keep this comment."));
}

#[track_caller]
fn latchgate_json(config: &Path, args: &[&str], status: i32) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let out = latchgate(config, &args);
    assert_eq!(out.status.code(), Some(status), "{args:?}: {}", describe(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", describe(&out)))
}

fn errors_name_the_remediation(fx: &Fixture) {
    // A wrong operator key: the gate refuses, the CLI says what to fix.
    let other_key = fx.dir.root.join("other.pem");
    let copy = fx.dir.root.join("other.toml");
    std::fs::copy(fx.config(), &copy).unwrap();
    latchgate_json(
        &copy,
        &["config", "add-operator", "--name", "intruder", "--key-out", other_key.to_str().unwrap()],
        0,
    );
    let mut args = vec!["--operator", "ops", "--operator-key", other_key.to_str().unwrap(), "status", "--json"];
    let out = fx.run(&args);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["code"], "invalid_dpop", "{doc}");
    assert!(doc["error"]["remediation"].as_str().unwrap().contains("operator"), "{doc}");
    args.pop();
    let out = fx.run(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("fix:"), "human errors print the remediation: {stderr}");
    // No gate behind the socket.
    let out = fx.run(&["--socket", "/nonexistent/admin.sock", "status", "--json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["code"], "admin_socket_unreachable", "{doc}");
}
