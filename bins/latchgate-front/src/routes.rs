//! Routing: which paths exist on which plane, and their handlers. Agent
//! routes exist only on the client socket; the admin socket serves operator
//! routes (and `/healthz`), see `admin_routes`.

use crate::FrontState;
use crate::reply::{self, HttpResponse};
use crate::server::Plane;
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use latchgate_core::error::ErrorCode;
use latchgate_ipc::messages::front_broker::{FrontReply, FrontRequest, PeerCred};
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// How long `/readyz` waits for the broker's view of the gate.
const READYZ_TIMEOUT: Duration = Duration::from_secs(2);
/// Catalogue and key lookups are cheap for the broker.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The agent routes, parsed from method and path.
enum ClientRoute {
    Healthz,
    Readyz,
    Leases,
    Jwks,
    Actions,
    Action(String),
    RequestSchema(String),
    Execute(String),
    Receipt(String),
    PollApproval(String),
}

fn client_route(method: &Method, path: &str) -> Result<ClientRoute, ErrorCode> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (route, allowed) = match segments.as_slice() {
        ["healthz"] => (ClientRoute::Healthz, Method::GET),
        ["readyz"] => (ClientRoute::Readyz, Method::GET),
        ["v1", "leases"] => (ClientRoute::Leases, Method::POST),
        [".well-known", "jwks.json"] => (ClientRoute::Jwks, Method::GET),
        ["v1", "actions"] => (ClientRoute::Actions, Method::GET),
        ["v1", "actions", id] if !id.is_empty() => (ClientRoute::Action(id.to_string()), Method::GET),
        ["v1", "actions", id, "schema", "request"] if !id.is_empty() => {
            (ClientRoute::RequestSchema(id.to_string()), Method::GET)
        }
        ["v1", "actions", id, "execute"] if !id.is_empty() => (ClientRoute::Execute(id.to_string()), Method::POST),
        ["v1", "receipts", id] if !id.is_empty() => (ClientRoute::Receipt(id.to_string()), Method::GET),
        ["v1", "approvals", id, "poll"] if !id.is_empty() => (ClientRoute::PollApproval(id.to_string()), Method::GET),
        _ => return Err(ErrorCode::NotFound),
    };
    if *method != allowed {
        return Err(ErrorCode::MethodNotAllowed);
    }
    Ok(route)
}

pub async fn handle(
    state: Arc<FrontState>,
    plane: Plane,
    peer: PeerCred,
    request: Request<Incoming>,
) -> Result<HttpResponse, Infallible> {
    let (parts, body) = request.into_parts();
    let response = match plane {
        Plane::Client => client(&state, peer, parts, body).await,
        Plane::Admin => crate::admin_routes::handle(&state, peer, parts, body).await,
    };
    Ok(response)
}

async fn client(state: &FrontState, peer: PeerCred, parts: http::request::Parts, body: Incoming) -> HttpResponse {
    let route = match client_route(&parts.method, parts.uri.path()) {
        Ok(route) => route,
        Err(code) => return drain_then(state, body, reply::code(code)).await,
    };
    match route {
        ClientRoute::Healthz => reply::json(200, &json!({"status": "ok"})),
        ClientRoute::Readyz => readyz(state, peer).await,
        ClientRoute::Jwks => call(state, FrontRequest::LeaseKeys, LOOKUP_TIMEOUT).await,
        ClientRoute::Actions => call(state, FrontRequest::ListActions, LOOKUP_TIMEOUT).await,
        ClientRoute::Action(action_id) => call(state, FrontRequest::GetAction { action_id }, LOOKUP_TIMEOUT).await,
        ClientRoute::RequestSchema(action_id) => {
            call(state, FrontRequest::GetRequestSchema { action_id }, LOOKUP_TIMEOUT).await
        }
        ClientRoute::Leases => match read_body(state, body).await {
            Ok(body) => {
                call(state, FrontRequest::IssueLease { peer, body: body.to_vec() }, request_timeout(state)).await
            }
            Err(response) => response,
        },
        ClientRoute::Execute(action_id) => {
            let auth = crate::auth::check(state, &parts).await;
            let body = read_body(state, body).await;
            // An over-limit body is refused first (413), whatever the headers say.
            match (auth, body) {
                (_, Err(response)) => response,
                (Err(e), _) => reply::error(&e),
                (Ok(auth), Ok(body)) => {
                    let request = FrontRequest::Execute { peer, auth, action_id, body: body.to_vec() };
                    call(state, request, request_timeout(state)).await
                }
            }
        }
        ClientRoute::Receipt(receipt_id) => match crate::auth::check(state, &parts).await {
            Ok(auth) => call(state, FrontRequest::GetReceipt { peer, auth, receipt_id }, LOOKUP_TIMEOUT).await,
            Err(e) => reply::error(&e),
        },
        ClientRoute::PollApproval(approval_id) => match crate::auth::check(state, &parts).await {
            Ok(auth) => call(state, FrontRequest::PollApproval { peer, auth, approval_id }, LOOKUP_TIMEOUT).await,
            Err(e) => reply::error(&e),
        },
    }
}

