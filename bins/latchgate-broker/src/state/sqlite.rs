//! Embedded state store: one SQLite database (`state.db`, WAL) owned by the
//! broker. Operations run against one connection under a lock, so each is
//! serialised and atomic: the per-request ones on the caller's thread when
//! the connection is free, the rest (fsynced or bulk) on a blocking thread.
//! Expired replay and budget rows are swept, and the WAL checkpointed, every
//! [`MAINTAIN_EVERY`] operations off the request path; expired rows are
//! ignored until then.
//!
//! Durability: `synchronous=NORMAL` (no fsync per call — the replay cache and
//! budgets are on every request's path) except for the revocation epoch, whose
//! bump is committed with `synchronous=FULL`: a revocation must survive a
//! power loss, a replay entry of a 180 s window need not.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

use super::{BudgetLimits, BudgetSnapshot, DebitOutcome, EpochRead, StateError, StateFuture, StateStore};

const SCHEMA_VERSION: i64 = 2;
const SCHEMA_V1: &str = r#"
    CREATE TABLE replay_jti (
        jti           TEXT PRIMARY KEY,
        expires_at_ms INTEGER NOT NULL
    );
    CREATE INDEX replay_jti_expiry ON replay_jti(expires_at_ms);
    CREATE TABLE revocation (
        id    INTEGER PRIMARY KEY CHECK (id = 1),
        epoch INTEGER NOT NULL
    );
    INSERT INTO revocation (id, epoch) VALUES (1, 0);
    CREATE TABLE session_budgets (
        session_id      TEXT PRIMARY KEY,
        max_calls       INTEGER,
        max_cost_cents  INTEGER,
        used_calls      INTEGER NOT NULL DEFAULT 0,
        used_cost_cents INTEGER NOT NULL DEFAULT 0,
        expires_at_ms   INTEGER NOT NULL
    );
    CREATE INDEX session_budgets_expiry ON session_budgets(expires_at_ms);
    CREATE TABLE approval_claims (
        approval_id   TEXT PRIMARY KEY,
        claimed_at_ms INTEGER NOT NULL
    );
"#;

/// v2: which external stores (a Redis keyspace) this broker has used, so a
/// store found empty can be told apart from one that lost its data.
const SCHEMA_V2: &str = r#"
    CREATE TABLE external_stores (
        name          TEXT PRIMARY KEY,
        first_used_ms INTEGER NOT NULL
    );
"#;

/// Sweep expired rows and checkpoint the WAL once per this many operations.
const MAINTAIN_EVERY: u64 = 1024;

#[derive(Clone)]
pub struct SqliteStateStore {
    shared: Arc<Shared>,
}

struct Shared {
    path: std::path::PathBuf,
    conn: Mutex<Connection>,
    operations: AtomicU64,
}

impl Shared {
    /// Runs one operation on the held connection and counts it; every
    /// [`MAINTAIN_EVERY`]th schedules maintenance, which waits for the lock.
    fn operate<T>(
        self: &Arc<Self>,
        conn: &mut Connection,
        fail: fn(String) -> StateError,
        op: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StateError> {
        let done = op(conn).map_err(|e| fail(e.to_string()));
        let count = self.operations.fetch_add(1, Ordering::Relaxed) + 1;
        if count.is_multiple_of(MAINTAIN_EVERY)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let shared = Arc::clone(self);
            runtime.spawn_blocking(move || shared.maintain());
        }
        done
    }

