//! The evidence routes: audit events with filters, chain verification, JSONL
//! export (paged over IPC, streamed by the front), any receipt, unresolved
//! intents.

use crate::gate::Gate;
use crate::ledger::{DEFAULT_EVENT_LIMIT, EventFilter, LedgerError, MAX_EVENT_LIMIT};
use latchgate_core::error::{ApiError, ErrorCode};
use latchgate_ipc::messages::admin::AuditQuery;
use latchgate_ipc::messages::front_broker::FrontReply;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// Keeps every answer well inside the front↔broker message limit (8 MiB).
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// Events per export page: small pages keep each IPC message and the
/// front's buffer small; the front streams them one after another.
const EXPORT_PAGE_EVENTS: u32 = 128;
const MAX_FILTER_CHARS: usize = 256;

fn read_failed(e: LedgerError) -> ApiError {
    tracing::error!(code = e.code(), error = %e, "ledger read failed");
    ApiError::new(ErrorCode::StoreUnavailable).with_retry_after(1)
}

fn bad(reason: String) -> ApiError {
    ApiError::new(ErrorCode::BadRequest).with_reason(reason)
}

fn text_filter(name: &str, value: &Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if v.is_empty() || v.chars().count() > MAX_FILTER_CHARS || v.chars().any(char::is_control) => {
            Err(bad(format!("filter {name} must be 1..={MAX_FILTER_CHARS} printable characters")))
        }
        other => Ok(other.clone()),
    }
}

fn instant(name: &str, value: &Option<String>) -> Result<Option<OffsetDateTime>, ApiError> {
    value
        .as_deref()
        .map(|v| {
            OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
                .map_err(|_| bad(format!("filter {name} is not RFC 3339 (e.g. 2026-01-31T12:00:00Z)")))
        })
        .transpose()
}

pub fn filter_of(query: &AuditQuery) -> Result<EventFilter, ApiError> {
    let after_seq = query
        .after_seq
        .as_deref()
        .map(|v| v.parse::<u64>().map_err(|_| bad("after_seq must be a number".into())))
        .transpose()?;
    let limit = query
        .limit
        .as_deref()
        .map(|v| {
            v.parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_EVENT_LIMIT).contains(n))
                .ok_or_else(|| bad(format!("limit must be 1..={MAX_EVENT_LIMIT}")))
        })
        .transpose()?;
    Ok(EventFilter {
        trace_id: text_filter("trace_id", &query.trace_id)?,
        event_type: text_filter("event_type", &query.event_type)?,
        action_id: text_filter("action_id", &query.action_id)?,
        principal: text_filter("principal", &query.principal)?,
        session_id: text_filter("session_id", &query.session_id)?,
        decision: text_filter("decision", &query.decision)?,
        after: instant("after", &query.after)?,
        before: instant("before", &query.before)?,
        after_seq,
        limit: Some(limit.unwrap_or(DEFAULT_EVENT_LIMIT)),
    })
}

/// `GET /v1/audit/events`: in chain order; a page that would not fit one
/// answer is cut short and says where to continue.
pub async fn events(gate: &Gate, query: &AuditQuery) -> Result<Value, ApiError> {
    let filter = filter_of(query)?;
    let limit = filter.limit.unwrap_or(DEFAULT_EVENT_LIMIT) as usize;
    let events = gate.ledger.query_events(filter).await.map_err(read_failed)?;
    let mut kept = Vec::with_capacity(events.len());
    let mut bytes = 0;
    let mut truncated = false;
    for event in events {
        let value = serde_json::to_value(&event).map_err(|_| ApiError::new(ErrorCode::InternalError))?;
        bytes += value.to_string().len();
        if bytes > MAX_ANSWER_BYTES {
            truncated = true;
            break;
        }
        kept.push((event.seq, value));
    }
    let more = truncated || kept.len() >= limit;
    let next_after_seq = if more { kept.last().map(|(seq, _)| *seq) } else { None };
    let events: Vec<Value> = kept.into_iter().map(|(_, v)| v).collect();
    Ok(json!({"count": events.len(), "events": events, "truncated": truncated, "next_after_seq": next_after_seq}))
}

