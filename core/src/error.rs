//! Every failure a client can see: one stable code string and one HTTP status,
//! kept in a single table so docs, SDKs and tests agree (API.md).

use serde::{Deserialize, Serialize};

macro_rules! error_codes {
    ($( $variant:ident => ($status:expr, $code:literal), )*) => {
        /// Stable, client-visible error codes. Internal detail goes to logs, never here.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum ErrorCode { $( $variant, )* }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$variant, )* ];

            /// The wire string, e.g. `"policy_denied"`.
            pub fn as_str(self) -> &'static str {
                match self { $( ErrorCode::$variant => $code, )* }
            }

            /// The HTTP status this code is answered with.
            pub fn http_status(self) -> u16 {
                match self { $( ErrorCode::$variant => $status, )* }
            }

            pub fn parse(code: &str) -> Option<ErrorCode> {
                match code { $( $code => Some(ErrorCode::$variant), )* _ => None }
            }
        }
    };
}

error_codes! {
    BadRequest => (400, "bad_request"),
    LeaseExpired => (401, "lease_expired"),
    InvalidLease => (401, "invalid_lease"),
    InvalidDpop => (401, "invalid_dpop"),
    ReplayDetected => (401, "replay_detected"),
    MissingAuthHeader => (401, "missing_auth_header"),
    InvalidOperatorToken => (401, "invalid_operator_token"),
    PolicyDenied => (403, "policy_denied"),
    BudgetExhausted => (403, "budget_exhausted"),
    ActionDigestMismatch => (403, "action_digest_mismatch"),
    ActionNotRegistered => (403, "action_not_registered"),
    IdentityForbidden => (403, "identity_forbidden"),
    ScopeNotPermitted => (403, "scope_not_permitted"),
    ActionNotFound => (404, "action_not_found"),
    NotFound => (404, "not_found"),
    MethodNotAllowed => (405, "method_not_allowed"),
    GrantConsumed => (409, "grant_consumed"),
    ApprovalAlreadyDecided => (409, "approval_already_decided"),
    ApprovalExpired => (409, "approval_expired"),
    ApprovalFailed => (409, "approval_failed"),
    PayloadTooLarge => (413, "payload_too_large"),
    SchemaViolation => (422, "schema_violation"),
    RateLimited => (429, "rate_limited"),
    OperatorThrottled => (429, "operator_throttled"),
    InternalError => (500, "internal_error"),
    EvidencePersistenceFailed => (500, "evidence_persistence_failed"),
    PolicyDataWriteFailed => (500, "policy_data_write_failed"),
    ActionExecutionFailed => (502, "action_execution_failed"),
    Draining => (503, "draining"),
    NotReady => (503, "not_ready"),
    ReplayCacheUnavailable => (503, "replay_cache_unavailable"),
    PolicyEngineUnavailable => (503, "policy_engine_unavailable"),
    PolicyEngineTimeout => (503, "policy_engine_timeout"),
    PolicyEngineInvalidResponse => (503, "policy_engine_invalid_response"),
    BudgetStoreUnavailable => (503, "budget_store_unavailable"),
    StoreUnavailable => (503, "store_unavailable"),
    ComponentUnavailable => (503, "component_unavailable"),
    RequestTimeout => (408, "request_timeout"),
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A client-visible failure: the code plus the optional detail fields the
/// SDKs read (`deny_reason`, `remediation`, `reason`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub code: ErrorCode,
    pub deny_reason: Option<String>,
    pub remediation: Option<String>,
    pub reason: Option<String>,
    /// Seconds for `Retry-After` (429 and some 503s).
    pub retry_after_seconds: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode) -> Self {
        ApiError { code, deny_reason: None, remediation: None, reason: None, retry_after_seconds: None }
    }

    pub fn with_deny_reason(mut self, reason: impl Into<String>) -> Self {
        self.deny_reason = Some(reason.into());
        self
    }

    pub fn with_remediation(mut self, remediation: impl Into<String>) -> Self {
        self.remediation = Some(remediation.into());
        self
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_seconds = Some(seconds);
        self
    }

    /// A process behind this one cannot be reached: fail closed with 503, retry in 1 s.
    pub fn component_unavailable(component: &str) -> Self {
        ApiError::new(ErrorCode::ComponentUnavailable)
            .with_reason(format!("{component} unavailable"))
            .with_retry_after(1)
    }

    /// The JSON body: `{"error": code, ...details}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut body = serde_json::Map::new();
        body.insert("error".into(), self.code.as_str().into());
        for (key, value) in
            [("deny_reason", &self.deny_reason), ("remediation", &self.remediation), ("reason", &self.reason)]
        {
            if let Some(v) = value {
                body.insert(key.into(), v.clone().into());
            }
        }
        if let Some(s) = self.retry_after_seconds {
            body.insert("retry_after_seconds".into(), s.into());
        }
        serde_json::Value::Object(body)
    }
}

impl From<ErrorCode> for ApiError {
    fn from(code: ErrorCode) -> Self {
        ApiError::new(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate code {}", code.as_str());
            assert_eq!(ErrorCode::parse(code.as_str()), Some(*code));
            assert!((400..600).contains(&code.http_status()));
        }
    }

    #[test]
    fn sdk_relied_statuses_match_the_contract() {
        assert_eq!(ErrorCode::ReplayDetected.http_status(), 401);
        assert_eq!(ErrorCode::PolicyDenied.http_status(), 403);
        assert_eq!(ErrorCode::GrantConsumed.http_status(), 409);
        assert_eq!(ErrorCode::SchemaViolation.http_status(), 422);
        assert_eq!(ErrorCode::ComponentUnavailable.http_status(), 503);
    }

    #[test]
    fn json_body_has_error_and_details() {
        let e = ApiError::new(ErrorCode::InvalidDpop).with_deny_reason("htm_mismatch");
        let v = e.to_json();
        assert_eq!(v["error"], "invalid_dpop");
        assert_eq!(v["deny_reason"], "htm_mismatch");
        assert!(v.get("remediation").is_none());
    }
}