    /// Sweeps expired rows, then copies the WAL back into the database. With
    /// the only connection held, the checkpoint copies every frame, so the
    /// next write starts the WAL over. A failure only delays cleanup.
    fn maintain(&self) {
        let Ok(mut conn) = self.conn.lock() else { return };
        if let Err(e) = sweep(&mut conn) {
            tracing::warn!(error = %e, "state store sweep failed");
        }
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "state store checkpoint failed");
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn ttl_ms(ttl_secs: u64) -> i64 {
    i64::try_from(ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX / 2)
}

/// SQLite stores u64 counters as i64; values past i64::MAX are clamped.
fn to_sql_u64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn from_sql_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl SqliteStateStore {
    /// Opens (creating as needed) the state database at `path`.
    pub fn open(path: &Path) -> Result<SqliteStateStore, StateError> {
        let unavailable = |e: rusqlite::Error| StateError::StoreUnavailable(e.to_string());
        let mut conn = Connection::open(path).map_err(unavailable)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(unavailable)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StateError::StoreUnavailable(format!("journal_mode is {mode}, WAL required")));
        }
        // temp_store = MEMORY: no temporary files outside the state dir (Landlock).
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; PRAGMA temp_store = MEMORY;")
            .map_err(unavailable)?;
        // Checkpoints belong to maintenance (`Shared::maintain`), not to
        // whichever request's commit crosses SQLite's threshold.
        conn.query_row("PRAGMA wal_autocheckpoint = 0", [], |_| Ok(())).map_err(unavailable)?;
        migrate(&mut conn).map_err(unavailable)?;
        Ok(SqliteStateStore {
            shared: Arc::new(Shared {
                path: path.to_path_buf(),
                conn: Mutex::new(conn),
                operations: AtomicU64::new(0),
            }),
        })
    }

    /// Per-request operations (replay cache, budgets, epoch reads): a
    /// statement or two on pages in memory, with no fsync at commit. They run
    /// on the caller's thread when the connection is free — the hop to the
    /// blocking pool and back cost more than the statements (the pipeline's
    /// debit stage went from 57 to 27 µs) — and wait on the blocking pool
    /// when it is held (maintenance, an fsynced epoch bump), so that a
    /// runtime worker never blocks on the lock.
    fn run_inline<'a, T: Send + 'static>(
        &'a self,
        fail: fn(String) -> StateError,
        op: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> StateFuture<'a, T> {
        Box::pin(async move {
            match self.shared.conn.try_lock() {
                Ok(mut conn) => return self.shared.operate(&mut conn, fail, op),
                Err(TryLockError::Poisoned(_)) => return Err(fail("state connection poisoned".into())),
                Err(TryLockError::WouldBlock) => {}
            }
            self.run(fail, op).await
        })
    }

    /// Runs `op` on the connection on a blocking thread; SQLite failures
    /// become `fail(detail)` so each operation reports its own 503 code.
    fn run<'a, T: Send + 'static>(
        &'a self,
        fail: fn(String) -> StateError,
        op: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> StateFuture<'a, T> {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let joined = tokio::task::spawn_blocking(move || {
                let mut conn = shared.conn.lock().map_err(|_| fail("state connection poisoned".into()))?;
                shared.operate(&mut conn, fail, op)
            })
            .await;
            joined.map_err(|e| fail(format!("state task failed: {e}")))?
        })
    }

    /// Deletes expired replay entries and budgets. Returns rows removed.
    pub async fn sweep_expired(&self) -> Result<usize, StateError> {
        self.run(StateError::StoreUnavailable, sweep).await
    }

    /// Raises the stored epoch to at least `at_least` (never lowers it),
    /// committed with a full fsync; returns the stored epoch. The Redis store
    /// mirrors every epoch it sees here, so a Redis that loses its data cannot
    /// resurrect revoked leases.
    pub async fn raise_epoch_to(&self, at_least: u64) -> Result<u64, StateError> {
        self.run(StateError::StoreUnavailable, move |conn| {
            with_full_sync(conn, |conn| {
                conn.query_row(
                    "UPDATE revocation SET epoch = MAX(epoch, ?1) WHERE id = 1 RETURNING epoch",
                    [to_sql_u64(at_least)],
                    |r| r.get::<_, i64>(0),
                )
            })
            .map(from_sql_u64)
        })
        .await
    }
}

impl SqliteStateStore {
    /// Whether this broker has used the external store `name` before.
    pub async fn external_store_used(&self, name: &str) -> Result<bool, StateError> {
        let name = name.to_string();
        self.run(StateError::StoreUnavailable, move |conn| {
            conn.query_row("SELECT 1 FROM external_stores WHERE name = ?1", [name], |_| Ok(())).optional()
        })
        .await
        .map(|found| found.is_some())
    }

    /// Records (durably, full fsync) that this broker uses the external store `name`.
    pub async fn mark_external_store_used(&self, name: &str) -> Result<(), StateError> {
        let name = name.to_string();
        self.run(StateError::StoreUnavailable, move |conn| {
            with_full_sync(conn, |conn| {
                conn.execute(
                    "INSERT INTO external_stores (name, first_used_ms) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
                    params![name, now_ms()],
                )
            })
            .map(|_| ())
        })
        .await
    }
}

/// Runs `op` with `synchronous=FULL` (an fsync per commit), then back to NORMAL.
fn with_full_sync<T>(
    conn: &mut Connection,
    op: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.execute_batch("PRAGMA synchronous = FULL")?;
    let result = op(conn);
    let restored = conn.execute_batch("PRAGMA synchronous = NORMAL");
    let value = result?;
    restored?;
    Ok(value)
}

