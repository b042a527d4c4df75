//! Faults during an execution, with the real processes: the executor killed
//! mid-call, and the evidence ledger not writable after dispatch. Either way
//! the agent gets a clear error, the intent stays unresolved and listed, the
//! debit is not refunded (the side effect may have happened), and later calls
//! work.

use latchgate_broker::ledger::LedgerReader;
use latchgate_broker::state::{SqliteStateStore, StateStore};
use latchgate_client::{DpopKey, GateClient, LeaseBudgets};
use latchgate_tests::{Gate, GateDir, HttpTarget, principal_config, signal, wait_for_status};
use serde_json::json;
use std::time::Duration;

const BASE: &str = "http://localhost:3000";

async fn lease(dir: &GateDir) -> (GateClient, String) {
    let mut client = GateClient::connect(dir.client_socket(), BASE, DpopKey::generate().unwrap()).await.unwrap();
    let budgets = LeaseBudgets { max_calls: Some(10), max_cost_usd_cents: None };
    let lease = client.request_lease(&["http.fetch"], budgets).await.unwrap();
    (client, lease.session_id)
}

fn unresolved(dir: &GateDir) -> usize {
    LedgerReader::open(&dir.root.join("state/ledger.db")).unwrap().unresolved_intents().unwrap().len()
}

async fn used_calls(dir: &GateDir, session: &str) -> u64 {
    let state = SqliteStateStore::open(&dir.root.join("state/state.db")).unwrap();
    state.budget_snapshot(session).await.unwrap().expect("session budget").used_calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_crash_and_unwritable_ledger_leave_visible_unresolved_intents() {
    let target = HttpTarget::start_with_delay(Duration::from_secs(3));
    let dir = GateDir::new();
    let extra = format!("{}\n{}", target.egress_config(), principal_config("agent-dev", &["http.fetch"]));
    dir.write_config("", &extra);
    let gate = Gate::start(&dir);
    let ready = || async {
        if let Err(e) = wait_for_status(&dir.client_socket(), "/readyz", 200, Duration::from_secs(60)).await {
            panic!("{e}\n{}", dir.log("gate"));
        }
    };
    ready().await;
    let slow = json!({"url": format!("http://localhost:{}/slow", target.addr.port())});
    let fast = json!({"url": format!("http://localhost:{}/fast", target.addr.port())});

    // --- the executor dies while the provider waits on the target -------------
    let (mut client, session) = lease(&dir).await;
    let call = tokio::spawn(async move { client.execute("http_fetch", &slow).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let executor = gate.children()["latchgate-executor"];
    signal(executor, nix::sys::signal::Signal::SIGKILL);
    let (status, body) = call.await.unwrap();
    assert_eq!((status.as_u16(), body["error"].as_str()), (502, Some("action_execution_failed")), "{body}");
    assert_eq!(unresolved(&dir), 1, "the crashed call's intent is listed as unresolved");
    assert_eq!(used_calls(&dir, &session).await, 1, "no refund once dispatch started");
    ready().await;
    let (mut client, _) = lease(&dir).await;
    let (status, body) = client.execute("http_fetch", &fast).await.unwrap();
    assert_eq!(status.as_u16(), 200, "the restarted executor serves again: {body}");

    // --- the ledger cannot be written when the receipt is ready ---------------
    let (mut client, session) = lease(&dir).await;
    let slow = json!({"url": format!("http://localhost:{}/slow", target.addr.port())});
    let call = tokio::spawn(async move { client.execute("http_fetch", &slow).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // Another writer holds the database: every write of the broker fails (busy) until released.
    let ledger_path = dir.root.join("state/ledger.db");
    let locker = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(ledger_path).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        std::thread::sleep(Duration::from_secs(9));
        conn.execute_batch("ROLLBACK").unwrap();
    });
    let (status, body) = call.await.unwrap();
    assert_eq!((status.as_u16(), body["error"].as_str()), (500, Some("evidence_persistence_failed")), "{body}");
    locker.join().unwrap();
    assert_eq!(unresolved(&dir), 2, "the unpersisted call stays unresolved");
    assert_eq!(used_calls(&dir, &session).await, 1, "no refund once dispatch started");
    let (mut client, _) = lease(&dir).await;
    let (status, body) = client.execute("http_fetch", &fast).await.unwrap();
    assert_eq!(status.as_u16(), 200, "the ledger recovers once writable: {body}");
    assert_eq!(unresolved(&dir), 2);
}
