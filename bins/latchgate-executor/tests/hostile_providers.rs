//! Each adversarial provider is contained with its own failure class, and the
//! same runtime serves the next call normally. The fixtures are built like the
//! builtin providers but live in `providers/dist-test/` (never the shipped
//! `dist/`); the runtime here loads both.

mod common;

use common::*;
use latchgate_core::action::{HostImport, ResourceLimits};
use latchgate_executor::{FailureClass, Outcome, Runtime};
use serde_json::json;

/// A healthy call on the same runtime: proves the previous failure did not poison it.
async fn healthy_call_succeeds(runtime: &Runtime, target: &Target) {
    let url = format!("http://{TARGET_HOST}:{}/ok", target.addr.port());
    let outcome = runtime.run(http_task(get_template(&url), json!({}), &[])).await.unwrap();
    let output: serde_json::Value = serde_json::from_str(outcome.output_json().expect("healthy call failed")).unwrap();
    assert_eq!(output["status"], 200);
}

async fn run_hostile(runtime: &Runtime, module: &str, imports: &[HostImport], limits: ResourceLimits) -> Outcome {
    let mut t = task(module, imports, json!({}));
    t.limits = limits;
    runtime.run(t).await.unwrap()
}

/// Fuel that never runs out: only the wall-clock deadline can stop the guest.
fn deadline_only(timeout_seconds: u32) -> ResourceLimits {
    ResourceLimits { fuel: u64::MAX / 4, timeout_seconds, ..ResourceLimits::default() }
}

#[tokio::test]
async fn infinite_loop_is_stopped_by_fuel_and_the_runtime_keeps_serving() {
    let target = start_target().await;
    let runtime = runtime_with_fixtures(Some(target.addr));
    let limits = ResourceLimits { fuel: 5_000_000, ..ResourceLimits::default() };
    let outcome = run_hostile(&runtime, "hostile_loop", &[], limits).await;
    assert_eq!(outcome.failure_class(), Some(FailureClass::FuelExhausted));
    assert!(outcome.fuel_consumed >= 4_900_000, "fuel consumed {}", outcome.fuel_consumed);
    healthy_call_succeeds(&runtime, &target).await;
}

#[tokio::test]
async fn infinite_loop_with_ample_fuel_is_stopped_by_the_epoch_deadline() {
    let target = start_target().await;
    let runtime = runtime_with_fixtures(Some(target.addr));
    let limits = deadline_only(1);
    let started = std::time::Instant::now();
    let outcome = run_hostile(&runtime, "hostile_loop", &[], limits).await;
    assert_eq!(outcome.failure_class(), Some(FailureClass::Timeout));
    assert!(started.elapsed() < std::time::Duration::from_secs(3), "took {:?}", started.elapsed());
    healthy_call_succeeds(&runtime, &target).await;
}

/// Guests run on the runtime's own threads (async fibers): a guest that only
/// computes must give the thread back at every epoch tick. On this
/// single-threaded test runtime, a guest that did not would hold up the call
/// beside it (and its target) for its whole timeout.
#[tokio::test]
async fn a_computing_guest_yields_its_thread_to_a_call_beside_it() {
    let target = start_target().await;
    let runtime = runtime_with_fixtures(Some(target.addr));
    let limits = deadline_only(2);
    let started = std::time::Instant::now();
    let (spinning, healthy_took) = tokio::join!(run_hostile(&runtime, "hostile_loop", &[], limits), async {
        healthy_call_succeeds(&runtime, &target).await;
        started.elapsed()
    });
    assert_eq!(spinning.failure_class(), Some(FailureClass::Timeout));
    assert!(
        healthy_took < std::time::Duration::from_secs(1),
        "the healthy call waited {healthy_took:?} for the computing guest"
    );
}

#[tokio::test]
async fn memory_hog_hits_the_memory_cap() {
    let target = start_target().await;
    let runtime = runtime_with_fixtures(Some(target.addr));
    let limits = ResourceLimits { memory_mb: 16 + 8, ..ResourceLimits::default() };
    let outcome = run_hostile(&runtime, "hostile_memory", &[], limits).await;
    assert_eq!(outcome.failure_class(), Some(FailureClass::MemoryLimit), "{outcome:?}");
    healthy_call_succeeds(&runtime, &target).await;
}

#[tokio::test]
async fn stack_overflow_is_a_trap() {
    let target = start_target().await;
    let runtime = runtime_with_fixtures(Some(target.addr));
    let outcome = run_hostile(&runtime, "hostile_stack", &[], ResourceLimits::default()).await;
    assert_eq!(outcome.failure_class(), Some(FailureClass::Trap), "{outcome:?}");
    healthy_call_succeeds(&runtime, &target).await;
}

