//! Identity, leases and DPoP over the real client socket, one gate for the
//! file: every refusal asserts its status, code and deny_reason; leases
//! survive a restart of `latchgate up`; an epoch bump kills older leases.

use latchgate_client::{DpopKey, GateClient, Lease, LeaseBudgets, UdsHttp};
use latchgate_core::jose::{
    LeaseClaims, LeaseParams, b64url_decode, b64url_encode, es256_key_from_pkcs8, generate_es256_pkcs8, sign_es256_jws,
};
use latchgate_tests::{Gate, GateDir, HttpTarget, principal_config, wait_for_status};
use serde_json::{Value, json};
use std::time::Duration;

const BASE: &str = "http://localhost:3000";

struct Fixture {
    dir: GateDir,
    gate: Gate,
    target: HttpTarget,
}

impl Fixture {
    async fn start() -> Fixture {
        let target = HttpTarget::start();
        let dir = GateDir::new();
        let extra =
            format!("{}\n{}", target.egress_config(), principal_config("agent-dev", &["http.fetch", "http.post"]));
        dir.write_config("", &extra);
        let gate = Gate::start(&dir);
        let fixture = Fixture { dir, gate, target };
        fixture.wait_ready().await;
        fixture
    }

    async fn wait_ready(&self) {
        if let Err(e) = wait_for_status(&self.dir.client_socket(), "/readyz", 200, Duration::from_secs(60)).await {
            panic!("{e}\n{}", self.dir.log("gate"));
        }
    }

    async fn client(&self) -> GateClient {
        GateClient::connect(self.dir.client_socket(), BASE, DpopKey::generate().unwrap()).await.unwrap()
    }

