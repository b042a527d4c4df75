//! The published Python SDK (`latchgate` 0.2 from PyPI, installed unmodified
//! into `target/sdk-venv` by `scripts/install-deps.sh test`) obtains a lease,
//! executes, fetches its receipt and reads a denial from our gate.

use latchgate_tests::{Gate, GateDir, HttpTarget, principal_config, repo_root, wait_for_status};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_python_sdk_works_unmodified() {
    let python = repo_root().join("target/sdk-venv/bin/python");
    assert!(python.exists(), "{} missing: run `scripts/install-deps.sh test` (make test does)", python.display());
    let target = HttpTarget::start();
    let dir = GateDir::new();
    let extra = format!("{}\n{}", target.egress_config(), principal_config("agent-dev", &["http.fetch"]));
    dir.write_config("", &extra);
    let _gate = Gate::start(&dir);
    if let Err(e) = wait_for_status(&dir.client_socket(), "/readyz", 200, Duration::from_secs(60)).await {
        panic!("{e}\n{}", dir.log("gate"));
    }
    let url = format!("http://localhost:{}/sdk", target.addr.port());
    let output = std::process::Command::new(&python)
        .arg(repo_root().join("tests/sdk/python_sdk_flow.py"))
        .arg(dir.client_socket())
        .arg(&url)
        .output()
        .expect("run python SDK");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}\n{}", String::from_utf8_lossy(&output.stderr), dir.log("gate"));
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).expect("SDK output is JSON");
    assert!(seen["receipt_id"].as_str().is_some_and(|r| !r.is_empty()), "{seen}");
    assert!(seen["receipt_result_hash"].as_str().is_some_and(|h| h.starts_with("sha256:")), "{seen}");
    assert_eq!(seen["output"]["status"], 200, "{seen}");
    assert!(seen["denied"].as_str().is_some_and(|d| d.contains("egress_not_allowed")), "{seen}");
    assert_eq!(target.hits(), 1);
}
