//! Fixtures shared by the ledger tests: a receipt key, intents, signed
//! receipts and a way to edit the database behind the ledger's back.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use latchgate_broker::ledger::{
    AuditEvent, ExecutionIntent, Finalization, IntentResolution, Ledger, NewAuditEvent, NewIntent,
};
use latchgate_core::receipt::{NormalizedResult, Receipt, VerificationOutcome, ed25519_kid, rfc3339};

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub ledger: Ledger,
    pub key: SigningKey,
}

pub fn receipt_key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

pub fn keys_by_kid(key: &SigningKey) -> HashMap<String, VerifyingKey> {
    HashMap::from([(ed25519_kid(&key.verifying_key()), key.verifying_key())])
}

pub fn open_fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let ledger = Ledger::open(&path).unwrap();
    Fixture { dir, path, ledger, key: receipt_key() }
}

pub fn new_intent(n: usize) -> NewIntent {
    NewIntent {
        intent_id: format!("intent-{n}"),
        grant_id: format!("grant-{n}"),
        trace_id: format!("trace-{n}"),
        action_id: "http_fetch".into(),
        request_hash: latchgate_core::jcs::hash(&serde_json::json!({"url": format!("https://example.test/{n}")}))
            .unwrap(),
    }
}

pub fn signed_receipt(intent: &ExecutionIntent, key: &SigningKey) -> Receipt {
    let now = rfc3339(time::OffsetDateTime::now_utc());
    let mut receipt = Receipt {
        receipt_id: format!("rcpt-{}", intent.intent_id),
        grant_id: intent.grant_id.clone(),
        trace_id: intent.trace_id.clone(),
        action_id: intent.action_id.clone(),
        provider_module_digest: format!("sha256:{}", "cd".repeat(32)),
        provider_receipt: serde_json::json!({"status": 200, "io_calls": 1}),
        normalized_result: NormalizedResult { kind: "http_response".into(), details: Default::default() },
        verification_outcome: VerificationOutcome { status: "verified".into(), details: Default::default() },
        result_hash: String::new(),
        receipt_signature: String::new(),
        signing_key_id: ed25519_kid(&key.verifying_key()),
        started_at: now.clone(),
        finished_at: now,
        failure_class: None,
        approved_by: None,
        approved_by_jkt: None,
    };
    receipt.seal_result_hash().unwrap();
    let signature = key.sign(&receipt.signing_payload());
    receipt.attach_signature(&signature);
    receipt
}

pub fn executed_event(intent: &ExecutionIntent) -> NewAuditEvent {
    NewAuditEvent {
        event_type: "action_executed".into(),
        trace_id: Some(intent.trace_id.clone()),
        action_id: Some(intent.action_id.clone()),
        principal: Some("agent-a".into()),
        session_id: Some("session-1".into()),
        decision: Some("executed".into()),
        payload: serde_json::json!({"duration_ms": 3}),
    }
}

/// Intent + receipt + final event, as the execute path writes them.
pub async fn execute_once(ledger: &Ledger, key: &SigningKey, n: usize) -> (Receipt, AuditEvent) {
    let intent = ledger.record_intent_and_consume_grant(new_intent(n)).await.unwrap();
    let receipt = signed_receipt(&intent, key);
    let finalization = Finalization {
        intent_id: intent.intent_id.clone(),
        receipt: receipt.clone(),
        resolution: IntentResolution::Resolved,
        event: executed_event(&intent),
    };
    let event = ledger.finalize(finalization).await.unwrap();
    (receipt, event)
}

/// Edits the database directly, as an attacker with file access would.
pub fn tamper(path: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(sql).unwrap();
}

/// An event with a few KiB of payload (to grow the database quickly).
pub fn bulky_payload_event(n: usize) -> NewAuditEvent {
    let mut event = NewAuditEvent::new("bulk");
    event.payload = serde_json::json!({ "n": n, "filler": "x".repeat(3000) });
    event
}
