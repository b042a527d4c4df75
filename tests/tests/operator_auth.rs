//! Operator authentication and the plane separation over the real sockets,
//! one gate for the file: wrong operator key, missing proof, replayed proof,
//! unbound credential, admin routes on the client socket and agent routes on
//! the admin socket, the admin socket's group, approval expiry, and the
//! operators' token buckets (429 + Retry-After).

use latchgate_client::{DpopKey, GateClient, LeaseBudgets, OperatorClient, UdsHttp};
use latchgate_tests::operator::{BASE, EditableHome, TestOperator};
use latchgate_tests::{Gate, GateDir, principal_config, wait_for_status};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

struct Fixture {
    dir: GateDir,
    home: EditableHome,
    alice: TestOperator,
    bob: TestOperator,
    /// Configured without `dpop_jkt`: refused at request time.
    legacy: TestOperator,
    _gate: Gate,
}

impl Fixture {
    async fn start() -> Fixture {
        let dir = GateDir::new();
        let home = EditableHome::create(&dir);
        let (alice, bob, legacy) = (TestOperator::new("alice"), TestOperator::new("bob"), TestOperator::new("legacy"));
        let extra = format!(
            "{}\n{}\n{}\n[operator_credentials.legacy]\napi_key = \"{}\"\n\n\
             [approvals]\nttl_seconds = 2\nsweep_interval_ms = 200\n\n\
             [operator_limits]\nwrites_per_second = 3\nreads_per_second = 1000\n",
            principal_config("agent-dev", &["fs.write"]),
            alice.config(),
            bob.config(),
            legacy.api_key,
        );
        dir.write_config(&home.top_config(), &extra);
        let gate = Gate::start(&dir);
        if let Err(e) = wait_for_status(&dir.client_socket(), "/readyz", 200, Duration::from_secs(90)).await {
            panic!("{e}\n{}", dir.log("gate"));
        }
        Fixture { dir, home, alice, bob, legacy, _gate: gate }
    }

    async fn raw_admin(&self) -> UdsHttp {
        UdsHttp::connect(self.dir.admin_socket()).await.unwrap()
    }
}

const STATUS: &str = "/v1/admin/status";

fn htu(path: &str) -> String {
    format!("{BASE}{path}")
}

async fn send(http: &mut UdsHttp, method: http::Method, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let body = (method == http::Method::POST).then(|| b"{}".to_vec());
    let r = http.request(method, path, headers, body).await.unwrap();
    (r.status.as_u16(), r.json())
}

