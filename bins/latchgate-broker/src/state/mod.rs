//! The broker's mutable state: DPoP replay cache, revocation epoch, per-session
//! budgets and one-shot approval claims. One trait, two backends: SQLite for
//! the embedded mode ([`SqliteStateStore`]) and Redis for production
//! ([`RedisStateStore`]), both held to the same [`contract`] suite.
//!
//! The trait returns boxed futures rather than using `async fn` so that the
//! broker can hold an `Arc<dyn StateStore>` chosen at start-up.

pub mod contract;
mod redis_store;
mod sqlite;

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use latchgate_core::error::ErrorCode;

pub use redis_store::{RedisPersistence, RedisStateStore};
pub use sqlite::SqliteStateStore;

/// Replay window of a DPoP proof `jti` (API.md: single use for 180 s).
pub const DPOP_JTI_TTL_SECS: u64 = 180;

/// An epoch read that follows another step of the same call.
pub type EpochRead = Result<u64, StateError>;

pub type StateFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StateError>> + Send + 'a>>;

/// The store is unreachable or failing; each variant is the 503 the caller answers.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StateError {
    #[error("replay cache unavailable: {0}")]
    ReplayCacheUnavailable(String),
    #[error("budget store unavailable: {0}")]
    BudgetStoreUnavailable(String),
    #[error("state store unavailable: {0}")]
    StoreUnavailable(String),
}

impl StateError {
    pub fn code(&self) -> &'static str {
        self.error_code().as_str()
    }

    pub fn error_code(&self) -> ErrorCode {
        match self {
            StateError::ReplayCacheUnavailable(_) => ErrorCode::ReplayCacheUnavailable,
            StateError::BudgetStoreUnavailable(_) => ErrorCode::BudgetStoreUnavailable,
            StateError::StoreUnavailable(_) => ErrorCode::StoreUnavailable,
        }
    }
}

/// Limits of one session; `None` = unlimited on that axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetLimits {
    pub max_calls: Option<u64>,
    pub max_cost_cents: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetSnapshot {
    pub limits: BudgetLimits,
    pub used_calls: u64,
    pub used_cost_cents: u64,
}

impl BudgetSnapshot {
    pub fn remaining_calls(&self) -> Option<u64> {
        self.limits.max_calls.map(|max| max.saturating_sub(self.used_calls))
    }

    pub fn remaining_cost_cents(&self) -> Option<u64> {
        self.limits.max_cost_cents.map(|max| max.saturating_sub(self.used_cost_cents))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DebitOutcome {
    /// Debited; the budget after the debit.
    Debited(BudgetSnapshot),
    /// Nothing debited: the debit would exceed a limit.
    Exhausted(BudgetSnapshot),
    /// No live budget for this session (never initialised, or expired):
    /// callers fail closed.
    UnknownSession,
}

/// The broker's state backend. Every operation is atomic on its own.
pub trait StateStore: Send + Sync {
    /// Records `jti` for `ttl_secs`; `true` if it was not already recorded
    /// (fresh), `false` if it is a replay within its window.
    fn check_and_record_jti<'a>(&'a self, jti: &'a str, ttl_secs: u64) -> StateFuture<'a, bool>;

    /// The current revocation epoch (0 before the first bump).
    fn revocation_epoch(&self) -> StateFuture<'_, u64>;

    /// [`StateStore::check_and_record_jti`], then — only for a fresh `jti` —
    /// [`StateStore::revocation_epoch`]: `None` for a replay, else the epoch.
    /// Each step fails with its own code. A backend may do both in one round
    /// trip; the default runs them one after the other.
    fn record_jti_and_read_epoch<'a>(&'a self, jti: &'a str, ttl_secs: u64) -> StateFuture<'a, Option<u64>> {
        Box::pin(async move {
            if !self.check_and_record_jti(jti, ttl_secs).await? {
                return Ok(None);
            }
            self.revocation_epoch().await.map(Some)
        })
    }

    /// [`StateStore::debit`], then — only when it debited — the revocation
    /// epoch, whose failure is returned beside the debit (which stands until
    /// the caller refunds it). One round trip where the backend can.
    fn debit_and_read_epoch<'a>(
        &'a self,
        session_id: &'a str,
        calls: u64,
        cost_cents: u64,
    ) -> StateFuture<'a, (DebitOutcome, Option<EpochRead>)> {
        Box::pin(async move {
            let outcome = self.debit(session_id, calls, cost_cents).await?;
            let epoch = match outcome {
                DebitOutcome::Debited(_) => Some(self.revocation_epoch().await),
                _ => None,
            };
            Ok((outcome, epoch))
        })
    }

    /// Increments the epoch durably and returns the new value; leases and
    /// grants of older epochs are dead from then on.
    fn bump_epoch(&self) -> StateFuture<'_, u64>;

    /// Creates the session's budget, live for `ttl_secs`. `false` (and no
    /// change) if a live budget already exists: a budget is never reset.
    fn init_session_budget<'a>(
        &'a self,
        session_id: &'a str,
        limits: BudgetLimits,
        ttl_secs: u64,
    ) -> StateFuture<'a, bool>;

    fn budget_snapshot<'a>(&'a self, session_id: &'a str) -> StateFuture<'a, Option<BudgetSnapshot>>;

    /// Atomically debits `calls` and `cost_cents`, all or nothing.
    fn debit<'a>(&'a self, session_id: &'a str, calls: u64, cost_cents: u64) -> StateFuture<'a, DebitOutcome>;

    /// Gives back a debit whose dispatch never happened (never below zero).
    fn refund<'a>(&'a self, session_id: &'a str, calls: u64, cost_cents: u64) -> StateFuture<'a, ()>;

    /// One-shot claim of an approval: `true` for exactly one caller, ever.
    fn claim_approval<'a>(&'a self, approval_id: &'a str) -> StateFuture<'a, bool>;

    /// The backend answers right now (for `/readyz` and `doctor`).
    fn probe(&self) -> StateFuture<'_, ()>;

    /// `sqlite` or `redis`.
    fn backend(&self) -> &'static str;

    /// Where the store lives, without credentials.
    fn endpoint(&self) -> String;

    /// Unix second at or before which the replay cache cannot vouch for a
    /// DPoP proof: the store lost its memory then (a Redis restarted without
    /// persistence). Proofs issued up to that second are refused. `None`
    /// while the store has never lost anything.
    fn replay_fence(&self) -> Option<i64> {
        None
    }
}
