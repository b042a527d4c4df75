//! The embedded (SQLite) state store meets the state-store contract.

use std::sync::Arc;

use latchgate_broker::state::{SqliteStateStore, StateError, StateStore, contract};
use latchgate_core::error::ErrorCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_store_meets_the_state_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStateStore::open(&dir.path().join("state.db")).unwrap();
    contract::run_contract_suite(Arc::new(store)).await;
}

#[tokio::test]
async fn epoch_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    contract::epoch_persists_across_reopen(|| Arc::new(SqliteStateStore::open(&path).unwrap()) as Arc<dyn StateStore>)
        .await;
    // And the replay cache survives a restart within its window.
    let store = SqliteStateStore::open(&path).unwrap();
    assert!(store.check_and_record_jti("jti-across-restart", 180).await.unwrap());
    drop(store);
    let store = SqliteStateStore::open(&path).unwrap();
    assert!(!store.check_and_record_jti("jti-across-restart", 180).await.unwrap());
}

#[tokio::test]
async fn sweep_removes_only_expired_entries() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStateStore::open(&dir.path().join("state.db")).unwrap();
    store.check_and_record_jti("short", 1).await.unwrap();
    store.check_and_record_jti("long", 180).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(store.sweep_expired().await.unwrap(), 1);
    assert!(!store.check_and_record_jti("long", 180).await.unwrap(), "live entry must survive the sweep");
}

#[test]
fn state_errors_map_to_their_503_codes() {
    let cases = [
        (StateError::ReplayCacheUnavailable("x".into()), ErrorCode::ReplayCacheUnavailable),
        (StateError::BudgetStoreUnavailable("x".into()), ErrorCode::BudgetStoreUnavailable),
        (StateError::StoreUnavailable("x".into()), ErrorCode::StoreUnavailable),
    ];
    for (error, code) in cases {
        assert_eq!(error.error_code(), code);
        assert_eq!(error.code(), code.as_str());
        assert_eq!(code.http_status(), 503);
    }
}

#[tokio::test]
async fn unopenable_state_database_is_store_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the database file should be cannot be opened as one.
    let path = dir.path().join("state.db");
    std::fs::create_dir(&path).unwrap();
    let err = SqliteStateStore::open(&path).err().unwrap();
    assert_eq!(err.error_code(), ErrorCode::StoreUnavailable);
}

#[tokio::test]
async fn a_version_1_state_database_is_migrated_and_keeps_its_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = SqliteStateStore::open(&path).unwrap();
    store.bump_epoch().await.unwrap();
    drop(store);
    // What a broker before schema v2 left behind.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("DROP TABLE external_stores; UPDATE schema_version SET version = 1;").unwrap();
    drop(conn);
    let store = SqliteStateStore::open(&path).unwrap();
    assert_eq!(store.revocation_epoch().await.unwrap(), 1);
    assert!(!store.external_store_used("redis:x:").await.unwrap());
    store.mark_external_store_used("redis:x:").await.unwrap();
    assert!(store.external_store_used("redis:x:").await.unwrap());
    assert_eq!(store.raise_epoch_to(7).await.unwrap(), 7);
    assert_eq!(store.raise_epoch_to(3).await.unwrap(), 7, "the floor never goes down");
}

/// Requests alone keep the store tidy: every so many operations, expired
/// rows are swept and the WAL is copied back and started over (SQLite's own
/// checkpoint-on-commit is off, so nothing else does it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_sweeps_and_keeps_the_wal_small_without_being_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = SqliteStateStore::open(&path).unwrap();
    store.check_and_record_jti("short-lived", 1).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    const REQUESTS: usize = 6000;
    for n in 0..REQUESTS {
        assert!(store.check_and_record_jti(&format!("jti-{n:06}-{}", "x".repeat(64)), 180).await.unwrap());
    }
    let count_short = || {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.query_row("SELECT COUNT(*) FROM replay_jti WHERE jti = 'short-lived'", [], |r| r.get::<_, i64>(0)).unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while count_short() != 0 {
        assert!(std::time::Instant::now() < deadline, "the expired entry was never swept");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let wal = std::fs::metadata(dir.path().join("state.db-wal")).map(|m| m.len()).unwrap_or(0);
    // Started over every MAINTAIN_EVERY operations it stays near 22 MB here;
    // never started over it passes 80 MB.
    assert!(wal < 48 * 1024 * 1024, "state WAL is {wal} bytes after {REQUESTS} requests: never started over");
}
