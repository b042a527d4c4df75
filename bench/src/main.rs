//! `make bench`: starts the real gate (release binaries, embedded mode) with a
//! loopback HTTP target, then drives lease + `http_fetch` executions over the
//! client socket with real DPoP proofs at several concurrencies. Reports
//! calls per second, each call's latency as the agent sees it, and the
//! gate's overhead: request sent to answer read (the agent signs its proof
//! before that, untimed), less the target's own answer time. Every call's receipt is durable (the gate
//! answers only after its ledger commit) — the figures include that fsync.
#![forbid(unsafe_code)]

use clap::Parser;
use http::Method;
use latchgate_client::{DpopKey, GateClient, LeaseBudgets};
use latchgate_tests::{Gate, GateDir, HttpTarget, principal_config, wait_for_status};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const BASE: &str = "http://localhost:3000";

#[derive(Parser)]
struct Args {
    /// Concurrency levels (parallel agents, one connection and lease each).
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    concurrency: Vec<usize>,
    /// Measured seconds per level (after a warm-up).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Print only the JSON report.
    #[arg(long)]
    json: bool,
}

struct Level {
    concurrency: usize,
    /// Whole calls as the agent sees them, its own proof signing included.
    latencies_us: Vec<u64>,
    /// From the request's first byte sent to the answer's last byte read.
    answered_us: Vec<u64>,
    elapsed: Duration,
    errors: u64,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

impl Level {
    fn report(&mut self, target_us: u64) -> Value {
        self.latencies_us.sort_unstable();
        self.answered_us.sort_unstable();
        let (l, a) = (&self.latencies_us, &self.answered_us);
        let calls = l.len() as f64;
        json!({
            "concurrency": self.concurrency,
            "calls": l.len(),
            "errors": self.errors,
            "calls_per_second": (calls / self.elapsed.as_secs_f64()).round(),
            "latency_ms": {
                "p50": percentile(l, 50.0) as f64 / 1000.0,
                "p95": percentile(l, 95.0) as f64 / 1000.0,
                "p99": percentile(l, 99.0) as f64 / 1000.0,
            },
            // The gate's own time: request sent to answer read, less the
            // target's own answer time (the agent's proof signing is the agent's).
            "gate_overhead_ms": {
                "p50": percentile(a, 50.0).saturating_sub(target_us) as f64 / 1000.0,
                "p95": percentile(a, 95.0).saturating_sub(target_us) as f64 / 1000.0,
                "p99": percentile(a, 99.0).saturating_sub(target_us) as f64 / 1000.0,
            },
        })
    }
}

async fn agent(dir: &GateDir) -> GateClient {
    let mut client =
        GateClient::connect(dir.client_socket(), BASE, DpopKey::generate().expect("key")).await.expect("connect");
    client.request_lease(&["http.fetch"], LeaseBudgets::default()).await.expect("lease");
    client
}

async fn run_level(dir: &GateDir, params: &Value, concurrency: usize, seconds: u64) -> Level {
    let mut agents = Vec::new();
    for _ in 0..concurrency {
        agents.push(agent(dir).await);
    }
    let warm_up = Instant::now() + Duration::from_secs(1);
    let stop = warm_up + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    let path = "/v1/actions/http_fetch/execute";
    let body = params.to_string().into_bytes();
    for mut client in agents {
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut answered, mut errors) = (Vec::new(), Vec::new(), 0u64);
            loop {
                let started = Instant::now();
                if started >= stop {
                    break;
                }
                let answer = match client.auth_headers(&Method::POST, path) {
                    Ok(headers) => {
                        let sent = Instant::now();
                        let answer = client.send_authed(Method::POST, path, &headers, Some(body.clone())).await;
                        answer.map(|response| (response, sent.elapsed()))
                    }
                    Err(e) => Err(e),
                };
                let ok = matches!(&answer, Ok((r, _)) if r.status.as_u16() == 200);
                if !ok && errors == 0 {
                    eprintln!("first error: {:?}", answer.as_ref().map(|(r, _)| (r.status, r.json())));
                }
                if started >= warm_up {
                    match answer {
                        Ok((_, took)) if ok => {
                            latencies.push(started.elapsed().as_micros() as u64);
                            answered.push(took.as_micros() as u64);
                        }
                        _ => errors += 1,
                    }
                }
            }
            (latencies, answered, errors)
        }));
    }
    let mut level = Level {
        concurrency,
        latencies_us: Vec::new(),
        answered_us: Vec::new(),
        elapsed: Duration::from_secs(seconds),
        errors: 0,
    };
    for task in tasks {
        let (latencies, answered, errors) = task.await.expect("agent task");
        level.latencies_us.extend(latencies);
        level.answered_us.extend(answered);
        level.errors += errors;
    }
    level
}

