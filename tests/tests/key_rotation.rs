//! `latchgate keys rotate receipt|grant|lease` against a running gate: the
//! signer reloads without a restart, leases and grants issued before a
//! rotation keep working, receipts signed before it still verify (offline and
//! with `latchgate verify` over a ledger spanning the rotations).

use latchgate_client::{DpopKey, GateClient, LeaseBudgets};
use latchgate_tests::cli::{describe, json_of, latchgate};
use latchgate_tests::{Gate, GateDir, HttpTarget, principal_config, wait_for_status};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const BASE: &str = "http://localhost:3000";

async fn client(dir: &GateDir) -> GateClient {
    let mut client = GateClient::connect(dir.client_socket(), BASE, DpopKey::generate().unwrap()).await.unwrap();
    client.request_lease(&["http.fetch"], LeaseBudgets::default()).await.unwrap();
    client
}

fn lease_kid(client: &GateClient) -> String {
    let jwt = &client.lease().unwrap().lease_jwt;
    let header = latchgate_core::jose::b64url_decode(jwt.split('.').next().unwrap()).unwrap();
    serde_json::from_slice::<Value>(&header).unwrap()["kid"].as_str().unwrap().to_string()
}

async fn execute_ok(client: &mut GateClient, url: &str, dir: &GateDir) -> Value {
    let (status, body) = client.execute("http_fetch", &json!({"url": url})).await.unwrap();
    assert_eq!(status.as_u16(), 200, "{body}\n{}", dir.log("gate"));
    body
}

async fn receipt(client: &mut GateClient, body: &Value) -> Value {
    let id = body["receipt_id"].as_str().unwrap();
    let (status, receipt) = client.get_authed(&format!("/v1/receipts/{id}")).await.unwrap();
    assert_eq!(status.as_u16(), 200, "{receipt}");
    receipt
}

fn rotate(dir: &GateDir, kind: &str) -> Value {
    let out = latchgate(&dir.config_path(), &["keys", "rotate", kind, "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    let rotated = json_of(&out);
    assert_ne!(rotated["old_kid"], rotated["new_kid"], "{rotated}");
    rotated
}

/// The signer logs the key ids it reloaded: wait until it has loaded `kid`.
async fn wait_for_reload_of(dir: &GateDir, kid: &Value) {
    let kid = kid.as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.log("gate").lines().any(|l| l.contains("keys reloaded") && l.contains(kid)) {
        assert!(Instant::now() < deadline, "the signer did not reload key {kid}:\n{}", dir.log("gate"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_old_receipts_leases_and_in_flight_grants_valid() {
    let target = HttpTarget::start_with_delay(Duration::from_secs(3));
    let dir = GateDir::new();
    dir.write_config("", &format!("{}\n{}", target.egress_config(), principal_config("agent-dev", &["http.fetch"])));
    let mut gate = Gate::start(&dir);
    if let Err(e) = wait_for_status(&dir.client_socket(), "/readyz", 200, Duration::from_secs(60)).await {
        panic!("{e}\n{}", dir.log("gate"));
    }
    let fast = format!("http://localhost:{}/fast", target.addr.port());
    let slow = format!("http://localhost:{}/slow", target.addr.port());
    let jwks_path = dir.root.join("keys/receipt-keys.jwks.json");

    // Before any rotation.
    let mut old_lease = client(&dir).await;
    let first = execute_ok(&mut old_lease, &fast, &dir).await;
    let first_receipt = receipt(&mut old_lease, &first).await;
    let first_kid = first_receipt["signing_key_id"].as_str().unwrap().to_string();
    let old_lease_kid = lease_kid(&old_lease);

    // --- receipt and grant keys rotated while a call is in flight --------------
    let mut in_flight = client(&dir).await;
    let slow_url = slow.clone();
    let call = tokio::spawn(async move {
        let (status, body) = in_flight.execute("http_fetch", &json!({"url": slow_url})).await.unwrap();
        (in_flight, status, body)
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    let receipt_rotation = rotate(&dir, "receipt");
    assert_eq!(receipt_rotation["old_kid"], first_kid.as_str());
    assert!(receipt_rotation["old_key_verifies_until"].is_null(), "receipt keys are kept forever");
    let grant_rotation = rotate(&dir, "grant");
    assert!(grant_rotation["old_key_verifies_until"].as_i64().is_some(), "{grant_rotation}");
    let (mut in_flight, status, body) = call.await.unwrap();
    assert_eq!(status.as_u16(), 200, "a call whose grant predates the rotation completes: {body}");
    wait_for_reload_of(&dir, &grant_rotation["new_kid"]).await;

    // New grants are signed with the new grant key: the executor learns it from the signer.
    let second = execute_ok(&mut old_lease, &fast, &dir).await;
    let second_receipt = receipt(&mut old_lease, &second).await;
    assert_eq!(second_receipt["signing_key_id"], receipt_rotation["new_kid"], "{second_receipt}");
    assert!(dir.log("gate").contains("grant keys refreshed from the signer"), "{}", dir.log("gate"));
    let in_flight_receipt = receipt(&mut in_flight, &body).await;

    // --- lease key ----------------------------------------------------------------
    let lease_rotation = rotate(&dir, "lease");
    assert_eq!(lease_rotation["old_kid"], old_lease_kid.as_str());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut new_lease = loop {
        let candidate = client(&dir).await;
        if lease_kid(&candidate) == lease_rotation["new_kid"].as_str().unwrap() {
            break candidate;
        }
        assert!(Instant::now() < deadline, "new leases are not signed with the new key:\n{}", dir.log("gate"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    execute_ok(&mut new_lease, &fast, &dir).await;
    // A lease issued before the rotation is still accepted until it expires.
    execute_ok(&mut old_lease, &fast, &dir).await;

    let listed = json_of(&latchgate(&dir.config_path(), &["keys", "list", "--json"]));
    assert_eq!(listed["receipt_history"].as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(listed["retired_lease_keys"][0]["kid"], old_lease_kid.as_str(), "{listed}");

    assert!(gate.terminate(Duration::from_secs(60)).is_some(), "gate did not stop");

    // Offline: the receipt signed before the rotation verifies with the key history.
    for receipt in [&first_receipt, &in_flight_receipt, &second_receipt] {
        let file = dir.root.join("receipt.json");
        std::fs::write(&file, receipt.to_string()).unwrap();
        let out = latchgate(
            &dir.config_path(),
            &["receipt", "verify", file.to_str().unwrap(), "--jwks", jwks_path.to_str().unwrap()],
        );
        assert!(out.status.success(), "{receipt}\n{}", describe(&out));
    }
    // The whole ledger, spanning both receipt keys.
    let out = latchgate(&dir.config_path(), &["verify", "--offline", "--json"]);
    let verdict = json_of(&out);
    assert!(out.status.success() && verdict["ok"] == true, "{}", describe(&out));
    assert!(verdict["report"]["receipts"].as_u64().unwrap() >= 5, "{verdict}");
}
