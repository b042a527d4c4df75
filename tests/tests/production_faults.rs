//! Fail closed with the production backends and the real processes: a gate
//! on a real `redis-server` and the OPA test server (`latchgate up` with
//! `[redis]` and `[opa]`, so the executor may reach a loopback target, which
//! `latchgate serve` forbids). Whatever happens to Redis or OPA, every
//! execution answers 503 with the dependency's code, nothing is allowed,
//! nothing is dispatched (the target sees no request, the ledger gets no
//! intent), `/readyz` names the dependency, and the gate recovers by itself.

use latchgate_client::{DpopKey, GateClient, LeaseBudgets};
use latchgate_tests::opa_server::OpaServer;
use latchgate_tests::redis_server::{COMMAND_TIMEOUT_MS, RedisServer};
use latchgate_tests::{Gate, GateDir, HttpTarget, get, principal_config, repo_root, wait_for_status};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const BASE: &str = "http://localhost:3000";
const PREFIX: &str = "faults:";

struct Setup {
    dir: GateDir,
    target: HttpTarget,
    params: Value,
}

impl Setup {
    async fn client(&self, max_calls: Option<u64>) -> GateClient {
        let mut client =
            GateClient::connect(self.dir.client_socket(), BASE, DpopKey::generate().unwrap()).await.unwrap();
        let budgets = LeaseBudgets { max_calls, max_cost_usd_cents: None };
        if let Err(e) = client.request_lease(&["http.fetch"], budgets).await {
            panic!("lease refused: {e}\n{}", self.dir.log("gate"));
        }
        client
    }