#[track_caller]
fn refused(answer: &(u16, Value), status: u16, code: &str, deny_reason: Option<&str>) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["error"], code, "{}", answer.1);
    if let Some(reason) = deny_reason {
        assert_eq!(answer.1["deny_reason"], reason, "{}", answer.1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_authentication_and_plane_separation() {
    let fx = Fixture::start().await;
    operator_with_a_bound_key_is_served(&fx).await;
    wrong_operator_key_is_refused(&fx).await;
    missing_or_malformed_operator_auth_is_refused(&fx).await;
    replayed_operator_proof_is_refused(&fx).await;
    credential_without_dpop_jkt_is_refused(&fx).await;
    admin_routes_are_not_served_on_the_client_socket(&fx).await;
    agent_routes_are_not_served_on_the_admin_socket(&fx).await;
    admin_socket_belongs_to_the_operators_group(&fx);
    expired_approval_cannot_be_approved(&fx).await;
    operator_writes_beyond_the_bucket_are_throttled(&fx).await;
}

async fn operator_with_a_bound_key_is_served(fx: &Fixture) {
    let mut op = fx.alice.client(&fx.dir).await;
    let r = op.get(STATUS).await.unwrap();
    assert_eq!(r.status.as_u16(), 200, "{}", String::from_utf8_lossy(&r.body));
    let mut bob = fx.bob.client(&fx.dir).await;
    assert_eq!(bob.get(STATUS).await.unwrap().status.as_u16(), 200);
}

async fn wrong_operator_key_is_refused(fx: &Fixture) {
    // Alice's api key, a proof signed by Bob's key.
    let mut bobs_key_alices_token =
        OperatorClient::connect(fx.dir.admin_socket(), BASE, &fx.alice.api_key, fx.bob.key()).await.unwrap();
    let answer = bobs_key_alices_token.get(STATUS).await.unwrap();
    refused(&(answer.status.as_u16(), answer.json()), 401, "invalid_dpop", Some("dpop_jkt_mismatch"));
    // A fresh key no credential is bound to.
    let mut stranger =
        OperatorClient::connect(fx.dir.admin_socket(), BASE, &fx.alice.api_key, DpopKey::generate().unwrap())
            .await
            .unwrap();
    let answer = stranger.get(STATUS).await.unwrap();
    refused(&(answer.status.as_u16(), answer.json()), 401, "invalid_dpop", Some("dpop_jkt_mismatch"));
    // An api key nobody has.
    let mut guess = OperatorClient::connect(fx.dir.admin_socket(), BASE, "lgop_guess", fx.alice.key()).await.unwrap();
    let answer = guess.get(STATUS).await.unwrap();
    refused(&(answer.status.as_u16(), answer.json()), 401, "invalid_operator_token", Some("operator_key_unknown"));
}

async fn missing_or_malformed_operator_auth_is_refused(fx: &Fixture) {
    let mut http = fx.raw_admin().await;
    refused(
        &send(&mut http, http::Method::GET, STATUS, &[]).await,
        401,
        "missing_auth_header",
        Some("authorization_missing"),
    );
    let authorization = format!("DPoP {}", fx.alice.api_key);
    let no_proof = send(&mut http, http::Method::GET, STATUS, &[("authorization", &authorization)]).await;
    refused(&no_proof, 401, "missing_auth_header", Some("dpop_missing"));
    let bearer = format!("Bearer {}", fx.alice.api_key);
    let proof = fx.alice.key().proof("GET", &htu(STATUS), Some(&fx.alice.api_key)).unwrap();
    let as_bearer = send(&mut http, http::Method::GET, STATUS, &[("authorization", &bearer), ("dpop", &proof)]).await;
    refused(&as_bearer, 401, "missing_auth_header", Some("authorization_not_dpop"));
    // A proof for another route, and one without the api key's hash.
    let other_route =
        fx.alice.key().proof("GET", &htu("/v1/admin/intents/unresolved"), Some(&fx.alice.api_key)).unwrap();
    let answer =
        send(&mut http, http::Method::GET, STATUS, &[("authorization", &authorization), ("dpop", &other_route)]).await;
    refused(&answer, 401, "invalid_dpop", Some("dpop_htu_mismatch"));
    let no_ath = fx.alice.key().proof("GET", &htu(STATUS), None).unwrap();
    let answer =
        send(&mut http, http::Method::GET, STATUS, &[("authorization", &authorization), ("dpop", &no_ath)]).await;
    refused(&answer, 401, "invalid_dpop", Some("dpop_ath_missing"));
    let stale = fx
        .alice
        .key()
        .proof_at(
            "GET",
            &htu(STATUS),
            Some(&fx.alice.api_key),
            time::OffsetDateTime::now_utc().unix_timestamp() - 600,
            "stale-1",
        )
        .unwrap();
    let answer =
        send(&mut http, http::Method::GET, STATUS, &[("authorization", &authorization), ("dpop", &stale)]).await;
    refused(&answer, 401, "invalid_dpop", Some("dpop_iat_stale"));
}

async fn replayed_operator_proof_is_refused(fx: &Fixture) {
    let mut http = fx.raw_admin().await;
    let authorization = format!("DPoP {}", fx.alice.api_key);
    let proof = fx.alice.key().proof("GET", &htu(STATUS), Some(&fx.alice.api_key)).unwrap();
    let headers = [("authorization", authorization.as_str()), ("dpop", proof.as_str())];
    let first = send(&mut http, http::Method::GET, STATUS, &headers).await;
    assert_eq!(first.0, 200, "{}", first.1);
    let replay = send(&mut http, http::Method::GET, STATUS, &headers).await;
    refused(&replay, 401, "replay_detected", Some("dpop_jti_reused"));
}

async fn credential_without_dpop_jkt_is_refused(fx: &Fixture) {
    // Even with a perfectly good proof: an api key bound to no key is not enough.
    let mut legacy = fx.legacy.client(&fx.dir).await;
    let answer = legacy.get(STATUS).await.unwrap();
    refused(&(answer.status.as_u16(), answer.json()), 401, "invalid_operator_token", Some("operator_key_unbound"));
}

async fn admin_routes_are_not_served_on_the_client_socket(fx: &Fixture) {
    let mut http = UdsHttp::connect(fx.dir.client_socket()).await.unwrap();
    let authorization = format!("DPoP {}", fx.alice.api_key);
    for (method, path) in [
        (http::Method::GET, STATUS),
        (http::Method::POST, "/v1/admin/revoke-all"),
        (http::Method::GET, "/v1/approvals"),
        (http::Method::POST, "/v1/approvals/x/approve"),
        (http::Method::GET, "/v1/audit/events"),
        (http::Method::GET, "/v1/receipt-keys"),
    ] {
        let proof = fx.alice.key().proof(method.as_str(), &htu(path), Some(&fx.alice.api_key)).unwrap();
        let answer = send(&mut http, method, path, &[("authorization", &authorization), ("dpop", &proof)]).await;
        refused(&answer, 404, "not_found", None);
    }
}

async fn agent_routes_are_not_served_on_the_admin_socket(fx: &Fixture) {
    let mut http = fx.raw_admin().await;
    for (method, path) in [
        (http::Method::GET, "/readyz"),
        (http::Method::POST, "/v1/leases"),
        (http::Method::GET, "/v1/actions"),
        (http::Method::GET, "/.well-known/jwks.json"),
        (http::Method::POST, "/v1/actions/fs.write/execute"),
        (http::Method::GET, "/v1/approvals/x/poll"),
    ] {
        refused(&send(&mut http, method, path, &[]).await, 404, "not_found", None);
    }
    let (status, body) = send(&mut http, http::Method::GET, "/healthz", &[]).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
}

fn admin_socket_belongs_to_the_operators_group(fx: &Fixture) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(fx.dir.admin_socket()).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660, "operators only");
    if nix::unistd::geteuid().is_root() {
        let group = nix::unistd::Group::from_name("latchgate-operators").unwrap().expect("operators group exists");
        assert_eq!(meta.gid(), group.gid.as_raw(), "the admin socket is group latchgate-operators");
    }
}

