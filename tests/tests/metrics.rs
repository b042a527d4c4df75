//! `GET /metrics` end to end, one gate for the file (Redis as its state
//! store): scraped through the `latchgate metrics` CLI (operator-authenticated
//! over the admin socket), the gate is driven down every path a family counts
//! — executed, failed (executor killed mid-call, state store down, evidence
//! not persisted, draining), denied (egress, unknown action, budget), held
//! for approval, a stopped executor and a stopped Redis seen by /readyz, a
//! broken policy reload, an unwritable ledger, webhook deliveries retried and
//! dead, a revocation — and every registered family is shown to have moved.
//! Also: the route exists on the admin plane only and needs an operator.

use latchgate_client::{DpopKey, GateClient, LeaseBudgets};
use latchgate_tests::cli::{describe, json_of, latchgate};
use latchgate_tests::metrics::{Exposition, moved};
use latchgate_tests::operator::{BASE, EditableHome};
use latchgate_tests::redis_server::RedisServer;
use latchgate_tests::webhook_receiver::WebhookReceiver;
use latchgate_tests::{Gate, GateDir, HttpTarget, get, principal_config, signal, wait_for_status};
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

/// Every family `/metrics` serves, with its type (docs/metrics.md lists the same).
const FAMILIES: &[(&str, &str)] = &[
    ("latchgate_action_calls_total", "counter"),
    ("latchgate_action_duration_seconds", "histogram"),
    ("latchgate_audit_write_error_total", "counter"),
    ("latchgate_budget_exhausted_total", "counter"),
    ("latchgate_dependency_errors_total", "counter"),
    ("latchgate_draining", "gauge"),
    ("latchgate_in_flight_executions", "gauge"),
    ("latchgate_ledger_batches_committed_total", "counter"),
    ("latchgate_ledger_batches_failed_total", "counter"),
    ("latchgate_ledger_commits_total", "counter"),
    ("latchgate_oldest_pending_approval_seconds", "gauge"),
    ("latchgate_pending_approvals", "gauge"),
    ("latchgate_process_up", "gauge"),
    ("latchgate_revocation_epoch", "gauge"),
    ("latchgate_unresolved_intents", "gauge"),
    ("latchgate_uptime_seconds", "gauge"),
    ("latchgate_webhook_outbox_dead", "gauge"),
    ("latchgate_webhook_outbox_pending", "gauge"),
    ("readyz_degraded_total", "counter"),
];

struct Fixture {
    dir: GateDir,
    home: EditableHome,
    target: HttpTarget,
    _receiver: WebhookReceiver,
    /// The state store (as in production): stopped and restarted by the test.
    redis: std::sync::Mutex<RedisServer>,
    gate: Gate,
}

async fn start() -> Fixture {
    let (target, receiver, dir) =
        (HttpTarget::start_with_delay(Duration::from_secs(4)), WebhookReceiver::start(), GateDir::new());
    let home = EditableHome::create(&dir);
    let redis = RedisServer::start();
    // One receiver keeps failing (its deliveries stay pending, retried much
    // later), the other refuses for good (dead letters).
    receiver.script("/retry", &[], 503);
    receiver.script("/gone", &[], 410);
    let webhooks = format!(
        "[[webhooks]]\nname = \"retrying\"\nurl = \"{}\"\nsecret = \"s-retrying\"\nevents = [\"action.executed\"]\n\
         backoff_ms = [600000]\nmax_retries = 5\n\n\
         [[webhooks]]\nname = \"gone\"\nurl = \"{}\"\nsecret = \"s-gone\"\nevents = [\"action.executed\"]\n",
        receiver.url("/retry"),
        receiver.url("/gone"),
    );
    let extra = format!(
        "{}\n{}\n{}\n{}\n{webhooks}\n[operator_limits]\nwrites_per_second = 1000\nreads_per_second = 1000\n",
        target.egress_config(),
        principal_config("agent-dev", &["http.fetch", "fs.write"]),
        receiver.delivery_config(),
        redis.config("metrics:"),
    );
    dir.write_config(&home.top_config(), &extra);
    let created = latchgate(&dir.config_path(), &["config", "add-operator", "--name", "ops", "--json"]);
    assert!(created.status.success(), "{}", describe(&created));
    let gate = Gate::start(&dir);
    ready(&dir).await;
    Fixture { dir, home, target, _receiver: receiver, redis: std::sync::Mutex::new(redis), gate }
}

async fn ready(dir: &GateDir) {
    if let Err(e) = wait_for_status(&dir.client_socket(), "/readyz", 200, DEADLINE).await {
        panic!("{e}\n{}", dir.log("gate"));
    }
}

