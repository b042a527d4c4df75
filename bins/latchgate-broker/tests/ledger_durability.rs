//! Durability: a response means the data is on disk; a full or failing disk
//! is reported as `evidence_persistence_failed` and loses nothing that was
//! acknowledged; concurrent commits share fsyncs.

mod ledger_support;

use std::time::{Duration, Instant};

use latchgate_broker::ledger::{Finalization, IntentResolution, IntentState, Ledger, LedgerError, LedgerOptions};
use latchgate_core::error::ErrorCode;
use ledger_support::{bulky_event, execute_once, executed_event, keys_by_kid, new_intent, receipt_key, signed_receipt};

#[tokio::test]
async fn unwritable_ledger_reports_persistence_failure() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let key = receipt_key();
    // A page cap makes the database behave exactly like a full disk (SQLITE_FULL).
    let ledger = Ledger::open_with(&path, LedgerOptions { max_page_count: Some(64), ..Default::default() }).unwrap();
    let intent = ledger.record_intent_and_consume_grant(new_intent(1)).await.unwrap();

    let mut acknowledged = 1;
    let failure = loop {
        match ledger.append_event(bulky_event(acknowledged)).await {
            Ok(_) => acknowledged += 1,
            Err(e) => break e,
        }
        assert!(acknowledged < 10_000, "the page cap never triggered");
    };
    assert!(matches!(failure, LedgerError::Persistence(_)), "{failure:?}");
    assert_eq!(failure.error_code(), ErrorCode::EvidencePersistenceFailed);
    assert_eq!(failure.code(), "ledger_persistence_failed");

    // Finalising after dispatch fails the same way; the intent stays listed.
    let mut event = executed_event(&intent);
    event.payload = serde_json::json!({ "filler": "y".repeat(3000) });
    let finalization = Finalization {
        intent_id: intent.intent_id.clone(),
        receipt: signed_receipt(&intent, &key),
        resolution: IntentResolution::Resolved,
        event,
    };
    let err = ledger.finalize(finalization.clone()).await.unwrap_err();
    assert_eq!(err.error_code(), ErrorCode::EvidencePersistenceFailed);
    let unresolved = ledger.unresolved_intents().await.unwrap();
    assert_eq!(unresolved.len(), 1);
    assert_eq!(unresolved[0].intent_id, intent.intent_id);
    assert!(ledger.get_receipt(finalization.receipt.receipt_id.clone()).await.unwrap().is_none());

    // Everything acknowledged is there and the chain is whole.
    let report = ledger.verify_chain().await.unwrap();
    assert_eq!(report.events, acknowledged as u64);
    ledger.shutdown().await;

    // With room again (the operator freed disk), the pending intent can be closed.
    let ledger = Ledger::open(&path).unwrap();
    assert_eq!(ledger.verify_chain().await.unwrap().events, acknowledged as u64);
    ledger.finalize(finalization).await.unwrap();
    assert!(ledger.unresolved_intents().await.unwrap().is_empty());
    ledger.verify_chain_and_receipts(keys_by_kid(&key)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_finalizes_share_fsyncs_and_are_all_durable() {
    const CALLS: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let key = receipt_key();
    let ledger = Ledger::open(&path).unwrap();
    let mut tasks = Vec::new();
    for n in 0..CALLS {
        let ledger = ledger.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let receipt = execute_once(&ledger, &key, n).await.0;
            // Answered ⇒ committed: a fresh read connection already sees it.
            assert!(ledger.get_receipt(receipt.receipt_id.clone()).await.unwrap().is_some());
            receipt
        }));
    }
    let mut receipts = Vec::new();
    for task in tasks {
        receipts.push(task.await.unwrap());
    }
    let stats = ledger.stats();
    assert_eq!(stats.jobs_committed, 2 * CALLS as u64);
    assert!(stats.batches_committed < stats.jobs_committed, "concurrent commits were not grouped: {stats:?}");
    ledger.shutdown().await;

    let reopened = Ledger::open(&path).unwrap();
    for receipt in &receipts {
        assert_eq!(reopened.get_receipt(receipt.receipt_id.clone()).await.unwrap().as_ref(), Some(receipt));
        let intent =
            reopened.get_intent(format!("intent-{}", &receipt.receipt_id["rcpt-intent-".len()..])).await.unwrap();
        assert_eq!(intent.unwrap().state, IntentState::Resolved);
    }
    let report = reopened.verify_chain_and_receipts(keys_by_kid(&key)).await.unwrap();
    assert_eq!((report.events, report.receipts), (2 * CALLS as u64, CALLS as u64));
}