fn sweep(conn: &mut Connection) -> rusqlite::Result<usize> {
    let now = now_ms();
    let jtis = conn.execute("DELETE FROM replay_jti WHERE expires_at_ms <= ?1", [now])?;
    let budgets = conn.execute("DELETE FROM session_budgets WHERE expires_at_ms <= ?1", [now])?;
    Ok(jtis + budgets)
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    let found: i64 = conn.query_row("SELECT version FROM schema_version", [], |r| r.get(0)).optional()?.unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "state schema version {found} is newer than supported {SCHEMA_VERSION}"
        )));
    }
    for (version, sql) in [(1, SCHEMA_V1), (2, SCHEMA_V2)] {
        if found < version {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute_batch(sql)?;
            tx.execute("DELETE FROM schema_version", [])?;
            tx.execute("INSERT INTO schema_version (version) VALUES (?1)", [version])?;
            tx.commit()?;
        }
    }
    Ok(())
}

fn read_budget(conn: &Connection, session_id: &str, now: i64) -> rusqlite::Result<Option<BudgetSnapshot>> {
    conn.prepare_cached(
        "SELECT max_calls, max_cost_cents, used_calls, used_cost_cents FROM session_budgets \
         WHERE session_id = ?1 AND expires_at_ms > ?2",
    )?
    .query_row(params![session_id, now], |r| {
        Ok(BudgetSnapshot {
            limits: BudgetLimits {
                max_calls: r.get::<_, Option<i64>>(0)?.map(from_sql_u64),
                max_cost_cents: r.get::<_, Option<i64>>(1)?.map(from_sql_u64),
            },
            used_calls: from_sql_u64(r.get(2)?),
            used_cost_cents: from_sql_u64(r.get(3)?),
        })
    })
    .optional()
}

/// Records a DPoP `jti`; `true` if fresh.
fn record_jti(conn: &mut Connection, jti: &str, ttl_secs: u64) -> rusqlite::Result<bool> {
    let now = now_ms();
    // Insert, or take over an expired entry; a live entry is left alone.
    let changed = conn
        .prepare_cached(
            "INSERT INTO replay_jti (jti, expires_at_ms) VALUES (?1, ?2) \
             ON CONFLICT(jti) DO UPDATE SET expires_at_ms = excluded.expires_at_ms \
             WHERE replay_jti.expires_at_ms <= ?3",
        )?
        .execute(params![jti, now.saturating_add(ttl_ms(ttl_secs)), now])?;
    Ok(changed == 1)
}

fn read_epoch(conn: &Connection) -> rusqlite::Result<u64> {
    let epoch: i64 = conn.prepare_cached("SELECT epoch FROM revocation WHERE id = 1")?.query_row([], |r| r.get(0))?;
    Ok(from_sql_u64(epoch))
}

/// The epoch read that follows another operation in the same round trip;
/// its failure keeps the epoch's own code.
fn read_epoch_after(conn: &Connection) -> Result<u64, StateError> {
    read_epoch(conn).map_err(|e| StateError::StoreUnavailable(e.to_string()))
}

/// All-or-nothing debit in one immediate transaction.
fn debit(conn: &mut Connection, session_id: &str, calls: u64, cost_cents: u64) -> rusqlite::Result<DebitOutcome> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let Some(before) = read_budget(&tx, session_id, now_ms())? else {
        return Ok(DebitOutcome::UnknownSession);
    };
    if !within(before.limits.max_calls, before.used_calls, calls)
        || !within(before.limits.max_cost_cents, before.used_cost_cents, cost_cents)
    {
        return Ok(DebitOutcome::Exhausted(before));
    }
    let after = BudgetSnapshot {
        used_calls: before.used_calls.saturating_add(calls),
        used_cost_cents: before.used_cost_cents.saturating_add(cost_cents),
        ..before
    };
    tx.prepare_cached("UPDATE session_budgets SET used_calls = ?2, used_cost_cents = ?3 WHERE session_id = ?1")?
        .execute(params![session_id, to_sql_u64(after.used_calls), to_sql_u64(after.used_cost_cents)])?;
    tx.commit()?;
    Ok(DebitOutcome::Debited(after))
}

fn within(limit: Option<u64>, used: u64, more: u64) -> bool {
    match limit {
        None => true,
        Some(max) => used.checked_add(more).is_some_and(|total| total <= max),
    }
}

impl StateStore for SqliteStateStore {
    fn check_and_record_jti<'a>(&'a self, jti: &'a str, ttl_secs: u64) -> StateFuture<'a, bool> {
        let jti = jti.to_string();
        self.run_inline(StateError::ReplayCacheUnavailable, move |conn| record_jti(conn, &jti, ttl_secs))
    }

    fn record_jti_and_read_epoch<'a>(&'a self, jti: &'a str, ttl_secs: u64) -> StateFuture<'a, Option<u64>> {
        let jti = jti.to_string();
        let both = self.run_inline(StateError::ReplayCacheUnavailable, move |conn| {
            if !record_jti(conn, &jti, ttl_secs)? {
                return Ok(Ok(None));
            }
            Ok(read_epoch_after(conn).map(Some))
        });
        Box::pin(async move { both.await? })
    }

