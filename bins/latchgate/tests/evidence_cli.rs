//! `latchgate audit`, `latchgate verify` and `latchgate receipt verify` against
//! a ledger written by the broker's own ledger code: the operator sees the
//! events asked for, an intact ledger verifies (exit 0), and any tampered row
//! or receipt is refused (exit 2) naming the first bad event or the reason code.

#[path = "../../latchgate-broker/tests/ledger_support/mod.rs"]
mod ledger_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ed25519_dalek::SigningKey;
use latchgate_broker::ledger::NewAuditEvent;
use latchgate_core::receipt::{Receipt, receipt_public_jwk};
use ledger_support::{execute_once, open_fixture, tamper};
use serde_json::Value;

/// A gate directory: `latchgate.toml` with `state_dir = "."` (so the
/// fixture's `ledger.db` is the gate's ledger) and the receipt-key history in `keys/`.
struct Gate {
    fixture: ledger_support::Fixture,
    config: PathBuf,
    receipts: Vec<Receipt>,
}

impl Gate {
    fn dir(&self) -> &Path {
        self.fixture.dir.path()
    }

    /// `audit` and `verify` read the ledger file here (`--offline`): no gate runs in these tests.
    fn run(&self, args: &[&str]) -> Output {
        let mut args = args.to_vec();
        if matches!(args.first(), Some(&"audit" | &"verify")) {
            args.push("--offline");
        }
        Command::new(env!("CARGO_BIN_EXE_latchgate"))
            .arg("--config")
            .arg(&self.config)
            .args(&args)
            .env_remove("LATCHGATE_CONFIG")
            .env("RUST_LOG", "warn")
            .output()
            .expect("run latchgate")
    }

    /// Runs with `--json`, expects `status`, returns stdout parsed.
    fn json(&self, args: &[&str], status: i32) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        let out = self.run(&args);
        assert_eq!(out.status.code(), Some(status), "{args:?}: {}", describe(&out));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: stdout is not JSON ({e}): {}", describe(&out)))
    }

    fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

fn describe(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn jwks(keys: &[&SigningKey]) -> String {
    let keys: Vec<_> = keys.iter().map(|k| receipt_public_jwk(&k.verifying_key())).collect();
    serde_json::to_string_pretty(&serde_json::json!({ "keys": keys })).unwrap()
}

/// Three rounds of: a policy event (seq 3n+1), then intent (3n+2) and
/// final event with its signed receipt (3n+3), as the execute path writes them.
async fn gate_with_history() -> Gate {
    let fixture = open_fixture();
    let config = fixture.dir.path().join("latchgate.toml");
    std::fs::write(&config, "state_dir = \".\"\n\n[keys]\ndir = \"keys\"\n").unwrap();
    std::fs::create_dir(fixture.dir.path().join("keys")).unwrap();
    std::fs::write(fixture.dir.path().join("keys/receipt-keys.jwks.json"), jwks(&[&fixture.key])).unwrap();
    let mut receipts = Vec::new();
    for n in 0..3 {
        let mut event = NewAuditEvent::new("policy_decision");
        event.decision = Some("allow".into());
        event.principal = Some(format!("agent-{n}"));
        event.payload = serde_json::json!({ "n": n });
        fixture.ledger.append_event(event).await.unwrap();
        receipts.push(execute_once(&fixture.ledger, &fixture.key, n).await.0);
    }
    Gate { fixture, config, receipts }
}

fn events(doc: &Value) -> &Vec<Value> {
    let events = doc["events"].as_array().expect("events array");
    assert_eq!(doc["count"].as_u64(), Some(events.len() as u64));
    events
}

fn field<'a>(events: &'a [Value], name: &str) -> Vec<&'a str> {
    events.iter().map(|e| e[name].as_str().unwrap_or("<null>")).collect()
}

#[tokio::test]
async fn audit_json_lists_every_event_in_chain_order() {
    let gate = gate_with_history().await;
    let doc = gate.json(&["audit"], 0);
    let all = events(&doc);
    assert_eq!(all.len(), 9);
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=9).collect::<Vec<_>>());
    assert!(all.iter().all(|e| e["hash"].as_str().unwrap().starts_with("sha256:")));
}

#[tokio::test]
async fn audit_filters_are_applied() {
    let gate = gate_with_history().await;

    let executed = gate.json(&["audit", "--event-type", "action_executed"], 0);
    assert_eq!(field(events(&executed), "event_type"), ["action_executed"; 3]);

    let trace = gate.json(&["audit", "--trace-id", "trace-1"], 0);
    assert_eq!(field(events(&trace), "event_type"), ["execution_intent_recorded", "action_executed"]);

    let combined = gate.json(&["audit", "--decision", "executed", "--principal", "agent-a", "--limit", "2"], 0);
    assert_eq!(field(events(&combined), "trace_id"), ["trace-0", "trace-1"]);

    let by_principal = gate.json(&["audit", "--principal", "agent-2"], 0);
    assert_eq!(events(&by_principal).len(), 1);
    assert_eq!(events(&by_principal)[0]["seq"], 7);

    let paged = gate.json(&["audit", "--after-seq", "7", "--action-id", "http_fetch"], 0);
    assert_eq!(field(events(&paged), "event_type"), ["execution_intent_recorded", "action_executed"]);

    let nothing = gate.json(&["audit", "--session-id", "no-such-session"], 0);
    assert!(events(&nothing).is_empty());

    let past = gate.json(&["audit", "--before", "2000-01-01T00:00:00Z"], 0);
    assert!(events(&past).is_empty());
    let since_2000 = gate.json(&["audit", "--after", "2000-01-01T00:00:00+02:00"], 0);
    assert_eq!(events(&since_2000).len(), 9);
}

