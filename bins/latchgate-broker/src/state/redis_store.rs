//! Production state store: Redis (`[redis]` in latchgate.toml).
//!
//! | key (after `key_prefix`) | type | operation |
//! |---|---|---|
//! | `jti:<jkt>:<jti>` | string | `SET NX EX` (DPoP replay cache) |
//! | `budget:<session>` | hash `max_calls max_cost used_calls used_cost` (`-1` = no limit), `PEXPIRE` = lease lifetime | `lua/budget_*.lua` |
//! | `approval:<id>` | string (claim time) | `lua/approval_claim.lua` (`SET NX`) |
//! | `revocation_epoch` | string integer | `lua/epoch_read.lua`, `lua/epoch_bump.lua` |
//!
//! Scripts run by `EVALSHA`; a Redis that forgot them (`NOSCRIPT`, e.g. after
//! a restart) gets them loaded again by the client. Every command is bounded
//! by `command_timeout_ms`: a slow or stuck Redis gives the caller its 503
//! within that time rather than a queue of waiting requests. The connection
//! is opened lazily and re-opened after any I/O error, so the broker starts
//! while Redis is down (and says so in `/readyz`) and recovers by itself.
//!
//! Losing Redis's data (a restart without persistence) must never weaken the
//! gate. What happens to each kind of state is in docs/production.md:
//! - **revocation epoch**: every epoch the broker sees is mirrored durably in
//!   its own `state.db` (the *floor*); the scripts never answer below it and
//!   write it back when Redis lost it, so revoked leases stay revoked;
//! - **replay cache**: when the scripts find the epoch missing in a keyspace
//!   this broker used before (recorded in `state.db`, so a first start on an
//!   empty Redis is not mistaken for a loss), the store remembers that second
//!   as its [`replay_fence`](StateStore::replay_fence):
//!   proofs issued up to then are refused, since their single use can no
//!   longer be checked (proofs are accepted for 60 s after `iat` only, so the
//!   fence stops mattering a minute later);
//! - **budgets** start fresh from each lease's limits (the broker re-creates a
//!   missing session budget from the lease it just verified);
//! - **approval claims** are lost; the evidence ledger's one-shot consumed
//!   grants still stop a second dispatch of one grant.

use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisResult, Script};

use latchgate_core::config::{RedisConfig, redis_endpoint};

use super::{BudgetLimits, BudgetSnapshot, DebitOutcome, SqliteStateStore, StateError, StateFuture, StateStore};

/// Lua numbers are doubles: counters and limits are kept below 2^53.
const MAX_COUNTER: u64 = (1 << 53) - 1;
/// A budget limit of "none".
const NO_LIMIT: i64 = -1;
const NO_FENCE: i64 = i64::MIN;

struct Scripts {
    epoch_read: Script,
    epoch_bump: Script,
    budget_init: Script,
    budget_debit: Script,
    budget_refund: Script,
    approval_claim: Script,
}

impl Scripts {
    fn load() -> Scripts {
        Scripts {
            epoch_read: Script::new(include_str!("lua/epoch_read.lua")),
            epoch_bump: Script::new(include_str!("lua/epoch_bump.lua")),
            budget_init: Script::new(include_str!("lua/budget_init.lua")),
            budget_debit: Script::new(include_str!("lua/budget_debit.lua")),
            budget_refund: Script::new(include_str!("lua/budget_refund.lua")),
            approval_claim: Script::new(include_str!("lua/approval_claim.lua")),
        }
    }
}

/// What Redis says about its own durability (for `latchgate doctor`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisPersistence {
    pub aof_enabled: bool,
    /// `CONFIG GET save`; `None` when CONFIG is not permitted, `Some("")` when RDB snapshots are off.
    pub rdb_save: Option<String>,
}

impl RedisPersistence {
    pub fn is_durable(&self) -> bool {
        self.aof_enabled || self.rdb_save.as_deref().is_some_and(|s| !s.trim().is_empty())
    }
}