/// `GET /v1/audit/verify`: the chain, every row against its witness, every
/// receipt signature against every receipt key the signer ever used.
pub async fn verify(gate: &Gate) -> Result<Value, ApiError> {
    let keys = gate.keys.refresh(&gate.peers).await?;
    let receipt_keys = latchgate_core::receipt::receipt_keys_from_jwks(&keys.receipt_jwks_json).map_err(|e| {
        tracing::error!(code = e.code(), error = %e, "signer sent unusable receipt keys");
        ApiError::new(ErrorCode::InternalError)
    })?;
    match gate.ledger.verify_chain_and_receipts(receipt_keys).await {
        Ok(report) => Ok(json!({"ok": true, "report": report})),
        Err(LedgerError::ChainBroken(chain_break)) => {
            let seq = chain_break.seq;
            let event_id = match seq {
                Some(seq) => gate.ledger.reader().event_id_at(seq).ok().flatten(),
                None => None,
            };
            Ok(json!({
                "ok": false,
                "first_bad_event": {
                    "seq": seq, "event_id": event_id,
                    "reason": chain_break.reason.to_string(), "detail": chain_break.reason,
                },
            }))
        }
        Err(e @ LedgerError::CorruptRow(_)) => Ok(json!({
            "ok": false,
            "first_bad_event": {"seq": null, "event_id": null, "reason": e.to_string(), "detail": null},
        })),
        Err(e) => Err(read_failed(e)),
    }
}

/// One page of `GET /v1/audit/export` for `operator`, with the continuation
/// for the next page when there is one.
pub async fn export_page(gate: &Gate, operator: &str, after_seq: u64) -> FrontReply {
    match gate.ledger.export_page(after_seq, EXPORT_PAGE_EVENTS, MAX_ANSWER_BYTES).await {
        Ok((body, next_after_seq)) => {
            let continuation = next_after_seq.map(|next| gate.exports.issue(operator, next));
            FrontReply::Jsonl { body, next_after_seq, continuation }
        }
        Err(e) => FrontReply::Error(read_failed(e)),
    }
}

/// How long the front may take to ask for the next export page.
const CONTINUATION_TTL: Duration = Duration::from_secs(60);

/// Open exports: a random single-use token per next page, bound to the
/// operator whose proof opened the export and to the page it continues at.
#[derive(Default)]
pub struct ExportCursors {
    open: Mutex<HashMap<String, Cursor>>,
}

struct Cursor {
    operator: String,
    after_seq: u64,
    expires: Instant,
}

impl ExportCursors {
    fn issue(&self, operator: &str, after_seq: u64) -> String {
        let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        open.retain(|_, c| c.expires > now);
        let cursor = Cursor { operator: operator.to_string(), after_seq, expires: now + CONTINUATION_TTL };
        open.insert(token.clone(), cursor);
        token
    }

    /// The operator of a live token for `after_seq`; the token is spent either way.
    pub fn redeem(&self, token: &str, after_seq: u64) -> Option<String> {
        let cursor = self.open.lock().unwrap_or_else(PoisonError::into_inner).remove(token)?;
        (cursor.after_seq == after_seq && cursor.expires > Instant::now()).then_some(cursor.operator)
    }
}

/// `GET /v1/receipts/{id}` for operators: any receipt.
pub async fn receipt(gate: &Gate, receipt_id: &str) -> Result<Value, ApiError> {
    if receipt_id.is_empty() || receipt_id.len() > 128 {
        return Err(ApiError::new(ErrorCode::NotFound));
    }
    let receipt = gate.ledger.get_receipt(receipt_id.to_string()).await.map_err(read_failed)?;
    let receipt = receipt.ok_or_else(|| ApiError::new(ErrorCode::NotFound))?;
    serde_json::to_value(&receipt).map_err(|_| ApiError::new(ErrorCode::InternalError))
}

/// `GET /v1/admin/intents/unresolved`: dispatched calls whose outcome is unknown.
pub async fn unresolved_intents(gate: &Gate) -> Result<Value, ApiError> {
    let intents = gate.ledger.unresolved_intents().await.map_err(read_failed)?;
    Ok(json!({"count": intents.len(), "intents": intents}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_export_continuation_is_single_use_and_bound_to_its_page() {
        let cursors = ExportCursors::default();
        let token = cursors.issue("alice", 128);
        assert_eq!(cursors.redeem(&token, 256), None, "another page");
        let token = cursors.issue("alice", 128);
        assert_eq!(cursors.redeem(&token, 128).as_deref(), Some("alice"));
        assert_eq!(cursors.redeem(&token, 128), None, "spent");
        assert_eq!(cursors.redeem("forged", 128), None);
    }
}
