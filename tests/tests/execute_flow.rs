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
    let extra = format!(
        "{}\n{}",
        target.egress_config(),
        principal_config("agent-dev", &["http.fetch", "http.post", "fs.write"])
    );
    dir.write_config("", &extra);
    let _gate = Gate::start(&dir);
    let ready = match wait_for_status(&dir.client_socket(), "/readyz", 200, Duration::from_secs(60)).await {
        Ok(body) => body,
        Err(e) => panic!("{e}\n{}", dir.log("gate")),
    };
    for role in ["front", "broker", "executor", "signer"] {
        let process = &ready["processes"][role];
        assert_eq!(process["degraded"], false, "{ready}");
        assert!(process["confinement"].as_str().unwrap().contains("seccomp enforced"), "{ready}");
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

    // High risk (fs.write): held for an operator with 202; nothing runs.
    let mut risky = GateClient::connect(dir.client_socket(), BASE, DpopKey::generate().unwrap()).await.unwrap();
    risky.request_lease(&["fs.write"], LeaseBudgets::default()).await.unwrap();
    let (status, held) =
        risky.execute("fs.write", &json!({"op": "create", "path": "a.txt", "content": "x"})).await.unwrap();
    assert_eq!(status.as_u16(), 202, "{held}");
    assert_eq!(held["decision"], "pending_approval");
    assert!(held["approval_id"].as_str().is_some() && held["request_hash"].as_str().unwrap().starts_with("sha256:"));

    let mut tampered = receipt.clone();
    tampered["finished_at"] = json!("2030-01-01T00:00:00Z");
    assert!(latchgate_core::receipt::verify_with_jwks(&tampered.to_string(), &jwks).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogue_budgets_and_policy_reload() {
    let target = HttpTarget::start();
    let dir = GateDir::new();
    let policies = dir.copy_policies();
    let top = format!("policies_dir = \"{}\"", policies.display());
    // `agent-new` is in no ACL entry of data.json until the test grants it.
    let extra = format!("{}\n{}", target.egress_config(), principal_config("agent-new", &["http.fetch"]));
    dir.write_config(&top, &extra);
    let _gate = Gate::start(&dir);
    if let Err(e) = wait_for_status(&dir.client_socket(), "/readyz", 200, Duration::from_secs(60)).await {
        panic!("{e}\n{}", dir.log("gate"));
    }
    let mut client = GateClient::connect(dir.client_socket(), BASE, DpopKey::generate().unwrap()).await.unwrap();

    let (status, list) = client.get("/v1/actions").await.unwrap();
    assert_eq!(status.as_u16(), 200);
    let ids: Vec<&str> = list.as_array().unwrap().iter().map(|a| a["action_id"].as_str().unwrap()).collect();
    assert!(ids.len() >= 12 && ids.contains(&"http_fetch") && ids.contains(&"gmail.send"), "{list}");
    let (status, detail) = client.get("/v1/actions/http_fetch").await.unwrap();
    assert_eq!(status.as_u16(), 200);
    assert!(detail["egress"]["proxy_allowlist"]["allowed_domains"].is_array(), "{detail}");
    let (status, schema) = client.get("/v1/actions/http_fetch/schema/request").await.unwrap();
    assert_eq!((status.as_u16(), &schema["required"]), (200, &json!(["url"])));
    let (status, missing) = client.get("/v1/actions/no_such_action").await.unwrap();
    assert_eq!((status.as_u16(), missing["error"].as_str()), (404, Some("action_not_found")));

    let budgets = LeaseBudgets { max_calls: Some(1), max_cost_usd_cents: None };
    client.request_lease(&["http.fetch"], budgets).await.unwrap();
    let url = format!("http://localhost:{}/x", target.addr.port());
    let (status, body) = client.execute("http_fetch", &json!({"url": url})).await.unwrap();
    assert_eq!((status.as_u16(), body["deny_reason"].as_str()), (403, Some("principal_not_permitted")), "{body}");

    // Auth before registry: an unknown action with a valid proof is 404, without one 401.
    let (status, body) = client.execute("no_such_action", &json!({})).await.unwrap();
    assert_eq!((status.as_u16(), body["error"].as_str()), (404, Some("action_not_found")), "{body}");
    let response = client
        .http()
        .request(http::Method::POST, "/v1/actions/no_such_action/execute", &[], Some(b"{}".to_vec()))
        .await
        .unwrap();
    assert_eq!(response.status.as_u16(), 401);
    let (status, body) = client.execute("http_fetch", &json!({"url": 7})).await.unwrap();
    assert_eq!((status.as_u16(), body["error"].as_str()), (422, Some("schema_violation")), "{body}");
    let (status, body) = client.execute("http_fetch", &json!({"url": "https://evil.test/"})).await.unwrap();
    assert_eq!((status.as_u16(), body["deny_reason"].as_str()), (403, Some("egress_not_allowed")), "{body}");

    let data = policies.join("data.json");
    latchgate_broker::policy::update_data_file(&data, |d| {
        latchgate_broker::policy::grant(d, "agent-new", "http_fetch")
    })
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (status, body) = client.execute("http_fetch", &json!({"url": url})).await.unwrap();
        if status.as_u16() != 403 || std::time::Instant::now() > deadline {
            assert_eq!(status.as_u16(), 200, "granted after reload: {body}");
            break body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(body["verification"]["outcome"], "verified", "{body}");
    let (status, body) = client.execute("http_fetch", &json!({"url": url})).await.unwrap();
    assert_eq!((status.as_u16(), body["error"].as_str()), (403, Some("budget_exhausted")), "{body}");
    assert_eq!(target.hits(), 1, "refused calls never reach the target");
}