#[tokio::test]
async fn io_call_flood_is_cut_at_the_budget() {
    let target = start_target().await;
    let runtime = runtime_with_fixtures(Some(target.addr));
    let url = format!("http://{TARGET_HOST}:{}/flood", target.addr.port());
    let mut t = http_task(get_template(&url), json!({ "url": url }), &[]);
    t.module_digest = digest_of("hostile_io_flood");
    t.template = None;
    t.grant = sign(grant_for(&t.action_id, &t.module_digest, &[TARGET_HOST]), &signing_key());
    t.limits.max_io_calls = 3;
    let outcome = runtime.run(t).await.unwrap();
    assert_eq!(outcome.failure_class(), Some(FailureClass::IoBudgetExhausted), "{outcome:?}");
    assert_eq!(outcome.io.len(), 3, "exactly the budgeted calls were performed");
    assert_eq!(target.seen.lock().unwrap().len(), 3, "the target saw only the budgeted calls");
    healthy_call_succeeds(&runtime, &target).await;
}

#[tokio::test]
async fn provider_importing_an_undeclared_interface_fails_to_instantiate() {
    let target = start_target().await;
    let runtime = runtime_with_fixtures(Some(target.addr));
    // The component imports log and http; its manifest declares only log.
    let outcome =
        run_hostile(&runtime, "hostile_undeclared_import", &[HostImport::Log], ResourceLimits::default()).await;
    assert_eq!(outcome.failure_class(), Some(FailureClass::ImportDenied), "{outcome:?}");
    assert_eq!(outcome.fuel_consumed, 0, "nothing ran");
    assert!(outcome.io.is_empty());
    // Declaring both lets it instantiate; its exfiltration attempt then meets the egress check.
    let outcome = run_hostile(
        &runtime,
        "hostile_undeclared_import",
        &[HostImport::Log, HostImport::Http],
        ResourceLimits::default(),
    )
    .await;
    assert_eq!(outcome.failure_class(), Some(FailureClass::EgressDenied), "{outcome:?}");
    healthy_call_succeeds(&runtime, &target).await;
}

#[tokio::test]
async fn oversized_output_is_refused() {
    let target = start_target().await;
    let runtime = runtime_with_fixtures(Some(target.addr));
    let outcome = run_hostile(&runtime, "hostile_oversized_output", &[], ResourceLimits::default()).await;
    assert_eq!(outcome.failure_class(), Some(FailureClass::OutputTooLarge), "{outcome:?}");
    healthy_call_succeeds(&runtime, &target).await;
}

#[tokio::test]
async fn malformed_output_is_refused() {
    let target = start_target().await;
    let runtime = runtime_with_fixtures(Some(target.addr));
    let outcome = run_hostile(&runtime, "hostile_malformed_output", &[], ResourceLimits::default()).await;
    assert_eq!(outcome.failure_class(), Some(FailureClass::MalformedOutput), "{outcome:?}");
    healthy_call_succeeds(&runtime, &target).await;
}

#[tokio::test]
async fn every_hostile_provider_in_turn_on_one_runtime() {
    let target = start_target().await;
    let runtime = runtime_with_fixtures(Some(target.addr));
    // Tight caps so that each attack meets the limit it targets first.
    let tight = ResourceLimits { memory_mb: 24, timeout_seconds: 2, ..ResourceLimits::default() };
    let cases = [
        ("hostile_loop", vec![], FailureClass::FuelExhausted),
        ("hostile_memory", vec![], FailureClass::MemoryLimit),
        ("hostile_stack", vec![], FailureClass::Trap),
        ("hostile_undeclared_import", vec![HostImport::Log], FailureClass::ImportDenied),
        ("hostile_oversized_output", vec![], FailureClass::OutputTooLarge),
        ("hostile_malformed_output", vec![], FailureClass::MalformedOutput),
    ];
    for (module, imports, class) in cases {
        let limits = match module {
            "hostile_loop" => ResourceLimits { fuel: 5_000_000, ..tight.clone() },
            "hostile_oversized_output" => ResourceLimits::default(),
            _ => tight.clone(),
        };
        let outcome = run_hostile(&runtime, module, &imports, limits).await;
        assert_eq!(outcome.failure_class(), Some(class), "{module}: {outcome:?}");
        healthy_call_succeeds(&runtime, &target).await;
    }
}

#[tokio::test]
async fn the_shipped_providers_directory_cannot_run_a_fixture() {
    let shipped = std::fs::read_dir(dist_dir()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap());
    let shipped: Vec<String> = shipped.collect();
    assert!(shipped.iter().all(|f| !f.starts_with("hostile_")), "fixture in providers/dist: {shipped:?}");
    let err = runtime(None).run(task("hostile_loop", &[], json!({}))).await.expect_err("fixture ran");
    assert_eq!(err.code(), "module_unknown");
}
