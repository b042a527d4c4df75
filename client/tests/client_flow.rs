//! The client against a stand-in gate on a real Unix socket: the stand-in
//! verifies leases and proofs with the gate's own `core::jose` verifiers, so
//! this shows the client's requests pass the checks the front will run.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use latchgate_client::{DpopKey, GateClient, Lease, LeaseBudgets};
use latchgate_core::jose::{
    DpopVerifier, EcPublicJwk, EcdsaKeyPair, LeaseClaims, LeaseParams, LeaseVerifier, es256_key_from_pkcs8,
    es256_public_jwk, generate_es256_pkcs8, sign_es256_jws,
};
use serde_json::{Value, json};
use tokio::net::UnixListener;

const BASE_URL: &str = "http://localhost:3000";

struct StandInGate {
    lease_key: EcdsaKeyPair,
    kid: String,
    leases: LeaseVerifier,
    dpop: DpopVerifier,
    seen_jtis: Mutex<HashSet<String>>,
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn answer(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
}

impl StandInGate {
    fn new() -> StandInGate {
        let lease_key = es256_key_from_pkcs8(&generate_es256_pkcs8().unwrap()).unwrap();
        let jwk = es256_public_jwk(&lease_key).unwrap();
        let mut leases = LeaseVerifier::default();
        let kid = leases.add_key(&jwk).unwrap();
        StandInGate { lease_key, kid, leases, dpop: DpopVerifier::new(BASE_URL).unwrap(), seen_jtis: Mutex::default() }
    }

    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let path = parts.uri.path().to_owned();
        if parts.method == Method::POST && path == "/v1/leases" {
            let body: Value = serde_json::from_slice(&body).unwrap();
            let jwk = EcPublicJwk::from_value(&body["dpop_jwk"]).unwrap();
            let scopes = body["scopes"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect();
            let budgets: LeaseBudgets = serde_json::from_value(body["budgets"].clone()).unwrap_or_default();
            let claims = LeaseClaims::new(
                LeaseParams {
                    principal: "agent".into(),
                    scopes,
                    dpop_jkt: jwk.thumbprint(),
                    session_id: "sess".into(),
                    epoch: 1,
                    budgets,
                    ttl_seconds: None,
                },
                now(),
            )
            .unwrap();
            let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid}).to_string();
            let lease = sign_es256_jws(&header, &serde_json::to_string(&claims).unwrap(), &self.lease_key).unwrap();
            return answer(
                StatusCode::OK,
                json!({"lease_jwt": lease, "session_id": claims.sid, "lease_jti": claims.jti,
                       "expires_at": claims.expires_at_rfc3339()}),
            );
        }
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let Some(lease) = header("authorization").strip_prefix("DPoP ").map(str::to_owned) else {
            return answer(StatusCode::UNAUTHORIZED, json!({"error": "missing_auth_header"}));
        };
        let claims = match self.leases.verify(&lease, now()) {
            Ok(c) => c,
            Err(e) => {
                return answer(StatusCode::UNAUTHORIZED, json!({"error": e.code(), "deny_reason": e.deny_reason()}));
            }
        };
        let proof =
            match self.dpop.verify(&header("dpop"), parts.method.as_str(), &path, &lease, &claims.cnf.jkt, now()) {
                Ok(p) => p,
                Err(e) => {
                    return answer(
                        StatusCode::UNAUTHORIZED,
                        json!({"error": e.code(), "deny_reason": e.deny_reason()}),
                    );
                }
            };
        if !self.seen_jtis.lock().unwrap().insert(proof.jti) {
            return answer(StatusCode::UNAUTHORIZED, json!({"error": "replay_detected"}));
        }
        let params: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        answer(
            StatusCode::OK,
            json!({"decision": "executed", "path": path, "output": params, "budgets": claims.budgets}),
        )
    }
}

