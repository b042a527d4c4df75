//! Grants: the signer's one-shot permission for one execution of one plan.
//! The broker asks for it, the signer signs it with the grant key, the executor
//! verifies it before running anything, and the ledger consumes it exactly once.

use serde::{Deserialize, Serialize};

/// What a grant allows. Signed over its JCS form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub grant_id: String,
    pub trace_id: String,
    pub action_id: String,
    pub action_version: String,
    /// `sha256:<hex>` of the provider module the executor must run.
    pub provider_module_digest: String,
    /// `sha256:<hex>` of the JCS form of the request.
    pub request_hash: String,
    pub principal: String,
    pub session_id: String,
    /// Revocation epoch the grant was issued under; older than current = dead.
    pub epoch: u64,
    /// Unix seconds.
    pub issued_at: i64,
    pub expires_at: i64,
    /// Sinks policy allowed (host names / patterns).
    pub allowed_sinks: Vec<String>,
    /// Secret names policy approved; the signer releases only these.
    pub approved_secrets: Vec<String>,
    /// Operator who approved the plan, when it went through an approval.
    pub approved_by: Option<String>,
    /// RFC 7638 thumbprint of the DPoP key the approving operator proved
    /// (`dpop_jkt` of their credential). Always serialized (`null` without an
    /// approval): grants travel as bincode, which cannot skip a field.
    pub approved_by_jkt: Option<String>,
}

/// A grant with its Ed25519 signature (grant key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedGrant {
    pub grant: Grant,
    /// Key id of the grant key that signed it.
    pub kid: String,
    /// 64-byte Ed25519 signature over `jcs::canonical_bytes(&grant)`.
    pub signature: Vec<u8>,
}
