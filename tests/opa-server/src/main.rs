//! TEST ONLY. No OPA server can be installed here, so the gate's OPA client
//! is tested against this: the parts of OPA's REST API the gate and `latchgate
//! doctor` use, answered by regorus with the gate's own `policies/` (loaded
//! exactly as the embedded engine loads them), plus a control route that makes
//! it misbehave on purpose.
//!
//! | route | answer |
//! |---|---|
//! | `GET /health` | `200 {}` (OPA's health check) |
//! | `POST /v1/data/latchgate/decision` `{"input": …}` | `200 {"result": <decision>}`, or `200 {}` when undefined |
//! | `POST /v1/data/<other path>` | `200 {}` (an undefined document, as OPA answers) |
//! | `PUT /test/mode` body `normal\|hang\|fail\|garbage\|ill_typed\|undefined\|widening` | `204`; applies to later requests |
//! | `GET /test/stats` | `{"decisions": n, "connections": n}` |
//!
//! Modes: `hang` never answers (until the mode changes back), `fail` answers
//! 500, `garbage` answers 200 with an HTML body, `ill_typed` answers a
//! `result` whose `allow` is a string, `undefined` answers `{}`, `widening`
//! answers an allow that grants a sink nobody asked for.

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use latchgate_broker::policy::EmbeddedRego;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

#[derive(Parser)]
struct Args {
    /// Directory with latchgate.rego and data.json (the gate's policies_dir).
    #[arg(long)]
    policies: PathBuf,
    /// Address to listen on; port 0 picks one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Write the bound address here once listening (how tests learn the port).
    #[arg(long)]
    addr_file: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    Normal,
    Hang,
    Fail,
    Garbage,
    IllTyped,
    Undefined,
    Widening,
}

impl Mode {
    const ALL: [Mode; 7] =
        [Mode::Normal, Mode::Hang, Mode::Fail, Mode::Garbage, Mode::IllTyped, Mode::Undefined, Mode::Widening];

    fn name(self) -> &'static str {
        match self {
            Mode::Normal => "normal",
            Mode::Hang => "hang",
            Mode::Fail => "fail",
            Mode::Garbage => "garbage",
            Mode::IllTyped => "ill_typed",
            Mode::Undefined => "undefined",
            Mode::Widening => "widening",
        }
    }

    fn parse(name: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == name)
    }
}

struct Server {
    engine: EmbeddedRego,
    mode: AtomicU8,
    decisions: AtomicU64,
    connections: AtomicU64,
}

impl Server {
    fn mode(&self) -> Mode {
        let raw = self.mode.load(Ordering::SeqCst);
        Mode::ALL.into_iter().find(|m| *m as u8 == raw).unwrap_or(Mode::Normal)
    }
}

type HttpResponse = Response<Full<Bytes>>;

fn json_response(status: StatusCode, body: &Value) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    response
}

async fn handle(server: Arc<Server>, request: Request<Incoming>) -> Result<HttpResponse, Infallible> {
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, 1024 * 1024).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(json_response(StatusCode::BAD_REQUEST, &json!({"code": "invalid_parameter"}))),
    };
    let path = parts.uri.path().to_string();
    let response = match (&parts.method, path.as_str()) {
        (&Method::PUT, "/test/mode") => match Mode::parse(String::from_utf8_lossy(&body).trim()) {
            Some(mode) => {
                server.mode.store(mode as u8, Ordering::SeqCst);
                eprintln!("opa-test-server: mode {}", mode.name());
                json_response(StatusCode::NO_CONTENT, &json!({}))
            }
            None => json_response(StatusCode::BAD_REQUEST, &json!({"code": "unknown_mode"})),
        },
        (&Method::GET, "/test/stats") => json_response(
            StatusCode::OK,
            &json!({
                "decisions": server.decisions.load(Ordering::SeqCst),
                "connections": server.connections.load(Ordering::SeqCst),
            }),
        ),
        (&Method::GET, "/health") => {
            misbehave(&server).await.unwrap_or_else(|| json_response(StatusCode::OK, &json!({})))
        }
        (&Method::POST, data) if data.starts_with("/v1/data/") => {
            server.decisions.fetch_add(1, Ordering::SeqCst);
            match misbehave(&server).await {
                Some(response) => response,
                None => decide(&server, data, &body),
            }
        }
        _ => json_response(StatusCode::NOT_FOUND, &json!({"code": "resource_not_found"})),
    };
    Ok(response)
}

/// The answer of a misbehaving mode, or `None` to answer properly.
async fn misbehave(server: &Server) -> Option<HttpResponse> {
    match server.mode() {
        Mode::Hang => {
            while server.mode() == Mode::Hang {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Some(json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"code": "hang_ended"})))
        }
        Mode::Fail => Some(json_response(StatusCode::INTERNAL_SERVER_ERROR, &json!({"code": "internal_error"}))),
        Mode::Garbage => {
            let mut response =
                Response::new(Full::new(Bytes::from_static(b"<html><body>502 Bad Gateway</body></html>")));
            response
                .headers_mut()
                .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/html"));
            Some(response)
        }
        Mode::Normal | Mode::IllTyped | Mode::Undefined | Mode::Widening => None,
    }
}

fn decide(server: &Server, path: &str, body: &[u8]) -> HttpResponse {
    if path.trim_end_matches('/') != "/v1/data/latchgate/decision" {
        return json_response(StatusCode::OK, &json!({}));
    }
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"code": "invalid_parameter", "message": "body is not JSON"}),
        );
    };
    let input = request.get("input").cloned().unwrap_or(Value::Null);
    let result = match server.engine.evaluate_raw(&input) {
        Ok(result) => result,
        Err(e) => {
            return json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({"code": "internal_error", "message": e.to_string()}),
            );
        }
    };
    match (server.mode(), result) {
        (Mode::Undefined, _) | (_, None) => json_response(StatusCode::OK, &json!({})),
        (Mode::IllTyped, Some(mut decision)) => {
            decision["allow"] = json!("yes");
            json_response(StatusCode::OK, &json!({"result": decision}))
        }
        (Mode::Widening, Some(mut decision)) => {
            decision["allowed_sinks"] = json!(["attacker.example"]);
            json_response(StatusCode::OK, &json!({"result": decision}))
        }
        (_, Some(decision)) => json_response(StatusCode::OK, &json!({"result": decision})),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let engine = match EmbeddedRego::load(&args.policies) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("opa-test-server: {e}");
            std::process::exit(1);
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("opa-test-server: bind {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    if let Some(file) = &args.addr_file {
        let tmp = file.with_extension("tmp");
        if std::fs::write(&tmp, &addr).and_then(|()| std::fs::rename(&tmp, file)).is_err() {
            eprintln!("opa-test-server: cannot write {}", file.display());
            std::process::exit(1);
        }
    }
    eprintln!("opa-test-server: listening on {addr}");
    let server = Arc::new(Server {
        engine,
        mode: AtomicU8::new(Mode::Normal as u8),
        decisions: AtomicU64::new(0),
        connections: AtomicU64::new(0),
    });
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        server.connections.fetch_add(1, Ordering::SeqCst);
        let server = server.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(server.clone(), request));
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