pub struct RedisStateStore {
    conn: ConnectionManager,
    prefix: String,
    command_timeout: Duration,
    endpoint: String,
    scripts: Scripts,
    /// Durable mirror of the highest epoch seen (`state.db` on the broker's disk).
    mirror: SqliteStateStore,
    /// The mirror's value, kept in memory: the floor passed to every epoch script.
    floor: AtomicU64,
    /// Serialises writes to the mirror.
    mirror_lock: tokio::sync::Mutex<()>,
    /// Unix second of the latest detected data loss ([`NO_FENCE`] = none).
    fence: AtomicI64,
    /// This broker has used this keyspace before (recorded in `state.db`):
    /// from then on, an epoch missing from Redis means Redis lost its data.
    keyspace_used: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for RedisStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStateStore").field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

/// The name under which `state.db` remembers a Redis keyspace (its key prefix:
/// a new endpoint serving the same keyspace is the same store).
fn keyspace_name(prefix: &str) -> String {
    format!("redis:{prefix}")
}

fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn counter(value: u64) -> i64 {
    // Lossless: MAX_COUNTER < i64::MAX.
    value.min(MAX_COUNTER) as i64
}

fn limit_arg(limit: Option<u64>) -> i64 {
    limit.map_or(NO_LIMIT, counter)
}

fn limit_from(stored: i64) -> Result<Option<u64>, String> {
    match stored {
        NO_LIMIT => Ok(None),
        v => u64::try_from(v).map(Some).map_err(|_| format!("budget limit {v} is negative")),
    }
}

fn used_from(stored: i64) -> Result<u64, String> {
    u64::try_from(stored).map_err(|_| format!("budget counter {stored} is negative"))
}

impl RedisStateStore {
    /// Prepares the store; no connection is made until the first command.
    /// `mirror` is the broker's own `state.db`, which holds the epoch floor.
    /// Must be called inside a tokio runtime.
    pub async fn open(cfg: &RedisConfig, mirror: SqliteStateStore) -> Result<RedisStateStore, StateError> {
        let unavailable = |m: String| StateError::StoreUnavailable(m);
        let endpoint = redis_endpoint(&cfg.url).map_err(|e| unavailable(format!("redis.url: {e}")))?.to_string();
        let client = redis::Client::open(cfg.url.as_str()).map_err(|e| unavailable(format!("redis.url: {e}")))?;
        let command_timeout = Duration::from_millis(cfg.command_timeout_ms);
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(cfg.connect_timeout_ms)))
            .set_response_timeout(Some(command_timeout))
            // Fail fast while Redis is down; the next command tries again.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, manager)
            .map_err(|e| unavailable(format!("redis client: {e}")))?;
        let floor = mirror.revocation_epoch().await?;
        let keyspace_used = mirror.external_store_used(&keyspace_name(&cfg.key_prefix)).await?;
        Ok(RedisStateStore {
            conn,
            prefix: cfg.key_prefix.clone(),
            command_timeout,
            endpoint,
            scripts: Scripts::load(),
            mirror,
            floor: AtomicU64::new(floor),
            mirror_lock: tokio::sync::Mutex::new(()),
            fence: AtomicI64::new(NO_FENCE),
            keyspace_used: std::sync::atomic::AtomicBool::new(keyspace_used),
        })
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}:{id}", self.prefix)
    }

    fn epoch_key(&self) -> String {
        format!("{}revocation_epoch", self.prefix)
    }

    /// Runs one command (or script) with the command timeout; any failure is
    /// `fail(detail)`, the operation's own 503.
    async fn bounded<T, F>(&self, fail: fn(String) -> StateError, what: &str, op: F) -> Result<T, StateError>
    where
        F: Future<Output = RedisResult<T>>,
    {
        match tokio::time::timeout(self.command_timeout, op).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(fail(format!("redis {what} at {}: {e}", self.endpoint))),
            Err(_) => Err(fail(format!(
                "redis {what} at {}: no answer within {} ms",
                self.endpoint,
                self.command_timeout.as_millis()
            ))),
        }
    }

    /// One plain command.
    async fn command<T: redis::FromRedisValue>(
        &self,
        fail: fn(String) -> StateError,
        what: &str,
        cmd: redis::Cmd,
    ) -> Result<T, StateError> {
        let mut conn = self.conn.clone();
        self.bounded(fail, what, cmd.query_async(&mut conn)).await
    }

    /// One Lua script on one key, by `EVALSHA` (loaded again on `NOSCRIPT`).
    async fn script<T: redis::FromRedisValue>(
        &self,
        fail: fn(String) -> StateError,
        what: &str,
        script: &Script,
        key: String,
        args: &[i64],
    ) -> Result<T, StateError> {
        let mut invocation = script.key(key);
        for arg in args {
            invocation.arg(*arg);
        }
        let mut conn = self.conn.clone();
        self.bounded(fail, what, invocation.invoke_async(&mut conn)).await
    }

    /// Redis had no epoch (or an older one) and the floor was written back.
    /// On a keyspace this broker never used, that is its first start; on one
    /// it used, Redis lost its data: nothing it forgot may be taken as "never
    /// seen".
    async fn epoch_restored(&self, restored_epoch: u64) -> Result<(), StateError> {
        if !self.keyspace_used.load(Ordering::SeqCst) {
            return self.first_use().await;
        }
        let now = now_secs();
        let before = self.fence.fetch_max(now, Ordering::SeqCst);
        if before < now {
            tracing::warn!(
                endpoint = %self.endpoint,
                epoch = restored_epoch,
                "Redis lost its data (no revocation epoch in a keyspace this broker used): the epoch was restored \
                 from the broker's mirror, DPoP proofs issued until now are refused, budgets start fresh"
            );
        }
        Ok(())
    }

    /// Record durably that this keyspace is in use (before any proof is accepted on it).
    async fn first_use(&self) -> Result<(), StateError> {
        if self.keyspace_used.load(Ordering::SeqCst) {
            return Ok(());
        }
        let _serialised = self.mirror_lock.lock().await;
        if !self.keyspace_used.load(Ordering::SeqCst) {
            self.mirror.mark_external_store_used(&keyspace_name(&self.prefix)).await?;
            self.keyspace_used.store(true, Ordering::SeqCst);
            tracing::info!(endpoint = %self.endpoint, prefix = %self.prefix, "first use of this Redis keyspace recorded");
        }
        Ok(())
    }

    /// Raise the durable floor to `epoch`. `must_persist`: the caller cannot
    /// answer success unless the mirror holds it (a bump); otherwise a failed
    /// write only logs, since a higher in-memory floor is already safer.
    async fn observe_epoch(&self, epoch: u64, must_persist: bool) -> Result<(), StateError> {
        if epoch <= self.floor.load(Ordering::SeqCst) {
            return Ok(());
        }
        let _serialised = self.mirror_lock.lock().await;
        if epoch <= self.floor.load(Ordering::SeqCst) {
            return Ok(());
        }
        match self.mirror.raise_epoch_to(epoch).await {
            Ok(stored) => {
                self.floor.fetch_max(stored, Ordering::SeqCst);
                Ok(())
            }
            Err(e) if must_persist => {
                Err(StateError::StoreUnavailable(format!("epoch {epoch} set in Redis but not mirrored: {e}")))
            }
            Err(e) => {
                tracing::error!(error = %e, epoch, "revocation epoch not mirrored to state.db; kept in memory");
                self.floor.fetch_max(epoch, Ordering::SeqCst);
                Ok(())
            }
        }
    }

    /// The broker's durable epoch floor (for tests and status).
    pub fn epoch_floor(&self) -> u64 {
        self.floor.load(Ordering::SeqCst)
    }

    /// `INFO persistence` and `CONFIG GET save`, for `latchgate doctor`.
    pub async fn persistence(&self) -> Result<RedisPersistence, StateError> {
        let mut info = redis::cmd("INFO");
        info.arg("persistence");
        let info: String = self.command(StateError::StoreUnavailable, "INFO", info).await?;
        let aof_enabled = info.lines().any(|l| l.trim() == "aof_enabled:1");
        let mut save = redis::cmd("CONFIG");
        save.arg("GET").arg("save");
        let save: Result<Vec<String>, _> = self.command(StateError::StoreUnavailable, "CONFIG GET", save).await;
        Ok(RedisPersistence { aof_enabled, rdb_save: save.ok().and_then(|v| v.get(1).cloned()) })
    }

    fn snapshot_from(&self, values: &[i64]) -> Result<BudgetSnapshot, String> {
        let [max_calls, max_cost, used_calls, used_cost] = values else {
            return Err(format!("budget script answered {} values", values.len()));
        };
        Ok(BudgetSnapshot {
            limits: BudgetLimits { max_calls: limit_from(*max_calls)?, max_cost_cents: limit_from(*max_cost)? },
            used_calls: used_from(*used_calls)?,
            used_cost_cents: used_from(*used_cost)?,
        })
    }
}