#[tokio::test]
async fn audit_jsonl_and_table_formats() {
    let gate = gate_with_history().await;
    let out = gate.run(&["audit", "--format", "jsonl", "--event-type", "policy_decision"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let lines: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|e| e["decision"] == "allow"));

    let out = gate.run(&["audit", "--decision", "executed"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let table = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 4, "{table}");
    assert!(rows[0].starts_with("SEQ  TIME"), "{table}");
    assert!(!table.contains('\x1b'), "no colour when stdout is not a terminal: {table:?}");
    // Columns are aligned: every row has its DECISION value where the header has it.
    let column = rows[0].find("DECISION").unwrap();
    assert!(rows[1..].iter().all(|r| r[column..].starts_with("executed")), "{table}");
}

#[tokio::test]
async fn audit_refuses_a_bad_timestamp_with_a_usage_error() {
    let gate = gate_with_history().await;
    let out = gate.run(&["audit", "--after", "yesterday"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 3339"), "{}", describe(&out));
}

#[tokio::test]
async fn missing_ledger_is_an_error_with_a_remediation_not_a_verdict() {
    let gate = gate_with_history().await;
    let missing = gate.dir().join("nope.db");
    let out = gate.run(&["audit", "--ledger", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("[ledger_not_found]") && stderr.contains("fix: "), "{stderr}");

    let doc = gate.json(&["verify", "--ledger", missing.to_str().unwrap()], 1);
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["error"]["code"], "ledger_not_found");
    assert!(doc["error"]["remediation"].as_str().unwrap().contains("latchgate up"));
}

#[tokio::test]
async fn intact_ledger_verifies_with_every_receipt_signature() {
    let gate = gate_with_history().await;
    let doc = gate.json(&["verify"], 0);
    assert_eq!(doc["ok"], true);
    let report = &doc["report"];
    assert_eq!((report["events"].as_u64(), report["head_seq"].as_u64()), (Some(9), Some(9)));
    assert_eq!(report["receipts"], 3);
    assert_eq!(report["receipt_signatures_verified"], true);
    assert!(doc.get("first_bad_event").is_none());

    let out = gate.run(&["verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ledger intact"), "{}", describe(&out));
}

fn event_id_at(gate: &Gate, seq: u64) -> String {
    let doc = gate.json(&["audit", "--after-seq", &(seq - 1).to_string(), "--limit", "1"], 0);
    events(&doc)[0]["event_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn tampered_event_payload_is_named_by_verify() {
    let gate = gate_with_history().await;
    let event_id = event_id_at(&gate, 4);
    tamper(&gate.fixture.path, r#"UPDATE audit_events SET payload = '{"n":99}' WHERE seq = 4"#);

    let doc = gate.json(&["verify"], 2);
    assert_eq!(doc["ok"], false);
    let bad = &doc["first_bad_event"];
    assert_eq!(bad["seq"], 4);
    assert_eq!(bad["event_id"], event_id.as_str());
    assert_eq!(bad["detail"]["kind"], "hash_mismatch");
    assert_eq!(bad["reason"], "hash does not match the event content");

    let out = gate.run(&["verify"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("LEDGER BROKEN") && stdout.contains("seq 4") && stdout.contains(&event_id), "{stdout}");
}

#[tokio::test]
async fn deleted_event_row_is_named_by_verify() {
    let gate = gate_with_history().await;
    tamper(&gate.fixture.path, "DELETE FROM audit_events WHERE seq = 5");
    let doc = gate.json(&["verify"], 2);
    let bad = &doc["first_bad_event"];
    assert_eq!(bad["seq"], 5);
    assert_eq!(bad["event_id"], Value::Null, "the row is gone");
    assert_eq!(bad["detail"], serde_json::json!({"kind": "seq_gap", "expected": 5}));
}

#[tokio::test]
async fn changed_receipt_json_is_named_by_verify() {
    let gate = gate_with_history().await;
    // Receipt of round 1 is witnessed by the final event at seq 6.
    let receipt_id = &gate.receipts[1].receipt_id;
    let event_id = event_id_at(&gate, 6);
    tamper(
        &gate.fixture.path,
        &format!(
            "UPDATE receipts SET json = json_set(json, '$.action_id', 'gmail.send') WHERE receipt_id = '{receipt_id}'"
        ),
    );
    let doc = gate.json(&["verify"], 2);
    let bad = &doc["first_bad_event"];
    assert_eq!(bad["seq"], 6);
    assert_eq!(bad["event_id"], event_id.as_str());
    assert_eq!(bad["detail"]["kind"], "receipt_invalid");
    assert_eq!(bad["detail"]["id"], receipt_id.as_str());
}

#[tokio::test]
async fn receipt_signed_by_an_unpublished_key_fails_verify() {
    let gate = gate_with_history().await;
    let stranger = SigningKey::from_bytes(&[7; 32]);
    let only_stranger = gate.write_file("other.jwks.json", &jwks(&[&stranger]));
    let doc = gate.json(&["verify", "--jwks", only_stranger.to_str().unwrap()], 2);
    let bad = &doc["first_bad_event"];
    assert_eq!(bad["seq"], 3, "the first receipt's event");
    assert_eq!(bad["detail"]["kind"], "receipt_unknown_key");

    // With the whole key history (rotated key first) it verifies again.
    let history = gate.write_file("history.jwks.json", &jwks(&[&stranger, &gate.fixture.key]));
    gate.json(&["verify", "--jwks", history.to_str().unwrap()], 0);
}

#[tokio::test]
async fn verify_without_receipt_keys_is_an_error_not_intact() {
    let gate = gate_with_history().await;
    std::fs::remove_file(gate.dir().join("keys/receipt-keys.jwks.json")).unwrap();
    let out = gate.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("[file_not_found]") && stderr.contains("fix: "), "{stderr}");
}

fn receipt_verify(gate: &Gate, receipt: &str, jwks: &Path, status: i32) -> Value {
    let receipt = gate.write_file("receipt.json", receipt);
    gate.json(&["receipt", "verify", receipt.to_str().unwrap(), "--jwks", jwks.to_str().unwrap()], status)
}

#[tokio::test]
async fn receipt_verify_accepts_a_good_receipt_offline() {
    let gate = gate_with_history().await;
    let jwks = gate.dir().join("keys/receipt-keys.jwks.json");
    let receipt = &gate.receipts[0];
    let doc = receipt_verify(&gate, &serde_json::to_string_pretty(receipt).unwrap(), &jwks, 0);
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["receipt_id"], receipt.receipt_id.as_str());
    assert_eq!(doc["signing_key_id"], receipt.signing_key_id.as_str());

    let file = gate.write_file("good.json", &serde_json::to_string(receipt).unwrap());
    let out = gate.run(&["receipt", "verify", file.to_str().unwrap(), "--jwks", jwks.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("valid receipt"), "{}", describe(&out));
}

#[tokio::test]
async fn receipt_verify_refuses_tampered_receipts_with_the_reason_code() {
    let gate = gate_with_history().await;
    let jwks = gate.dir().join("keys/receipt-keys.jwks.json");
    let good = serde_json::to_value(&gate.receipts[0]).unwrap();

    // Content edited, hash left alone.
    let mut edited = good.clone();
    edited["action_id"] = "gmail.send".into();
    let doc = receipt_verify(&gate, &edited.to_string(), &jwks, 2);
    assert_eq!((doc["ok"].as_bool(), doc["code"].as_str()), (Some(false), Some("receipt_result_hash_mismatch")));

    // A field added by a third party is refused, never ignored.
    let mut extended = good.clone();
    extended["note"] = "approved by CFO".into();
    let doc = receipt_verify(&gate, &extended.to_string(), &jwks, 2);
    let code = doc["code"].as_str().unwrap();
    assert!(["receipt_malformed", "receipt_result_hash_mismatch"].contains(&code), "{doc}");

    // Content edited and the hash recomputed: the signature no longer matches.
    let mut resealed = gate.receipts[0].clone();
    resealed.action_id = "gmail.send".into();
    resealed.seal_result_hash().unwrap();
    let doc = receipt_verify(&gate, &serde_json::to_string(&resealed).unwrap(), &jwks, 2);
    assert_eq!(doc["code"], "receipt_bad_signature");

    // Signed by a key the gate never published.
    let stranger = gate.write_file("stranger.jwks.json", &jwks_of_stranger());
    let doc = receipt_verify(&gate, &good.to_string(), &stranger, 2);
    assert_eq!(doc["code"], "receipt_unknown_key");

    // Not a receipt at all.
    let doc = receipt_verify(&gate, "{\"hello\": 1}", &jwks, 2);
    assert_eq!(doc["code"], "receipt_malformed");

    let out = gate.run(&["receipt", "verify", gate.dir().join("receipt.json").to_str().unwrap(), "--jwks"]);
    assert_eq!(out.status.code(), Some(1), "usage errors never look like a verdict: {}", describe(&out));
}

fn jwks_of_stranger() -> String {
    jwks(&[&SigningKey::from_bytes(&[9; 32])])
}

#[tokio::test]
async fn receipt_verify_with_a_malformed_key_set_is_an_error() {
    let gate = gate_with_history().await;
    let bad_jwks = gate.write_file("bad.jwks.json", "{\"keys\": [{\"kty\": \"OKP\"}]}");
    let doc = receipt_verify(&gate, &serde_json::to_string(&gate.receipts[0]).unwrap(), &bad_jwks, 1);
    assert_eq!(doc["error"]["code"], "receipt_jwks_malformed");
}
