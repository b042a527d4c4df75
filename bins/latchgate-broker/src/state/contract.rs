//! The behaviour every [`StateStore`] backend must show. Backends call these
//! from their own tests (`tests/state_*.rs`): the SQLite store now, the Redis
//! store later. Keys are random per run so a shared server can be reused.
//! Failures panic, as test assertions do.

use std::sync::Arc;
use std::time::Duration;

use super::{BudgetLimits, DebitOutcome, StateStore};

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

/// Runs every contract check that needs only one open store.
pub async fn run_contract_suite(store: Arc<dyn StateStore>) {
    replayed_jti_is_detected_within_ttl_and_allowed_after(store.as_ref()).await;
    distinct_jtis_do_not_collide(store.as_ref()).await;
    concurrent_debits_never_overspend_calls(Arc::clone(&store)).await;
    concurrent_debits_never_overspend_cost(Arc::clone(&store)).await;
    refund_returns_budget_but_never_below_zero(store.as_ref()).await;
    debit_of_unknown_or_expired_session_fails_closed(store.as_ref()).await;
    budget_is_never_reset_by_a_second_init(store.as_ref()).await;
    epoch_bump_is_monotonic(store.as_ref()).await;
    approval_is_claimed_once_under_concurrency(Arc::clone(&store)).await;
    combined_calls_keep_each_steps_answer(store.as_ref()).await;
}

/// The one-round-trip forms answer exactly what their steps answer alone.
pub async fn combined_calls_keep_each_steps_answer(store: &dyn StateStore) {
    let epoch = store.revocation_epoch().await.unwrap();
    let jti = unique("jti");
    assert_eq!(store.record_jti_and_read_epoch(&jti, 180).await.unwrap(), Some(epoch), "fresh jti: the epoch");
    assert_eq!(store.record_jti_and_read_epoch(&jti, 180).await.unwrap(), None, "replayed jti: no epoch");
    assert!(!store.check_and_record_jti(&jti, 180).await.unwrap(), "the combined form recorded the jti");

    let session = unique("session");
    let (outcome, read) = store.debit_and_read_epoch(&session, 1, 0).await.unwrap();
    assert_eq!((outcome, read.is_none()), (DebitOutcome::UnknownSession, true), "unknown session: no debit");
    let limits = BudgetLimits { max_calls: Some(1), max_cost_cents: None };
    assert!(store.init_session_budget(&session, limits, 300).await.unwrap());
    match store.debit_and_read_epoch(&session, 1, 5).await.unwrap() {
        (DebitOutcome::Debited(after), Some(Ok(read))) => {
            assert_eq!((after.used_calls, after.used_cost_cents), (1, 5));
            assert_eq!(read, epoch);
        }
        other => panic!("expected a debit with the epoch, got {other:?}"),
    }
    match store.debit_and_read_epoch(&session, 1, 0).await.unwrap() {
        (DebitOutcome::Exhausted(before), None) => assert_eq!(before.used_calls, 1),
        other => panic!("expected exhausted without an epoch read, got {other:?}"),
    }
    let snapshot = store.budget_snapshot(&session).await.unwrap().unwrap();
    assert_eq!((snapshot.used_calls, snapshot.used_cost_cents), (1, 5), "the refused debit changed nothing");
}

pub async fn replayed_jti_is_detected_within_ttl_and_allowed_after(store: &dyn StateStore) {
    let jti = unique("jti");
    assert!(store.check_and_record_jti(&jti, 1).await.unwrap(), "first use must be fresh");
    assert!(!store.check_and_record_jti(&jti, 1).await.unwrap(), "replay within ttl must be detected");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(store.check_and_record_jti(&jti, 1).await.unwrap(), "jti must be usable again after its ttl");
    assert!(!store.check_and_record_jti(&jti, 1).await.unwrap(), "and single-use again");
}

pub async fn distinct_jtis_do_not_collide(store: &dyn StateStore) {
    for _ in 0..20 {
        assert!(store.check_and_record_jti(&unique("jti"), 180).await.unwrap());
    }
}

async fn debit_concurrently(store: &Arc<dyn StateStore>, session: &str, tasks: usize, calls: u64, cost: u64) -> usize {
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let store = Arc::clone(store);
        let session = session.to_string();
        handles.push(tokio::spawn(async move { store.debit(&session, calls, cost).await.unwrap() }));
    }
    let mut debited = 0;
    for handle in handles {
        match handle.await.unwrap() {
            DebitOutcome::Debited(_) => debited += 1,
            DebitOutcome::Exhausted(_) => {}
            DebitOutcome::UnknownSession => panic!("session vanished during debits"),
        }
    }
    debited
}