async fn serve(listener: UnixListener, gate: Arc<StandInGate>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let gate = gate.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let gate = gate.clone();
                async move { Ok::<_, Infallible>(gate.handle(request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn started_gate() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("gate.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    tokio::spawn(serve(listener, Arc::new(StandInGate::new())));
    (dir, socket)
}

#[tokio::test]
async fn client_obtains_a_lease_and_executes_over_one_reused_connection() {
    let (_dir, socket) = started_gate().await;
    let mut client = GateClient::connect(&socket, BASE_URL, DpopKey::generate().unwrap()).await.unwrap();
    let lease = client
        .request_lease(&["echo:run"], LeaseBudgets { max_calls: Some(3), max_cost_usd_cents: None })
        .await
        .unwrap();
    assert_eq!(lease.session_id, "sess");
    assert!(time::OffsetDateTime::parse(&lease.expires_at, &time::format_description::well_known::Rfc3339).is_ok());

    for n in 0..3 {
        let (status, body) = client.execute("echo", &json!({"n": n})).await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["output"]["n"], n);
        assert_eq!(body["budgets"]["max_calls"], 3);
    }
    let (status, body) = client.get_authed("/v1/receipts/r-1?verbose=1").await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(client.http().connections_opened(), 1);
}

#[tokio::test]
async fn replayed_proof_from_the_client_is_refused_by_the_gate() {
    let (_dir, socket) = started_gate().await;
    let mut client = GateClient::connect(&socket, BASE_URL, DpopKey::generate().unwrap()).await.unwrap();
    let lease = client.request_lease(&["echo:run"], LeaseBudgets::default()).await.unwrap();
    let path = "/v1/actions/echo/execute";
    let proof = client.dpop_key().proof("POST", &format!("{BASE_URL}{path}"), Some(&lease.lease_jwt)).unwrap();
    let auth = format!("DPoP {}", lease.lease_jwt);
    let headers = [("authorization", auth.as_str()), ("dpop", proof.as_str())];
    let first = client.http().request(Method::POST, path, &headers, Some(b"{}".to_vec())).await.unwrap();
    assert_eq!(first.status, StatusCode::OK);
    let second = client.http().request(Method::POST, path, &headers, Some(b"{}".to_vec())).await.unwrap();
    assert_eq!(second.status, StatusCode::UNAUTHORIZED);
    assert_eq!(second.json()["error"], "replay_detected");
}

#[tokio::test]
async fn lease_used_with_another_clients_key_is_refused() {
    let (_dir, socket) = started_gate().await;
    let mut owner = GateClient::connect(&socket, BASE_URL, DpopKey::generate().unwrap()).await.unwrap();
    let lease: Lease = owner.request_lease(&["echo:run"], LeaseBudgets::default()).await.unwrap();
    let mut thief = GateClient::connect(&socket, BASE_URL, DpopKey::generate().unwrap()).await.unwrap();
    thief.set_lease(lease);
    let (status, body) = thief.execute("echo", &json!({})).await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_dpop");
    assert_eq!(body["deny_reason"], "dpop_jkt_mismatch");
}

#[tokio::test]
async fn client_with_wrong_public_base_url_gets_htu_mismatch() {
    let (_dir, socket) = started_gate().await;
    let mut client = GateClient::connect(&socket, "http://localhost:4000", DpopKey::generate().unwrap()).await.unwrap();
    client.request_lease(&["echo:run"], LeaseBudgets::default()).await.unwrap();
    let (status, body) = client.execute("echo", &json!({})).await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["deny_reason"], "dpop_htu_mismatch");
}

#[tokio::test]
async fn execute_without_a_lease_is_a_client_error() {
    let (_dir, socket) = started_gate().await;
    let mut client = GateClient::connect(&socket, BASE_URL, DpopKey::generate().unwrap()).await.unwrap();
    assert!(matches!(client.execute("echo", &json!({})).await, Err(latchgate_client::ClientError::NoLease)));
}

#[tokio::test]
async fn connecting_to_a_missing_socket_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.sock");
    let err = GateClient::connect(&missing, BASE_URL, DpopKey::generate().unwrap()).await.unwrap_err();
    assert!(err.to_string().contains("nope.sock"), "{err}");
}
