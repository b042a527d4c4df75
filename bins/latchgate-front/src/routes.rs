//! Routing: which paths exist on which plane, and their handlers.

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

pub async fn handle(
    state: Arc<FrontState>,
    plane: Plane,
    peer: PeerCred,
    request: Request<Incoming>,
) -> Result<HttpResponse, Infallible> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let response = match (plane, &parts.method, path.as_str()) {
        (_, &Method::GET, "/healthz") => reply::json(200, &json!({"status": "ok"})),
        (Plane::Client, &Method::GET, "/readyz") => readyz(&state, peer).await,
        (_, _, "/healthz") | (Plane::Client, _, "/readyz") => reply::code(ErrorCode::MethodNotAllowed),
        _ => {
            // Read (bounded) so the connection stays usable; an over-limit body is 413 on any route.
            match read_body(&state, body).await {
                Ok(_) => reply::code(ErrorCode::NotFound),
                Err(too_large_or_slow) => too_large_or_slow,
            }
        }
    };
    Ok(response)
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
    match state.broker.call(FrontRequest::Health { peer }, READYZ_TIMEOUT).await {
        Ok(FrontReply::Health(report)) => {
            let mut processes = serde_json::Map::new();
            processes.insert("front".into(), json!({"up": true, "pid": std::process::id()}));
            for p in &report.processes {
                processes.insert(
                    p.role.as_str().into(),
                    json!({"up": p.up, "pid": p.status.as_ref().map(|s| s.pid), "error": p.error}),
                );
            }
            if report.all_up() {
                reply::json(200, &json!({"status": "ready", "processes": processes}))
            } else {
                let mut body = json!({"error": ErrorCode::ComponentUnavailable.as_str(), "status": "not_ready", "processes": processes});
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