/// One call at a time leaves the writer thread idle: each commit is then
/// made on the caller's own thread (no hand-off to the writer and back), and
/// is still durable and chained when it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_made_one_at_a_time_are_committed_by_the_caller() {
    const CALLS: usize = 30;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let key = receipt_key();
    let ledger = Ledger::open(&path).unwrap();
    let mut receipts = Vec::new();
    for n in 0..CALLS {
        receipts.push(execute_once(&ledger, &key, n).await.0);
    }
    let stats = ledger.stats();
    assert_eq!(stats.jobs_committed, 2 * CALLS as u64);
    assert_eq!(stats.batches_committed, 2 * CALLS as u64, "{stats:?}");
    assert_eq!(stats.batches_on_caller, stats.batches_committed, "the idle writer thread was woken: {stats:?}");
    // A reused grant is refused on the caller's thread as well, and its
    // savepoint is rolled back alone.
    let again = ledger.record_intent_and_consume_grant(new_intent(0)).await.unwrap_err();
    assert!(matches!(again, LedgerError::GrantConsumed(_)), "{again:?}");
    ledger.shutdown().await;

    let reopened = Ledger::open(&path).unwrap();
    for receipt in &receipts {
        assert_eq!(reopened.get_receipt(receipt.receipt_id.clone()).await.unwrap().as_ref(), Some(receipt));
    }
    let report = reopened.verify_chain_and_receipts(keys_by_kid(&key)).await.unwrap();
    assert_eq!((report.events, report.receipts), (2 * CALLS as u64, CALLS as u64));
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Figures for the closing note: `cargo test -p latchgate-broker --release
/// --test ledger_durability -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run explicitly"]
async fn finalize_throughput_and_latency_figures() {
    let key = receipt_key();
    for concurrency in [1usize, 8, 64] {
        let per_worker = (1600 / concurrency).clamp(25, 400);
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&dir.path().join("ledger.db")).unwrap();
        // Intents first, so that only finalizes are measured.
        let mut prepared = Vec::new();
        for worker in 0..concurrency {
            let mut pending = Vec::new();
            for i in 0..per_worker {
                let ledger = ledger.clone();
                pending.push(tokio::spawn(async move {
                    ledger.record_intent_and_consume_grant(new_intent(worker * 10_000 + i)).await.unwrap()
                }));
            }
            let mut intents = Vec::new();
            for intent in pending {
                intents.push(intent.await.unwrap());
            }
            prepared.push(intents);
        }
        let before = ledger.stats();
        let started = Instant::now();
        let mut tasks = Vec::new();
        for intents in prepared {
            let ledger = ledger.clone();
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                for intent in intents {
                    let finalization = Finalization {
                        intent_id: intent.intent_id.clone(),
                        receipt: signed_receipt(&intent, &key),
                        resolution: IntentResolution::Resolved,
                        event: executed_event(&intent),
                    };
                    let t = Instant::now();
                    ledger.finalize(finalization).await.unwrap();
                    latencies.push(t.elapsed());
                }
                latencies
            }));
        }
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await.unwrap());
        }
        let elapsed = started.elapsed();
        let after = ledger.stats();
        latencies.sort();
        let fsyncs = after.batches_committed - before.batches_committed;
        println!(
            "{{\"concurrency\":{concurrency},\"finalizes\":{},\"finalizes_per_s\":{:.0},\"fsyncs\":{fsyncs},\"finalizes_per_fsync\":{:.1},\"p50_ms\":{:.2},\"p99_ms\":{:.2}}}",
            latencies.len(),
            latencies.len() as f64 / elapsed.as_secs_f64(),
            latencies.len() as f64 / fsyncs.max(1) as f64,
            percentile(&latencies, 0.50).as_secs_f64() * 1e3,
            percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        );
        ledger.shutdown().await;
    }
}

/// The writer no longer checkpoints inside its COMMITs; the checkpointer
/// thread must still move committed pages from the WAL into the database
/// file while the ledger is open (else the WAL grows without bound).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_pages_reach_the_database_file_while_the_ledger_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let ledger = Ledger::open(&path).unwrap();
    let before = std::fs::metadata(&path).unwrap().len();
    for n in 0..400 {
        ledger.append_event(bulky_event(n)).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let size = std::fs::metadata(&path).unwrap().len();
        if size >= before + 1_000_000 {
            break;
        }
        assert!(Instant::now() < deadline, "database file still {size} bytes (from {before}): no checkpoint ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ledger.shutdown().await;
}

/// Under commits that never pause, a PASSIVE checkpoint can never catch up
/// with the writer, and SQLite starts the WAL over only when one did: the
/// WAL must still be reused (not appended to forever, filling the disk and
/// making every fsync extend the file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_is_reused_under_commits_that_never_pause() {
    const WRITERS: usize = 4;
    const EVENTS_PER_WRITER: usize = 3000;
    // Started over every checkpoint interval, the WAL holds a fraction of a
    // second of commits (about 25 MB here); never started over, it held all
    // of them (about 230 MB).
    const WAL_BOUND: u64 = 64 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let wal = dir.path().join("ledger.db-wal");
    let ledger = Ledger::open(&path).unwrap();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let ledger = ledger.clone();
        writers.push(tokio::spawn(async move {
            for n in 0..EVENTS_PER_WRITER {
                ledger.append_event(bulky_event(w * EVENTS_PER_WRITER + n)).await.unwrap();
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert!(
        size < WAL_BOUND,
        "WAL is {size} bytes after {} events: it is never started over",
        WRITERS * EVENTS_PER_WRITER
    );
    assert_eq!(ledger.verify_chain().await.unwrap().events, (WRITERS * EVENTS_PER_WRITER) as u64);
    ledger.shutdown().await;
}
