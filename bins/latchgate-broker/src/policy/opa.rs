//! `OpaClient`: the policy decision point over HTTP (`[opa]` in latchgate.toml).
//!
//! `POST {url}/v1/data/latchgate/decision` with `{"input": …}` on pooled
//! keep-alive connections; the answer's `result` goes through the same strict
//! decoding as the embedded engine's. Every failure is a 503 and never an
//! allow:
//!
//! | what happened | error | code |
//! |---|---|---|
//! | no connection, reset, HTTP 5xx | `Unavailable` | `policy_engine_unavailable` |
//! | no complete answer within `timeout_ms` | `Timeout` | `policy_engine_timeout` |
//! | not JSON, no `result` (path undefined: policy not loaded), ill-typed or inconsistent decision, other status | `InvalidResponse` | `policy_engine_invalid_response` |

use super::types::{PolicyDecision, PolicyInput};
use super::{PolicyEngine, PolicyError, PolicyFuture, probe_input};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use latchgate_core::config::{OpaConfig, opa_endpoint};
use std::time::Duration;

/// OPA's REST path of `data.latchgate.decision`.
pub const OPA_DECISION_PATH: &str = "/v1/data/latchgate/decision";
/// A decision is a few hundred bytes; anything this large is not one.
pub const MAX_OPA_RESPONSE_BYTES: usize = 1024 * 1024;
/// Idle keep-alive connections kept to OPA.
const POOL_IDLE_PER_HOST: usize = 32;

pub struct OpaClient {
    client: Client<HttpConnector, Full<Bytes>>,
    decision_uri: http::Uri,
    timeout: Duration,
    endpoint: String,
}

impl std::fmt::Debug for OpaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpaClient").field("endpoint", &self.endpoint).field("timeout", &self.timeout).finish()
    }
}

impl OpaClient {
    /// No connection is made until the first decision. Must be called inside a tokio runtime.
    pub fn new(cfg: &OpaConfig) -> Result<OpaClient, PolicyError> {
        let endpoint = opa_endpoint(&cfg.url).map_err(|e| PolicyError::Load(format!("opa.url: {e}")))?.to_string();
        let decision_uri: http::Uri = format!("{}{OPA_DECISION_PATH}", cfg.url.trim_end_matches('/'))
            .parse()
            .map_err(|e| PolicyError::Load(format!("opa.url: {e}")))?;
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(POOL_IDLE_PER_HOST)
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(OpaClient { client, decision_uri, timeout, endpoint })
    }

    /// One decision request, bounded by the timeout from connect to last byte.
    async fn decide(&self, input: &PolicyInput) -> Result<PolicyDecision, PolicyError> {
        let body = serde_json::to_vec(&serde_json::json!({ "input": input }))
            .map_err(|e| PolicyError::Unavailable(format!("input: {e}")))?;
        let request = http::Request::post(self.decision_uri.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| PolicyError::Unavailable(format!("request: {e}")))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| PolicyError::Unavailable(format!("OPA at {} unreachable: {e}", self.endpoint)))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_OPA_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| PolicyError::Unavailable(format!("OPA answer not read: {e}")))?
                .to_bytes();
            Ok::<_, PolicyError>((status, body))
        };
        let (status, body) =
            tokio::time::timeout(self.timeout, exchange).await.map_err(|_| PolicyError::Timeout(self.timeout))??;
        let result = decision_result(status, &body)?;
        PolicyDecision::from_engine_value(result, input)
    }
}

/// The `result` of an OPA data API answer, or why there is none.
fn decision_result(status: http::StatusCode, body: &[u8]) -> Result<serde_json::Value, PolicyError> {
    if status.is_server_error() {
        return Err(PolicyError::Unavailable(format!("OPA answered HTTP {status}")));
    }
    if status != http::StatusCode::OK {
        return Err(PolicyError::InvalidResponse(format!("OPA answered HTTP {status}")));
    }
    let answer: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| PolicyError::InvalidResponse(format!("OPA answer is not JSON: {e}")))?;
    let object =
        answer.as_object().ok_or_else(|| PolicyError::InvalidResponse("OPA answer is not a JSON object".into()))?;
    object.get("result").cloned().ok_or_else(|| {
        PolicyError::InvalidResponse(
            "OPA answer has no result: data.latchgate.decision is undefined (is latchgate.rego loaded?)".into(),
        )
    })
}

impl PolicyEngine for OpaClient {
    fn evaluate<'a>(&'a self, input: &'a PolicyInput) -> PolicyFuture<'a, PolicyDecision> {
        Box::pin(self.decide(input))
    }

    fn probe(&self) -> PolicyFuture<'_, String> {
        Box::pin(async move {
            let probe = probe_input();
            self.decide(&probe).await.map(|d| d.policy_version)
        })
    }

    fn backend(&self) -> &'static str {
        "opa"
    }

    fn endpoint(&self) -> String {
        self.endpoint.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_without_a_usable_result_are_classified() {
        let code = |status: u16, body: &str| {
            decision_result(http::StatusCode::from_u16(status).unwrap(), body.as_bytes()).unwrap_err().error_code()
        };
        use latchgate_core::error::ErrorCode::{PolicyEngineInvalidResponse, PolicyEngineUnavailable};
        assert_eq!(code(500, "{}"), PolicyEngineUnavailable);
        assert_eq!(code(503, ""), PolicyEngineUnavailable);
        assert_eq!(code(404, "{}"), PolicyEngineInvalidResponse);
        assert_eq!(code(200, "<html>"), PolicyEngineInvalidResponse);
        assert_eq!(code(200, "[1]"), PolicyEngineInvalidResponse);
        assert_eq!(code(200, "{}"), PolicyEngineInvalidResponse, "undefined decision path");
        assert_eq!(
            decision_result(http::StatusCode::OK, br#"{"result": {"allow": true}}"#).unwrap(),
            serde_json::json!({"allow": true})
        );
    }
}
