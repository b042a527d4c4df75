//! The signer's public keys as the broker uses them: a lease verifier and the
//! JWKS documents it serves. Fetched from the signer on first use and again
//! when a lease names a key id not seen yet (rotation), at most once a second.

use crate::peers::Peers;
use latchgate_core::error::{ApiError, ErrorCode};
use latchgate_core::jose::LeaseVerifier;
use latchgate_core::refresh_cache::RefreshingCache;
use std::sync::Arc;
use std::time::Duration;

pub struct KnownKeys {
    pub lease_verifier: LeaseVerifier,
    pub lease_jwks_json: String,
    pub receipt_jwks_json: String,
    /// Key ids in `receipt_jwks_json`.
    pub receipt_kids: std::collections::HashSet<String>,
}

pub struct SignerKeys(RefreshingCache<KnownKeys>);

impl Default for SignerKeys {
    fn default() -> Self {
        SignerKeys(RefreshingCache::new(Duration::from_secs(1)))
    }
}

impl SignerKeys {
    pub async fn get(&self, peers: &Peers) -> Result<Arc<KnownKeys>, ApiError> {
        self.0.get(|| fetch(peers)).await
    }

    pub async fn refresh(&self, peers: &Peers) -> Result<Arc<KnownKeys>, ApiError> {
        self.0.refresh(|| fetch(peers)).await
    }

    pub async fn refresh_when_allowed(&self, peers: &Peers) -> Result<Arc<KnownKeys>, ApiError> {
        self.0.refresh_when_allowed(|| fetch(peers)).await
    }

    /// A receipt was just signed by `kid`: if the published receipt keys do
    /// not list it yet (the signer rotated), fetch them again now.
    pub async fn note_receipt_kid(&self, peers: &Peers, kid: &str) {
        let known = self.get(peers).await.is_ok_and(|k| k.receipt_kids.contains(kid));
        if !known && let Err(e) = self.0.refresh_now(|| fetch(peers)).await {
            tracing::warn!(code = %e.code, "receipt keys not refreshed after a rotation");
        }
    }

    /// The signer just signed a lease with `kid`: learn the key before the
    /// agent presents the lease (a rotation), so it is accepted at once.
    pub async fn note_lease_kid(&self, peers: &Peers, kid: &str) {
        let known = self.get(peers).await.is_ok_and(|k| k.lease_verifier.kids().any(|k| k == kid));
        if !known && let Err(e) = self.0.refresh_now(|| fetch(peers)).await {
            tracing::warn!(code = %e.code, "lease keys not refreshed after a rotation");
        }
    }
}

async fn fetch(peers: &Peers) -> Result<KnownKeys, ApiError> {
    let public = peers.public_keys().await?;
    let lease_verifier = lease_verifier_from_json(&public.lease_jwks_json)?;
    let receipt_kids = serde_json::from_str::<latchgate_core::jose::ReceiptJwks>(&public.receipt_jwks_json)
        .map(|jwks| jwks.keys.into_iter().map(|k| k.kid).collect())
        .unwrap_or_default();
    Ok(KnownKeys {
        lease_verifier,
        receipt_kids,
        lease_jwks_json: public.lease_jwks_json,
        receipt_jwks_json: public.receipt_jwks_json,
    })
}

fn lease_verifier_from_json(jwks_json: &str) -> Result<LeaseVerifier, ApiError> {
    LeaseVerifier::from_jwks_json(jwks_json).map_err(|e| {
        tracing::error!(error = %e, "signer sent unusable lease keys");
        ApiError::new(ErrorCode::InternalError)
    })
}