    fn fetch_params(&self) -> Value {
        json!({"url": format!("http://localhost:{}/x", self.target.addr.port())})
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

const EXECUTE: &str = "/v1/actions/http_fetch/execute";

fn execute_htu() -> String {
    format!("{BASE}{EXECUTE}")
}

/// POST execute with raw header values; returns (status, body).
async fn raw_execute(http: &mut UdsHttp, authorization: &str, proof: &str, params: &Value) -> (u16, Value) {
    let headers = [("authorization", authorization), ("dpop", proof)];
    let response =
        http.request(http::Method::POST, EXECUTE, &headers, Some(params.to_string().into_bytes())).await.unwrap();
    (response.status.as_u16(), response.json())
}

#[track_caller]
fn assert_refused(answer: &(u16, Value), status: u16, code: &str, deny_reason: Option<&str>) {
    let (got_status, body) = answer;
    assert_eq!(*got_status, status, "{body}");
    assert_eq!(body["error"], code, "{body}");
    if let Some(reason) = deny_reason {
        assert_eq!(body["deny_reason"], reason, "{body}");
    }
}

/// A header+claims JWS with an arbitrary signature segment.
fn jws_with_signature(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!("{}.{}.{}", b64url_encode(header.to_string()), b64url_encode(claims.to_string()), b64url_encode(signature))
}

fn proof_claims(htm: &str, htu: &str, lease: &str) -> Value {
    json!({"jti": uuid::Uuid::new_v4().to_string(), "htm": htm, "htu": htu, "iat": now(),
           "ath": latchgate_core::jose::access_token_hash(lease)})
}

/// A lease signed by the gate's real lease key (read from the signer's key
/// dir, which only a test running as root can do) with chosen claims.
fn lease_signed_by_gate(dir: &GateDir, claims: &LeaseClaims) -> String {
    let keys = latchgate_signer::keystore::KeyStore::load_or_generate(&dir.root.join("keys")).unwrap();
    keys.sign_lease(claims).unwrap()
}

fn claims_for(lease: &Lease, key: &DpopKey, iat: i64, ttl: u64, epoch: u64) -> LeaseClaims {
    let params = LeaseParams {
        principal: "agent-dev".into(),
        scopes: vec!["http.fetch".into()],
        dpop_jkt: key.thumbprint().into(),
        session_id: lease.session_id.clone(),
        epoch,
        budgets: LeaseBudgets::default(),
        ttl_seconds: Some(ttl),
    };
    LeaseClaims::new(params, iat).unwrap()
}

/// `POST /v1/leases` from another uid (python3 dropped to `uid`); the raw HTTP answer.
fn lease_request_as_uid(dir: &GateDir, uid: u32, jwk: &Value) -> String {
    use std::os::unix::process::CommandExt;
    let script = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
body = sys.argv[2].encode()
s.sendall(b"POST /v1/leases HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body) + body)
out = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    out += chunk
print(out.decode())
"#;
    let body = json!({"scopes": ["http.fetch"], "dpop_jwk": jwk}).to_string();
    let output = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(dir.client_socket())
        .arg(body)
        .uid(uid)
        .gid(uid)
        .output()
        .expect("python3");
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_leases_and_dpop_over_the_socket() {
    let mut fx = Fixture::start().await;
    let params = fx.fetch_params();

    // --- lease issuance ---------------------------------------------------
    let mut agent = fx.client().await;
    let refused = agent.request_lease(&["gmail.send"], LeaseBudgets::default()).await.unwrap_err();
    assert!(refused.to_string().contains("scope_not_permitted"), "{refused}");
    let lease = agent.request_lease(&["http.fetch"], LeaseBudgets::default()).await.unwrap();
    let (status, jwks) = agent.get("/.well-known/jwks.json").await.unwrap();
    assert_eq!(status.as_u16(), 200);
    let header: Value =
        serde_json::from_slice(&b64url_decode(lease.lease_jwt.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");
    assert!(jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"] == header["kid"]), "{jwks}");
    let (status, body) = agent.execute("http_fetch", &params).await.unwrap();
    assert_eq!(status.as_u16(), 200, "{body}");

    // An unmapped uid reaches the socket (its mode lets agent users connect) and is refused.
    let answer = lease_request_as_uid(&fx.dir, 65534, &agent.dpop_key().public_jwk().to_value());
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("identity_forbidden") && answer.contains("uid_not_mapped"), "{answer}");

    // --- every proof refusal ------------------------------------------------
    let key = DpopKey::generate().unwrap();
    let mut client = GateClient::connect(fx.dir.client_socket(), BASE, key).await.unwrap();
    let lease = client.request_lease(&["http.fetch"], LeaseBudgets::default()).await.unwrap();
    let auth = format!("DPoP {}", lease.lease_jwt);
    let jwt = lease.lease_jwt.clone();
    let htu = execute_htu();
    let mut http = UdsHttp::connect(fx.dir.client_socket()).await.unwrap();
    let key = client.dpop_key();

    let wrong_htm = key.proof("GET", &htu, Some(&jwt)).unwrap();
    assert_refused(
        &raw_execute(&mut http, &auth, &wrong_htm, &params).await,
        401,
        "invalid_dpop",
        Some("dpop_htm_mismatch"),
    );
    let wrong_htu = key.proof("POST", &format!("{BASE}/v1/actions/http_post/execute"), Some(&jwt)).unwrap();
    assert_refused(
        &raw_execute(&mut http, &auth, &wrong_htu, &params).await,
        401,
        "invalid_dpop",
        Some("dpop_htu_mismatch"),
    );
    let stale = key.proof_at("POST", &htu, Some(&jwt), now() - 120, &uuid::Uuid::new_v4().to_string()).unwrap();
    assert_refused(&raw_execute(&mut http, &auth, &stale, &params).await, 401, "invalid_dpop", Some("dpop_iat_stale"));
    let future = key.proof_at("POST", &htu, Some(&jwt), now() + 60, &uuid::Uuid::new_v4().to_string()).unwrap();
    assert_refused(
        &raw_execute(&mut http, &auth, &future, &params).await,
        401,
        "invalid_dpop",
        Some("dpop_iat_future"),
    );
    let wrong_ath = key.proof("POST", &htu, Some("another-token")).unwrap();
    assert_refused(
        &raw_execute(&mut http, &auth, &wrong_ath, &params).await,
        401,
        "invalid_dpop",
        Some("dpop_ath_mismatch"),
    );
    let other_key = DpopKey::generate().unwrap().proof("POST", &htu, Some(&jwt)).unwrap();
    assert_refused(
        &raw_execute(&mut http, &auth, &other_key, &params).await,
        401,
        "invalid_dpop",
        Some("dpop_jkt_mismatch"),
    );

    let jwk = key.public_jwk().to_value();
    let none = jws_with_signature(
        &json!({"typ": "dpop+jwt", "alg": "none", "jwk": jwk}),
        &proof_claims("POST", &htu, &jwt),
        b"",
    );
    assert_refused(
        &raw_execute(&mut http, &auth, &none, &params).await,
        401,
        "invalid_dpop",
        Some("dpop_alg_not_allowed"),
    );
    let hs_header = json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": jwk});
    let hs_claims = proof_claims("POST", &htu, &jwt);
    let signing_input = format!("{}.{}", b64url_encode(hs_header.to_string()), b64url_encode(hs_claims.to_string()));
    let secret = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, jwk.to_string().as_bytes());
    let tag = ring::hmac::sign(&secret, signing_input.as_bytes());
    let hs256 = format!("{signing_input}.{}", b64url_encode(tag.as_ref()));
    assert_refused(
        &raw_execute(&mut http, &auth, &hs256, &params).await,
        401,
        "invalid_dpop",
        Some("dpop_alg_not_allowed"),
    );

    let oversized = format!("{}.{}.{}", "a".repeat(3000), "b".repeat(3000), "c");
    assert_refused(
        &raw_execute(&mut http, &auth, &oversized, &params).await,
        401,
        "invalid_dpop",
        Some("dpop_header_too_large"),
    );
    let response = http
        .request(http::Method::POST, EXECUTE, &[("authorization", &auth)], Some(params.to_string().into_bytes()))
        .await
        .unwrap();
    assert_refused(&(response.status.as_u16(), response.json()), 401, "missing_auth_header", Some("dpop_missing"));
    let bearer = format!("Bearer {jwt}");
    let fresh = key.proof("POST", &htu, Some(&jwt)).unwrap();
    assert_refused(
        &raw_execute(&mut http, &bearer, &fresh, &params).await,
        401,
        "missing_auth_header",
        Some("authorization_not_dpop"),
    );

    // replay: the same proof twice
    let proof = key.proof("POST", &htu, Some(&jwt)).unwrap();
    let first = raw_execute(&mut http, &auth, &proof, &params).await;
    assert_eq!(first.0, 200, "{}", first.1);
    assert_refused(&raw_execute(&mut http, &auth, &proof, &params).await, 401, "replay_detected", None);

    // --- lease refusals -----------------------------------------------------
    let mut parts: Vec<String> = jwt.split('.').map(str::to_string).collect();
    let mut claims: Value = serde_json::from_slice(&b64url_decode(&parts[1]).unwrap()).unwrap();
    claims["sub"] = json!("agent-admin");
    parts[1] = b64url_encode(claims.to_string());
    let tampered = parts.join(".");
    let proof = key.proof("POST", &htu, Some(&tampered)).unwrap();
    assert_refused(
        &raw_execute(&mut http, &format!("DPoP {tampered}"), &proof, &params).await,
        401,
        "invalid_lease",
        Some("lease_signature_invalid"),
    );

    let foreign = es256_key_from_pkcs8(&generate_es256_pkcs8().unwrap()).unwrap();
    let foreign_header = json!({"alg": "ES256", "typ": "JWT", "kid": "not-a-gate-key"}).to_string();
    let foreign_claims = serde_json::to_string(&claims_for(&lease, key, now(), 300, 0)).unwrap();
    let forged = sign_es256_jws(&foreign_header, &foreign_claims, &foreign).unwrap();
    let proof = key.proof("POST", &htu, Some(&forged)).unwrap();
    assert_refused(
        &raw_execute(&mut http, &format!("DPoP {forged}"), &proof, &params).await,
        401,
        "invalid_lease",
        Some("lease_unknown_kid"),
    );

    let expired = lease_signed_by_gate(&fx.dir, &claims_for(&lease, key, now() - 600, 300, 0));
    let proof = key.proof("POST", &htu, Some(&expired)).unwrap();
    assert_refused(
        &raw_execute(&mut http, &format!("DPoP {expired}"), &proof, &params).await,
        401,
        "lease_expired",
        Some("lease_expired"),
    );

    // A lease the front and broker verified (and remember as verified) stops
    // working the moment it expires.
    let short = lease_signed_by_gate(&fx.dir, &claims_for(&lease, key, now() - 298, 300, 0));
    let proof = key.proof("POST", &htu, Some(&short)).unwrap();
    let used = raw_execute(&mut http, &format!("DPoP {short}"), &proof, &params).await;
    assert_eq!(used.0, 200, "a lease about to expire still works: {}", used.1);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let refused = loop {
        let proof = key.proof("POST", &htu, Some(&short)).unwrap();
        let answer = raw_execute(&mut http, &format!("DPoP {short}"), &proof, &params).await;
        if answer.0 != 200 || std::time::Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_refused(&refused, 401, "lease_expired", Some("lease_expired"));

    // --- leases survive a full restart ----------------------------------------
    fx.gate.terminate(Duration::from_secs(40)).expect("gate stops on SIGTERM");
    fx.gate = Gate::start(&fx.dir);
    fx.wait_ready().await;
    let mut http = UdsHttp::connect(fx.dir.client_socket()).await.unwrap();
    let proof = key.proof("POST", &htu, Some(&jwt)).unwrap();
    let after_restart = raw_execute(&mut http, &auth, &proof, &params).await;
    assert_eq!(after_restart.0, 200, "lease from before the restart: {}", after_restart.1);

    // --- revocation epoch: a bump kills every older lease, across restarts ----
    // (`jwt` was just verified by the restarted front and broker, so this is
    // also a remembered lease being refused.)
    let state = latchgate_broker::state::SqliteStateStore::open(&fx.dir.root.join("state/state.db")).unwrap();
    use latchgate_broker::state::StateStore;
    let epoch = state.bump_epoch().await.unwrap();
    assert_eq!(epoch, 1);
    let proof = key.proof("POST", &htu, Some(&jwt)).unwrap();
    assert_refused(&raw_execute(&mut http, &auth, &proof, &params).await, 401, "invalid_lease", Some("lease_revoked"));
    let mut renewed = GateClient::connect(fx.dir.client_socket(), BASE, DpopKey::generate().unwrap()).await.unwrap();
    renewed.request_lease(&["http.fetch"], LeaseBudgets::default()).await.unwrap();
    let (status, body) = renewed.execute("http_fetch", &params).await.unwrap();
    assert_eq!(status.as_u16(), 200, "a lease issued after the bump works: {body}");
}
