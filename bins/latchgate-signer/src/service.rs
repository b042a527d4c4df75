//! The signer's request handlers: one per request variant, each checking what
//! it is asked before using a key.

use crate::grant_book::{GrantBook, ReceiptClaim};
use crate::keystore::KeyStore;
use latchgate_core::grant::{Grant, SignedGrant};
use latchgate_core::jcs;
use latchgate_core::jose::{LEASE_AUDIENCE, LEASE_ISSUER, LEASE_MAX_TTL_SECONDS, LeaseClaims};
use latchgate_core::receipt::{Receipt, signing_payload};
use latchgate_ipc::messages::broker_signer::{GrantPublicKey, PublicKeys, SignerReply, SignerRequest};
use latchgate_ipc::messages::executor_signer::{SecretsReply, SecretsRequest};
use latchgate_ipc::messages::status::ProcessStatus;
use std::sync::{Arc, RwLock};

pub struct SignerService {
    /// Swapped whole on reload (rotation); the grant book is not, so grants
    /// issued before a rotation still get their receipts.
    keys: RwLock<Arc<KeyStore>>,
    grants: GrantBook,
}

fn refused(code: &str, message: impl std::fmt::Display) -> SignerReply {
    tracing::warn!(code, %message, "signer refused a request");
    SignerReply::Refused { code: code.into(), message: message.to_string() }
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl SignerService {
    pub fn new(keys: KeyStore) -> Self {
        SignerService { keys: RwLock::new(Arc::new(keys)), grants: GrantBook::default() }
    }

    fn keys(&self) -> Arc<KeyStore> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Use `keys` from now on (a rotation was loaded).
    pub fn replace_keys(&self, keys: KeyStore) {
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
    }

    pub fn handle_broker(&self, request: SignerRequest, status: ProcessStatus) -> SignerReply {
        match request {
            SignerRequest::Ping => SignerReply::Pong(status),
            SignerRequest::PublicKeys => match self.public_keys() {
                Ok(keys) => SignerReply::PublicKeys(keys),
                Err(e) => refused("public_keys_unencodable", e),
            },
            SignerRequest::SignLease { claims_json } => self.sign_lease(&claims_json, unix_now()),
            SignerRequest::SignGrant { grant } => self.sign_grant(*grant, unix_now()),
            SignerRequest::SignReceipt { receipt_json } => self.sign_receipt(&receipt_json, unix_now()),
        }
    }

    pub fn handle_executor(&self, request: SecretsRequest, status: ProcessStatus) -> SecretsReply {
        match request {
            SecretsRequest::Ping => SecretsReply::Pong(status),
            SecretsRequest::GrantKeys => SecretsReply::GrantKeys(self.grant_keys()),
        }
    }

    /// Current grant key first, then retired ones whose grants may still run.
    fn grant_keys(&self) -> Vec<GrantPublicKey> {
        self.keys().grant_public_keys().into_iter().map(|(kid, key)| GrantPublicKey { kid, key }).collect()
    }

    pub fn public_keys(&self) -> Result<PublicKeys, serde_json::Error> {
        let keys = self.keys();
        Ok(PublicKeys {
            lease_jwks_json: serde_json::to_string(&keys.lease_jwks())?,
            receipt_jwks_json: serde_json::to_string(&keys.receipt_jwks())?,
            grant_keys: self.grant_keys(),
        })
    }

    /// Leases must be well-formed claims of our issuer with a bounded lifetime.
    fn sign_lease(&self, claims_json: &str, now: i64) -> SignerReply {
        let claims: LeaseClaims = match serde_json::from_str(claims_json) {
            Ok(c) => c,
            Err(e) => return refused("lease_claims_malformed", e),
        };
        let lifetime = claims.exp.saturating_sub(claims.iat);
        if claims.iss != LEASE_ISSUER || !claims.aud.contains(LEASE_AUDIENCE) {
            return refused("lease_claims_invalid", "iss/aud must be latchgate");
        }
        if lifetime <= 0 || lifetime > LEASE_MAX_TTL_SECONDS as i64 || (claims.iat - now).abs() > 30 {
            return refused(
                "lease_claims_invalid",
                format!("lifetime {lifetime} s or iat {} out of range", claims.iat),
            );
        }
        match self.keys().sign_lease(&claims) {
            Ok(jwt) => SignerReply::Lease { jwt },
            Err(e) => refused(e.code(), e),
        }
    }

    fn sign_grant(&self, grant: Grant, now: i64) -> SignerReply {
        if let Err(e) = self.grants.issue(&grant, now) {
            return refused(e.code(), e);
        }
        let message = match jcs::canonical_bytes(&grant) {
            Ok(m) => m,
            Err(e) => return refused("grant_unencodable", e),
        };
        let (kid, signature) = self.keys().sign_grant(&message);
        SignerReply::Grant(Box::new(SignedGrant { grant, kid, signature: signature.to_vec() }))
    }

    /// The signer hashes the receipt itself: it signs what it was shown, not
    /// a hash the broker computed.
    fn sign_receipt(&self, receipt_json: &str, now: i64) -> SignerReply {
        let receipt: Receipt = match serde_json::from_str(receipt_json) {
            Ok(r) => r,
            Err(e) => return refused("receipt_malformed", e),
        };
        let claim = ReceiptClaim {
            grant_id: &receipt.grant_id,
            action_id: &receipt.action_id,
            trace_id: &receipt.trace_id,
            provider_module_digest: &receipt.provider_module_digest,
        };
        if let Err(e) = self.grants.finalise(&claim, now) {
            return refused(e.code(), e);
        }
        let result_hash = match receipt.compute_result_hash() {
            Ok(h) => h,
            Err(e) => return refused(e.code(), e),
        };
        // One snapshot of the keys: the kid named is the key that signed.
        let keys = self.keys();
        let kid = keys.receipt_kid().to_string();
        let (_, signature) = keys.sign_receipt(&signing_payload(&kid, &result_hash));
        SignerReply::Receipt { signing_key_id: kid, result_hash, signature: signature.to_vec() }
    }
}
