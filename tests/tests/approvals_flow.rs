//! Human approvals end to end over the real sockets, one gate for the file:
//! a high-risk call is held (202), an operator approves it over the admin
//! socket, the plan runs once through the normal tail, and the agent's poll
//! shows the receipt, which verifies offline. Also: deny, many parallel
//! approves of one id, learned egress domains and an operator allowing one,
//! the evidence routes, and a manifest changed before approval.

use latchgate_client::{DpopKey, GateClient, LeaseBudgets, OperatorClient};
use latchgate_tests::operator::{BASE, EditableHome, TestOperator};
use latchgate_tests::{Gate, GateDir, HttpTarget, principal_config, wait_for_status};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

struct Fixture {
    dir: GateDir,
    home: EditableHome,
    operator: TestOperator,
    target: HttpTarget,
    _gate: Gate,
}

impl Fixture {
    async fn start() -> Fixture {
        let target = HttpTarget::start();
        let dir = GateDir::new();
        let home = EditableHome::create(&dir);
        let operator = TestOperator::new("alice");
        let extra = format!(
            "{}\n{}\n{}\n[approvals]\nttl_seconds = 120\n\n[operator_limits]\nwrites_per_second = 1000\nreads_per_second = 1000\n",
            target.egress_config(),
            principal_config("agent-dev", &["fs.write", "http.fetch", "http.post"]),
            operator.config(),
        );
        dir.write_config(&home.top_config(), &extra);
        let gate = Gate::start(&dir);
        if let Err(e) = wait_for_status(&dir.client_socket(), "/readyz", 200, Duration::from_secs(90)).await {
            panic!("{e}\n{}", dir.log("gate"));
        }
        Fixture { dir, home, operator, target, _gate: gate }
    }

    async fn agent(&self, scopes: &[&str]) -> GateClient {
        let mut client =
            GateClient::connect(self.dir.client_socket(), BASE, DpopKey::generate().unwrap()).await.unwrap();
        client.request_lease(scopes, LeaseBudgets::default()).await.unwrap();
        client
    }

    async fn operator(&self) -> OperatorClient {
        self.operator.client(&self.dir).await
    }

    /// An fs.write held for approval; returns the agent (same session) and the approval id.
    async fn held_write(&self, file: &str) -> (GateClient, String) {
        let mut agent = self.agent(&["fs.write"]).await;
        let (status, body) =
            agent.execute("fs.write", &json!({"op": "create", "path": file, "content": "approved"})).await.unwrap();
        assert_eq!(status.as_u16(), 202, "{body}\n{}", self.dir.log("gate"));
        assert_eq!(body["decision"], "pending_approval");
        (agent, body["approval_id"].as_str().unwrap().to_string())
    }

    fn ledger(&self) -> latchgate_broker::ledger::LedgerReader {
        latchgate_broker::ledger::LedgerReader::open(&self.dir.root.join("state/ledger.db")).unwrap()
    }

    fn events_of(&self, trace_id: &str, event_type: &str) -> Vec<latchgate_broker::ledger::AuditEvent> {
        let filter = latchgate_broker::ledger::EventFilter {
            trace_id: Some(trace_id.into()),
            event_type: Some(event_type.into()),
            ..Default::default()
        };
        self.ledger().query_events(&filter).unwrap()
    }
}

async fn get(op: &mut OperatorClient, path: &str) -> (u16, Value) {
    let r = op.get(path).await.unwrap();
    (r.status.as_u16(), r.json())
}

