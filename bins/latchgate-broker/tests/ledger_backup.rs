//! Online backup: a copy taken while the writer keeps committing is a
//! consistent, verifiable ledger on its own, and a failed backup leaves
//! nothing at the destination.

mod ledger_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use latchgate_broker::ledger::LedgerReader;
use latchgate_broker::ledger::backup::backup;
use ledger_support::{bulky_payload_event, execute_once, keys_by_kid, open_fixture};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_taken_during_writes_is_consistent_and_verifies() {
    let fixture = open_fixture();
    // Enough pages (> 1024 per step, 4 KiB each) that the copy takes several steps while writes go on.
    // Submitted concurrently, so they share the writer's group commits.
    let appends: Vec<_> = (0..300)
        .map(|n| {
            let mut event = bulky_payload_event(n);
            event.payload["filler"] = "y".repeat(16 * 1024).into();
            let ledger = fixture.ledger.clone();
            tokio::spawn(async move { ledger.append_event(event).await })
        })
        .collect();
    for appended in appends {
        appended.await.unwrap().unwrap();
    }
    for n in 0..20 {
        execute_once(&fixture.ledger, &fixture.key, n).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (ledger, key, stop, written) = (fixture.ledger.clone(), fixture.key.clone(), stop.clone(), written.clone());
        tokio::spawn(async move {
            let mut n = 1000;
            while !stop.load(Ordering::SeqCst) {
                execute_once(&ledger, &key, n).await;
                written.fetch_add(1, Ordering::SeqCst);
                n += 1;
            }
        })
    };
    let source = fixture.path.clone();
    let destination = fixture.dir.path().join("backup.db");
    let dest = destination.clone();
    let (report, steps) = tokio::task::spawn_blocking(move || {
        let mut steps = Vec::new();
        let report = backup(&source, &dest, &mut |done, total| steps.push((done, total))).unwrap();
        (report, steps)
    })
    .await
    .unwrap();
    let during = written.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();

    assert!(steps.len() > 1, "the copy reports progress step by step: {steps:?}");
    assert!(steps.windows(2).all(|w| w[0].0 <= w[1].0), "progress only goes forward: {steps:?}");
    assert_eq!(steps.last().map(|s| s.0), Some(report.pages));
    assert!(report.events >= 340, "{report:?}");
    assert_eq!(report.head_seq, report.events, "a prefix of the chain, nothing missing: {report:?}");
    let meta = std::fs::metadata(&destination).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(!fixture.dir.path().join("backup.db-wal").exists(), "the copy is one self-contained file");

    // The copy verifies on its own, receipts and all.
    let copy = LedgerReader::open(&destination).unwrap();
    let verified = copy.verify(Some(&keys_by_kid(&fixture.key))).unwrap();
    assert_eq!(verified.head_seq, report.head_seq);
    assert!(verified.receipts >= 20);
    eprintln!("backup: {report:?}, {during} executions committed while it ran");
}

#[test]
fn backup_never_overwrites_and_leaves_nothing_on_failure() {
    let fixture = open_fixture();
    let taken = fixture.dir.path().join("taken.db");
    std::fs::write(&taken, b"operator's file").unwrap();
    let e = backup(&fixture.path, &taken, &mut |_, _| {}).unwrap_err();
    assert_eq!(e.code(), "backup_destination_exists");
    assert_eq!(std::fs::read(&taken).unwrap(), b"operator's file");

    let nowhere = fixture.dir.path().join("no/such/dir/backup.db");
    let e = backup(&fixture.path, &nowhere, &mut |_, _| {}).unwrap_err();
    assert_eq!(e.code(), "backup_destination_unwritable", "{e}");
    let leftovers: Vec<_> = std::fs::read_dir(fixture.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
