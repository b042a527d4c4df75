//! The admin socket's routes: operator DPoP auth on every route but
//! `/healthz`, then one typed [`AdminRequest`] to the broker (which checks the
//! operator again). Agent routes do not exist here. New operator routes are
//! one arm in [`admin_route`] plus one variant in `AdminRequest`.

use crate::FrontState;
use crate::reply::{self, HttpResponse};
use crate::routes::{drain_then, read_body, render};
use http::Method;
use hyper::body::Incoming;
use latchgate_core::error::ErrorCode;
use latchgate_ipc::messages::admin::{AdminRequest, AuditQuery};
use latchgate_ipc::messages::front_broker::{FrontReply, FrontRequest, PeerCred, RequestAuth};
use latchgate_ipc::messages::status::ProcessStatus;
use serde_json::json;
use std::time::Duration;

/// Reads are answered from the ledger and the peers; writes may run an
/// approved action, so they get the request timeout.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What a route needs before it becomes an [`AdminRequest`].
enum AdminRoute {
    Healthz,
    /// Needs nothing from the request but the (already read) body.
    Request(Box<dyn FnOnce(Vec<u8>) -> AdminRequest + Send>),
    /// `GET /v1/audit/export`: paged from the broker, streamed to the operator.
    Export,
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    url_decode_pairs(query.unwrap_or(""))
}