pub async fn concurrent_debits_never_overspend_calls(store: Arc<dyn StateStore>) {
    let session = unique("session");
    let limits = BudgetLimits { max_calls: Some(10), max_cost_cents: Some(10_000) };
    assert!(store.init_session_budget(&session, limits, 300).await.unwrap());
    let debited = debit_concurrently(&store, &session, 64, 1, 30).await;
    assert_eq!(debited, 10, "exactly max_calls debits may succeed");
    let snapshot = store.budget_snapshot(&session).await.unwrap().unwrap();
    assert_eq!((snapshot.used_calls, snapshot.used_cost_cents), (10, 300));
    assert_eq!(snapshot.remaining_calls(), Some(0));
}

pub async fn concurrent_debits_never_overspend_cost(store: Arc<dyn StateStore>) {
    let session = unique("session");
    let limits = BudgetLimits { max_calls: None, max_cost_cents: Some(100) };
    assert!(store.init_session_budget(&session, limits, 300).await.unwrap());
    let debited = debit_concurrently(&store, &session, 40, 1, 30).await;
    assert_eq!(debited, 3, "30-cent debits against 100 cents: three fit");
    let snapshot = store.budget_snapshot(&session).await.unwrap().unwrap();
    assert_eq!(snapshot.used_cost_cents, 90);
    match store.debit(&session, 1, 11).await.unwrap() {
        DebitOutcome::Exhausted(s) => assert_eq!(s.used_cost_cents, 90, "refused debit must change nothing"),
        other => panic!("debit past the cost limit must be refused, got {other:?}"),
    }
    assert!(matches!(store.debit(&session, 1, 10).await.unwrap(), DebitOutcome::Debited(_)), "exact fit is allowed");
}

pub async fn refund_returns_budget_but_never_below_zero(store: &dyn StateStore) {
    let session = unique("session");
    let limits = BudgetLimits { max_calls: Some(1), max_cost_cents: None };
    store.init_session_budget(&session, limits, 300).await.unwrap();
    assert!(matches!(store.debit(&session, 1, 5).await.unwrap(), DebitOutcome::Debited(_)));
    assert!(matches!(store.debit(&session, 1, 5).await.unwrap(), DebitOutcome::Exhausted(_)));
    store.refund(&session, 1, 5).await.unwrap();
    assert!(matches!(store.debit(&session, 1, 5).await.unwrap(), DebitOutcome::Debited(_)));
    store.refund(&session, 5, 500).await.unwrap();
    let snapshot = store.budget_snapshot(&session).await.unwrap().unwrap();
    assert_eq!((snapshot.used_calls, snapshot.used_cost_cents), (0, 0));
}

pub async fn debit_of_unknown_or_expired_session_fails_closed(store: &dyn StateStore) {
    assert_eq!(store.debit(&unique("session"), 1, 0).await.unwrap(), DebitOutcome::UnknownSession);
    assert!(store.budget_snapshot(&unique("session")).await.unwrap().is_none());
    let session = unique("session");
    let limits = BudgetLimits { max_calls: Some(5), max_cost_cents: None };
    store.init_session_budget(&session, limits, 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(store.debit(&session, 1, 0).await.unwrap(), DebitOutcome::UnknownSession);
}

pub async fn budget_is_never_reset_by_a_second_init(store: &dyn StateStore) {
    let session = unique("session");
    let limits = BudgetLimits { max_calls: Some(2), max_cost_cents: None };
    assert!(store.init_session_budget(&session, limits, 300).await.unwrap());
    store.debit(&session, 2, 0).await.unwrap();
    let bigger = BudgetLimits { max_calls: Some(100), max_cost_cents: None };
    assert!(!store.init_session_budget(&session, bigger, 300).await.unwrap());
    let snapshot = store.budget_snapshot(&session).await.unwrap().unwrap();
    assert_eq!(snapshot.limits, limits);
    assert_eq!(snapshot.used_calls, 2);
}

pub async fn epoch_bump_is_monotonic(store: &dyn StateStore) {
    let before = store.revocation_epoch().await.unwrap();
    let bumped = store.bump_epoch().await.unwrap();
    assert_eq!(bumped, before + 1);
    assert_eq!(store.revocation_epoch().await.unwrap(), bumped);
}

pub async fn approval_is_claimed_once_under_concurrency(store: Arc<dyn StateStore>) {
    let approval = unique("approval");
    let mut handles = Vec::new();
    for _ in 0..32 {
        let store = Arc::clone(&store);
        let approval = approval.clone();
        handles.push(tokio::spawn(async move { store.claim_approval(&approval).await.unwrap() }));
    }
    let mut winners = 0;
    for handle in handles {
        winners += usize::from(handle.await.unwrap());
    }
    assert_eq!(winners, 1, "exactly one claimant may win an approval");
    assert!(!store.claim_approval(&approval).await.unwrap());
}

/// The epoch survives closing and reopening the store (`open` opens the same
/// backing store each time).
pub async fn epoch_persists_across_reopen(open: impl Fn() -> Arc<dyn StateStore>) {
    let first = open();
    let bumped = first.bump_epoch().await.unwrap();
    let bumped = first.bump_epoch().await.unwrap().max(bumped);
    drop(first);
    let reopened = open();
    assert_eq!(reopened.revocation_epoch().await.unwrap(), bumped);
}