async fn expired_approval_cannot_be_approved(fx: &Fixture) {
    let mut agent = GateClient::connect(fx.dir.client_socket(), BASE, DpopKey::generate().unwrap()).await.unwrap();
    agent.request_lease(&["fs.write"], LeaseBudgets::default()).await.unwrap();
    let (status, held) =
        agent.execute("fs.write", &json!({"op": "create", "path": "late.txt", "content": "x"})).await.unwrap();
    assert_eq!(status.as_u16(), 202, "{held}");
    let approval_id = held["approval_id"].as_str().unwrap().to_string();
    let poll_path = format!("/v1/approvals/{approval_id}/poll");
    let deadline = Instant::now() + Duration::from_secs(60);
    let poll = loop {
        let (status, poll) = agent.get_authed(&poll_path).await.unwrap();
        assert_eq!(status.as_u16(), 200, "{poll}");
        if poll["status"] != "pending" {
            break poll;
        }
        assert!(Instant::now() < deadline, "approval never expired: {poll}\n{}", fx.dir.log("gate"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!((poll["status"].as_str(), poll["reason"].as_str()), (Some("failed"), Some("expired")), "{poll}");
    let mut op = fx.alice.client(&fx.dir).await;
    let answer = op.post(&format!("/v1/approvals/{approval_id}/approve"), &json!({})).await.unwrap();
    refused(&(answer.status.as_u16(), answer.json()), 409, "approval_expired", None);
    assert!(!fx.home.fs_root.join("late.txt").exists());
    let shown = op.get(&format!("/v1/approvals/{approval_id}")).await.unwrap().json();
    assert_eq!(
        (shown["status"].as_str(), shown["decided_by"].as_str()),
        (Some("expired"), Some("latchgate")),
        "{shown}"
    );
    let events = op.get("/v1/audit/events?event_type=approval_expired").await.unwrap().json();
    assert!(
        events["events"].as_array().unwrap().iter().any(|e| e["payload"]["approval_id"] == approval_id.as_str()),
        "the sweeper's event: {events}"
    );
}

async fn operator_writes_beyond_the_bucket_are_throttled(fx: &Fixture) {
    // writes_per_second = 3: a burst of writes finds the bucket empty.
    let mut op = fx.bob.client(&fx.dir).await;
    let mut throttled = None;
    for _ in 0..30 {
        let r = op.post("/v1/admin/resume", &json!({})).await.unwrap();
        match r.status.as_u16() {
            200 => continue,
            429 => {
                throttled = Some(r);
                break;
            }
            other => panic!("unexpected {other}: {}", String::from_utf8_lossy(&r.body)),
        }
    }
    let r = throttled.expect("a burst of 30 writes at 3/s is throttled");
    assert_eq!(r.json()["error"], "operator_throttled");
    let retry: u64 = r.headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap();
    assert!(retry >= 1);
    // Reads have their own bucket, and another operator's writes theirs.
    assert_eq!(op.get(STATUS).await.unwrap().status.as_u16(), 200);
    let mut alice = fx.alice.client(&fx.dir).await;
    assert_eq!(alice.post("/v1/admin/resume", &json!({})).await.unwrap().status.as_u16(), 200);
    // After Retry-After the bucket has refilled.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(op.post("/v1/admin/resume", &json!({})).await.unwrap().status.as_u16(), 200);
}
