//! Webhooks end to end, with the real gate and a loopback receiver (reached
//! through the test-only `[webhook_delivery]` override): signed deliveries of
//! audit events with no secret in them, retries on 5xx, none on 4xx, dead
//! letters listed and replayed from the CLI, `config test-webhook`, and an
//! outbox that survives a broker restart.

use latchgate_client::{DpopKey, GateClient, LeaseBudgets};
use latchgate_tests::cli::{describe, json_of, latchgate};
use latchgate_tests::webhook_receiver::{WebhookReceiver, expected_signature};
use latchgate_tests::{Gate, GateDir, HttpTarget, principal_config, wait_for_status};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const BASE: &str = "http://localhost:3000";
const SECRET: &str = "whsec-0123456789-never-in-a-body";
const TEAM_TOKEN: &str = "team-token-never-in-a-body";
const DEADLINE: Duration = Duration::from_secs(30);

fn webhook(name: &str, url: &str, extra: &str) -> String {
    format!("[[webhooks]]\nname = \"{name}\"\nurl = \"{url}\"\nsecret = \"${{LG_TEST_WEBHOOK_SECRET}}\"\n{extra}\n")
}

fn start(dir: &GateDir, target: &HttpTarget, receiver: &WebhookReceiver, webhooks: &str) -> Gate {
    let extra = format!(
        "{}\n{}\n{}\n{webhooks}",
        target.egress_config(),
        principal_config("agent-dev", &["http.fetch", "fs.write"]),
        receiver.delivery_config()
    );
    dir.write_config("", &extra);
    start_again(dir)
}

fn start_again(dir: &GateDir) -> Gate {
    Gate::start_with_env(dir, &[("LG_TEST_WEBHOOK_SECRET", SECRET), ("LG_TEST_TEAM_TOKEN", TEAM_TOKEN)])
}

async fn ready(dir: &GateDir) {
    if let Err(e) = wait_for_status(&dir.client_socket(), "/readyz", 200, Duration::from_secs(60)).await {
        panic!("{e}\n{}", dir.log("gate"));
    }
}

async fn agent(dir: &GateDir, scope: &str) -> GateClient {
    let mut client = GateClient::connect(dir.client_socket(), BASE, DpopKey::generate().unwrap()).await.unwrap();
    client.request_lease(&[scope], LeaseBudgets::default()).await.unwrap();
    client
}

