//! The ledger's own counters and the levels `/metrics` reads from it: a write
//! that does not become durable is one audit write error (a refusal inside a
//! committed batch is not), and unresolved intents are counted in SQL.

mod ledger_support;

use latchgate_broker::ledger::{Ledger, LedgerError, LedgerOptions};
use ledger_support::{bulky_event, new_intent};

#[tokio::test]
async fn each_write_that_is_not_durable_is_one_audit_write_error() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open_with(
        &dir.path().join("ledger.db"),
        LedgerOptions { max_page_count: Some(64), ..Default::default() },
    )
    .unwrap();
    ledger.record_intent_and_consume_grant(new_intent(1)).await.unwrap();
    assert_eq!(ledger.count_unresolved_intents().await.unwrap(), 1);

    // Refused on its own inside a committed batch: not a write error.
    let refused = ledger.record_intent_and_consume_grant(new_intent(1)).await.unwrap_err();
    assert!(!matches!(refused, LedgerError::Persistence(_)), "{refused:?}");
    let stats = ledger.stats();
    assert_eq!((stats.write_errors, stats.batches_failed), (0, 0), "{stats:?}");

    let mut failures = 0;
    for n in 0..2_000 {
        match ledger.append_event(bulky_event(n)).await {
            Ok(_) if failures == 0 => {}
            Ok(event) => panic!("a write succeeded after the cap was hit: {}", event.seq),
            Err(e) => {
                assert!(matches!(e, LedgerError::Persistence(_)), "{e:?}");
                failures += 1;
                if failures == 3 {
                    break;
                }
            }
        }
    }
    assert_eq!(failures, 3, "the page cap never triggered");
    let stats = ledger.stats();
    assert_eq!(stats.write_errors, 3, "one per failed write: {stats:?}");
    assert!(stats.batches_failed >= 1, "{stats:?}");
    assert_eq!(ledger.count_unresolved_intents().await.unwrap(), 1, "reads still answer");
    assert_eq!(ledger.oldest_pending_approval().await.unwrap(), None, "no approval waits");
}
