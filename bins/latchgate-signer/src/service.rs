//! The signer's request handlers: one per request variant, each checking what
//! it is asked before using a key.

use crate::grant_book::{GrantBook, ReceiptClaim};
use crate::keystore::KeyStore;
use crate::vault::SecretsVault;
use ed25519_dalek::Signature;
use latchgate_core::grant::{Grant, SignedGrant};
use latchgate_core::jcs;
use latchgate_core::jose::{LEASE_AUDIENCE, LEASE_ISSUER, LEASE_MAX_TTL_SECONDS, LeaseClaims};
use latchgate_core::receipt::{Receipt, signing_payload};
use latchgate_ipc::messages::broker_signer::{GrantPublicKey, PublicKeys, SignerReply, SignerRequest};
use latchgate_ipc::messages::executor_signer::{ReleasedSecret, SecretValue, SecretsReply, SecretsRequest};
use latchgate_ipc::messages::status::ProcessStatus;
use std::sync::{Arc, RwLock};

pub struct SignerService {
    /// Swapped whole on reload (rotation); the grant book is not, so grants
    /// issued before a rotation still get their receipts.
    keys: RwLock<Arc<KeyStore>>,
    grants: GrantBook,
    /// `None` when `[secrets]` is not configured: no secret exists.
    secrets: Option<SecretsVault>,
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
        SignerService { keys: RwLock::new(Arc::new(keys)), grants: GrantBook::default(), secrets: None }
    }

    fn keys(&self) -> Arc<KeyStore> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Use `keys` from now on (a rotation was loaded).
    pub fn replace_keys(&self, keys: KeyStore) {
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
    }

    /// Releases secrets from `vault` (the configured SOPS file).
    pub fn with_secrets(mut self, vault: SecretsVault) -> Self {
        self.secrets = Some(vault);
        self
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
            SignerRequest::SecretsPresent { names } => self.secrets_present(names),
        }
    }

    pub fn handle_executor(&self, request: SecretsRequest, status: ProcessStatus) -> SecretsReply {
        match request {
            SecretsRequest::Ping => SecretsReply::Pong(status),
            SecretsRequest::GrantKeys => SecretsReply::GrantKeys(self.grant_keys()),
            SecretsRequest::Secrets { grant } => self.release_secrets(&grant, unix_now()),
        }
    }

    /// Names only: which of `names` the secrets file holds. Without a
    /// secrets file none does.
    fn secrets_present(&self, names: Vec<String>) -> SignerReply {
        let Some(vault) = &self.secrets else {
            return SignerReply::SecretsPresent { present: Vec::new() };
        };
        match vault.present(&names) {
            Ok(present) => SignerReply::SecretsPresent { present },
            Err(e) => refused(e.code(), e),
        }
    }

    /// The per-grant release: our own signature on exactly this grant, then
    /// the grant book's state machine (outstanding, unexpired, newest epoch,
    /// released once), then only the approved names the file holds.
    pub fn release_secrets(&self, signed: &SignedGrant, now: i64) -> SecretsReply {
        let refuse = |code: &str, message: &dyn std::fmt::Display| {
            tracing::warn!(code, %message, grant = %signed.grant.grant_id, "secrets not released");
            SecretsReply::Refused { code: code.into(), message: message.to_string() }
        };
        // A grant issued just before a grant-key rotation is still ours: any
        // live grant key (current or retired, not expired) with its kid.
        let Some((_, public)) = self.keys().grant_public_keys().into_iter().find(|(kid, _)| *kid == signed.kid) else {
            return refuse("grant_key_unknown", &format!("grant key id `{}` is not this signer's", signed.kid));
        };
        let verified = Signature::from_slice(&signed.signature)
            .ok()
            .zip(jcs::canonical_bytes(&signed.grant).ok())
            .zip(ed25519_dalek::VerifyingKey::from_bytes(&public).ok())
            .is_some_and(|((signature, message), key)| key.verify_strict(&message, &signature).is_ok());
        if !verified {
            return refuse("grant_signature_invalid", &"the grant signature does not verify");
        }
        if let Err(e) = self.grants.release_secrets(&signed.grant, now) {
            return refuse(e.code(), &e);
        }
        let names = &signed.grant.approved_secrets;
        if names.is_empty() {
            return SecretsReply::Secrets(Vec::new());
        }
        let Some(vault) = &self.secrets else {
            return SecretsReply::Secrets(Vec::new());
        };
        match vault.release(names) {
            Ok(values) => {
                tracing::info!(grant = %signed.grant.grant_id, released = ?values.iter().map(|(n, _)| n).collect::<Vec<_>>(), "secrets released");
                SecretsReply::Secrets(
                    values
                        .into_iter()
                        .map(|(name, value)| ReleasedSecret { name, value: SecretValue::new(value) })
                        .collect(),
                )
            }
            Err(e) => refuse(e.code(), &e),
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

#[cfg(test)]
mod tests {
    use super::*;
    use latchgate_core::role::Role;

    fn service(dir: &std::path::Path) -> SignerService {
        SignerService::new(KeyStore::load_or_generate(&dir.join("keys")).unwrap())
    }

    fn issued(service: &SignerService, now: i64) -> SignedGrant {
        let grant = Grant {
            grant_id: "g1".into(),
            trace_id: "t".into(),
            action_id: "a".into(),
            action_version: "1".into(),
            provider_module_digest: "sha256:00".into(),
            request_hash: "sha256:11".into(),
            principal: "p".into(),
            session_id: "s".into(),
            epoch: 0,
            issued_at: now,
            expires_at: now + 60,
            allowed_sinks: vec![],
            approved_secrets: vec!["A_TOKEN".into()],
            approved_by: None,
            approved_by_jkt: None,
        };
        match service.sign_grant(grant, now) {
            SignerReply::Grant(g) => *g,
            other => panic!("{other:?}"),
        }
    }

    fn refusal(reply: SecretsReply) -> String {
        match reply {
            SecretsReply::Refused { code, .. } => code,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn secrets_need_this_signers_own_signature_on_the_grant() {
        let dir = tempfile::tempdir().unwrap();
        let service = service(dir.path());
        let now = unix_now();
        let mut grant = issued(&service, now);
        let mut other_kid = grant.clone();
        other_kid.kid = "someone-else".into();
        assert_eq!(refusal(service.release_secrets(&other_kid, now)), "grant_key_unknown");
        grant.signature[0] ^= 1;
        assert_eq!(refusal(service.release_secrets(&grant, now)), "grant_signature_invalid");
        grant.signature.truncate(10);
        assert_eq!(refusal(service.release_secrets(&grant, now)), "grant_signature_invalid");
    }

    #[test]
    fn without_a_secrets_file_nothing_is_present_or_released() {
        let dir = tempfile::tempdir().unwrap();
        let service = service(dir.path());
        let now = unix_now();
        let grant = issued(&service, now);
        assert_eq!(service.release_secrets(&grant, now), SecretsReply::Secrets(vec![]));
        let status = ProcessStatus::current(Role::Signer, true, None);
        let reply = service.handle_broker(SignerRequest::SecretsPresent { names: vec!["A_TOKEN".into()] }, status);
        assert_eq!(reply, SignerReply::SecretsPresent { present: vec![] });
    }
}
