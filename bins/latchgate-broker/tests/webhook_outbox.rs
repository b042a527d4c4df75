//! The outbox row of a webhook event is written in the transaction of the
//! audit event it reports: every reportable event committed has its rows,
//! no row exists for an event that was not committed, and the rows survive
//! reopening the ledger.

mod ledger_support;

use latchgate_broker::ledger::outbox::{AttemptOutcome, DeliveryState, OutboxRoutes};
use latchgate_broker::ledger::{Ledger, LedgerOptions, LedgerReader, NewAuditEvent};

fn routes() -> OutboxRoutes {
    OutboxRoutes::new([("ops", vec!["action.executed", "action.denied"]), ("finance", vec!["budget.exhausted"])])
}

fn denied(error: &str) -> NewAuditEvent {
    let mut event = NewAuditEvent::new("action_denied");
    event.payload = serde_json::json!({"error": error});
    event
}

#[tokio::test]
async fn outbox_rows_commit_with_their_event_and_only_for_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let ledger = Ledger::open_with(&path, LedgerOptions { outbox_routes: routes(), ..Default::default() }).unwrap();
    let policy = ledger.append_event(denied("policy_denied")).await.unwrap();
    let budget = ledger.append_event(denied("budget_exhausted")).await.unwrap();
    ledger.append_event(NewAuditEvent::new("execution_intent_recorded")).await.unwrap();
    ledger.append_event(NewAuditEvent::new("approval_pending")).await.unwrap();

    let reader = LedgerReader::open(&path).unwrap();
    let mut rows = reader.outbox(None, 100).unwrap();
    rows.sort_by_key(|r| (r.event_seq, r.webhook.clone()));
    let seen: Vec<(u64, &str, &str)> =
        rows.iter().map(|r| (r.event_seq, r.webhook.as_str(), r.event.as_str())).collect();
    assert_eq!(
        seen,
        [
            (policy.seq, "ops", "action.denied"),
            (budget.seq, "finance", "budget.exhausted"),
            (budget.seq, "ops", "action.denied"),
        ],
        "one row per subscribed webhook event; nobody subscribed to approvals or bookkeeping"
    );
    assert!(rows.iter().all(|r| r.state == DeliveryState::Pending && r.attempts == 0));

    // Delivery state changes; the rows and their events survive a reopen.
    let due = ledger.due_deliveries(10).await.unwrap();
    assert_eq!(due.len(), 3);
    assert_eq!(due[0].event.seq, due[0].row.event_seq, "each due row comes with the event it reports");
    ledger
        .record_delivery_attempt(due[0].row.delivery_id.clone(), AttemptOutcome::Delivered { status: 200 })
        .await
        .unwrap();
    let again =
        ledger.record_delivery_attempt(due[0].row.delivery_id.clone(), AttemptOutcome::Delivered { status: 200 }).await;
    assert!(again.is_err(), "a delivered row is not delivered again");
    ledger.shutdown().await;
    let reopened = Ledger::open_with(&path, LedgerOptions { outbox_routes: routes(), ..Default::default() }).unwrap();
    let counts = reopened.outbox_counts().await.unwrap();
    assert_eq!((counts.pending, counts.delivered, counts.dead), (2, 1, 0));
    // The chain is untouched by the outbox.
    LedgerReader::open(&path).unwrap().verify(None).unwrap();
}

#[tokio::test]
async fn an_event_that_does_not_commit_leaves_no_outbox_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    // A page cap makes writes fail exactly like a full disk.
    let options = LedgerOptions { max_page_count: Some(64), outbox_routes: routes() };
    let ledger = Ledger::open_with(&path, options).unwrap();
    let mut committed = 0u64;
    let mut failed = 0;
    for n in 0..2000 {
        let mut event = denied("policy_denied");
        event.payload["filler"] = "z".repeat(2000).into();
        event.payload["n"] = n.into();
        match ledger.append_event(event).await {
            Ok(_) => committed += 1,
            Err(_) => {
                failed += 1;
                if failed > 3 {
                    break;
                }
            }
        }
    }
    assert!(failed > 0, "the cap never triggered");
    let reader = LedgerReader::open(&path).unwrap();
    let counts = reader.outbox_counts(None).unwrap();
    assert_eq!(counts.pending, committed, "exactly one row per committed event, none for the failed ones");
    let report = reader.verify(None).unwrap();
    assert_eq!(report.events, committed);
}
