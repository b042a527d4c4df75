//! The unauthenticated action catalogue: list, detail, request schema.

use crate::gate::Gate;
use latchgate_core::error::{ApiError, ErrorCode};
use serde_json::Value;

pub fn list(gate: &Gate) -> Value {
    serde_json::to_value(gate.registry.summaries()).unwrap_or(Value::Array(Vec::new()))
}

fn find<'a>(gate: &'a Gate, action_id: &str) -> Result<&'a latchgate_core::manifest::RegisteredAction, ApiError> {
    gate.registry.get(action_id).map(|a| a.as_ref()).ok_or_else(|| ApiError::new(ErrorCode::ActionNotFound))
}

pub fn detail(gate: &Gate, action_id: &str) -> Result<Value, ApiError> {
    let action = find(gate, action_id)?;
    let mut detail = action.detail_json();
    detail["trusted"] = gate.trust.is_trusted(action_id).into();
    Ok(detail)
}

pub fn request_schema(gate: &Gate, action_id: &str) -> Result<Value, ApiError> {
    Ok(find(gate, action_id)?.request_schema().clone())
}