impl Fixture {
    /// `latchgate metrics`: the exposition text, parsed.
    fn scrape(&self) -> Exposition {
        scrape(&self.dir.config_path())
    }

    /// Scrape until `until` holds for a scrape (which is returned).
    fn scrape_until(&self, what: &str, until: impl Fn(&Exposition) -> bool) -> Exposition {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let scrape = self.scrape();
            if until(&scrape) {
                return scrape;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not seen within {DEADLINE:?}\n{scrape:#?}\n{}",
                self.dir.log("gate")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    async fn agent(&self, scopes: &[&str], max_calls: Option<u64>) -> GateClient {
        let mut client =
            GateClient::connect(self.dir.client_socket(), BASE, DpopKey::generate().unwrap()).await.unwrap();
        let budgets = LeaseBudgets { max_calls, max_cost_usd_cents: None };
        client.request_lease(scopes, budgets).await.unwrap();
        client
    }

    fn url(&self, path: &str) -> Value {
        json!({"url": format!("http://localhost:{}{path}", self.target.addr.port())})
    }

    #[track_caller]
    fn cli_json(&self, args: &[&str], status: i32) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        let out = latchgate(&self.dir.config_path(), &args);
        assert_eq!(out.status.code(), Some(status), "{args:?}: {}", describe(&out));
        json_of(&out)
    }
}

fn scrape(config: &Path) -> Exposition {
    let out = latchgate(config, &["metrics"]);
    assert!(out.status.success(), "latchgate metrics: {}", describe(&out));
    Exposition::parse(&String::from_utf8(out.stdout).expect("UTF-8 exposition"))
}

fn value(scrape: &Exposition, family: &str, labels: &[(&str, &str)]) -> f64 {
    scrape.value(family, labels).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_on_the_admin_plane() {
    let fx = start().await;
    metrics_are_refused_on_the_client_socket_and_without_operator_auth(&fx).await;
    every_registered_metric_moves_when_the_gate_is_driven_down_each_path(&fx).await;
}

async fn metrics_are_refused_on_the_client_socket_and_without_operator_auth(fx: &Fixture) {
    let (status, body) = get(&fx.dir.client_socket(), "/metrics").await.expect("client socket answers");
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")), "agents never see metrics: {body}");
    let (status, body) = get(&fx.dir.admin_socket(), "/metrics").await.expect("admin socket answers");
    assert_eq!(status, 401, "no operator credentials: {body}");
    assert!(body["error"].as_str().is_some_and(|c| !c.is_empty()), "{body}");

    // The right key with a wrong api key is refused by the gate, and the CLI says so.
    let out = latchgate(&fx.dir.config_path(), &["metrics", "--json", "--api-key", "lgop_not_the_key"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let refused = json_of(&out);
    assert!(refused["error"]["code"].as_str().is_some_and(|c| c.contains("operator")), "{refused}");
}

async fn every_registered_metric_moves_when_the_gate_is_driven_down_each_path(fx: &Fixture) {
    let first = fx.scrape();
    for name in first.families.keys() {
        assert!(
            FAMILIES.iter().any(|(f, _)| f == name),
            "unlisted family {name}: add it to FAMILIES and docs/metrics.md"
        );
    }
    let mut scrapes = Vec::new();

    // Executed, denied by egress, an unknown action, then a budget spent.
    let mut agent = fx.agent(&["http.fetch"], Some(2)).await;
    let (status, body) = agent.execute("http_fetch", &fx.url("/fast")).await.unwrap();
    assert_eq!(status.as_u16(), 200, "{body}");
    let (status, body) = agent.execute("http_fetch", &json!({"url": "https://evil.test/"})).await.unwrap();
    assert_eq!(status.as_u16(), 403, "{body}");
    let (status, body) = agent.execute("no_such_action", &json!({})).await.unwrap();
    assert_eq!(status.as_u16(), 404, "{body}");
    let (status, body) = agent.execute("http_fetch", &fx.url("/fast")).await.unwrap();
    assert_eq!(status.as_u16(), 200, "{body}");
    let (status, body) = agent.execute("http_fetch", &fx.url("/fast")).await.unwrap();
    assert_eq!((status.as_u16(), body["error"].as_str()), (403, Some("budget_exhausted")), "{body}");

    // Held for an operator.
    let mut writer = fx.agent(&["fs.write"], None).await;
    let (status, body) =
        writer.execute("fs.write", &json!({"op": "create", "path": "held.txt", "content": "x"})).await.unwrap();
    assert_eq!(status.as_u16(), 202, "{body}");
    scrapes.push(fx.scrape_until("a pending approval with an age", |s| {
        value(s, "latchgate_pending_approvals", &[]) >= 1.0
            && value(s, "latchgate_oldest_pending_approval_seconds", &[]) > 0.0
    }));

    // In flight, then failed: the executor is killed mid-call (an unresolved intent stays).
    let mut slow = fx.agent(&["http.fetch"], None).await;
    let slow_url = fx.url("/slow");
    let hits_before = fx.target.hits();
    let call = tokio::spawn(async move { slow.execute("http_fetch", &slow_url).await.unwrap() });
    let config = fx.dir.config_path();
    let in_flight = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let s = scrape(&config);
            if value(&s, "latchgate_in_flight_executions", &[]) >= 1.0 || Instant::now() > deadline {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    assert_eq!(value(&in_flight, "latchgate_in_flight_executions", &[]), 1.0, "the slow call is in flight");
    scrapes.push(in_flight);
    // Killed while the provider waits on the target (which answers /slow late).
    let deadline = Instant::now() + DEADLINE;
    while fx.target.hits() == hits_before {
        assert!(Instant::now() < deadline, "the slow call never reached the target\n{}", fx.dir.log("gate"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(fx.gate.children()["latchgate-executor"], Signal::SIGKILL);
    let (status, body) = call.await.unwrap();
    assert_eq!((status.as_u16(), body["error"].as_str()), (502, Some("action_execution_failed")), "{body}");
    ready(&fx.dir).await;

    // A stopped executor: /readyz sees it down, so does the scrape.
    let executor = fx.gate.children()["latchgate-executor"];
    signal(executor, Signal::SIGSTOP);
    let stopped = wait_for_status(&fx.dir.client_socket(), "/readyz", 503, DEADLINE).await;
    let down = fx.scrape();
    signal(executor, Signal::SIGCONT);
    let readyz = stopped.unwrap_or_else(|e| panic!("{e}"));
    assert!(readyz.to_string().contains("executor"), "{readyz}");
    assert_eq!(down.value("latchgate_process_up", &[("role", "executor")]), Some(0.0), "{down:#?}");
    assert_eq!(down.value("latchgate_process_up", &[("role", "front")]), Some(1.0));
    scrapes.push(down);
    ready(&fx.dir).await;

    // The state store down: /readyz names it and calls fail with its code
    // (no scrape meanwhile: operator proofs are recorded in the state store).
    let mut during_outage = fx.agent(&["http.fetch"], None).await;
    fx.redis.lock().unwrap().stop();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (status, body) = get(&fx.dir.client_socket(), "/readyz").await.expect("/readyz answers");
        if status == 503 && body["dependencies"]["state_store"]["up"] == false {
            break;
        }
        assert!(Instant::now() < deadline, "/readyz never saw the state store down: {status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = during_outage.execute("http_fetch", &fx.url("/fast")).await.unwrap();
    assert_eq!(status.as_u16(), 503, "{body}");
    assert!(body["error"].as_str().is_some_and(|c| c.ends_with("_unavailable")), "{body}");
    fx.redis.lock().unwrap().restart();
    ready(&fx.dir).await;

    // A policy engine error: data.json broken, reloaded (refused), restored.
    let data = fx.home.policies.join("data.json");
    let good = std::fs::read_to_string(&data).unwrap();
    std::fs::write(&data, "{ not json").unwrap();
    let refused = fx.cli_json(&["reload"], 1);
    assert!(refused["error"]["code"].as_str().is_some(), "{refused}");
    std::fs::write(&data, good).unwrap();
    fx.cli_json(&["reload"], 0);

    // Evidence that cannot be written: another writer holds the ledger past
    // the broker's busy timeout, and a refusal's audit event is not durable.
    let mut locked_out = fx.agent(&["http.fetch"], None).await;
    let ledger = fx.dir.root.join("state/ledger.db");
    let (locked_tx, locked) = std::sync::mpsc::channel();
    let locker = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(ledger).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        locked_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(8));
        conn.execute_batch("ROLLBACK").unwrap();
    });
    locked.recv().unwrap();
    let (status, body) = locked_out.execute("http_fetch", &json!({"url": "https://evil.test/"})).await.unwrap();
    assert_eq!((status.as_u16(), body["error"].as_str()), (500, Some("evidence_persistence_failed")), "{body}");
    locker.join().unwrap();

    // Webhook deliveries of the executed calls: retried (pending) and dead.
    scrapes.push(fx.scrape_until("an outbox with pending and dead deliveries", |s| {
        value(s, "latchgate_webhook_outbox_pending", &[]) >= 1.0
            && value(s, "latchgate_webhook_outbox_dead", &[]) >= 1.0
    }));

    // Draining: the gauge is up and a new call fails with 503 until resumed.
    assert_eq!(fx.cli_json(&["drain"], 0)["draining"], true);
    scrapes.push(fx.scrape());
    let (status, body) = locked_out.execute("http_fetch", &fx.url("/fast")).await.unwrap();
    assert_eq!((status.as_u16(), body["error"].as_str()), (503, Some("draining")), "{body}");
    assert_eq!(fx.cli_json(&["drain", "--resume"], 0)["draining"], false);

    // The kill switch moves the epoch.
    fx.cli_json(&["revoke", "-y"], 0);

    let last = fx.scrape();
    scrapes.push(last.clone());
    let expected: Vec<&str> = FAMILIES.iter().map(|(name, _)| *name).collect();
    assert_eq!(last.families.keys().map(String::as_str).collect::<Vec<_>>(), expected, "families served");
    for (name, kind) in FAMILIES {
        let family = &last.families[*name];
        assert_eq!(family.kind, *kind, "{name}");
        assert!(!family.help.is_empty(), "{name} has a # HELP");
    }
    assert_eq!(moved(&first, &scrapes), expected, "every family moved\nfirst: {first:#?}\nlast: {last:#?}");

    // What moved is what happened.
    let calls = |s: &Exposition, action: &str, decision: &str| {
        value(s, "latchgate_action_calls_total", &[("action", action), ("decision", decision)])
    };
    let grew = |action: &str, decision: &str| calls(&last, action, decision) - calls(&first, action, decision);
    assert_eq!(grew("http_fetch", "executed"), 2.0);
    assert_eq!(grew("http_fetch", "denied"), 2.0, "egress + budget");
    assert_eq!(grew("_unknown", "denied"), 1.0, "an unknown action id is one bounded label");
    assert_eq!(grew("fs.write", "pending_approval"), 1.0);
    assert_eq!(
        grew("http_fetch", "failed"),
        4.0,
        "executor lost + state store down + evidence not persisted + draining"
    );
    let mut actions = last.label_values("latchgate_action_calls_total", "action");
    actions.retain(|a| a != "_unknown");
    let registered = fx.cli_json(&["actions"], 0);
    for action in &actions {
        assert!(
            registered["actions"].as_array().unwrap().iter().any(|a| a["action_id"] == action.as_str()),
            "action label {action} is a registry id"
        );
    }
    let timed = |s: &Exposition| {
        s.value_with("latchgate_action_duration_seconds", "_count", &[("action", "http_fetch")]).unwrap_or(0.0)
    };
    assert_eq!(timed(&last) - timed(&first), 6.0, "executed and failed calls are timed, refusals are not");
    let grew_by = |family: &str, labels: &[(&str, &str)]| value(&last, family, labels) - value(&first, family, labels);
    assert_eq!(grew_by("latchgate_budget_exhausted_total", &[]), 1.0);
    assert!(grew_by("readyz_degraded_total", &[("reason", "executor_down")]) >= 1.0, "{last:#?}");
    assert!(grew_by("readyz_degraded_total", &[("reason", "state_store")]) >= 1.0, "{last:#?}");
    assert!(grew_by("latchgate_audit_write_error_total", &[]) >= 1.0);
    assert!(grew_by("latchgate_ledger_batches_failed_total", &[]) >= 1.0);
    assert!(grew_by("latchgate_unresolved_intents", &[]) >= 1.0, "the killed call's intent");
    assert_eq!(grew_by("latchgate_revocation_epoch", &[]), 1.0);
    let dependencies = last.label_values("latchgate_dependency_errors_total", "dependency");
    assert_eq!(dependencies, ["executor", "policy_engine", "state_store"], "{last:#?}");
    assert_eq!(value(&last, "latchgate_draining", &[]), 0.0);
    for role in ["front", "broker", "signer", "executor"] {
        assert_eq!(last.value("latchgate_process_up", &[("role", role)]), Some(1.0), "{role}");
    }

    // `--json` carries the same samples, parsed.
    let doc = fx.cli_json(&["metrics"], 0);
    let samples = doc["samples"].as_array().unwrap();
    let epoch = samples.iter().find(|s| s["metric"] == "latchgate_revocation_epoch").expect("epoch sample");
    assert_eq!(
        (epoch["type"].as_str(), epoch["value"].as_f64()),
        (Some("gauge"), last.value("latchgate_revocation_epoch", &[]))
    );
    let histogram = samples
        .iter()
        .find(|s| s["metric"] == "latchgate_action_duration_seconds" && s["labels"]["action"] == "http_fetch")
        .expect("histogram sample");
    assert!(histogram["buckets"].as_array().is_some_and(|b| b.len() > 1), "{histogram}");
    assert!(doc["help"]["latchgate_unresolved_intents"].as_str().is_some_and(|h| !h.is_empty()), "{doc}");
}