    fn debit_and_read_epoch<'a>(
        &'a self,
        session_id: &'a str,
        calls: u64,
        cost_cents: u64,
    ) -> StateFuture<'a, (DebitOutcome, Option<EpochRead>)> {
        let session_id = session_id.to_string();
        self.run_inline(StateError::BudgetStoreUnavailable, move |conn| {
            let outcome = debit(conn, &session_id, calls, cost_cents)?;
            let epoch = matches!(outcome, DebitOutcome::Debited(_)).then(|| read_epoch_after(conn));
            Ok((outcome, epoch))
        })
    }

    fn revocation_epoch(&self) -> StateFuture<'_, u64> {
        self.run_inline(StateError::StoreUnavailable, |conn| read_epoch(conn))
    }

    fn bump_epoch(&self) -> StateFuture<'_, u64> {
        self.run(StateError::StoreUnavailable, |conn| {
            with_full_sync(conn, |conn| {
                conn.query_row("UPDATE revocation SET epoch = epoch + 1 WHERE id = 1 RETURNING epoch", [], |r| {
                    r.get::<_, i64>(0)
                })
            })
            .map(from_sql_u64)
        })
    }

    fn init_session_budget<'a>(
        &'a self,
        session_id: &'a str,
        limits: BudgetLimits,
        ttl_secs: u64,
    ) -> StateFuture<'a, bool> {
        let session_id = session_id.to_string();
        self.run_inline(StateError::BudgetStoreUnavailable, move |conn| {
            let now = now_ms();
            let changed = conn.prepare_cached(
                "INSERT INTO session_budgets (session_id, max_calls, max_cost_cents, used_calls, used_cost_cents, expires_at_ms) \
                 VALUES (?1, ?2, ?3, 0, 0, ?4) \
                 ON CONFLICT(session_id) DO UPDATE SET max_calls = excluded.max_calls, \
                   max_cost_cents = excluded.max_cost_cents, used_calls = 0, used_cost_cents = 0, \
                   expires_at_ms = excluded.expires_at_ms \
                 WHERE session_budgets.expires_at_ms <= ?5",
            )?
            .execute(params![
                    session_id,
                    limits.max_calls.map(to_sql_u64),
                    limits.max_cost_cents.map(to_sql_u64),
                    now.saturating_add(ttl_ms(ttl_secs)),
                    now
                ])?;
            Ok(changed == 1)
        })
    }

    fn budget_snapshot<'a>(&'a self, session_id: &'a str) -> StateFuture<'a, Option<BudgetSnapshot>> {
        let session_id = session_id.to_string();
        self.run_inline(StateError::BudgetStoreUnavailable, move |conn| read_budget(conn, &session_id, now_ms()))
    }

    fn debit<'a>(&'a self, session_id: &'a str, calls: u64, cost_cents: u64) -> StateFuture<'a, DebitOutcome> {
        let session_id = session_id.to_string();
        self.run_inline(StateError::BudgetStoreUnavailable, move |conn| debit(conn, &session_id, calls, cost_cents))
    }

    fn refund<'a>(&'a self, session_id: &'a str, calls: u64, cost_cents: u64) -> StateFuture<'a, ()> {
        let session_id = session_id.to_string();
        self.run_inline(StateError::BudgetStoreUnavailable, move |conn| {
            conn.prepare_cached(
                "UPDATE session_budgets SET used_calls = MAX(used_calls - ?2, 0), \
                 used_cost_cents = MAX(used_cost_cents - ?3, 0) WHERE session_id = ?1",
            )?
            .execute(params![session_id, to_sql_u64(calls), to_sql_u64(cost_cents)])?;
            Ok(())
        })
    }

    fn claim_approval<'a>(&'a self, approval_id: &'a str) -> StateFuture<'a, bool> {
        let approval_id = approval_id.to_string();
        self.run_inline(StateError::StoreUnavailable, move |conn| {
            let changed = conn.execute(
                "INSERT INTO approval_claims (approval_id, claimed_at_ms) VALUES (?1, ?2) \
                 ON CONFLICT(approval_id) DO NOTHING",
                params![approval_id, now_ms()],
            )?;
            Ok(changed == 1)
        })
    }

    fn probe(&self) -> StateFuture<'_, ()> {
        self.run_inline(StateError::StoreUnavailable, |conn| conn.query_row("SELECT 1", [], |_| Ok(())))
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn endpoint(&self) -> String {
        self.shared.path.display().to_string()
    }
}