pub(crate) fn request_timeout(state: &FrontState) -> Duration {
    Duration::from_millis(state.cfg.config.limits.request_timeout_ms)
}

/// One broker round trip rendered as HTTP.
pub(crate) async fn render(state: &FrontState, request: FrontRequest, timeout: Duration) -> HttpResponse {
    match state.broker.call(request, timeout).await {
        Ok(FrontReply::Json { status, body }) => reply::raw_json(status, body),
        Ok(FrontReply::LeaseKeys { jwks_json }) => reply::raw_json(200, jwks_json),
        Ok(FrontReply::Metrics { body }) => reply::prometheus_text(body),
        Ok(FrontReply::Error(e)) => reply::error(&e),
        Ok(FrontReply::Health(_) | FrontReply::Jsonl { .. }) => reply::code(ErrorCode::InternalError),
        Err(e) => reply::component_unavailable("broker", &e),
    }
}

async fn call(state: &FrontState, request: FrontRequest, timeout: Duration) -> HttpResponse {
    render(state, request, timeout).await
}

/// Read (bounded) an unused body so the connection stays usable; an over-limit body is 413 on any route.
pub(crate) async fn drain_then(state: &FrontState, body: Incoming, response: HttpResponse) -> HttpResponse {
    match read_body(state, body).await {
        Ok(_) => response,
        Err(too_large_or_slow) => too_large_or_slow,
    }
}

/// The request body, bounded in size and time.
pub async fn read_body(state: &FrontState, body: Incoming) -> Result<Bytes, HttpResponse> {
    let limits = &state.cfg.config.limits;
    let limited = http_body_util::Limited::new(body, limits.max_body_bytes);
    match tokio::time::timeout(Duration::from_millis(limits.body_read_timeout_ms), limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(reply::code(ErrorCode::PayloadTooLarge))
        }
        Ok(Err(_)) => Err(reply::code(ErrorCode::BadRequest)),
        Err(_) => Err(reply::code(ErrorCode::RequestTimeout)),
    }
}

async fn readyz(state: &FrontState, peer: PeerCred) -> HttpResponse {
    let front = latchgate_ipc::messages::status::ProcessStatus::current(
        latchgate_core::role::Role::Front,
        true,
        Some(state.confinement.clone()),
    );
    match state.broker.call(FrontRequest::Health { peer, front }, READYZ_TIMEOUT).await {
        Ok(FrontReply::Health(report)) => {
            let mut processes = serde_json::Map::new();
            processes.insert(
                "front".into(),
                confinement_json(true, Some(std::process::id()), Some(&state.confinement), None),
            );
            let mut degraded = state.confinement.is_degraded();
            for p in &report.processes {
                let confinement = p.status.as_ref().and_then(|s| s.confinement.as_ref());
                degraded |= confinement.is_some_and(|c| c.is_degraded());
                let pid = p.status.as_ref().map(|s| s.pid);
                processes.insert(p.role.as_str().into(), confinement_json(p.up, pid, confinement, p.error.as_deref()));
            }
            let dependencies = dependencies_json(&report.dependencies);
            if report.ready() {
                // best_effort confinement with a missing layer still serves, and says so.
                let status = if degraded { "degraded" } else { "ready" };
                reply::json(200, &json!({"status": status, "processes": processes, "dependencies": dependencies}))
            } else {
                let error = if report.all_up() { ErrorCode::NotReady } else { ErrorCode::ComponentUnavailable };
                let mut body = json!({"error": error.as_str(), "status": "not_ready", "processes": processes, "dependencies": dependencies});
                body["retry_after_seconds"] = 1.into();
                reply::json(503, &body)
            }
        }
        Ok(other) => {
            tracing::error!(reply = ?other, "unexpected broker reply to Health");
            reply::code(ErrorCode::InternalError)
        }
        Err(e) => reply::component_unavailable("broker", &e),
    }
}

/// Per dependency: backend, up, and the code its failures are answered with.
/// Endpoints and error detail stay in the logs (and the operator's
/// `/v1/admin/status`): this route is on the agents' socket.
fn dependencies_json(dependencies: &[latchgate_ipc::messages::status::DependencyHealth]) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for d in dependencies {
        out.insert(d.name.clone(), json!({"backend": d.backend, "up": d.up, "error": d.error}));
    }
    serde_json::Value::Object(out)
}

fn confinement_json(
    up: bool,
    pid: Option<u32>,
    confinement: Option<&latchgate_core::confine::ConfinementReport>,
    error: Option<&str>,
) -> serde_json::Value {
    json!({
        "up": up,
        "pid": pid,
        "error": error,
        "confinement": confinement.map(|c| c.summary()),
        "degraded": confinement.map(|c| c.is_degraded()),
    })
}