/// The target's own latency: plain HTTP GETs straight to it, no gate, over
/// one kept connection (as the gate's executor keeps its connection to the
/// target) — and, for comparison, over a new connection each.
fn target_latency_us(target: &HttpTarget) -> (u64, u64) {
    use std::io::{BufRead, BufReader, Read, Write};
    let request = b"GET /x HTTP/1.1\r\nhost: localhost\r\n\r\n";
    let exchange = |stream: &mut BufReader<std::net::TcpStream>| {
        stream.get_mut().write_all(request).expect("write");
        let (mut line, mut length) = (String::new(), 0usize);
        loop {
            line.clear();
            assert!(stream.read_line(&mut line).expect("read") > 0, "target closed");
            if line == "\r\n" {
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().expect("content-length");
            }
        }
        stream.read_exact(&mut vec![0; length]).expect("body");
    };
    let connect = || BufReader::new(std::net::TcpStream::connect(target.addr).expect("target"));
    let (mut kept, mut fresh) = (Vec::new(), Vec::new());
    let mut stream = connect();
    for _ in 0..200 {
        let started = Instant::now();
        exchange(&mut stream);
        kept.push(started.elapsed().as_micros() as u64);
        let started = Instant::now();
        exchange(&mut connect());
        fresh.push(started.elapsed().as_micros() as u64);
    }
    kept.sort_unstable();
    fresh.sort_unstable();
    (percentile(&kept, 50.0), percentile(&fresh, 50.0))
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let target = HttpTarget::start();
    let dir = GateDir::new();
    let max = args.concurrency.iter().copied().max().unwrap_or(1);
    let extra = format!(
        "{}\n{}\n[executor]\nmax_concurrent_calls = {}\n[limits]\nmax_connections = {}\n",
        target.egress_config(),
        principal_config("agent-dev", &["http.fetch"]),
        max.max(1),
        (max * 2).max(64)
    );
    dir.write_config("", &extra);
    // BENCH_LOG=latchgate_broker=debug shows per-stage timings in the gate log.
    let log_filter = std::env::var("BENCH_LOG").unwrap_or_else(|_| "info".into());
    let _gate = Gate::start_with_env(&dir, &[("RUST_LOG", &log_filter)]);
    if let Err(e) = wait_for_status(&dir.client_socket(), "/readyz", 200, Duration::from_secs(120)).await {
        panic!("{e}\n{}", dir.log("gate"));
    }
    let params = json!({"url": format!("http://localhost:{}/x", target.addr.port())});
    let (target_us, target_fresh_us) = target_latency_us(&target);

    let lease_started = Instant::now();
    for _ in 0..50 {
        agent(&dir).await;
    }
    let lease_ms = lease_started.elapsed().as_secs_f64() * 1000.0 / 50.0;

    let mut levels = Vec::new();
    for &c in &args.concurrency {
        let mut level = run_level(&dir, &params, c, args.seconds).await;
        let report = level.report(target_us);
        if !args.json {
            eprintln!(
                "c={:<3} calls/s {:>6}  call p50 {:>6.2} p99 {:>6.2} ms  gate overhead p50 {:>6.2} p95 {:>6.2} p99 {:>6.2} ms  errors {}",
                c,
                report["calls_per_second"],
                report["latency_ms"]["p50"].as_f64().unwrap_or(0.0),
                report["latency_ms"]["p99"].as_f64().unwrap_or(0.0),
                report["gate_overhead_ms"]["p50"].as_f64().unwrap_or(0.0),
                report["gate_overhead_ms"]["p95"].as_f64().unwrap_or(0.0),
                report["gate_overhead_ms"]["p99"].as_f64().unwrap_or(0.0),
                report["errors"],
            );
        }
        levels.push(report);
    }
    let report = json!({
        "action": "http_fetch",
        "mode": "embedded",
        "target_http_ms_p50": target_us as f64 / 1000.0,
        "target_http_new_connection_ms_p50": target_fresh_us as f64 / 1000.0,
        "lease_issue_ms_mean": lease_ms,
        "levels": levels,
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    let failed = report["levels"].as_array().is_some_and(|l| l.iter().any(|v| v["errors"].as_u64() != Some(0)));
    if let Ok(keep) = std::env::var("BENCH_KEEP_LOG") {
        let _ = std::fs::write(&keep, dir.log("gate"));
    }
    if failed {
        let log = dir.log("gate");
        let lines: Vec<&str> = log.lines().collect();
        let problems = &lines[lines.len().saturating_sub(25)..];
        eprintln!("calls failed; gate log warnings:\n{}", problems.join("\n"));
        std::process::exit(1);
    }
}