async fn post(op: &mut OperatorClient, path: &str, body: Value) -> (u16, Value) {
    let r = op.post(path, &body).await.unwrap();
    (r.status.as_u16(), r.json())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_and_the_operator_plane() {
    let fx = Fixture::start().await;
    approved_plan_runs_once_and_its_receipt_verifies_offline(&fx).await;
    denied_plan_never_runs_and_the_agent_sees_the_reason(&fx).await;
    parallel_approves_of_one_id_run_the_action_exactly_once(&fx).await;
    another_session_cannot_poll_an_approval(&fx).await;
    refused_destinations_are_learned_and_an_operator_can_allow_one(&fx).await;
    evidence_routes_answer_operators(&fx).await;
    manifest_changed_before_approval_fails_without_dispatch(&fx).await;
    revoke_all_kills_held_plans_and_leases(&fx).await;
}

async fn approved_plan_runs_once_and_its_receipt_verifies_offline(fx: &Fixture) {
    let (mut agent, approval_id) = fx.held_write("approved.txt").await;
    assert!(!fx.home.fs_root.join("approved.txt").exists(), "nothing runs before approval");

    let (status, poll) = agent.get_authed(&format!("/v1/approvals/{approval_id}/poll")).await.unwrap();
    assert_eq!((status.as_u16(), poll["status"].as_str()), (200, Some("pending")), "{poll}");
    assert!(poll["retry_after_seconds"].as_u64().is_some(), "{poll}");

    let mut op = fx.operator().await;
    let (status, list) = get(&mut op, "/v1/approvals").await;
    assert_eq!(status, 200, "{list}");
    assert!(list["approvals"].as_array().unwrap().iter().any(|a| a["approval_id"] == approval_id.as_str()), "{list}");
    let (status, shown) = get(&mut op, &format!("/v1/approvals/{approval_id}")).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["status"], "pending");
    assert_eq!(shown["plan"]["params"]["path"], "approved.txt", "the operator sees what would run: {shown}");
    assert!(shown["plan_hash"].as_str().unwrap().starts_with("sha256:"));

    let (status, approved) =
        post(&mut op, &format!("/v1/approvals/{approval_id}/approve"), json!({"comment": "ok"})).await;
    assert_eq!(status, 200, "{approved}\n{}", fx.dir.log("gate"));
    assert_eq!((approved["status"].as_str(), approved["approved_by"].as_str()), (Some("approved"), Some("alice")));
    let receipt_id = approved["receipt_id"].as_str().unwrap().to_string();
    assert_eq!(std::fs::read_to_string(fx.home.fs_root.join("approved.txt")).unwrap(), "approved");

    let (status, poll) = agent.get_authed(&format!("/v1/approvals/{approval_id}/poll")).await.unwrap();
    assert_eq!(status.as_u16(), 200, "{poll}");
    assert_eq!((poll["status"].as_str(), poll["receipt_id"].as_str()), (Some("approved"), Some(receipt_id.as_str())));

    // The agent's receipt verifies offline with the gate's published receipt keys.
    let (status, receipt) = agent.get_authed(&format!("/v1/receipts/{receipt_id}")).await.unwrap();
    assert_eq!(status.as_u16(), 200, "{receipt}");
    let keys = op.get("/v1/receipt-keys").await.unwrap();
    assert_eq!(keys.status.as_u16(), 200);
    let verified =
        latchgate_core::receipt::verify_with_jwks(&receipt.to_string(), &String::from_utf8_lossy(&keys.body)).unwrap();
    assert_eq!(verified.approved_by.as_deref(), Some("alice"));
    assert_eq!(verified.approved_by_jkt.as_deref(), Some(fx.operator.jkt.as_str()), "receipt binds the operator's key");
    let mut forged = receipt.clone();
    forged["approved_by"] = "mallory".into();
    assert!(
        latchgate_core::receipt::verify_with_jwks(&forged.to_string(), &String::from_utf8_lossy(&keys.body)).is_err()
    );

    // A second approve is a terminal answer, not a second run.
    let (status, again) = post(&mut op, &format!("/v1/approvals/{approval_id}/approve"), json!({})).await;
    assert_eq!((status, again["error"].as_str()), (409, Some("approval_already_decided")), "{again}");
    let trace = approved["trace_id"].as_str().unwrap();
    assert_eq!(fx.events_of(trace, "action_executed").len(), 1);
    let approved_events = fx.events_of(trace, "approval_approved");
    assert_eq!(approved_events.len(), 1);
    assert_eq!(approved_events[0].payload["operator_jkt"], fx.operator.jkt.as_str());
}

