//! Compiled request/response JSON Schemas with the limits that keep validation
//! cheap on hostile input: a size cap, a nesting-depth cap (checked before the
//! schema walks the document) and a cap on how many errors are reported.

use crate::error::ErrorCode;
use serde_json::Value;

/// Deepest nesting of arrays/objects accepted in a request or response.
pub const MAX_NESTING_DEPTH: usize = 32;
/// Validation errors listed in one `reason`; the rest are counted.
pub const MAX_REPORTED_ERRORS: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViolationKind {
    /// Serialized size over the action's `max_*_bytes` (413 for a request).
    TooLarge,
    /// Nested deeper than [`MAX_NESTING_DEPTH`].
    TooDeep,
    /// The document does not satisfy the schema.
    Schema,
}

/// Why a request or response was refused; `reason` is safe to show the caller.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct SchemaViolation {
    pub kind: ViolationKind,
    pub reason: String,
}

impl SchemaViolation {
    pub fn code(&self) -> &'static str {
        self.error_code().as_str()
    }

    /// The client-visible code (API.md): 413 for size, 422 otherwise.
    pub fn error_code(&self) -> ErrorCode {
        match self.kind {
            ViolationKind::TooLarge => ErrorCode::PayloadTooLarge,
            ViolationKind::TooDeep | ViolationKind::Schema => ErrorCode::SchemaViolation,
        }
    }
}

/// A schema compiled once at load, plus the size limit of the documents it checks.
pub struct CompiledSchema {
    schema: Value,
    validator: jsonschema::Validator,
    max_bytes: usize,
}

impl std::fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledSchema").field("max_bytes", &self.max_bytes).finish_non_exhaustive()
    }
}

impl CompiledSchema {
    /// Compile `schema` (draft from its `$schema`, 2020-12 when absent). The
    /// schema itself is checked against its meta-schema, and no `$ref` may
    /// leave the document: a manifest must not make the broker fetch anything.
    pub fn compile(schema: Value, max_bytes: usize) -> Result<CompiledSchema, String> {
        if !schema.is_object() {
            return Err("a schema must be a JSON object".into());
        }
        let validator =
            jsonschema::options().offline().should_validate_formats(true).build(&schema).map_err(|e| e.to_string())?;
        Ok(CompiledSchema { schema, validator, max_bytes })
    }

    pub fn schema(&self) -> &Value {
        &self.schema
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Depth, size, then schema: the two cheap bounds run before the validator
    /// walks the document.
    pub fn validate(&self, document: &Value) -> Result<(), SchemaViolation> {
        if nesting_depth_exceeds(document, MAX_NESTING_DEPTH) {
            return Err(SchemaViolation {
                kind: ViolationKind::TooDeep,
                reason: format!("document nests deeper than {MAX_NESTING_DEPTH} levels"),
            });
        }
        let size = serialized_len(document);
        if size > self.max_bytes {
            return Err(SchemaViolation {
                kind: ViolationKind::TooLarge,
                reason: format!("document is {size} bytes, the limit is {}", self.max_bytes),
            });
        }
        self.validate_schema_only(document)
    }

    /// Parse raw bytes and validate them; for callers holding the body.
    pub fn parse_and_validate(&self, bytes: &[u8]) -> Result<Value, SchemaViolation> {
        if bytes.len() > self.max_bytes {
            return Err(SchemaViolation {
                kind: ViolationKind::TooLarge,
                reason: format!("document is {} bytes, the limit is {}", bytes.len(), self.max_bytes),
            });
        }
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| SchemaViolation { kind: ViolationKind::Schema, reason: format!("not valid JSON: {e}") })?;
        self.validate(&value)?;
        Ok(value)
    }

    fn validate_schema_only(&self, document: &Value) -> Result<(), SchemaViolation> {
        if self.validator.is_valid(document) {
            return Ok(());
        }
        let mut messages = Vec::new();
        let mut total = 0usize;
        for error in self.validator.iter_errors(document) {
            total += 1;
            if messages.len() < MAX_REPORTED_ERRORS {
                let at = error.instance_path().to_string();
                let at = if at.is_empty() { "/".to_owned() } else { at };
                messages.push(format!("{at}: {}", error.masked()));
            }
        }
        let mut reason = messages.join("; ");
        if total > MAX_REPORTED_ERRORS {
            reason.push_str(&format!("; and {} more", total - MAX_REPORTED_ERRORS));
        }
        Err(SchemaViolation { kind: ViolationKind::Schema, reason })
    }
}

/// Iterative so that a hostile document cannot overflow the stack here.
fn nesting_depth_exceeds(value: &Value, limit: usize) -> bool {
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((v, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        if depth + 1 > limit {
            return true;
        }
        stack.extend(children.map(|c| (c, depth + 1)));
    }
    false
}

/// Compact JSON length without allocating the text.
fn serialized_len(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Serializing a Value to an infallible writer cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(depth: usize) -> Value {
        let mut v = json!(1);
        for _ in 0..depth {
            v = json!([v]);
        }
        v
    }

    #[test]
    fn depth_limit_counts_containers() {
        assert!(!nesting_depth_exceeds(&nested(32), 32));
        assert!(nesting_depth_exceeds(&nested(33), 32));
        assert!(!nesting_depth_exceeds(&json!("scalar"), 0));
    }

    #[test]
    fn serialized_len_matches_compact_json() {
        let v = json!({"a": [1, 2, {"b": "ü"}], "c": null});
        assert_eq!(serialized_len(&v), serde_json::to_vec(&v).unwrap().len());
    }
}