/// The outbox as `latchgate webhooks list --json` shows it, by delivery id.
fn deliveries(dir: &GateDir) -> Vec<Value> {
    let out = latchgate(&dir.config_path(), &["webhooks", "list", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    json_of(&out)["deliveries"].as_array().unwrap().clone()
}

fn wait_for_row(dir: &GateDir, webhook: &str, state: &str) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(row) = deliveries(dir).into_iter().find(|r| r["webhook"] == webhook && r["state"] == state) {
            return row;
        }
        assert!(
            Instant::now() < deadline,
            "{webhook}: no {state} delivery\n{:?}\n{}",
            deliveries(dir),
            dir.log("gate")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_signed_report_audit_events_and_carry_no_secret() {
    let (target, receiver, dir) = (HttpTarget::start(), WebhookReceiver::start(), GateDir::new());
    let hooks = webhook(
        "ops",
        &receiver.url("/ops"),
        "headers = { \"X-Team\" = \"${LG_TEST_TEAM_TOKEN}\" }\nevents = [\"action.executed\", \"action.denied\", \"approval.pending\"]",
    ) + &webhook("chat", &receiver.url("/chat"), "format = \"slack\"\nevents = [\"action.executed\"]");
    let _gate = start(&dir, &target, &receiver, &hooks);
    ready(&dir).await;

    let mut client = agent(&dir, "http.fetch").await;
    let url = format!("http://localhost:{}/hello", target.addr.port());
    let (status, executed) = client.execute("http_fetch", &json!({"url": url})).await.unwrap();
    assert_eq!(status.as_u16(), 200, "{executed}");
    let (status, denied) = client.execute("http_fetch", &json!({"url": "https://evil.test/"})).await.unwrap();
    assert_eq!(status.as_u16(), 403, "{denied}");
    let mut risky = agent(&dir, "fs.write").await;
    let (status, held) =
        risky.execute("fs.write", &json!({"op": "create", "path": "a.txt", "content": "x"})).await.unwrap();
    assert_eq!(status.as_u16(), 202, "{held}");

    let got = receiver.wait_for("/ops", 3, DEADLINE);
    let mut events: Vec<String> =
        got.iter().map(|r| r.json()["event"].as_str().unwrap_or_default().to_string()).collect();
    events.sort();
    assert_eq!(events, ["action.denied", "action.executed", "approval.pending"]);
    for request in &got {
        let timestamp = request.header("x-latchgate-timestamp");
        assert_eq!(request.header("x-latchgate-signature"), expected_signature(SECRET, timestamp, &request.body));
        assert_ne!(request.header("x-latchgate-signature"), expected_signature("wrong", timestamp, &request.body));
        assert_eq!(request.header("x-team"), TEAM_TOKEN, "configured header with ${{ENV}} expanded");
        assert_eq!(request.header("content-type"), "application/json");
        let body = String::from_utf8_lossy(&request.body);
        assert!(!body.contains(SECRET) && !body.contains(TEAM_TOKEN), "a secret reached a body: {body}");
        let doc = request.json();
        assert_eq!(doc["id"], request.header("x-latchgate-delivery"));
        assert_eq!(doc["event"], request.header("x-latchgate-event"));
        assert!(doc["audit"]["hash"].as_str().unwrap().starts_with("sha256:"), "{doc}");
    }
    let executed_delivery = got.iter().map(Received::json).find(|d| d["event"] == "action.executed").unwrap();
    assert_eq!(executed_delivery["trace_id"], executed["trace_id"]);
    assert_eq!(executed_delivery["details"]["receipt_id"], executed["receipt_id"]);
    let held_delivery = got.iter().map(Received::json).find(|d| d["event"] == "approval.pending").unwrap();
    assert_eq!(held_delivery["details"]["approval_id"], held["approval_id"]);

    let slack = receiver.wait_for("/chat", 1, DEADLINE);
    let text = slack[0].json()["text"].as_str().unwrap().to_string();
    assert!(text.contains("action.executed") && text.contains("http_fetch"), "{text}");
    assert_eq!(
        slack[0].header("x-latchgate-signature"),
        expected_signature(SECRET, slack[0].header("x-latchgate-timestamp"), &slack[0].body)
    );

    // `latchgate config test-webhook` sends a signed test event directly.
    let out = std::process::Command::new(latchgate_tests::bin_dir().join("latchgate"))
        .args(["--config", dir.config_path().to_str().unwrap(), "config", "test-webhook", "ops", "--json"])
        .env("LG_TEST_WEBHOOK_SECRET", SECRET)
        .env("LG_TEST_TEAM_TOKEN", TEAM_TOKEN)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(json_of(&out)["status"], 200);
    let test = receiver.wait_for("/ops", 4, DEADLINE).into_iter().find(|r| r.json()["event"] == "test").unwrap();
    assert_eq!(
        test.header("x-latchgate-signature"),
        expected_signature(SECRET, test.header("x-latchgate-timestamp"), &test.body)
    );
}

use latchgate_tests::webhook_receiver::Received;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_on_5xx_never_on_4xx_dead_letters_and_replay() {
    let (target, receiver, dir) = (HttpTarget::start(), WebhookReceiver::start(), GateDir::new());
    receiver.script("/flaky", &[500], 200);
    receiver.script("/refuses", &[], 400);
    receiver.script("/down", &[], 503);
    let only_executed = "events = [\"action.executed\"]\nbackoff_ms = [100]\nmax_retries = 2";
    let hooks = webhook("flaky", &receiver.url("/flaky"), only_executed)
        + &webhook("refuses", &receiver.url("/refuses"), only_executed)
        + &webhook("down", &receiver.url("/down"), only_executed);
    let _gate = start(&dir, &target, &receiver, &hooks);
    ready(&dir).await;
    let mut client = agent(&dir, "http.fetch").await;
    let url = format!("http://localhost:{}/hello", target.addr.port());
    let (status, body) = client.execute("http_fetch", &json!({"url": url})).await.unwrap();
    assert_eq!(status.as_u16(), 200, "{body}");

    // 500 then 200: retried, delivered, the same delivery each time.
    let delivered = wait_for_row(&dir, "flaky", "delivered");
    assert_eq!(delivered["attempts"], 2, "{delivered}");
    let flaky = receiver.received("/flaky");
    assert_eq!(flaky.iter().map(|r| r.status).collect::<Vec<_>>(), [500, 200]);
    assert_eq!(flaky[0].header("x-latchgate-delivery"), flaky[1].header("x-latchgate-delivery"));
    assert_eq!(flaky[0].body, flaky[1].body, "a retry sends the same body");

    // 400: a dead letter after one attempt, never retried.
    let refused = wait_for_row(&dir, "refuses", "dead");
    assert_eq!((refused["attempts"].as_u64(), refused["last_status"].as_u64()), (Some(1), Some(400)), "{refused}");
    assert_eq!(receiver.received("/refuses").len(), 1);

    // 503 every time: 1 + max_retries attempts, then a dead letter.
    let dead = wait_for_row(&dir, "down", "dead");
    assert_eq!(dead["attempts"], 3, "{dead}");
    assert_eq!(receiver.received("/down").len(), 3);
    let out = latchgate(&dir.config_path(), &["webhooks", "dead-letters", "--json"]);
    let letters = json_of(&out)["dead_letters"].as_array().unwrap().clone();
    let ids: Vec<&str> = letters.iter().map(|l| l["delivery_id"].as_str().unwrap()).collect();
    assert!(
        ids.contains(&dead["delivery_id"].as_str().unwrap()) && ids.contains(&refused["delivery_id"].as_str().unwrap()),
        "{letters:?}"
    );
    assert!(!ids.contains(&delivered["delivery_id"].as_str().unwrap()));

    // The receiver is back: replay delivers the dead letter.
    receiver.script("/down", &[], 200);
    let id = dead["delivery_id"].as_str().unwrap();
    let out = latchgate(&dir.config_path(), &["webhooks", "replay", id, "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(json_of(&out)["delivery"]["state"], "pending");
    let replayed = wait_for_row(&dir, "down", "delivered");
    assert_eq!(replayed["delivery_id"], id);
    let down = receiver.received("/down");
    assert_eq!(down.len(), 4);
    assert_eq!(down[3].header("x-latchgate-delivery"), id);
    // Replaying something that is not a dead letter is refused.
    let again = latchgate(&dir.config_path(), &["webhooks", "replay", id, "--json"]);
    assert_eq!(json_of(&again)["error"]["code"], "webhook_delivery_not_dead", "{}", describe(&again));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_survives_a_broker_restart() {
    let (target, receiver, dir) = (HttpTarget::start(), WebhookReceiver::start(), GateDir::new());
    receiver.script("/ops", &[], 503);
    let hooks =
        webhook("ops", &receiver.url("/ops"), "events = [\"action.executed\"]\nbackoff_ms = [500]\nmax_retries = 10");
    let mut gate = start(&dir, &target, &receiver, &hooks);
    ready(&dir).await;
    let mut client = agent(&dir, "http.fetch").await;
    let url = format!("http://localhost:{}/hello", target.addr.port());
    let (status, body) = client.execute("http_fetch", &json!({"url": url})).await.unwrap();
    assert_eq!(status.as_u16(), 200, "{body}");
    let first = receiver.wait_for("/ops", 1, DEADLINE);
    let delivery_id = first[0].header("x-latchgate-delivery").to_string();
    assert!(gate.terminate(Duration::from_secs(60)).is_some(), "gate did not stop");
    let pending = deliveries(&dir).into_iter().find(|r| r["delivery_id"] == delivery_id.as_str()).unwrap();
    assert_eq!(pending["state"], "pending", "{pending}");

    receiver.script("/ops", &[], 200);
    let _gate = start_again(&dir);
    ready(&dir).await;
    let delivered = wait_for_row(&dir, "ops", "delivered");
    assert_eq!(delivered["delivery_id"], delivery_id.as_str(), "the same delivery, after the restart");
    let last = receiver.received("/ops").into_iter().last().unwrap();
    assert_eq!((last.status, last.header("x-latchgate-delivery")), (200, delivery_id.as_str()));
}
