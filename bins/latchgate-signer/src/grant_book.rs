//! The signer's memory of the grants it issued: a receipt is signed only for
//! a grant in this book, and signing it removes the grant (finalised), so a
//! second receipt for the same grant is refused. The book lives in memory: a
//! restarted signer signs no receipt for a grant issued before the restart,
//! and the broker leaves that execution's intent unresolved for an operator.
//!
//! Secrets are released at most once per grant, only while it is outstanding
//! (issued here, not finalised), unexpired, and issued under the newest
//! revocation epoch this book has seen. The epoch is learnt from the grants
//! the broker asks to sign — the broker reads it from its state store for
//! every grant — so after a revoke-all the first new grant raises it and every
//! older outstanding grant obtains nothing from then on. (Until a new grant
//! is signed the executor's own epoch check, fed by the broker with each
//! task, refuses those grants.)

use latchgate_core::grant::Grant;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Longest grant lifetime the signer accepts to sign.
pub const MAX_GRANT_TTL_SECONDS: i64 = 600;
/// Clock difference tolerated between the broker's `issued_at` and ours.
pub const MAX_ISSUE_SKEW_SECONDS: i64 = 30;
/// A grant stays finalisable this long after it expired (a call may run to
/// its timeout after starting just before expiry).
pub const FINALISE_GRACE_SECONDS: i64 = 600;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantBookError {
    #[error("grant {0} was already issued")]
    Duplicate(String),
    #[error("grant field {0} is empty")]
    EmptyField(&'static str),
    #[error("grant lifetime {0} s is outside (0, {MAX_GRANT_TTL_SECONDS}] s")]
    BadLifetime(i64),
    #[error("grant issued_at {issued_at} is too far from the signer's clock {now}")]
    ClockSkew { issued_at: i64, now: i64 },
    #[error("grant {0} was not issued by this signer, or is already finalised")]
    NotOutstanding(String),
    #[error("receipt does not match grant {grant_id}: {field} differs")]
    Mismatch { grant_id: String, field: &'static str },
    #[error("grant {grant_id} expired at {expires_at} (now {now})")]
    Expired { grant_id: String, expires_at: i64, now: i64 },
    #[error("grant epoch {grant} is older than the newest epoch {current} the signer has seen")]
    RevokedEpoch { grant: u64, current: u64 },
    #[error("the secrets of grant {0} were already released")]
    SecretsAlreadyReleased(String),
    #[error("grant {grant_id} differs from the grant this signer issued: {field}")]
    NotAsIssued { grant_id: String, field: &'static str },
}

impl GrantBookError {
    pub fn code(&self) -> &'static str {
        match self {
            GrantBookError::Duplicate(_) => "grant_duplicate",
            GrantBookError::EmptyField(_) => "grant_field_empty",
            GrantBookError::BadLifetime(_) => "grant_lifetime_invalid",
            GrantBookError::ClockSkew { .. } => "grant_clock_skew",
            GrantBookError::NotOutstanding(_) => "grant_not_outstanding",
            GrantBookError::Mismatch { .. } => "receipt_grant_mismatch",
            GrantBookError::Expired { .. } => "grant_expired",
            GrantBookError::RevokedEpoch { .. } => "grant_epoch_revoked",
            GrantBookError::SecretsAlreadyReleased(_) => "secrets_already_released",
            GrantBookError::NotAsIssued { .. } => "grant_not_as_issued",
        }
    }
}

#[derive(Debug, Clone)]
struct Outstanding {
    action_id: String,
    trace_id: String,
    provider_module_digest: String,
    expires_at: i64,
    epoch: u64,
    approved_secrets: Vec<String>,
    secrets_released: bool,
}

/// What a receipt claims about the grant it closes.
pub struct ReceiptClaim<'a> {
    pub grant_id: &'a str,
    pub action_id: &'a str,
    pub trace_id: &'a str,
    pub provider_module_digest: &'a str,
}

#[derive(Default)]
pub struct GrantBook {
    outstanding: Mutex<HashMap<String, Outstanding>>,
    /// Newest revocation epoch of any grant issued here.
    newest_epoch: AtomicU64,
}

impl GrantBook {
    /// Checks a grant the broker asks to sign and records it as outstanding.
    pub fn issue(&self, grant: &Grant, now: i64) -> Result<(), GrantBookError> {
        for (name, value) in [
            ("grant_id", &grant.grant_id),
            ("action_id", &grant.action_id),
            ("provider_module_digest", &grant.provider_module_digest),
            ("request_hash", &grant.request_hash),
            ("principal", &grant.principal),
            ("session_id", &grant.session_id),
        ] {
            if value.is_empty() {
                return Err(GrantBookError::EmptyField(name));
            }
        }
        let lifetime = grant.expires_at.saturating_sub(grant.issued_at);
        if lifetime <= 0 || lifetime > MAX_GRANT_TTL_SECONDS {
            return Err(GrantBookError::BadLifetime(lifetime));
        }
        if (grant.issued_at - now).abs() > MAX_ISSUE_SKEW_SECONDS {
            return Err(GrantBookError::ClockSkew { issued_at: grant.issued_at, now });
        }
        let mut book = self.outstanding.lock().unwrap_or_else(|p| p.into_inner());
        book.retain(|_, g| g.expires_at + FINALISE_GRACE_SECONDS > now);
        if book.contains_key(&grant.grant_id) {
            return Err(GrantBookError::Duplicate(grant.grant_id.clone()));
        }
        self.newest_epoch.fetch_max(grant.epoch, Ordering::SeqCst);
        book.insert(
            grant.grant_id.clone(),
            Outstanding {
                action_id: grant.action_id.clone(),
                trace_id: grant.trace_id.clone(),
                provider_module_digest: grant.provider_module_digest.clone(),
                expires_at: grant.expires_at,
                epoch: grant.epoch,
                approved_secrets: grant.approved_secrets.clone(),
                secrets_released: false,
            },
        );
        Ok(())
    }

    /// Finalises the grant a receipt names, if the receipt agrees with it.
    /// On a mismatch the grant stays outstanding (the broker may retry with
    /// a correct receipt); on success it can never be finalised again.
    pub fn finalise(&self, claim: &ReceiptClaim<'_>, now: i64) -> Result<(), GrantBookError> {
        let mut book = self.outstanding.lock().unwrap_or_else(|p| p.into_inner());
        let grant = book
            .get(claim.grant_id)
            .filter(|g| g.expires_at + FINALISE_GRACE_SECONDS > now)
            .ok_or_else(|| GrantBookError::NotOutstanding(claim.grant_id.to_string()))?;
        let mismatch = |field| GrantBookError::Mismatch { grant_id: claim.grant_id.to_string(), field };
        if grant.action_id != claim.action_id {
            return Err(mismatch("action_id"));
        }
        if grant.trace_id != claim.trace_id {
            return Err(mismatch("trace_id"));
        }
        if grant.provider_module_digest != claim.provider_module_digest {
            return Err(mismatch("provider_module_digest"));
        }
        book.remove(claim.grant_id);
        Ok(())
    }

    /// Records that the secrets of `grant` (whose signature the caller has
    /// checked) are released now. Refused — and nothing recorded — unless
    /// the grant is outstanding, unexpired, of the newest epoch, exactly as
    /// issued, and its secrets were not released before.
    pub fn release_secrets(&self, grant: &Grant, now: i64) -> Result<(), GrantBookError> {
        let mut book = self.outstanding.lock().unwrap_or_else(|p| p.into_inner());
        let issued =
            book.get_mut(&grant.grant_id).ok_or_else(|| GrantBookError::NotOutstanding(grant.grant_id.clone()))?;
        if now >= issued.expires_at {
            return Err(GrantBookError::Expired {
                grant_id: grant.grant_id.clone(),
                expires_at: issued.expires_at,
                now,
            });
        }
        let newest = self.newest_epoch.load(Ordering::SeqCst);
        if issued.epoch < newest {
            return Err(GrantBookError::RevokedEpoch { grant: issued.epoch, current: newest });
        }
        let differs = |field| GrantBookError::NotAsIssued { grant_id: grant.grant_id.clone(), field };
        if issued.action_id != grant.action_id {
            return Err(differs("action_id"));
        }
        if issued.approved_secrets != grant.approved_secrets {
            return Err(differs("approved_secrets"));
        }
        if issued.epoch != grant.epoch || issued.expires_at != grant.expires_at {
            return Err(differs("epoch/expires_at"));
        }
        if issued.secrets_released {
            return Err(GrantBookError::SecretsAlreadyReleased(grant.grant_id.clone()));
        }
        issued.secrets_released = true;
        Ok(())
    }

    pub fn newest_epoch(&self) -> u64 {
        self.newest_epoch.load(Ordering::SeqCst)
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(id: &str, now: i64) -> Grant {
        Grant {
            grant_id: id.into(),
            trace_id: "t".into(),
            action_id: "http_fetch".into(),
            action_version: "1".into(),
            provider_module_digest: "sha256:aa".into(),
            request_hash: "sha256:bb".into(),
            principal: "p".into(),
            session_id: "s".into(),
            epoch: 0,
            issued_at: now,
            expires_at: now + 60,
            allowed_sinks: vec![],
            approved_secrets: vec![],
            approved_by: None,
            approved_by_jkt: None,
        }
    }

    fn claim<'a>(id: &'a str) -> ReceiptClaim<'a> {
        ReceiptClaim { grant_id: id, action_id: "http_fetch", trace_id: "t", provider_module_digest: "sha256:aa" }
    }

    #[test]
    fn receipt_is_signed_once_per_issued_grant() {
        let book = GrantBook::default();
        book.issue(&grant("g1", 1000), 1000).unwrap();
        assert_eq!(book.issue(&grant("g1", 1000), 1000).unwrap_err().code(), "grant_duplicate");
        book.finalise(&claim("g1"), 1010).unwrap();
        assert_eq!(book.finalise(&claim("g1"), 1010).unwrap_err().code(), "grant_not_outstanding");
    }

    #[test]
    fn receipt_for_a_grant_never_issued_is_refused() {
        let book = GrantBook::default();
        assert_eq!(book.finalise(&claim("forged"), 1000).unwrap_err().code(), "grant_not_outstanding");
    }

    #[test]
    fn receipt_disagreeing_with_its_grant_is_refused_and_grant_stays_open() {
        let book = GrantBook::default();
        book.issue(&grant("g1", 1000), 1000).unwrap();
        let mut other = claim("g1");
        other.action_id = "gmail_send";
        assert_eq!(book.finalise(&other, 1000).unwrap_err().code(), "receipt_grant_mismatch");
        book.finalise(&claim("g1"), 1000).unwrap();
    }

    #[test]
    fn implausible_grants_are_not_signed() {
        let book = GrantBook::default();
        let mut long = grant("g", 1000);
        long.expires_at = 1000 + MAX_GRANT_TTL_SECONDS + 1;
        assert_eq!(book.issue(&long, 1000).unwrap_err().code(), "grant_lifetime_invalid");
        assert_eq!(book.issue(&grant("g", 1000), 2000).unwrap_err().code(), "grant_clock_skew");
        let mut empty = grant("g", 1000);
        empty.session_id.clear();
        assert_eq!(book.issue(&empty, 1000).unwrap_err().code(), "grant_field_empty");
    }

    fn with_secrets(id: &str, now: i64, epoch: u64, secrets: &[&str]) -> Grant {
        let mut g = grant(id, now);
        g.epoch = epoch;
        g.approved_secrets = secrets.iter().map(|s| s.to_string()).collect();
        g
    }

    #[test]
    fn secrets_of_an_issued_grant_are_released_once() {
        let book = GrantBook::default();
        let g = with_secrets("g1", 1000, 0, &["A_TOKEN"]);
        book.issue(&g, 1000).unwrap();
        book.release_secrets(&g, 1001).unwrap();
        assert_eq!(book.release_secrets(&g, 1002).unwrap_err().code(), "secrets_already_released");
        // Releasing did not finalise: the receipt can still be signed.
        book.finalise(&claim("g1"), 1003).unwrap();
    }

    #[test]
    fn finalised_or_never_issued_grants_obtain_no_secrets() {
        let book = GrantBook::default();
        let g = with_secrets("g1", 1000, 0, &["A_TOKEN"]);
        assert_eq!(book.release_secrets(&g, 1000).unwrap_err().code(), "grant_not_outstanding");
        book.issue(&g, 1000).unwrap();
        book.finalise(&claim("g1"), 1001).unwrap();
        assert_eq!(book.release_secrets(&g, 1002).unwrap_err().code(), "grant_not_outstanding");
    }

    #[test]
    fn expired_grants_obtain_no_secrets() {
        let book = GrantBook::default();
        let g = with_secrets("g1", 1000, 0, &["A_TOKEN"]);
        book.issue(&g, 1000).unwrap();
        assert_eq!(book.release_secrets(&g, g.expires_at).unwrap_err().code(), "grant_expired");
        // The refusal recorded nothing: an expired grant stays unreleased (and finalisable).
        book.finalise(&claim("g1"), g.expires_at).unwrap();
    }

    #[test]
    fn grants_of_an_older_epoch_obtain_no_secrets_once_a_newer_one_was_issued() {
        let book = GrantBook::default();
        let old = with_secrets("old", 1000, 3, &["A_TOKEN"]);
        book.issue(&old, 1000).unwrap();
        let newer = with_secrets("new", 1000, 4, &["A_TOKEN"]);
        book.issue(&newer, 1000).unwrap();
        assert_eq!(book.newest_epoch(), 4);
        assert_eq!(book.release_secrets(&old, 1001).unwrap_err().code(), "grant_epoch_revoked");
        book.release_secrets(&newer, 1001).unwrap();
    }

    #[test]
    fn a_grant_altered_after_issue_obtains_no_secrets() {
        let book = GrantBook::default();
        let g = with_secrets("g1", 1000, 0, &["A_TOKEN"]);
        book.issue(&g, 1000).unwrap();
        let mut wider = g.clone();
        wider.approved_secrets.push("B_TOKEN".into());
        assert_eq!(book.release_secrets(&wider, 1001).unwrap_err().code(), "grant_not_as_issued");
        let mut other_action = g.clone();
        other_action.action_id = "gmail_send".into();
        assert_eq!(book.release_secrets(&other_action, 1001).unwrap_err().code(), "grant_not_as_issued");
        book.release_secrets(&g, 1001).unwrap();
    }

    #[test]
    fn grants_long_expired_cannot_be_finalised() {
        let book = GrantBook::default();
        book.issue(&grant("g1", 1000), 1000).unwrap();
        let late = 1000 + 60 + FINALISE_GRACE_SECONDS;
        assert_eq!(book.finalise(&claim("g1"), late).unwrap_err().code(), "grant_not_outstanding");
    }
}