impl StateStore for RedisStateStore {
    fn check_and_record_jti<'a>(&'a self, jti: &'a str, ttl_secs: u64) -> StateFuture<'a, bool> {
        Box::pin(async move {
            let mut set = redis::cmd("SET");
            set.arg(self.key("jti", jti)).arg(1).arg("NX").arg("EX").arg(ttl_secs.max(1));
            let answer: Option<String> = self.command(StateError::ReplayCacheUnavailable, "SET NX", set).await?;
            Ok(answer.is_some())
        })
    }

    fn revocation_epoch(&self) -> StateFuture<'_, u64> {
        Box::pin(async move {
            let floor = counter(self.floor.load(Ordering::SeqCst));
            let (epoch, restored): (i64, i64) = self
                .script(StateError::StoreUnavailable, "epoch", &self.scripts.epoch_read, self.epoch_key(), &[floor])
                .await?;
            let epoch = u64::try_from(epoch)
                .map_err(|_| StateError::StoreUnavailable(format!("redis holds a negative epoch {epoch}")))?;
            if restored == 1 {
                self.epoch_restored(epoch).await?;
            } else {
                self.first_use().await?;
            }
            self.observe_epoch(epoch, false).await?;
            Ok(epoch)
        })
    }

    fn bump_epoch(&self) -> StateFuture<'_, u64> {
        Box::pin(async move {
            self.first_use().await?;
            let floor = counter(self.floor.load(Ordering::SeqCst));
            let bumped: i64 = self
                .script(
                    StateError::StoreUnavailable,
                    "epoch bump",
                    &self.scripts.epoch_bump,
                    self.epoch_key(),
                    &[floor],
                )
                .await?;
            let bumped = u64::try_from(bumped)
                .map_err(|_| StateError::StoreUnavailable(format!("redis answered a negative epoch {bumped}")))?;
            self.observe_epoch(bumped, true).await?;
            Ok(bumped)
        })
    }

    fn init_session_budget<'a>(
        &'a self,
        session_id: &'a str,
        limits: BudgetLimits,
        ttl_secs: u64,
    ) -> StateFuture<'a, bool> {
        Box::pin(async move {
            let ttl_ms = counter(ttl_secs.saturating_mul(1000)).max(1);
            let args = [limit_arg(limits.max_calls), limit_arg(limits.max_cost_cents), ttl_ms];
            let key = self.key("budget", session_id);
            let created: i64 = self
                .script(StateError::BudgetStoreUnavailable, "budget init", &self.scripts.budget_init, key, &args)
                .await?;
            Ok(created == 1)
        })
    }

    fn budget_snapshot<'a>(&'a self, session_id: &'a str) -> StateFuture<'a, Option<BudgetSnapshot>> {
        Box::pin(async move {
            let mut read = redis::cmd("HMGET");
            read.arg(self.key("budget", session_id)).arg(&["max_calls", "max_cost", "used_calls", "used_cost"]);
            let values: Vec<Option<i64>> = self.command(StateError::BudgetStoreUnavailable, "HMGET", read).await?;
            if values.iter().all(Option::is_none) {
                return Ok(None);
            }
            let values: Option<Vec<i64>> = values.into_iter().collect();
            let values =
                values.ok_or_else(|| StateError::BudgetStoreUnavailable("budget hash is incomplete".into()))?;
            self.snapshot_from(&values).map(Some).map_err(StateError::BudgetStoreUnavailable)
        })
    }

    fn debit<'a>(&'a self, session_id: &'a str, calls: u64, cost_cents: u64) -> StateFuture<'a, DebitOutcome> {
        Box::pin(async move {
            let key = self.key("budget", session_id);
            let args = [counter(calls), counter(cost_cents)];
            let answer: Vec<i64> = self
                .script(StateError::BudgetStoreUnavailable, "debit", &self.scripts.budget_debit, key, &args)
                .await?;
            let Some((status, values)) = answer.split_first() else {
                return Err(StateError::BudgetStoreUnavailable("debit script answered nothing".into()));
            };
            if *status == -1 {
                return Ok(DebitOutcome::UnknownSession);
            }
            let snapshot = self.snapshot_from(values).map_err(StateError::BudgetStoreUnavailable)?;
            match status {
                1 => Ok(DebitOutcome::Debited(snapshot)),
                0 => Ok(DebitOutcome::Exhausted(snapshot)),
                other => Err(StateError::BudgetStoreUnavailable(format!("debit script answered status {other}"))),
            }
        })
    }

    fn refund<'a>(&'a self, session_id: &'a str, calls: u64, cost_cents: u64) -> StateFuture<'a, ()> {
        Box::pin(async move {
            let key = self.key("budget", session_id);
            let args = [counter(calls), counter(cost_cents)];
            let _refunded: i64 = self
                .script(StateError::BudgetStoreUnavailable, "refund", &self.scripts.budget_refund, key, &args)
                .await?;
            Ok(())
        })
    }

    fn claim_approval<'a>(&'a self, approval_id: &'a str) -> StateFuture<'a, bool> {
        Box::pin(async move {
            let now_ms = i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
            let key = self.key("approval", approval_id);
            let won: i64 = self
                .script(StateError::StoreUnavailable, "approval claim", &self.scripts.approval_claim, key, &[now_ms])
                .await?;
            Ok(won == 1)
        })
    }

    fn probe(&self) -> StateFuture<'_, ()> {
        Box::pin(async move {
            let pong: String = self.command(StateError::StoreUnavailable, "PING", redis::cmd("PING")).await?;
            if pong != "PONG" {
                return Err(StateError::StoreUnavailable(format!("redis answered PING with {pong:?}")));
            }
            Ok(())
        })
    }

    fn backend(&self) -> &'static str {
        "redis"
    }

    fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    fn replay_fence(&self) -> Option<i64> {
        Some(self.fence.load(Ordering::SeqCst)).filter(|f| *f != NO_FENCE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_counters_round_trip_through_their_redis_form() {
        assert_eq!(limit_from(limit_arg(None)), Ok(None));
        assert_eq!(limit_from(limit_arg(Some(7))), Ok(Some(7)));
        assert_eq!(limit_from(limit_arg(Some(u64::MAX))), Ok(Some(MAX_COUNTER)));
        assert!(limit_from(-2).is_err());
        assert!(used_from(-1).is_err());
    }

    #[test]
    fn persistence_is_durable_with_aof_or_rdb_snapshots() {
        let p = |aof, save: Option<&str>| RedisPersistence { aof_enabled: aof, rdb_save: save.map(String::from) };
        assert!(p(true, Some("")).is_durable());
        assert!(p(false, Some("3600 1")).is_durable());
        assert!(!p(false, Some("")).is_durable());
        assert!(!p(false, None).is_durable());
    }
}
