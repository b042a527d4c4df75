//! The policy decision point: typed input, typed and checked output, and the
//! engines behind one trait (embedded regorus, or OPA over HTTP). The same
//! `policies/latchgate.rego` runs in both, and both answers go through the
//! same strict decoding ([`PolicyDecision::from_engine_value`]).
//!
//! The trait returns boxed futures (as `StateStore` does) so that the broker
//! holds an `Arc<dyn PolicyEngine>` chosen at start-up and an HTTP call to
//! OPA never blocks a worker thread.

mod acl;
pub mod egress_allow;
mod embedded;
mod opa;
mod types;

pub mod watch;

pub use acl::{
    AclEditError, AclEntries, DATA_FILE, grant, lock_dir_of, locked_update, read_data_file, revoke, show,
    update_data_file, write_data_file,
};
pub use embedded::{EmbeddedRego, POLICY_ENTRYPOINT, probe_input};
pub use opa::{MAX_OPA_RESPONSE_BYTES, OPA_DECISION_PATH, OpaClient};
pub use types::{Budgets, PolicyAction, PolicyDecision, PolicyEgress, PolicyInput, TrustVerdict};

use latchgate_core::error::ErrorCode;
use std::future::Future;
use std::pin::Pin;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy or its data could not be loaded or compiled.
    #[error("policy cannot be loaded: {0}")]
    Load(String),
    /// The engine could not evaluate (evaluation error, engine gone).
    #[error("policy engine unavailable: {0}")]
    Unavailable(String),
    #[error("policy evaluation exceeded {0:?}")]
    Timeout(std::time::Duration),
    /// The decision is missing, ill-typed or inconsistent.
    #[error("policy engine returned an invalid decision: {0}")]
    InvalidResponse(String),
}

impl PolicyError {
    pub fn code(&self) -> &'static str {
        match self {
            PolicyError::Load(_) => "policy_load_failed",
            PolicyError::Unavailable(_) => ErrorCode::PolicyEngineUnavailable.as_str(),
            PolicyError::Timeout(_) => ErrorCode::PolicyEngineTimeout.as_str(),
            PolicyError::InvalidResponse(_) => ErrorCode::PolicyEngineInvalidResponse.as_str(),
        }
    }

    /// What the caller is answered: every policy failure is a 503, never an allow.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            PolicyError::Load(_) | PolicyError::Unavailable(_) => ErrorCode::PolicyEngineUnavailable,
            PolicyError::Timeout(_) => ErrorCode::PolicyEngineTimeout,
            PolicyError::InvalidResponse(_) => ErrorCode::PolicyEngineInvalidResponse,
        }
    }
}

pub type PolicyFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, PolicyError>> + Send + 'a>>;

/// A policy decision point. Implementations must fail closed: any doubt is an
/// `Err`, never an allowing decision.
pub trait PolicyEngine: Send + Sync {
    fn evaluate<'a>(&'a self, input: &'a PolicyInput) -> PolicyFuture<'a, PolicyDecision>;

    /// The policy version of the currently loaded data (for status pages).
    fn policy_version(&self) -> Option<String> {
        None
    }

    /// The engine is reachable and its policy yields a well-formed decision
    /// (for `/readyz` and `doctor`): the policy version on success.
    fn probe(&self) -> PolicyFuture<'_, String>;

    /// `embedded_rego` or `opa`.
    fn backend(&self) -> &'static str;

    /// Where the engine is (a URL without credentials, or the policies dir).
    fn endpoint(&self) -> String;
    /// Load the policy data again (`POST /v1/admin/reload`, or data.json
    /// changed on disk); on error the running policy stays in force. Returns
    /// the policy version now in force. Engines that hold no data of their
    /// own (a remote OPA) have nothing to reload.
    fn reload(&self) -> Result<String, PolicyError> {
        Ok(self.policy_version().unwrap_or_default())
    }
}
