//! Benchmark (ignored by default): grant check + instantiate + call of
//! `http_api` against a loopback target, one fresh store per call.
//! `cargo test -p latchgate-executor --release --test bench_http_api -- --ignored --nocapture`

mod common;

use common::*;
use std::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run explicitly"]
async fn bench_http_api_instantiate_and_call_against_loopback() {
    let target = start_target().await;
    let runtime = runtime(Some(target.addr));
    let url = format!("http://{TARGET_HOST}:{}/bench/{{{{id}}}}", target.addr.port());
    let template = get_template(&url);
    for _ in 0..20 {
        let t = http_task(template.clone(), serde_json::json!({"id": 1}), &[]);
        assert!(runtime.run(t).await.unwrap().output_json().is_some());
    }
    let mut samples = Vec::new();
    let mut fuel = 0;
    for i in 0..500 {
        let t = http_task(template.clone(), serde_json::json!({"id": i}), &[]);
        let started = Instant::now();
        let outcome = runtime.run(t).await.unwrap();
        samples.push(started.elapsed());
        assert!(outcome.output_json().is_some());
        fuel = outcome.fuel_consumed;
    }
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize];
    println!(
        "http_api instantiate+call (loopback, n={}): p50 {:?}  p90 {:?}  p99 {:?}  max {:?}  fuel/call {fuel}",
        samples.len(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        samples[samples.len() - 1]
    );
}