    fn intents(&self) -> i64 {
        let conn = rusqlite::Connection::open_with_flags(
            self.dir.root.join("state/ledger.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        conn.query_row("SELECT COUNT(*) FROM execution_intents", [], |r| r.get(0)).unwrap()
    }

    async fn readyz(&self) -> (u16, Value) {
        get(&self.dir.client_socket(), "/readyz").await.expect("/readyz answers")
    }

    /// Poll until an execution with `client` succeeds (the gate recovers by itself).
    async fn recovers(&self, client: &mut GateClient, what: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = client.execute("http_fetch", &self.params).await.unwrap();
            if status.as_u16() == 200 {
                return body;
            }
            assert_eq!(status.as_u16(), 503, "{what}: while recovering only 503 is acceptable: {body}");
            assert!(Instant::now() < deadline, "{what}: the gate did not recover: {body}\n{}", self.dir.log("gate"));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Executes `n` times and requires a 503 with one of `codes` each time, with
/// nothing dispatched and no intent written.
async fn refused(setup: &Setup, client: &mut GateClient, n: usize, codes: &[&str], what: &str) {
    let (hits, intents) = (setup.target.hits(), setup.intents());
    for _ in 0..n {
        let (status, body) = client.execute("http_fetch", &setup.params).await.unwrap();
        assert_eq!(status.as_u16(), 503, "{what}: {body}");
        let code = body["error"].as_str().unwrap_or_default();
        assert!(codes.contains(&code), "{what}: answered {code}, wanted one of {codes:?}: {body}");
        assert_eq!(body["retry_after_seconds"], 1, "{what}: {body}");
    }
    assert_eq!(setup.target.hits(), hits, "{what}: a request reached the target");
    assert_eq!(setup.intents(), intents, "{what}: an intent was written");
}

fn used_calls(redis: &RedisServer, session: &str) -> Option<u64> {
    let reply = redis.command(&["HGET", &format!("{PREFIX}budget:{session}"), "used_calls"]);
    reply.lines().nth(1).and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_and_opa_faults_fail_closed_and_the_gate_recovers() {
    let mut redis = RedisServer::start();
    let mut opa = OpaServer::start(&repo_root().join("policies"));
    let target = HttpTarget::start();
    let dir = GateDir::new();
    let extra = format!(
        "{}\n{}\n{}\n{}",
        target.egress_config(),
        principal_config("agent-dev", &["http.fetch"]),
        redis.config(PREFIX),
        opa.config()
    );
    dir.write_config("", &extra);
    let gate = Gate::start(&dir);
    let params = json!({"url": format!("http://localhost:{}/fast", target.addr.port())});
    let setup = Setup { dir, target, params };
    let ready = match wait_for_status(&setup.dir.client_socket(), "/readyz", 200, Duration::from_secs(60)).await {
        Ok(body) => body,
        Err(e) => panic!("{e}\n{}", setup.dir.log("gate")),
    };
    assert_eq!(ready["dependencies"]["state_store"], json!({"backend": "redis", "up": true, "error": null}), "{ready}");
    assert_eq!(ready["dependencies"]["policy_engine"], json!({"backend": "opa", "up": true, "error": null}), "{ready}");
    let broker = gate.children()["latchgate-broker"];

    let mut agent = setup.client(Some(100)).await;
    let (status, body) = agent.execute("http_fetch", &setup.params).await.unwrap();
    assert_eq!(status.as_u16(), 200, "{body}\n{}", setup.dir.log("gate"));
    assert_eq!(setup.target.hits(), 1);
    let session = agent.lease().unwrap().session_id.clone();
    assert_eq!(used_calls(&redis, &session), Some(1), "the budget lives in Redis");

    // --- Redis stopped mid-session -------------------------------------------
    redis.stop();
    refused(&setup, &mut agent, 3, &["replay_cache_unavailable", "budget_store_unavailable"], "redis down").await;
    let (status, body) = setup.readyz().await;
    assert_eq!((status, body["error"].as_str()), (503, Some("not_ready")), "{body}");
    assert_eq!(body["dependencies"]["state_store"]["up"], false, "{body}");
    // Documented: no lease while the state store is down (it carries the epoch and records the budget).
    let mut newcomer =
        GateClient::connect(setup.dir.client_socket(), BASE, DpopKey::generate().unwrap()).await.unwrap();
    let err = newcomer.request_lease(&["http.fetch"], LeaseBudgets::default()).await.unwrap_err();
    assert_eq!(err.api_error_code(), Some("store_unavailable"), "{err}");

    // --- Redis back with its data: the gate recovers by itself ---------------
    redis.restart();
    setup.recovers(&mut agent, "redis restarted").await;
    assert_eq!(used_calls(&redis, &session), Some(2), "refused calls debited nothing; the budget survived");
    wait_for_status(&setup.dir.client_socket(), "/readyz", 200, Duration::from_secs(30)).await.unwrap();

    // --- Redis restarted without persistence: budgets start fresh ------------
    let mut capped = setup.client(Some(1)).await;
    let (status, body) = capped.execute("http_fetch", &setup.params).await.unwrap();
    assert_eq!(status.as_u16(), 200, "{body}");
    let (status, body) = capped.execute("http_fetch", &setup.params).await.unwrap();
    assert_eq!((status.as_u16(), body["error"].as_str()), (403, Some("budget_exhausted")), "{body}");
    redis.restart_empty();
    setup.recovers(&mut capped, "redis restarted empty").await;
    assert_eq!(
        used_calls(&redis, &capped.lease().unwrap().session_id),
        Some(1),
        "a fresh budget from the lease's limits"
    );
    assert_eq!(gate.children()["latchgate-broker"], broker, "the broker did not crash");

    // --- Redis slow: bounded 503s, no pile-up -------------------------------
    let mut agents = Vec::new();
    for _ in 0..12 {
        agents.push(setup.client(Some(100)).await);
    }
    let (hits, intents) = (setup.target.hits(), setup.intents());
    let clients_before = redis.connected_clients();
    let sleeper = redis.sleep_in_background(4.0 * COMMAND_TIMEOUT_MS as f64 / 1000.0);
    let calls: Vec<_> = agents
        .into_iter()
        .map(|mut client| {
            let params = setup.params.clone();
            tokio::spawn(async move {
                let (status, body) = client.execute("http_fetch", &params).await.unwrap();
                (status.as_u16(), body, client)
            })
        })
        .collect();
    let mut agents = Vec::new();
    for call in calls {
        let (status, body, client) = call.await.unwrap();
        assert_eq!((status, body["error"].as_str()), (503, Some("replay_cache_unavailable")), "{body}");
        agents.push(client);
    }
    assert!(!sleeper.is_finished(), "the answers waited for Redis instead of the command timeout");
    assert_eq!((setup.target.hits(), setup.intents()), (hits, intents), "nothing dispatched while Redis was slow");
    sleeper.join().unwrap();
    assert!(redis.connected_clients() <= clients_before + 2, "connections piled up: {}", redis.connected_clients());
    for client in &mut agents {
        setup.recovers(client, "after DEBUG SLEEP").await;
    }

    // --- OPA down, slow, garbage ----------------------------------------------
    for (mode, code) in [
        ("hang", "policy_engine_timeout"),
        ("fail", "policy_engine_unavailable"),
        ("garbage", "policy_engine_invalid_response"),
        ("ill_typed", "policy_engine_invalid_response"),
        ("undefined", "policy_engine_invalid_response"),
        ("widening", "policy_engine_invalid_response"),
    ] {
        opa.set_mode(mode);
        refused(&setup, &mut agent, 2, &[code], &format!("OPA {mode}")).await;
        let (status, body) = setup.readyz().await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["dependencies"]["policy_engine"]["error"], code, "OPA {mode}: {body}");
    }
    opa.set_mode("normal");
    setup.recovers(&mut agent, "OPA normal again").await;
    opa.stop();
    refused(&setup, &mut agent, 2, &["policy_engine_unavailable"], "OPA down").await;
    opa.restart();
    setup.recovers(&mut agent, "OPA back").await;
    let ready = wait_for_status(&setup.dir.client_socket(), "/readyz", 200, Duration::from_secs(30)).await.unwrap();
    assert_eq!(ready["dependencies"]["policy_engine"]["up"], true, "{ready}");
    assert_eq!(gate.children()["latchgate-broker"], broker, "the broker never crashed");
}