async fn denied_plan_never_runs_and_the_agent_sees_the_reason(fx: &Fixture) {
    let (mut agent, approval_id) = fx.held_write("denied.txt").await;
    let mut op = fx.operator().await;
    let (status, refused) = post(&mut op, &format!("/v1/approvals/{approval_id}/deny"), json!({})).await;
    assert_eq!((status, refused["error"].as_str()), (400, Some("bad_request")), "a deny needs a reason: {refused}");
    let (status, denied) =
        post(&mut op, &format!("/v1/approvals/{approval_id}/deny"), json!({"reason": "not on a Friday"})).await;
    assert_eq!((status, denied["status"].as_str()), (200, Some("denied")), "{denied}");
    let (_, poll) = agent.get_authed(&format!("/v1/approvals/{approval_id}/poll")).await.unwrap();
    assert_eq!((poll["status"].as_str(), poll["reason"].as_str()), (Some("denied"), Some("not on a Friday")), "{poll}");
    let (status, late) = post(&mut op, &format!("/v1/approvals/{approval_id}/approve"), json!({})).await;
    assert_eq!((status, late["error"].as_str()), (409, Some("approval_already_decided")), "{late}");
    assert!(!fx.home.fs_root.join("denied.txt").exists());
    let (_, shown) = get(&mut op, &format!("/v1/approvals/{approval_id}")).await;
    assert_eq!((shown["status"].as_str(), shown["decided_by"].as_str()), (Some("denied"), Some("alice")));
}

async fn parallel_approves_of_one_id_run_the_action_exactly_once(fx: &Fixture) {
    let (_agent, approval_id) = fx.held_write("raced.txt").await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let mut op = fx.operator().await;
        let path = format!("/v1/approvals/{approval_id}/approve");
        tasks.push(tokio::spawn(async move { post(&mut op, &path, json!({})).await }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            200 => winners.push(body),
            409 => assert_eq!(body["error"], "approval_already_decided", "{body}"),
            other => panic!("unexpected answer {other}: {body}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one approve runs the plan");
    let trace = winners[0]["trace_id"].as_str().unwrap();
    assert_eq!(fx.events_of(trace, "action_executed").len(), 1);
    assert_eq!(fx.events_of(trace, "execution_intent_recorded").len(), 1, "one intent, one grant");
    let receipts: usize = fx
        .ledger()
        .with_connection(|c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM receipts r JOIN execution_intents i ON i.grant_id = r.grant_id WHERE i.trace_id = ?1",
                [trace],
                |r| r.get::<_, i64>(0),
            )? as usize)
        })
        .unwrap();
    assert_eq!(receipts, 1, "the ledger holds exactly one receipt for the plan");
}

async fn another_session_cannot_poll_an_approval(fx: &Fixture) {
    let (_agent, approval_id) = fx.held_write("other-session.txt").await;
    let mut stranger = fx.agent(&["fs.write"]).await;
    let (status, body) = stranger.get_authed(&format!("/v1/approvals/{approval_id}/poll")).await.unwrap();
    assert_eq!((status.as_u16(), body["error"].as_str()), (404, Some("not_found")), "{body}");
    let (status, _) = stranger.get("/v1/approvals/x/poll").await.unwrap();
    assert_eq!(status.as_u16(), 401, "poll needs a lease and a proof");
}

