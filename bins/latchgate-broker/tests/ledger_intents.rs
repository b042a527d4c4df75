//! Grants are one-shot, intents are listed until resolved, receipts are
//! durable and retrievable, approval outcomes are written once.

mod ledger_support;

use latchgate_broker::ledger::{
    ApprovalFilter, ApprovalOutcome, EventFilter, Finalization, IntentResolution, IntentState, Ledger, LedgerError,
    NewApproval, NewAuditEvent,
};
use latchgate_core::error::ErrorCode;
use ledger_support::{execute_once, executed_event, keys_by_kid, new_intent, open_fixture, signed_receipt};

#[tokio::test]
async fn reused_grant_is_refused() {
    let f = open_fixture();
    f.ledger.record_intent_and_consume_grant(new_intent(1)).await.unwrap();
    let mut second = new_intent(2);
    second.grant_id = "grant-1".into();
    let err = f.ledger.record_intent_and_consume_grant(second).await.unwrap_err();
    assert!(matches!(&err, LedgerError::GrantConsumed(g) if g == "grant-1"), "{err:?}");
    assert_eq!(err.error_code(), ErrorCode::GrantConsumed);
    assert_eq!(err.code(), "ledger_grant_consumed");
    // The refused intent left nothing behind, and the chain is intact.
    assert!(f.ledger.get_intent("intent-2".into()).await.unwrap().is_none());
    assert_eq!(f.ledger.verify_chain().await.unwrap().events, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_uses_of_one_grant_consume_it_once() {
    let f = open_fixture();
    let mut tasks = Vec::new();
    for n in 0..32 {
        let ledger = f.ledger.clone();
        let mut intent = new_intent(n);
        intent.grant_id = "grant-shared".into();
        tasks.push(tokio::spawn(async move { ledger.record_intent_and_consume_grant(intent).await }));
    }
    let mut consumed = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => consumed += 1,
            Err(LedgerError::GrantConsumed(_)) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(consumed, 1);
    // The refused jobs shared batches with the winner without disturbing the chain.
    assert_eq!(f.ledger.verify_chain().await.unwrap().events, 1);
}

#[tokio::test]
async fn committed_receipt_survives_reopen() {
    let f = open_fixture();
    let (receipt, event) = execute_once(&f.ledger, &f.key, 7).await;
    f.ledger.shutdown().await;
    let reopened = Ledger::open(&f.path).unwrap();
    let stored = reopened.get_receipt(receipt.receipt_id.clone()).await.unwrap().unwrap();
    assert_eq!(stored, receipt);
    stored.verify(&f.key.verifying_key()).unwrap();
    let intent = reopened.get_intent("intent-7".into()).await.unwrap().unwrap();
    assert_eq!(intent.state, IntentState::Resolved);
    // The chain continues from the stored head after reopen.
    let next = reopened.append_event(NewAuditEvent::new("gate_started")).await.unwrap();
    assert_eq!((next.seq, next.prev_hash.as_str()), (event.seq + 1, event.hash.as_str()));
    reopened.verify_chain_and_receipts(keys_by_kid(&f.key)).await.unwrap();
}

#[tokio::test]
async fn pending_intents_are_listed_until_finalized() {
    let f = open_fixture();
    let a = f.ledger.record_intent_and_consume_grant(new_intent(1)).await.unwrap();
    let b = f.ledger.record_intent_and_consume_grant(new_intent(2)).await.unwrap();
    let c = f.ledger.record_intent_and_consume_grant(new_intent(3)).await.unwrap();
    let ids =
        |v: Vec<latchgate_broker::ledger::ExecutionIntent>| v.into_iter().map(|i| i.intent_id).collect::<Vec<_>>();
    assert_eq!(ids(f.ledger.unresolved_intents().await.unwrap()), ["intent-1", "intent-2", "intent-3"]);

    let finalization = Finalization {
        intent_id: b.intent_id.clone(),
        receipt: signed_receipt(&b, &f.key),
        resolution: IntentResolution::Resolved,
        event: executed_event(&b),
    };
    f.ledger.finalize(finalization).await.unwrap();
    f.ledger.fail_intent(c.intent_id.clone(), NewAuditEvent::new("dispatch_failed")).await.unwrap();
    assert_eq!(ids(f.ledger.unresolved_intents().await.unwrap()), [a.intent_id]);
    assert_eq!(f.ledger.get_intent(c.intent_id).await.unwrap().unwrap().state, IntentState::Failed);
    f.ledger.verify_chain().await.unwrap();
}

#[tokio::test]
async fn intent_cannot_be_finalized_twice_or_with_another_grant() {
    let f = open_fixture();
    let a = f.ledger.record_intent_and_consume_grant(new_intent(1)).await.unwrap();
    let b = f.ledger.record_intent_and_consume_grant(new_intent(2)).await.unwrap();
    let wrong_grant = Finalization {
        intent_id: a.intent_id.clone(),
        receipt: signed_receipt(&b, &f.key),
        resolution: IntentResolution::Resolved,
        event: executed_event(&a),
    };
    assert!(matches!(f.ledger.finalize(wrong_grant).await, Err(LedgerError::IntentNotPending(..))));
    let right = Finalization {
        intent_id: a.intent_id.clone(),
        receipt: signed_receipt(&a, &f.key),
        resolution: IntentResolution::Resolved,
        event: executed_event(&a),
    };
    f.ledger.finalize(right.clone()).await.unwrap();
    assert!(matches!(f.ledger.finalize(right).await, Err(LedgerError::IntentNotPending(..))));
    assert!(matches!(
        f.ledger
            .finalize(Finalization {
                intent_id: "nope".into(),
                receipt: signed_receipt(&a, &f.key),
                resolution: IntentResolution::Failed,
                event: executed_event(&a),
            })
            .await,
        Err(LedgerError::IntentNotFound(_))
    ));
    f.ledger.verify_chain().await.unwrap();
}

fn held(approval_id: &str, plan: &str) -> NewApproval {
    NewApproval {
        approval_id: approval_id.into(),
        trace_id: format!("trace-{approval_id}"),
        action_id: "fs.write".into(),
        principal: "agent-a".into(),
        session_id: "session-1".into(),
        request_hash: "sha256:11".into(),
        plan_hash: latchgate_core::jcs::sha256_tagged(plan.as_bytes()),
        plan: plan.into(),
        expires_at: "2099-01-01T00:00:00.000000Z".into(),
    }
}

#[tokio::test]
async fn held_plan_is_stored_once_and_an_edited_plan_breaks_verification() {
    let f = open_fixture();
    let stored =
        f.ledger.record_approval(held("appr-1", r#"{"a":1}"#), NewAuditEvent::new("approval_pending")).await.unwrap();
    assert!(stored.outcome.is_none());
    let again = f.ledger.record_approval(held("appr-1", r#"{"a":1}"#), NewAuditEvent::new("approval_pending")).await;
    assert!(matches!(again, Err(LedgerError::ApprovalExists(_))), "{again:?}");
    let mut lying = held("appr-2", r#"{"a":2}"#);
    lying.plan_hash = "sha256:00".into();
    assert!(f.ledger.record_approval(lying, NewAuditEvent::new("approval_pending")).await.is_err());
    let pending = f.ledger.list_approvals(ApprovalFilter::Pending, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(f.ledger.count_pending_approvals().await.unwrap(), 1);
    let outcome = ApprovalOutcome {
        approval_id: "appr-1".into(),
        outcome: "denied".into(),
        operator: "alice".into(),
        ts: "2026-11-02T10:00:00.000000Z".into(),
        plan_hash: stored.plan_hash.clone(),
        reason: Some("no".into()),
        operator_jkt: Some("jkt".into()),
    };
    f.ledger.record_approval_outcome(outcome.clone(), NewAuditEvent::new("approval_denied")).await.unwrap();
    let record = f.ledger.get_approval("appr-1".into()).await.unwrap().unwrap();
    assert_eq!(record.outcome, Some(outcome));
    assert_eq!(f.ledger.count_pending_approvals().await.unwrap(), 0);
    let report = f.ledger.verify_chain().await.unwrap();
    assert_eq!((report.approvals, report.approval_outcomes), (1, 1));

    ledger_support::tamper(&f.path, r#"UPDATE approvals SET plan = '{"a":9}'"#);
    let err = f.ledger.verify_chain().await.unwrap_err();
    assert!(matches!(err, LedgerError::ChainBroken(ref b) if b.seq == Some(1)), "{err:?}");
}

#[tokio::test]
async fn edited_deny_reason_breaks_verification() {
    let f = open_fixture();
    let stored = f.ledger.record_approval(held("appr-r", "{}"), NewAuditEvent::new("approval_pending")).await.unwrap();
    let outcome = ApprovalOutcome {
        approval_id: "appr-r".into(),
        outcome: "denied".into(),
        operator: "alice".into(),
        ts: "2026-11-02T10:00:00.000000Z".into(),
        plan_hash: stored.plan_hash,
        reason: Some("risky".into()),
        operator_jkt: None,
    };
    f.ledger.record_approval_outcome(outcome, NewAuditEvent::new("approval_denied")).await.unwrap();
    ledger_support::tamper(&f.path, "UPDATE approval_outcomes SET reason = 'fine'");
    let err = f.ledger.verify_chain().await.unwrap_err();
    assert!(matches!(err, LedgerError::ChainBroken(ref b) if b.seq == Some(2)), "{err:?}");
}

#[tokio::test]
async fn approval_outcome_is_recorded_once_and_witnessed() {
    let f = open_fixture();
    let outcome = ApprovalOutcome {
        approval_id: "appr-1".into(),
        outcome: "approved".into(),
        operator: "alice".into(),
        ts: "2026-11-02T10:00:00.000000Z".into(),
        plan_hash: "sha256:ab".into(),
        reason: None,
        operator_jkt: Some("jkt-alice".into()),
    };
    f.ledger.record_approval_outcome(outcome.clone(), NewAuditEvent::new("approval_decided")).await.unwrap();
    let mut again = outcome.clone();
    again.outcome = "denied".into();
    let err = f.ledger.record_approval_outcome(again, NewAuditEvent::new("approval_decided")).await.unwrap_err();
    assert!(matches!(err, LedgerError::ApprovalAlreadyDecided(_)));
    assert_eq!(f.ledger.get_approval_outcome("appr-1".into()).await.unwrap().unwrap(), outcome);
    ledger_support::tamper(&f.path, "UPDATE approval_outcomes SET operator = 'mallory'");
    let err = f.ledger.verify_chain().await.unwrap_err();
    assert!(matches!(err, LedgerError::ChainBroken(ref b) if b.seq == Some(1)), "{err:?}");
}

#[tokio::test]
async fn audit_query_filters_select_matching_events() {
    let f = open_fixture();
    let start = time::OffsetDateTime::now_utc();
    for n in 0..4 {
        execute_once(&f.ledger, &f.key, n).await;
    }
    let mut denied = NewAuditEvent::new("policy_decision");
    denied.decision = Some("deny".into());
    denied.principal = Some("agent-b".into());
    denied.trace_id = Some("trace-x".into());
    f.ledger.append_event(denied).await.unwrap();

    let query = |filter: EventFilter| f.ledger.query_events(filter);
    let by_trace = query(EventFilter { trace_id: Some("trace-2".into()), ..Default::default() }).await.unwrap();
    assert_eq!(by_trace.len(), 2);
    assert!(by_trace.iter().all(|e| e.trace_id.as_deref() == Some("trace-2")));
    let executed =
        query(EventFilter { event_type: Some("action_executed".into()), ..Default::default() }).await.unwrap();
    assert_eq!(executed.len(), 4);
    let deny =
        query(EventFilter { decision: Some("deny".into()), principal: Some("agent-b".into()), ..Default::default() })
            .await
            .unwrap();
    assert_eq!(deny.len(), 1);
    let none =
        query(EventFilter { decision: Some("deny".into()), principal: Some("agent-a".into()), ..Default::default() })
            .await
            .unwrap();
    assert!(none.is_empty());
    let limited = query(EventFilter { limit: Some(3), ..Default::default() }).await.unwrap();
    assert_eq!(limited.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    let page = query(EventFilter { after_seq: Some(7), ..Default::default() }).await.unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [8, 9]);
    let after = query(EventFilter { after: Some(start), ..Default::default() }).await.unwrap();
    assert_eq!(after.len(), 9);
    let before = query(EventFilter { before: Some(start), ..Default::default() }).await.unwrap();
    assert!(before.is_empty());
}
