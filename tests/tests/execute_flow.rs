//! End to end over the real client socket: lease → execute an allowlisted
//! `http_fetch` against a loopback target → receipt fetched and verified
//! offline with the signer's receipt keys.

use latchgate_client::{DpopKey, GateClient, LeaseBudgets};
use latchgate_tests::{Gate, GateDir, HttpTarget, principal_config, wait_for_status};
use serde_json::json;
use std::time::Duration;

const BASE: &str = "http://localhost:3000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_execute_and_verify_receipt_offline() {
    let target = HttpTarget::start();
    let dir = GateDir::new();
    let extra = format!("{}\n{}", target.egress_config(), principal_config("agent-dev", &["http.fetch", "http.post"]));
    dir.write_config("", &extra);
    let _gate = Gate::start(&dir);
    if let Err(e) = wait_for_status(&dir.client_socket(), "/readyz", 200, Duration::from_secs(60)).await {
        panic!("{e}\n{}", dir.log("gate"));
    }

    let mut client = GateClient::connect(dir.client_socket(), BASE, DpopKey::generate().unwrap()).await.unwrap();
    let lease = client.request_lease(&["http.fetch"], LeaseBudgets::default()).await.unwrap();
    assert!(!lease.session_id.is_empty());

    let url = format!("http://localhost:{}/hello", target.addr.port());
    let (status, body) = client.execute("http_fetch", &json!({"url": url})).await.unwrap();
    assert_eq!(status.as_u16(), 200, "{body}\n{}", dir.log("gate"));
    assert_eq!(body["decision"], "executed");
    assert_eq!(target.hits(), 1);
    let receipt_id = body["receipt_id"].as_str().unwrap().to_string();

    let (status, receipt) = client.get_authed(&format!("/v1/receipts/{receipt_id}")).await.unwrap();
    assert_eq!(status.as_u16(), 200, "{receipt}");
    let jwks = std::fs::read_to_string(dir.root.join("keys/receipt-keys.jwks.json")).unwrap();
    let verified = latchgate_core::receipt::verify_with_jwks(&receipt.to_string(), &jwks).unwrap();
    assert_eq!(verified.receipt_id, receipt_id);
    assert_eq!(verified.action_id, "http_fetch");

    let mut tampered = receipt.clone();
    tampered["finished_at"] = json!("2030-01-01T00:00:00Z");
    assert!(latchgate_core::receipt::verify_with_jwks(&tampered.to_string(), &jwks).is_err());
}
