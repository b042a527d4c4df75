//! Tampering with any row of the evidence ledger is detected by verification,
//! which names the first bad event.

mod ledger_support;

use latchgate_broker::ledger::{BreakReason, ChainBreak, LedgerError, LedgerReader, NewAuditEvent};
use ledger_support::{execute_once, keys_by_kid, open_fixture, tamper};

fn expect_break(result: Result<latchgate_broker::ledger::VerifyReport, LedgerError>) -> ChainBreak {
    match result {
        Err(LedgerError::ChainBroken(b)) => b,
        other => panic!("expected a chain break, got {other:?}"),
    }
}

async fn ledger_with_history() -> ledger_support::Fixture {
    let f = open_fixture();
    for n in 0..3 {
        let mut event = NewAuditEvent::new("policy_decision");
        event.decision = Some("allow".into());
        event.payload = serde_json::json!({"n": n});
        f.ledger.append_event(event).await.unwrap();
        execute_once(&f.ledger, &f.key, n).await;
    }
    f
}

#[tokio::test]
async fn untouched_ledger_verifies_with_receipt_signatures() {
    let f = ledger_with_history().await;
    let report = f.ledger.verify_chain_and_receipts(keys_by_kid(&f.key)).await.unwrap();
    // Per execution: intent event + final event; plus one appended event each round.
    assert_eq!(report.events, 9);
    assert_eq!(report.head_seq, 9);
    assert_eq!((report.intents, report.consumed_grants, report.receipts), (3, 3, 3));
    assert!(report.receipt_signatures_verified);
}

#[tokio::test]
async fn tampered_event_payload_is_detected_by_verify() {
    let f = ledger_with_history().await;
    tamper(&f.path, r#"UPDATE audit_events SET payload = '{"n":99}' WHERE seq = 4"#);
    let b = expect_break(f.ledger.verify_chain().await);
    assert_eq!(b, ChainBreak { seq: Some(4), reason: BreakReason::HashMismatch });
}

#[tokio::test]
async fn rehashed_tampered_event_breaks_the_next_link() {
    let f = ledger_with_history().await;
    // The attacker also fixes the row's own hash; the next event still points at the old one.
    let events = f.ledger.query_events(Default::default()).await.unwrap();
    let mut forged = events[3].clone();
    forged.decision = Some("deny".into());
    forged.hash = forged.compute_hash().unwrap();
    tamper(&f.path, &format!("UPDATE audit_events SET decision = 'deny', hash = '{}' WHERE seq = 4", forged.hash));
    let b = expect_break(f.ledger.verify_chain().await);
    assert_eq!(b, ChainBreak { seq: Some(5), reason: BreakReason::PrevHashMismatch });
}

#[tokio::test]
async fn deleted_event_is_detected() {
    let f = ledger_with_history().await;
    tamper(&f.path, "DELETE FROM audit_events WHERE seq = 1");
    let b = expect_break(f.ledger.verify_chain().await);
    assert_eq!(b, ChainBreak { seq: Some(1), reason: BreakReason::SeqGap { expected: 1 } });
}

#[tokio::test]
async fn deleted_tail_event_is_detected() {
    let f = ledger_with_history().await;
    tamper(&f.path, "DELETE FROM audit_events WHERE seq = 9");
    let b = expect_break(f.ledger.verify_chain().await);
    assert_eq!(b.seq, Some(9));
    assert!(matches!(b.reason, BreakReason::TruncatedOrExtended { last_seq: 8, head_seq: 9 }), "{b}");
}

#[tokio::test]
async fn reordered_events_are_detected() {
    let f = ledger_with_history().await;
    // Swap the contents of rows 2 and 3 while keeping seq in place.
    tamper(
        &f.path,
        "UPDATE audit_events SET seq = -2 WHERE seq = 2; UPDATE audit_events SET seq = 2 WHERE seq = 3; \
         UPDATE audit_events SET seq = 3 WHERE seq = -2;",
    );
    let b = expect_break(f.ledger.verify_chain().await);
    assert_eq!(b.seq, Some(2));
}

#[tokio::test]
async fn tampered_receipt_row_is_detected() {
    let f = ledger_with_history().await;
    tamper(
        &f.path,
        "UPDATE receipts SET json = replace(json, '\"status\":200', '\"status\":201') WHERE receipt_id = 'rcpt-intent-1'",
    );
    let b = expect_break(f.ledger.verify_chain().await);
    assert!(matches!(&b.reason, BreakReason::ReceiptInvalid { id, .. } if id == "rcpt-intent-1"), "{b}");
}

#[tokio::test]
async fn deleted_receipt_is_detected() {
    let f = ledger_with_history().await;
    tamper(&f.path, "DELETE FROM receipts WHERE receipt_id = 'rcpt-intent-2'");
    let b = expect_break(f.ledger.verify_chain().await);
    assert!(matches!(&b.reason, BreakReason::RowMissing { table: "receipts", id } if id == "rcpt-intent-2"), "{b}");
}

#[tokio::test]
async fn receipt_signed_by_an_unknown_key_is_detected() {
    let f = ledger_with_history().await;
    let other = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let b = expect_break(f.ledger.verify_chain_and_receipts(keys_by_kid(&other)).await);
    assert!(matches!(b.reason, BreakReason::ReceiptUnknownKey { .. }), "{b}");
}

#[tokio::test]
async fn intent_forged_back_to_pending_is_detected() {
    let f = ledger_with_history().await;
    tamper(&f.path, "UPDATE execution_intents SET state = 'pending', resolved_at = NULL WHERE intent_id = 'intent-0'");
    let b = expect_break(f.ledger.verify_chain().await);
    assert!(
        matches!(&b.reason, BreakReason::RowMismatch { table: "execution_intents", id } if id == "intent-0"),
        "{b}"
    );
}

#[tokio::test]
async fn unconsumed_grant_forgery_is_detected() {
    let f = ledger_with_history().await;
    // Deleting the consumption would let the grant be used again.
    tamper(&f.path, "DELETE FROM consumed_grants WHERE grant_id = 'grant-1'");
    let b = expect_break(f.ledger.verify_chain().await);
    assert!(matches!(&b.reason, BreakReason::RowMissing { table: "consumed_grants", .. }), "{b}");
}

#[tokio::test]
async fn injected_intent_without_witness_is_detected() {
    let f = ledger_with_history().await;
    tamper(
        &f.path,
        "INSERT INTO execution_intents VALUES ('ghost', 'grant-ghost', 't', 'a', 'sha256:00', '2026-01-01T00:00:00.000000Z', 'pending', NULL)",
    );
    let b = expect_break(f.ledger.verify_chain().await);
    assert_eq!(b.seq, None);
    assert!(matches!(&b.reason, BreakReason::Unwitnessed { id, .. } if id == "ghost"), "{b}");
}

#[tokio::test]
async fn offline_reader_verifies_and_exports_after_shutdown() {
    let f = ledger_with_history().await;
    let path = f.path.clone();
    f.ledger.shutdown().await;
    let reader = LedgerReader::open(&path).unwrap();
    let report = reader.verify(Some(&keys_by_kid(&f.key))).unwrap();
    assert_eq!(report.events, 9);
    let mut out = Vec::new();
    assert_eq!(reader.export_jsonl(&mut out).unwrap(), 9);
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 9);
    assert_eq!(lines[8]["hash"], report.head_hash.as_str());
    assert_eq!(lines[1]["prev_hash"], lines[0]["hash"]);
}
