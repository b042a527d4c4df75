//! SIGTERM without a drain request: the gate refuses new executions with 503
//! `draining`, lets the ones in flight finish within `[shutdown]
//! in_flight_grace_ms` (answered normally, receipt durable), and abandons the
//! rest, whose intents stay unresolved and listed after a restart.

use latchgate_broker::ledger::LedgerReader;
use latchgate_client::{DpopKey, GateClient, LeaseBudgets};
use latchgate_tests::{Gate, GateDir, HttpTarget, principal_config, signal, wait_exit, wait_for_status};
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const BASE: &str = "http://localhost:3000";

fn start(target: &HttpTarget, grace_ms: u64) -> (GateDir, Gate) {
    let dir = GateDir::new();
    let extra = format!(
        "{}\n{}\n[shutdown]\nin_flight_grace_ms = {grace_ms}\n",
        target.egress_config(),
        principal_config("agent-dev", &["http.fetch"])
    );
    dir.write_config("", &extra);
    let gate = Gate::start(&dir);
    (dir, gate)
}

async fn ready(dir: &GateDir) {
    if let Err(e) = wait_for_status(&dir.client_socket(), "/readyz", 200, Duration::from_secs(60)).await {
        panic!("{e}\n{}", dir.log("gate"));
    }
}

async fn client(dir: &GateDir) -> GateClient {
    let mut client = GateClient::connect(dir.client_socket(), BASE, DpopKey::generate().unwrap()).await.unwrap();
    client.request_lease(&["http.fetch"], LeaseBudgets::default()).await.unwrap();
    client
}

/// Start a slow call and return once the target has seen it (the call is in flight).
async fn slow_call(dir: &GateDir, target: &HttpTarget) -> tokio::task::JoinHandle<(u16, Value)> {
    let mut caller = client(dir).await;
    let url = format!("http://localhost:{}/slow", target.addr.port());
    let before = target.hits();
    let call = tokio::spawn(async move {
        let (status, body) = caller.execute("http_fetch", &json!({"url": url})).await.unwrap();
        (status.as_u16(), body)
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while target.hits() == before {
        assert!(Instant::now() < deadline, "the slow call never reached the target:\n{}", dir.log("gate"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    call
}

fn ledger(dir: &GateDir) -> LedgerReader {
    LedgerReader::open(&dir.root.join("state/ledger.db")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_call_within_the_grace_finish_and_refuses_new_ones() {
    let target = HttpTarget::start_with_delay(Duration::from_secs(6));
    let (dir, mut gate) = start(&target, 30_000);
    ready(&dir).await;
    let mut latecomer = client(&dir).await;
    let call = slow_call(&dir, &target).await;

    signal(gate.pid(), Signal::SIGTERM);
    // While the broker drains, a new execution is refused, and never reaches the target.
    let fast = json!({"url": format!("http://localhost:{}/fast", target.addr.port())});
    let deadline = Instant::now() + Duration::from_secs(5);
    let refused = loop {
        let (status, body) = latecomer.execute("http_fetch", &fast).await.unwrap();
        if status.as_u16() == 503 {
            break body;
        }
        assert!(Instant::now() < deadline, "no 503 draining after SIGTERM: {status} {body}\n{}", dir.log("gate"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(refused["error"], "draining", "{refused}");
    let hits_while_draining = target.hits();

    let (status, body) = call.await.unwrap();
    assert_eq!(status, 200, "the call in flight is answered normally: {body}\n{}", dir.log("gate"));
    assert_eq!(body["decision"], "executed");
    let status = wait_exit(&mut gate.supervisor, Duration::from_secs(60)).expect("gate stopped after draining");
    assert!(status.success(), "{status}\n{}", dir.log("gate"));
    assert_eq!(target.hits(), hits_while_draining, "refused calls never ran");

    let receipt_id = body["receipt_id"].as_str().unwrap().to_string();
    let ledger = ledger(&dir);
    assert!(ledger.get_receipt(&receipt_id).unwrap().is_some(), "the receipt is durable");
    assert!(ledger.unresolved_intents().unwrap().is_empty());
    assert!(dir.log("gate").contains("drained: every execution in flight was answered"), "{}", dir.log("gate"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_abandons_a_call_that_outlives_the_grace_and_its_intent_stays_unresolved() {
    let target = HttpTarget::start_with_delay(Duration::from_secs(20));
    let (dir, mut gate) = start(&target, 1_500);
    ready(&dir).await;
    let call = slow_call(&dir, &target).await;
    let sent = Instant::now();
    signal(gate.pid(), Signal::SIGTERM);

    let (status, body) = call.await.unwrap();
    assert_ne!(status, 200, "{body}");
    assert!(status >= 500, "the agent is told the call did not complete: {status} {body}");
    let stopped = wait_exit(&mut gate.supervisor, Duration::from_secs(60)).expect("gate stopped");
    assert!(stopped.success(), "{stopped}\n{}", dir.log("gate"));
    assert!(sent.elapsed() < Duration::from_secs(20), "the gate did not wait for the call to finish");
    assert!(dir.log("gate").contains("grace expired"), "{}", dir.log("gate"));

    let unresolved = ledger(&dir).unresolved_intents().unwrap();
    assert_eq!(unresolved.len(), 1, "{unresolved:?}");
    assert_eq!(unresolved[0].action_id, "http_fetch");

    // After a restart the abandoned intent is still listed for an operator.
    drop(gate);
    let mut gate = Gate::start(&dir);
    ready(&dir).await;
    let again = ledger(&dir).unresolved_intents().unwrap();
    assert_eq!(again.iter().map(|i| &i.intent_id).collect::<Vec<_>>(), [&unresolved[0].intent_id]);
    gate.terminate(Duration::from_secs(60));
}
