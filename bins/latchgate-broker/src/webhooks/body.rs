//! What a receiver gets: the body of one delivery, built from the audit event
//! it reports. Only fields listed here leave the gate: the audit payload is
//! filtered by name, so nothing an event may carry in future (a secret, an
//! operator token, request parameters) can reach a receiver by accident.

use latchgate_core::config::WebhookFormat;
use serde_json::{Map, Value, json};

use crate::ledger::AuditEvent;

/// Payload fields a delivery may repeat; everything else stays in the ledger.
const FORWARDED_DETAILS: &[&str] = &[
    "approval_id",
    "deny_reason",
    "error",
    "executor_refusal",
    "failure_class",
    "grant_id",
    "intent_id",
    "policy_version",
    "reason",
    "receipt_id",
    "request_hash",
    "risk_level",
    "epoch",
];

/// Longest string detail forwarded (a reason is a code or a short sentence).
const MAX_DETAIL_CHARS: usize = 256;

fn details(payload: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(object) = payload.as_object() else { return out };
    for name in FORWARDED_DETAILS {
        match object.get(*name) {
            Some(Value::String(s)) => {
                out.insert((*name).into(), Value::String(s.chars().take(MAX_DETAIL_CHARS).collect()));
            }
            Some(v @ (Value::Number(_) | Value::Bool(_) | Value::Null)) => {
                out.insert((*name).into(), v.clone());
            }
            // Nested values are not forwarded: they are not codes.
            _ => {}
        }
    }
    out
}

/// The JSON body of a delivery of `event` as webhook event `kind`.
pub fn delivery_body(format: WebhookFormat, delivery_id: &str, kind: &str, event: &AuditEvent) -> Vec<u8> {
    let details = details(&event.payload);
    let body = match format {
        WebhookFormat::Generic => json!({
            "id": delivery_id,
            "event": kind,
            "occurred_at": event.ts,
            "trace_id": event.trace_id,
            "action_id": event.action_id,
            "principal": event.principal,
            "session_id": event.session_id,
            "decision": event.decision,
            "details": details,
            "audit": {"seq": event.seq, "event_id": event.event_id, "event_type": event.event_type, "hash": event.hash},
        }),
        WebhookFormat::Slack => json!({ "text": slack_text(kind, event, &details) }),
    };
    body.to_string().into_bytes()
}

/// The body of `latchgate config test-webhook`: no audit event behind it.
pub fn test_body(format: WebhookFormat, delivery_id: &str, now: &str) -> Vec<u8> {
    let body = match format {
        WebhookFormat::Generic => json!({
            "id": delivery_id, "event": "test", "occurred_at": now,
            "details": {"reason": "latchgate config test-webhook"},
        }),
        WebhookFormat::Slack => json!({"text": "LatchGate test delivery (latchgate config test-webhook)"}),
    };
    body.to_string().into_bytes()
}

fn slack_text(kind: &str, event: &AuditEvent, details: &Map<String, Value>) -> String {
    let mut text = format!("LatchGate *{kind}*");
    if let Some(action) = &event.action_id {
        text.push_str(&format!(" `{}`", slack_escape(action)));
    }
    if let Some(principal) = &event.principal {
        text.push_str(&format!(" by {}", slack_escape(principal)));
    }
    for key in ["deny_reason", "error", "failure_class", "approval_id", "receipt_id"] {
        if let Some(Value::String(v)) = details.get(key) {
            text.push_str(&format!(" | {key}: {}", slack_escape(v)));
        }
    }
    if let Some(trace) = &event.trace_id {
        text.push_str(&format!(" | trace {}", slack_escape(trace)));
    }
    text
}

/// Slack's control characters in text: `&`, `<`, `>` (no mentions or links smuggled in).
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(payload: Value) -> AuditEvent {
        AuditEvent {
            seq: 7,
            event_id: "e7".into(),
            ts: "2026-12-01T00:00:00.000000Z".into(),
            event_type: "action_denied".into(),
            trace_id: Some("t".into()),
            action_id: Some("gmail.send".into()),
            principal: Some("<!channel> agent".into()),
            session_id: Some("s".into()),
            decision: Some("denied".into()),
            payload,
            witness: None,
            prev_hash: "p".into(),
            hash: "h".into(),
        }
    }

    #[test]
    fn only_listed_details_leave_the_gate() {
        let e =
            event(json!({"error": "policy_denied", "secret_value": "hunter2", "params": {"to": "x"}, "api_key": "k"}));
        let body = String::from_utf8(delivery_body(WebhookFormat::Generic, "d1", "action.denied", &e)).unwrap();
        assert!(!body.contains("hunter2") && !body.contains("api_key") && !body.contains("params"), "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["details"], json!({"error": "policy_denied"}));
        assert_eq!(v["event"], "action.denied");
        assert_eq!(v["audit"]["seq"], 7);
    }

    #[test]
    fn slack_text_cannot_ping_a_channel() {
        let body = delivery_body(WebhookFormat::Slack, "d1", "action.denied", &event(json!({"deny_reason": "x"})));
        let v: Value = serde_json::from_slice(&body).unwrap();
        let text = v["text"].as_str().unwrap();
        assert!(text.contains("&lt;!channel&gt;") && !text.contains("<!channel>"), "{text}");
        assert!(text.contains("action.denied") && text.contains("deny_reason: x"), "{text}");
    }
}