async fn refused_destinations_are_learned_and_an_operator_can_allow_one(fx: &Fixture) {
    let mut agent = fx.agent(&["http.fetch"]).await;
    let url = format!("http://127.0.0.1:{}/x", fx.target.addr.port());
    for _ in 0..2 {
        let (status, body) = agent.execute("http_fetch", &json!({"url": url})).await.unwrap();
        assert_eq!((status.as_u16(), body["deny_reason"].as_str()), (403, Some("egress_not_allowed")), "{body}");
    }
    let mut op = fx.operator().await;
    let (status, learned) = get(&mut op, "/v1/admin/egress/learned").await;
    assert_eq!(status, 200, "{learned}");
    let entry = learned["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["domain"] == "127.0.0.1" && d["action_id"] == "http_fetch")
        .cloned()
        .unwrap_or_else(|| panic!("learned domain missing: {learned}"));
    assert_eq!((entry["count"].as_u64(), entry["allowed"].as_bool()), (Some(2), Some(false)), "{entry}");

    let (status, refused) =
        post(&mut op, "/v1/admin/egress/allow", json!({"action_id": "fs.write", "domain": "127.0.0.1"})).await;
    assert_eq!(status, 400, "an action without egress gets no host: {refused}");
    let (status, allowed) =
        post(&mut op, "/v1/admin/egress/allow", json!({"action_id": "http_fetch", "domain": "127.0.0.1"})).await;
    assert_eq!((status, allowed["changed"].as_bool()), (200, Some(true)), "{allowed}\n{}", fx.dir.log("gate"));

    // 127.0.0.1 is admitted by the test-only private destination list once allowed.
    let hits = fx.target.hits();
    let (status, body) = agent.execute("http_fetch", &json!({"url": url})).await.unwrap();
    assert_eq!(status.as_u16(), 200, "allowed by the operator: {body}\n{}", fx.dir.log("gate"));
    assert_eq!(fx.target.hits(), hits + 1);
    let (_, learned) = get(&mut op, "/v1/admin/egress/learned").await;
    assert!(
        learned["domains"].as_array().unwrap().iter().any(|d| d["domain"] == "127.0.0.1" && d["allowed"] == true),
        "{learned}"
    );
    let (status, _) =
        post(&mut op, "/v1/admin/egress/disallow", json!({"action_id": "http_fetch", "domain": "127.0.0.1"})).await;
    assert_eq!(status, 200);
    let (status, body) = agent.execute("http_fetch", &json!({"url": url})).await.unwrap();
    assert_eq!((status.as_u16(), body["deny_reason"].as_str()), (403, Some("egress_not_allowed")), "{body}");
}

async fn evidence_routes_answer_operators(fx: &Fixture) {
    let mut op = fx.operator().await;
    let (status, events) = get(&mut op, "/v1/audit/events?event_type=approval_approved&limit=50").await;
    assert_eq!(status, 200, "{events}");
    let list = events["events"].as_array().unwrap();
    assert!(!list.is_empty() && list.iter().all(|e| e["event_type"] == "approval_approved"), "{events}");
    let (status, by_operator) = get(&mut op, "/v1/audit/events?principal=operator%3Aalice&limit=5").await;
    assert_eq!(status, 200);
    assert_eq!(by_operator["events"][0]["payload"]["operator"], "alice", "every admin request names its operator");
    let (status, bad) = get(&mut op, "/v1/audit/events?after=yesterday").await;
    assert_eq!((status, bad["error"].as_str()), (400, Some("bad_request")), "{bad}");

    // Enough events that the export spans several pages (128 events each).
    for _ in 0..300 {
        assert_eq!(get(&mut op, "/v1/admin/intents/unresolved").await.0, 200);
    }
    let (status, verified) = get(&mut op, "/v1/audit/verify").await;
    assert_eq!((status, verified["ok"].as_bool()), (200, Some(true)), "{verified}");
    assert!(verified["report"]["approvals"].as_u64().unwrap() >= 3, "{verified}");

    let export = op.get("/v1/audit/export").await.unwrap();
    assert_eq!(export.status.as_u16(), 200);
    let lines: Vec<Value> = String::from_utf8_lossy(&export.body)
        .lines()
        .map(|l| serde_json::from_str(l).expect("every export line is JSON"))
        .collect();
    let seqs: Vec<u64> = lines.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1) && seqs[0] == 1, "export is the whole chain in order");
    // The verified chain, plus this export's own operator_request event.
    assert_eq!(seqs.len() as u64, verified["report"]["events"].as_u64().unwrap() + 1);
    assert!(seqs.len() > 2 * 128, "the export was streamed in several pages");

    let (status, intents) = get(&mut op, "/v1/admin/intents/unresolved").await;
    assert_eq!((status, intents["count"].as_u64()), (200, Some(0)), "{intents}");

    let (status, doc) = get(&mut op, "/v1/admin/status").await;
    assert_eq!(status, 200, "{doc}");
    for role in ["front", "broker", "executor", "signer"] {
        assert_eq!(doc["processes"][role]["up"], true, "{doc}");
        assert!(doc["processes"][role]["confinement"].as_str().unwrap().contains("seccomp"), "{doc}");
        assert!(doc["processes"][role]["degraded_layers"].is_array(), "{doc}");
    }
    assert!(doc["pending_approvals"].as_u64().unwrap() >= 1, "the other-session approval is pending: {doc}");
    assert_eq!(doc["dependencies"]["state_store"]["up"], true, "{doc}");
    assert_eq!(doc["dependencies"]["policy_engine"]["backend"], "embedded_rego", "{doc}");
    assert!(doc["revocation_epoch"].is_u64() && doc["in_flight_executions"].is_u64() && doc["uptime_seconds"].is_u64());
}

