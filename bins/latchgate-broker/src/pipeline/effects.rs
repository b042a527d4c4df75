//! After the executor answered: response schema, effect verification, and
//! the receipt's description of what happened.

use latchgate_core::config::SchemaEnforcement;
use latchgate_core::manifest::{RegisteredAction, VerifierKind};
use latchgate_core::receipt::{NormalizedResult, VerificationOutcome};
use latchgate_ipc::messages::broker_executor::{IoObservation, Outcome};
use serde_json::{Map, Value, json};

/// The verdict on one call after the executor answered.
pub struct Assessment {
    /// Parsed provider output when the call succeeded and passed the schema.
    pub output: Option<Value>,
    /// Set when the call is a failure (executor class or broker check).
    pub failure_class: Option<String>,
    pub verification: VerificationOutcome,
    pub normalized: NormalizedResult,
    pub provider_receipt: Value,
}

pub fn assess(action: &RegisteredAction, outcome: &Outcome, enforcement: SchemaEnforcement) -> Assessment {
    let mut failure_class = outcome.failure_class().map(|c| c.code().to_string());
    let mut output = outcome.output_json().and_then(|text| serde_json::from_str::<Value>(text).ok());
    if let Some(value) = &output
        && let Err(violation) = action.validate_response(value)
    {
        match enforcement {
            SchemaEnforcement::Deny => {
                tracing::warn!(action = action.id(), reason = %violation.reason, "response schema violation: call failed");
                failure_class = Some("response_schema_violation".into());
                output = None;
            }
            SchemaEnforcement::Warn => {
                tracing::warn!(action = action.id(), reason = %violation.reason, "response schema violation (warn mode)");
            }
        }
    }
    let verification = verify_effect(action, outcome, output.as_ref(), failure_class.is_some());
    if verification.status == "failed" && failure_class.is_none() {
        failure_class = Some("verification_failed".into());
    }
    Assessment {
        normalized: normalize(outcome, failure_class.as_deref()),
        provider_receipt: provider_receipt(outcome),
        verification,
        output,
        failure_class,
    }
}

fn last_http(outcome: &Outcome) -> Option<&latchgate_ipc::messages::broker_executor::HttpObservation> {
    outcome.io.iter().rev().find_map(|o| match o {
        IoObservation::Http(h) => Some(h),
        IoObservation::Fs(_) => None,
    })
}

fn verification(status: &str, verifier: VerifierKind, details: Value) -> VerificationOutcome {
    let mut map = match details {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    map.insert("verifier".into(), verifier.as_str().into());
    VerificationOutcome { status: status.into(), details: map }
}

fn verify_effect(
    action: &RegisteredAction,
    outcome: &Outcome,
    output: Option<&Value>,
    failed: bool,
) -> VerificationOutcome {
    let manifest = action.manifest();
    let kind = manifest.verifier_kind;
    if failed {
        return verification("not_verified", kind, json!({"reason": "call failed"}));
    }
    match kind {
        VerifierKind::None => verification("not_applicable", kind, json!({})),
        VerifierKind::HttpStatus => {
            let config = &manifest.verification_config;
            let status = last_http(outcome).and_then(|h| h.status);
            let status_ok = match status {
                Some(s) => config.expected_status.is_empty() || config.expected_status.contains(&s),
                None => false,
            };
            let missing: Vec<&String> = config
                .required_fields
                .iter()
                .filter(|pointer| output.and_then(|o| o.pointer(pointer)).is_none())
                .collect();
            let verdict = if status_ok && missing.is_empty() { "verified" } else { "failed" };
            verification(verdict, kind, json!({"observed_status": status, "missing_fields": missing}))
        }
        VerifierKind::FsEffect => {
            let fs = outcome.io.iter().find_map(|o| match o {
                IoObservation::Fs(f) => Some(f),
                IoObservation::Http(_) => None,
            });
            let verdict = match fs {
                Some(f) if f.error.is_none() => "verified",
                _ => "failed",
            };
            verification(
                verdict,
                kind,
                json!({"op": fs.map(|f| &f.op), "sha256_before": fs.and_then(|f| f.sha256_before.as_ref()), "sha256_after": fs.and_then(|f| f.sha256_after.as_ref())}),
            )
        }
    }
}

fn normalize(outcome: &Outcome, failure_class: Option<&str>) -> NormalizedResult {
    let mut details = Map::new();
    let kind = if let Some(class) = failure_class {
        details.insert("failure_class".into(), class.into());
        "failure"
    } else if let Some(http) = last_http(outcome) {
        details.insert("status".into(), http.status.into());
        details.insert("body_bytes".into(), http.response_bytes.into());
        details.insert("body_sha256".into(), http.response_sha256.clone().into());
        "http_response"
    } else if outcome.io.iter().any(|o| matches!(o, IoObservation::Fs(_))) {
        "fs_effect"
    } else {
        "output"
    };
    if let Some(text) = outcome.output_json() {
        details.insert("output_sha256".into(), latchgate_core::jcs::sha256_tagged(text.as_bytes()).into());
    }
    NormalizedResult { kind: kind.into(), details }
}

/// What the host observed, without request data that could hold secrets
/// (sinks are `scheme://host:port`, never paths or queries).
fn provider_receipt(outcome: &Outcome) -> Value {
    let io: Vec<Value> = outcome
        .io
        .iter()
        .map(|o| match o {
            IoObservation::Http(h) => json!({
                "kind": "http", "method": h.method, "sink": h.sink, "via_proxy": h.via_proxy,
                "status": h.status, "response_bytes": h.response_bytes, "response_sha256": h.response_sha256,
                "stripped_headers": h.stripped_headers, "error": h.error, "duration_us": h.duration_us,
            }),
            IoObservation::Fs(f) => json!({
                "kind": "fs", "op": f.op, "path": f.path, "sha256_before": f.sha256_before,
                "sha256_after": f.sha256_after, "bytes": f.bytes, "error": f.error,
            }),
        })
        .collect();
    json!({
        "io": io,
        "io_calls": outcome.io_calls,
        "fuel_consumed": outcome.fuel_consumed,
        "duration_us": outcome.duration_us,
    })
}
