//! The production (Redis) state store against a real `redis-server`: the same
//! contract suite as the SQLite store, then what only a networked store can
//! do to the gate — go away, come back, come back empty, go slow — and in
//! every case the store fails closed with the operation's own 503 code and
//! never lets a revoked lease or a replayed proof through.

use latchgate_broker::state::{
    BudgetLimits, DebitOutcome, RedisStateStore, SqliteStateStore, StateError, StateStore, contract,
};
use latchgate_core::config::RedisConfig;
use latchgate_core::error::ErrorCode;
use latchgate_tests::redis_server::{COMMAND_TIMEOUT_MS, RedisServer};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn config(redis: &RedisServer, prefix: &str) -> RedisConfig {
    RedisConfig {
        url: redis.url(),
        key_prefix: prefix.to_string(),
        connect_timeout_ms: COMMAND_TIMEOUT_MS,
        command_timeout_ms: COMMAND_TIMEOUT_MS,
    }
}

async fn open(redis: &RedisServer, prefix: &str, mirror_dir: &Path) -> RedisStateStore {
    let mirror = SqliteStateStore::open(&mirror_dir.join("state.db")).unwrap();
    RedisStateStore::open(&config(redis, prefix), mirror).await.unwrap()
}

fn code(e: StateError) -> ErrorCode {
    e.error_code()
}