async fn manifest_changed_before_approval_fails_without_dispatch(fx: &Fixture) {
    let (mut agent, approval_id) = fx.held_write("changed.txt").await;
    let manifest = fx.home.manifests.join("fs_write.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replace("(fails if it exists).", "(fails if it exists); edited.")).unwrap();
    let mut op = fx.operator().await;
    let (status, reloaded) = post(&mut op, "/v1/admin/reload", json!({})).await;
    assert_eq!(status, 200, "{reloaded}\n{}", fx.dir.log("gate"));
    assert_eq!(reloaded["manifests"]["changed"], json!(["fs.write"]), "{reloaded}");
    assert_eq!(reloaded["manifests"]["untrusted"], json!([]), "same module digest stays trusted: {reloaded}");

    let (status, failed) = post(&mut op, &format!("/v1/approvals/{approval_id}/approve"), json!({})).await;
    assert_eq!((status, failed["error"].as_str()), (409, Some("approval_failed")), "{failed}");
    assert_eq!(failed["deny_reason"], "manifest_changed");
    assert!(!fx.home.fs_root.join("changed.txt").exists(), "nothing was dispatched");
    let (_, poll) = agent.get_authed(&format!("/v1/approvals/{approval_id}/poll")).await.unwrap();
    assert_eq!(
        (poll["status"].as_str(), poll["reason"].as_str()),
        (Some("failed"), Some("manifest_changed")),
        "{poll}"
    );

    // A call under the new manifest is held and approved normally.
    let (_agent, fresh) = fx.held_write("after-change.txt").await;
    let (status, body) = post(&mut op, &format!("/v1/approvals/{fresh}/approve"), json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert!(fx.home.fs_root.join("after-change.txt").exists());
}

async fn revoke_all_kills_held_plans_and_leases(fx: &Fixture) {
    let (mut agent, approval_id) = fx.held_write("revoked.txt").await;
    let mut op = fx.operator().await;
    let (status, revoked) = post(&mut op, "/v1/admin/revoke-all", json!({})).await;
    assert_eq!(status, 200, "{revoked}");
    assert!(revoked["revocation_epoch"].as_u64().unwrap() >= 1);
    let (status, failed) = post(&mut op, &format!("/v1/approvals/{approval_id}/approve"), json!({})).await;
    assert_eq!((status, failed["deny_reason"].as_str()), (409, Some("lease_revoked")), "{failed}");
    assert!(!fx.home.fs_root.join("revoked.txt").exists());
    let (status, body) = agent.get_authed(&format!("/v1/approvals/{approval_id}/poll")).await.unwrap();
    assert_eq!((status.as_u16(), body["deny_reason"].as_str()), (401, Some("lease_revoked")), "{body}");

    let (status, drained) = post(&mut op, "/v1/admin/drain", json!({})).await;
    assert_eq!((status, drained["draining"].as_bool()), (200, Some(true)));
    let mut fresh = fx.agent(&["http.fetch"]).await;
    let url = format!("http://localhost:{}/x", fx.target.addr.port());
    let (status, body) = fresh.execute("http_fetch", &json!({"url": url})).await.unwrap();
    assert_eq!((status.as_u16(), body["error"].as_str()), (503, Some("draining")), "{body}");
    let (status, _) = post(&mut op, "/v1/admin/resume", json!({})).await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = fresh.execute("http_fetch", &json!({"url": url})).await.unwrap();
        if status.as_u16() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "resume did not take effect: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