/// `application/x-www-form-urlencoded` pairs (`+` is a space, `%XX` a byte;
/// a malformed escape stays as written).
fn url_decode_pairs(query: &str) -> Vec<(String, String)> {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    fn decode(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let escaped =
                (bytes[i] == b'%').then(|| Some((hex(*bytes.get(i + 1)?)? << 4) | hex(*bytes.get(i + 2)?)?)).flatten();
            match (bytes[i], escaped) {
                (_, Some(b)) => {
                    out.push(b);
                    i += 3;
                }
                (b'+', None) => {
                    out.push(b' ');
                    i += 1;
                }
                (b, None) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

fn audit_query(query: Option<&str>) -> Result<AuditQuery, String> {
    let mut q = AuditQuery::default();
    for (key, value) in query_pairs(query) {
        let slot = match key.as_str() {
            "trace_id" => &mut q.trace_id,
            "event_type" => &mut q.event_type,
            "action_id" => &mut q.action_id,
            "principal" => &mut q.principal,
            "session_id" => &mut q.session_id,
            "decision" => &mut q.decision,
            "after" => &mut q.after,
            "before" => &mut q.before,
            "after_seq" => &mut q.after_seq,
            "limit" => &mut q.limit,
            other => return Err(format!("unknown filter `{other}`")),
        };
        if slot.replace(value).is_some() {
            return Err(format!("filter `{key}` given twice"));
        }
    }
    Ok(q)
}

fn admin_route(state: &FrontState, method: &Method, path: &str, query: Option<&str>) -> Result<AdminRoute, ErrorCode> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let id = |s: &str| s.to_string();
    let front_status =
        || ProcessStatus::current(latchgate_core::role::Role::Front, true, Some(state.confinement.clone()));
    let (route, allowed): (AdminRoute, Method) = match segments.as_slice() {
        ["healthz"] => (AdminRoute::Healthz, Method::GET),
        ["v1", "admin", "status"] => {
            let front = front_status();
            (AdminRoute::Request(Box::new(move |_| AdminRequest::Status { front })), Method::GET)
        }
        ["v1", "admin", "actions"] => (AdminRoute::Request(Box::new(|_| AdminRequest::ListActions)), Method::GET),
        ["v1", "admin", "actions", action] if !action.is_empty() => {
            let action_id = id(action);
            (AdminRoute::Request(Box::new(move |_| AdminRequest::GetAction { action_id })), Method::GET)
        }
        ["v1", "approvals"] => {
            let pairs = query_pairs(query);
            let find = |k: &str| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
            let (status, limit) = (find("status"), find("limit"));
            (AdminRoute::Request(Box::new(move |_| AdminRequest::ListApprovals { status, limit })), Method::GET)
        }
        ["v1", "approvals", approval] if !approval.is_empty() => {
            let approval_id = id(approval);
            (AdminRoute::Request(Box::new(move |_| AdminRequest::GetApproval { approval_id })), Method::GET)
        }
        ["v1", "approvals", approval, "approve"] if !approval.is_empty() => {
            let approval_id = id(approval);
            (AdminRoute::Request(Box::new(move |body| AdminRequest::Approve { approval_id, body })), Method::POST)
        }
        ["v1", "approvals", approval, "deny"] if !approval.is_empty() => {
            let approval_id = id(approval);
            (AdminRoute::Request(Box::new(move |body| AdminRequest::Deny { approval_id, body })), Method::POST)
        }
        ["v1", "audit", "events"] => {
            let query = audit_query(query).map_err(|_| ErrorCode::BadRequest)?;
            (AdminRoute::Request(Box::new(move |_| AdminRequest::AuditEvents(query))), Method::GET)
        }
        ["v1", "audit", "verify"] => (AdminRoute::Request(Box::new(|_| AdminRequest::AuditVerify)), Method::GET),
        ["v1", "audit", "export"] => (AdminRoute::Export, Method::GET),
        ["v1", "receipts", receipt] if !receipt.is_empty() => {
            let receipt_id = id(receipt);
            (AdminRoute::Request(Box::new(move |_| AdminRequest::GetReceipt { receipt_id })), Method::GET)
        }
        ["v1", "receipt-keys"] => (AdminRoute::Request(Box::new(|_| AdminRequest::ReceiptKeys)), Method::GET),
        ["v1", "admin", "revoke-all"] => (AdminRoute::Request(Box::new(|_| AdminRequest::RevokeAll)), Method::POST),
        ["v1", "admin", "intents", "unresolved"] => {
            (AdminRoute::Request(Box::new(|_| AdminRequest::UnresolvedIntents)), Method::GET)
        }
        ["v1", "admin", "drain"] => (AdminRoute::Request(Box::new(|_| AdminRequest::Drain)), Method::POST),
        ["v1", "admin", "resume"] => (AdminRoute::Request(Box::new(|_| AdminRequest::Resume)), Method::POST),
        ["v1", "admin", "reload"] => (AdminRoute::Request(Box::new(|_| AdminRequest::Reload)), Method::POST),
        ["v1", "admin", "egress", "learned"] => {
            (AdminRoute::Request(Box::new(|_| AdminRequest::EgressLearned)), Method::GET)
        }
        ["v1", "admin", "egress", "allow"] => {
            (AdminRoute::Request(Box::new(|body| AdminRequest::EgressAllow { body })), Method::POST)
        }
        ["v1", "admin", "egress", "disallow"] => {
            (AdminRoute::Request(Box::new(|body| AdminRequest::EgressDisallow { body })), Method::POST)
        }
        ["v1", "admin", "policy", "acl"] => (AdminRoute::Request(Box::new(|_| AdminRequest::PolicyShow)), Method::GET),
        ["v1", "admin", "policy", "grant"] => {
            (AdminRoute::Request(Box::new(|body| AdminRequest::PolicyGrant { body })), Method::POST)
        }
        ["v1", "admin", "policy", "revoke"] => {
            (AdminRoute::Request(Box::new(|body| AdminRequest::PolicyRevoke { body })), Method::POST)
        }
        _ => return Err(ErrorCode::NotFound),
    };
    if *method != allowed {
        return Err(ErrorCode::MethodNotAllowed);
    }
    Ok(route)
}

pub async fn handle(state: &FrontState, peer: PeerCred, parts: http::request::Parts, body: Incoming) -> HttpResponse {
    let route = match admin_route(state, &parts.method, parts.uri.path(), parts.uri.query()) {
        Ok(route) => route,
        Err(code) => return drain_then(state, body, reply::code(code)).await,
    };
    if let AdminRoute::Healthz = route {
        return reply::json(200, &json!({"status": "ok"}));
    }
    let auth = crate::auth::check_operator(state, &parts);
    let body = read_body(state, body).await;
    let (auth, body) = match (auth, body) {
        (_, Err(response)) => return response,
        (Err(e), _) => return reply::error(&e),
        (Ok(auth), Ok(body)) => (auth, body),
    };
    match route {
        AdminRoute::Healthz => reply::json(200, &json!({"status": "ok"})),
        AdminRoute::Request(build) => {
            let request = build(body.to_vec());
            let timeout = if request.is_write() { crate::routes::request_timeout(state) } else { READ_TIMEOUT };
            render(state, FrontRequest::Admin { peer, auth, request }, timeout).await
        }
        AdminRoute::Export => export(state, peer, auth).await,
    }
}

/// The whole chain as JSONL. The first page is fetched with the operator's
/// proof before answering (so a refusal is a proper error); the broker hands
/// back a single-use continuation for each next page, since the proof itself
/// is single use. The rest is streamed.
async fn export(state: &FrontState, peer: PeerCred, auth: RequestAuth) -> HttpResponse {
    let first = AdminRequest::AuditExport { after_seq: 0, continuation: None };
    let mut page = match export_page(state, peer, auth.clone(), first).await {
        Ok(page) => page,
        Err(response) => return response,
    };
    let (sender, receiver) = tokio::sync::mpsc::channel(2);
    let broker = state.broker.clone();
    tokio::spawn(async move {
        loop {
            let ExportPage { body, next } = page;
            if !body.is_empty() && sender.send(bytes::Bytes::from(body)).await.is_err() {
                return;
            }
            let Some((after_seq, continuation)) = next else { return };
            let request = AdminRequest::AuditExport { after_seq, continuation: Some(continuation) };
            let request = FrontRequest::Admin { peer, auth: auth.clone(), request };
            page = match broker.call(request, READ_TIMEOUT).await.map(page_of) {
                Ok(Some(next)) => next,
                other => {
                    // The operator sees a truncated body; the broker logged why.
                    tracing::warn!(failed = other.is_err(), "audit export ended early");
                    return;
                }
            };
        }
    });
    reply::jsonl_stream(receiver)
}

struct ExportPage {
    body: String,
    next: Option<(u64, String)>,
}

fn page_of(reply: FrontReply) -> Option<ExportPage> {
    match reply {
        FrontReply::Jsonl { body, next_after_seq, continuation } => {
            Some(ExportPage { body, next: next_after_seq.zip(continuation) })
        }
        _ => None,
    }
}

async fn export_page(
    state: &FrontState,
    peer: PeerCred,
    auth: RequestAuth,
    request: AdminRequest,
) -> Result<ExportPage, HttpResponse> {
    match state.broker.call(FrontRequest::Admin { peer, auth, request }, READ_TIMEOUT).await {
        Ok(FrontReply::Error(e)) => Err(reply::error(&e)),
        Ok(reply) => page_of(reply).ok_or_else(|| {
            tracing::error!("unexpected broker reply to AuditExport");
            reply::code(ErrorCode::InternalError)
        }),
        Err(e) => Err(reply::component_unavailable("broker", &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_are_form_decoded() {
        assert_eq!(
            url_decode_pairs("a=1&b=x%20y+z&c&d=%zz"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y z".into()),
                ("c".into(), String::new()),
                ("d".into(), "%zz".into())
            ]
        );
        assert_eq!(url_decode_pairs("t=2026-01-01T00%3A00%3A00Z"), vec![("t".into(), "2026-01-01T00:00:00Z".into())]);
    }

    #[test]
    fn unknown_or_repeated_audit_filters_are_refused() {
        assert!(audit_query(Some("trace_id=a&limit=5")).is_ok());
        assert!(audit_query(Some("colour=red")).is_err());
        assert!(audit_query(Some("limit=1&limit=2")).is_err());
    }
}
