//! `latchgate ledger backup PATH` while the gate runs and executes: the copy
//! passes `latchgate verify` (chain, rows and every receipt signature).

use latchgate_client::{DpopKey, GateClient, LeaseBudgets};
use latchgate_tests::cli::{describe, json_of, latchgate};
use latchgate_tests::{Gate, GateDir, HttpTarget, principal_config, wait_for_status};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

const BASE: &str = "http://localhost:3000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_taken_during_executions_passes_verify() {
    let target = HttpTarget::start();
    let dir = GateDir::new();
    dir.write_config("", &format!("{}\n{}", target.egress_config(), principal_config("agent-dev", &["http.fetch"])));
    let mut gate = Gate::start(&dir);
    if let Err(e) = wait_for_status(&dir.client_socket(), "/readyz", 200, Duration::from_secs(60)).await {
        panic!("{e}\n{}", dir.log("gate"));
    }
    let url = format!("http://localhost:{}/hello", target.addr.port());
    let mut agent = GateClient::connect(dir.client_socket(), BASE, DpopKey::generate().unwrap()).await.unwrap();
    agent.request_lease(&["http.fetch"], LeaseBudgets::default()).await.unwrap();
    for _ in 0..5 {
        let (status, body) = agent.execute("http_fetch", &json!({"url": url})).await.unwrap();
        assert_eq!(status.as_u16(), 200, "{body}");
    }

    // Executions keep running while the backup is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let executed = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, executed, url) = (stop.clone(), executed.clone(), url.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let (status, body) = agent.execute("http_fetch", &json!({"url": url})).await.unwrap();
                assert_eq!(status.as_u16(), 200, "{body}");
                executed.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    while executed.load(Ordering::SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let backup_path = dir.root.join("backup.db");
    let config = dir.config_path();
    let path = backup_path.clone();
    let out = tokio::task::spawn_blocking(move || {
        latchgate(&config, &["ledger", "backup", path.to_str().unwrap(), "--json"])
    })
    .await
    .unwrap();
    let during = executed.load(Ordering::SeqCst);
    while executed.load(Ordering::SeqCst) < during + 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    load.await.unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let report = json_of(&out)["backup"].clone();
    assert!(report["events"].as_u64().unwrap() >= 5 * 2, "{report}");

    // The copy verifies on its own, with the signer's receipt keys.
    let out = latchgate(&dir.config_path(), &["verify", "--ledger", backup_path.to_str().unwrap(), "--json"]);
    let verdict = json_of(&out);
    assert!(out.status.success() && verdict["ok"] == true, "{}", describe(&out));
    assert_eq!(verdict["report"]["head_seq"], report["head_seq"], "{verdict}");
    assert!(verdict["report"]["receipts"].as_u64().unwrap() >= 5, "{verdict}");
    // The live ledger went on growing past the copy.
    let live = json_of(&latchgate(&dir.config_path(), &["verify", "--offline", "--json"]));
    assert!(live["report"]["head_seq"].as_u64() > report["head_seq"].as_u64(), "{live}\n{report}");
    // A second backup to the same path is refused; the first copy is untouched.
    let again = latchgate(&dir.config_path(), &["ledger", "backup", backup_path.to_str().unwrap(), "--json"]);
    assert_eq!(again.status.code(), Some(1), "{}", describe(&again));
    assert_eq!(json_of(&again)["error"]["code"], "backup_destination_exists");
    gate.terminate(Duration::from_secs(60));
}