/// Poll `op` until it succeeds (the store reconnects by itself), up to 30 s.
async fn eventually<T, F, Fut>(what: &str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StateError>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match op().await {
            Ok(v) => return v,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("{what} did not recover: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_store_meets_the_state_contract() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&redis, "contract:", dir.path()).await);
    contract::run_contract_suite(store.clone()).await;
    // Reported, not asserted (speed is `make bench`'s job).
    let started = Instant::now();
    for i in 0..500 {
        store.check_and_record_jti(&format!("jkt:timing-{i}"), 180).await.unwrap();
        store.debit("no-such-session", 1, 0).await.unwrap();
    }
    eprintln!("redis over a Unix socket: {:?} per SET NX + debit script", started.elapsed() / 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epoch_persists_across_reopen_and_redis_restart() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let handle = tokio::runtime::Handle::current();
    contract::epoch_persists_across_reopen(|| {
        let store = tokio::task::block_in_place(|| handle.block_on(open(&redis, "reopen:", dir.path())));
        Arc::new(store) as Arc<dyn StateStore>
    })
    .await;
    let store = open(&redis, "reopen:", dir.path()).await;
    let epoch = store.revocation_epoch().await.unwrap();
    redis.restart();
    let after = eventually("epoch after restart", || store.revocation_epoch()).await;
    assert_eq!(after, epoch, "a persistent Redis keeps the epoch");
    assert_eq!(store.replay_fence(), None, "no data was lost, so no proof is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_leases_stay_revoked_when_redis_loses_its_data() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = open(&redis, "lost:", dir.path()).await;
    store.revocation_epoch().await.unwrap();
    assert_eq!(store.replay_fence(), None, "the first use of an empty keyspace is not a data loss");
    for _ in 0..3 {
        store.bump_epoch().await.unwrap();
    }
    let revoked_below = store.revocation_epoch().await.unwrap();
    assert!(revoked_below >= 3);
    assert!(store.check_and_record_jti("jkt:proof-before-the-loss", 180).await.unwrap());

    redis.restart_empty();
    assert_eq!(redis.command(&["GET", "lost:revocation_epoch"]), "$-1\r\n", "Redis really forgot the epoch");

    // The same broker keeps the epoch and puts it back into Redis.
    let epoch = eventually("epoch after data loss", || store.revocation_epoch()).await;
    assert_eq!(epoch, revoked_below, "losing Redis's data must not resurrect revoked leases");
    assert_eq!(
        redis.command(&["GET", "lost:revocation_epoch"]),
        format!("${}\r\n{epoch}\r\n", epoch.to_string().len())
    );
    let fence = store.replay_fence().expect("the store knows its replay cache forgot");
    assert!(fence >= time::OffsetDateTime::now_utc().unix_timestamp() - 60, "fence is the time of the loss");

    // A restarted broker reads the floor from its own state.db, even against an empty Redis.
    redis.restart_empty();
    let restarted = open(&redis, "lost:", dir.path()).await;
    assert_eq!(eventually("epoch after broker restart", || restarted.revocation_epoch()).await, revoked_below);
    assert!(restarted.replay_fence().is_some());
    // A bump after the loss goes above what was revoked before it.
    assert_eq!(restarted.bump_epoch().await.unwrap(), revoked_below + 1);

    // Budgets start fresh: the session is unknown until the broker re-creates it from the lease.
    let limits = BudgetLimits { max_calls: Some(1), max_cost_cents: None };
    assert!(restarted.init_session_budget("s-fresh", limits, 60).await.unwrap());
    assert!(matches!(restarted.debit("s-fresh", 1, 0).await.unwrap(), DebitOutcome::Debited(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_redis_fails_every_operation_closed_and_the_store_recovers() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = open(&redis, "down:", dir.path()).await;
    let limits = BudgetLimits { max_calls: Some(5), max_cost_cents: None };
    assert!(store.init_session_budget("s1", limits, 300).await.unwrap());
    store.probe().await.unwrap();

    redis.stop();
    assert_eq!(code(store.check_and_record_jti("jkt:a", 180).await.unwrap_err()), ErrorCode::ReplayCacheUnavailable);
    assert_eq!(code(store.debit("s1", 1, 0).await.unwrap_err()), ErrorCode::BudgetStoreUnavailable);
    assert_eq!(code(store.budget_snapshot("s1").await.unwrap_err()), ErrorCode::BudgetStoreUnavailable);
    assert_eq!(code(store.refund("s1", 1, 0).await.unwrap_err()), ErrorCode::BudgetStoreUnavailable);
    assert_eq!(code(store.revocation_epoch().await.unwrap_err()), ErrorCode::StoreUnavailable);
    assert_eq!(code(store.bump_epoch().await.unwrap_err()), ErrorCode::StoreUnavailable);
    assert_eq!(code(store.claim_approval("a1").await.unwrap_err()), ErrorCode::StoreUnavailable);
    assert_eq!(code(store.probe().await.unwrap_err()), ErrorCode::StoreUnavailable);

    redis.restart();
    eventually("probe", || store.probe()).await;
    let snapshot = store.budget_snapshot("s1").await.unwrap().expect("budget survives a persistent restart");
    assert_eq!(snapshot.used_calls, 0, "the refused debit changed nothing");
    assert!(matches!(store.debit("s1", 1, 0).await.unwrap(), DebitOutcome::Debited(_)));
    assert!(store.check_and_record_jti("jkt:a", 180).await.unwrap(), "the refused proof was never recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_redis_answers_within_the_command_timeout_without_pile_up() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&redis, "slow:", dir.path()).await);
    store.probe().await.unwrap();
    let before = redis.connected_clients();

    let sleeper = redis.sleep_in_background(4.0 * COMMAND_TIMEOUT_MS as f64 / 1000.0);
    let mut calls = Vec::new();
    for i in 0..64 {
        let store = store.clone();
        calls.push(tokio::spawn(async move { store.check_and_record_jti(&format!("jkt:slow-{i}"), 180).await }));
    }
    for call in calls {
        let err = call.await.unwrap().expect_err("a stuck Redis must not answer fresh");
        assert_eq!(err.error_code(), ErrorCode::ReplayCacheUnavailable);
    }
    // Every caller got its 503 while Redis was still asleep: bounded by the command timeout.
    assert!(!sleeper.is_finished(), "answers waited for Redis instead of timing out");
    sleeper.join().unwrap();

    eventually("probe after the sleep", || store.probe()).await;
    assert!(store.check_and_record_jti("jkt:after-sleep", 180).await.unwrap());
    // One multiplexed connection: 64 timed-out calls did not open 64 connections.
    assert!(redis.connected_clients() <= before + 2, "{} clients (was {before})", redis.connected_clients());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_are_reloaded_after_redis_forgets_them() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = open(&redis, "noscript:", dir.path()).await;
    let limits = BudgetLimits { max_calls: Some(3), max_cost_cents: None };
    store.init_session_budget("s", limits, 300).await.unwrap();
    store.debit("s", 1, 0).await.unwrap();
    assert_eq!(redis.command(&["SCRIPT", "FLUSH"]), "+OK\r\n");
    match store.debit("s", 1, 0).await.unwrap() {
        DebitOutcome::Debited(after) => assert_eq!(after.used_calls, 2),
        other => panic!("debit after SCRIPT FLUSH: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_prefixes_keep_two_gates_apart_on_one_redis() {
    let redis = RedisServer::start();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(&redis, "gate-a:", dir_a.path()).await;
    let b = open(&redis, "gate-b:", dir_b.path()).await;
    assert!(a.check_and_record_jti("jkt:shared", 180).await.unwrap());
    assert!(b.check_and_record_jti("jkt:shared", 180).await.unwrap(), "b has its own replay cache");
    a.bump_epoch().await.unwrap();
    assert_eq!(b.revocation_epoch().await.unwrap(), 0, "a's revocation does not touch b");
    let keys = redis.command(&["KEYS", "*"]);
    for line in keys.lines().filter(|l| !l.starts_with(['*', '$'])) {
        assert!(line.starts_with("gate-a:") || line.starts_with("gate-b:"), "unprefixed key {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_budget_fails_closed() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = open(&redis, "corrupt:", dir.path()).await;
    let limits = BudgetLimits { max_calls: Some(3), max_cost_cents: None };
    store.init_session_budget("s", limits, 300).await.unwrap();
    redis.command(&["HSET", "corrupt:budget:s", "used_calls", "lots"]);
    assert_eq!(code(store.debit("s", 1, 0).await.unwrap_err()), ErrorCode::BudgetStoreUnavailable);
    assert_eq!(code(store.budget_snapshot("s").await.unwrap_err()), ErrorCode::BudgetStoreUnavailable);
    redis.command(&["HSET", "corrupt:budget:s", "used_calls", "-4"]);
    assert_eq!(code(store.debit("s", 1, 0).await.unwrap_err()), ErrorCode::BudgetStoreUnavailable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_persistence_is_reported() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = open(&redis, "p:", dir.path()).await;
    let p = store.persistence().await.unwrap();
    assert!(p.aof_enabled && p.is_durable(), "{p:?}");
    redis.command(&["CONFIG", "SET", "appendonly", "no"]);
    let p = store.persistence().await.unwrap();
    assert!(!p.is_durable(), "{p:?}");
}
