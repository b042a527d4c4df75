//! Grant verification: the executor runs nothing unless the signer's grant for
//! exactly this module is authentic, unexpired and issued under the current
//! revocation epoch.

use ed25519_dalek::{Signature, VerifyingKey};
use latchgate_core::grant::SignedGrant;
use latchgate_core::jcs;
use std::collections::HashMap;

/// Clock skew tolerated for `issued_at` in the future.
const MAX_CLOCK_SKEW_SECONDS: i64 = 60;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("grant signature is not 64 bytes")]
    MalformedSignature,
    #[error("grant cannot be canonicalized")]
    Unencodable,
    #[error("grant key id `{0}` is not trusted")]
    UnknownKey(String),
    #[error("grant signature does not verify")]
    BadSignature,
    #[error("grant expired at {expires_at} (now {now})")]
    Expired { expires_at: i64, now: i64 },
    #[error("grant issued in the future ({issued_at}, now {now})")]
    NotYetValid { issued_at: i64, now: i64 },
    #[error("grant epoch {grant} is older than the revocation epoch {current}")]
    RevokedEpoch { grant: u64, current: u64 },
    #[error("grant is for module {granted}, task asks for {requested}")]
    DigestMismatch { granted: String, requested: String },
    #[error("grant is for action {granted}, task asks for {requested}")]
    ActionMismatch { granted: String, requested: String },
}

impl GrantError {
    pub fn code(&self) -> &'static str {
        match self {
            GrantError::MalformedSignature => "grant_signature_malformed",
            GrantError::Unencodable => "grant_unencodable",
            GrantError::UnknownKey(_) => "grant_key_unknown",
            GrantError::BadSignature => "grant_signature_invalid",
            GrantError::Expired { .. } => "grant_expired",
            GrantError::NotYetValid { .. } => "grant_not_yet_valid",
            GrantError::RevokedEpoch { .. } => "grant_epoch_revoked",
            GrantError::DigestMismatch { .. } => "grant_digest_mismatch",
            GrantError::ActionMismatch { .. } => "grant_action_mismatch",
        }
    }
}

/// Checks, in this order: signature over `jcs::canonical_bytes(&grant)`,
/// expiry, issue time, revocation epoch, module digest. The signature comes
/// first so that a forged grant learns nothing about which field is off.
pub fn verify_grant(
    signed: &SignedGrant,
    key: &VerifyingKey,
    expected_digest: &str,
    current_epoch: u64,
    now: i64,
) -> Result<(), GrantError> {
    let signature = Signature::from_slice(&signed.signature).map_err(|_| GrantError::MalformedSignature)?;
    let message = jcs::canonical_bytes(&signed.grant).map_err(|_| GrantError::Unencodable)?;
    key.verify_strict(&message, &signature).map_err(|_| GrantError::BadSignature)?;
    let grant = &signed.grant;
    if now >= grant.expires_at {
        return Err(GrantError::Expired { expires_at: grant.expires_at, now });
    }
    if grant.issued_at > now + MAX_CLOCK_SKEW_SECONDS {
        return Err(GrantError::NotYetValid { issued_at: grant.issued_at, now });
    }
    if grant.epoch < current_epoch {
        return Err(GrantError::RevokedEpoch { grant: grant.epoch, current: current_epoch });
    }
    if grant.provider_module_digest != expected_digest {
        return Err(GrantError::DigestMismatch {
            granted: grant.provider_module_digest.clone(),
            requested: expected_digest.to_string(),
        });
    }
    Ok(())
}

/// Grant public keys by key id (the signer may rotate; old kids stay until
/// their grants have expired).
#[derive(Clone, Debug, Default)]
pub struct GrantKeys {
    keys: HashMap<String, VerifyingKey>,
}

impl GrantKeys {
    pub fn new() -> Self {
        GrantKeys::default()
    }

    pub fn with_key(mut self, kid: impl Into<String>, key: VerifyingKey) -> Self {
        self.keys.insert(kid.into(), key);
        self
    }

    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// [`verify_grant`] with the key named by the grant's `kid`.
    pub fn verify(
        &self,
        signed: &SignedGrant,
        expected_digest: &str,
        current_epoch: u64,
        now: i64,
    ) -> Result<(), GrantError> {
        let key = self.keys.get(&signed.kid).ok_or_else(|| GrantError::UnknownKey(signed.kid.clone()))?;
        verify_grant(signed, key, expected_digest, current_epoch, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};
    use latchgate_core::grant::Grant;

    const DIGEST: &str = "sha256:00";

    fn grant(epoch: u64, issued_at: i64, expires_at: i64) -> Grant {
        Grant {
            grant_id: "g1".into(),
            trace_id: "t1".into(),
            action_id: "a".into(),
            action_version: "1.0.0".into(),
            provider_module_digest: DIGEST.into(),
            request_hash: "sha256:11".into(),
            principal: "p".into(),
            session_id: "s".into(),
            epoch,
            issued_at,
            expires_at,
            allowed_sinks: vec![],
            approved_secrets: vec![],
            approved_by: None,
            approved_by_jkt: None,
        }
    }

    fn sign(key: &SigningKey, grant: Grant) -> SignedGrant {
        let sig = key.sign(&jcs::canonical_bytes(&grant).unwrap());
        SignedGrant { grant, kid: "k1".into(), signature: sig.to_bytes().to_vec() }
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn authentic_current_grant_verifies() {
        let k = key(1);
        let g = sign(&k, grant(5, 1000, 1060));
        assert_eq!(verify_grant(&g, &k.verifying_key(), DIGEST, 5, 1030), Ok(()));
    }

    #[test]
    fn grant_signed_by_another_key_is_refused() {
        let g = sign(&key(2), grant(5, 1000, 1060));
        assert_eq!(verify_grant(&g, &key(1).verifying_key(), DIGEST, 5, 1030), Err(GrantError::BadSignature));
    }

    #[test]
    fn tampered_grant_field_breaks_the_signature() {
        let k = key(1);
        let mut g = sign(&k, grant(5, 1000, 1060));
        g.grant.expires_at = 9_999_999;
        assert_eq!(verify_grant(&g, &k.verifying_key(), DIGEST, 5, 1030), Err(GrantError::BadSignature));
        g.signature.truncate(10);
        assert_eq!(verify_grant(&g, &k.verifying_key(), DIGEST, 5, 1030), Err(GrantError::MalformedSignature));
    }

    #[test]
    fn expired_future_and_pre_epoch_grants_are_refused() {
        let k = key(1);
        let vk = k.verifying_key();
        let g = sign(&k, grant(5, 1000, 1060));
        assert!(matches!(verify_grant(&g, &vk, DIGEST, 5, 1060), Err(GrantError::Expired { .. })));
        assert!(matches!(verify_grant(&g, &vk, DIGEST, 5, 900), Err(GrantError::NotYetValid { .. })));
        assert!(matches!(verify_grant(&g, &vk, DIGEST, 6, 1030), Err(GrantError::RevokedEpoch { .. })));
        assert!(matches!(verify_grant(&g, &vk, "sha256:ff", 5, 1030), Err(GrantError::DigestMismatch { .. })));
    }

    #[test]
    fn unknown_key_id_is_refused() {
        let k = key(1);
        let mut g = sign(&k, grant(5, 1000, 1060));
        g.kid = "other".into();
        let keys = GrantKeys::new().with_key("k1", k.verifying_key());
        assert_eq!(keys.verify(&g, DIGEST, 5, 1030), Err(GrantError::UnknownKey("other".into())));
    }
}
