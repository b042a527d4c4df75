//! `latchgate up` end to end: four real children, readiness, fail-closed
//! behaviour while a child is down, self-healing, and a clean stop.

use latchgate_tests::{Gate, GateDir, get, process_alive, signal, wait_for_status};
use nix::sys::signal::Signal;
use std::time::Duration;

const CHILDREN: [&str; 4] = ["latchgate-front", "latchgate-broker", "latchgate-executor", "latchgate-signer"];

/// Restarts are delayed long enough for the test to observe the outage.
fn start_gate(dir: &GateDir) -> Gate {
    dir.write_config("", "[supervisor]\nrestart_initial_ms = 1500\nrestart_max_ms = 1500\nshutdown_grace_ms = 5000\n");
    Gate::start(dir)
}

async fn ready(dir: &GateDir) {
    if let Err(e) = wait_for_status(&dir.client_socket(), "/readyz", 200, Duration::from_secs(60)).await {
        panic!("{e}\n--- gate log ---\n{}", dir.log("gate"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_lifecycle_up_fail_closed_recover_and_stop() {
    let dir = GateDir::new();
    let mut gate = start_gate(&dir);
    ready(&dir).await;

    // Four distinct children under the supervisor.
    let children = gate.children();
    for name in CHILDREN {
        assert!(children.contains_key(name), "missing {name}; children: {children:?}\n{}", dir.log("gate"));
    }

    // What the kernel enforces on each child: seccomp filter mode, no_new_privs,
    // no effective capabilities, and (started as root) four distinct uids.
    let mut uids = std::collections::HashSet::new();
    for name in CHILDREN {
        let status = std::fs::read_to_string(format!("/proc/{}/status", children[name])).unwrap();
        let field =
            |key: &str| status.lines().find_map(|l| l.strip_prefix(key)).map(str::trim).unwrap_or_default().to_string();
        assert_eq!(field("Seccomp:"), "2", "{name} runs under a seccomp filter");
        assert_eq!(field("NoNewPrivs:"), "1", "{name} has no_new_privs");
        assert_eq!(u64::from_str_radix(&field("CapEff:"), 16).unwrap(), 0, "{name} holds no capability");
        uids.insert(field("Uid:").split_whitespace().next().unwrap_or_default().to_string());
    }
    if nix::unistd::geteuid().is_root() {
        assert_eq!(uids.len(), 4, "four distinct uids: {uids:?}");
        assert!(!uids.contains("0"), "no child runs as root: {uids:?}");
    }

    // Liveness, the unknown-route shape, and plane separation.
    let (status, body) = get(&dir.client_socket(), "/healthz").await.expect("healthz");
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = get(&dir.client_socket(), "/no/such/route").await.expect("404");
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    let (status, _) = get(&dir.admin_socket(), "/healthz").await.expect("admin healthz");
    assert_eq!(status, 200);
    let (status, body) = get(&dir.admin_socket(), "/readyz").await.expect("admin readyz");
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("not_found")),
        "agent routes are not served on the admin socket"
    );

    // A body over the limit (1 MiB by default) is refused with 413 before anything else.
    let mut http = latchgate_client::uds_http::UdsHttp::connect(dir.client_socket()).await.unwrap();
    let big = vec![b'x'; 2 * 1024 * 1024];
    let response = http.request(http::Method::POST, "/v1/actions/x/execute", &[], Some(big)).await.unwrap();
    assert_eq!(response.status.as_u16(), 413);
    assert_eq!(response.json()["error"], "payload_too_large");

    // Each back-end child killed in turn: 503 component_unavailable while down, then 200 again by itself.
    for name in ["latchgate-signer", "latchgate-executor", "latchgate-broker"] {
        let pid = gate.children()[name];
        signal(pid, Signal::SIGKILL);
        let body = wait_for_status(&dir.client_socket(), "/readyz", 503, Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("while {name} is down: {e}"));
        assert_eq!(body["error"], "component_unavailable", "{name} down: {body}");
        ready(&dir).await;
        let new_pid = gate.children()[name];
        assert_ne!(new_pid, pid, "{name} was restarted");
    }

    // The front: the supervisor holds the listening socket, so clients wait in the
    // backlog instead of being refused, and are served by the restarted front.
    let front = gate.children()["latchgate-front"];
    signal(front, Signal::SIGKILL);
    ready(&dir).await;
    assert_ne!(gate.children()["latchgate-front"], front);

    // SIGTERM: everything exits, status 0, sockets removed.
    let pids: Vec<u32> = gate.children().values().copied().collect();
    let status = gate.terminate(Duration::from_secs(30)).expect("supervisor exits after SIGTERM");
    assert!(status.success(), "exit status {status}\n{}", dir.log("gate"));
    for pid in pids {
        assert!(!process_alive(pid), "child {pid} still running after shutdown");
    }
    assert!(!dir.client_socket().exists(), "client socket removed");
    assert!(!dir.admin_socket().exists(), "admin socket removed");
}

/// `latchgate up --config <config>` on a config that does not exist yet (the
/// first run writes it), logging to `fresh.log`; `environment` sets where the
/// runtime dir comes from.
fn up_with_fresh_config(
    dir: &GateDir,
    config: &std::path::Path,
    environment: impl FnOnce(&mut std::process::Command),
) -> std::process::Child {
    let log = std::fs::File::create(dir.log_path("fresh")).unwrap();
    let mut up = std::process::Command::new(latchgate_tests::bin_dir().join("latchgate"));
    up.args(["up", "--config"])
        .arg(config)
        .env("LATCHGATE_DATA_DIR", latchgate_tests::repo_root())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    environment(&mut up);
    up.spawn().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_run_writes_default_config_and_dirs() {
    let dir = GateDir::new();
    let config = dir.root.join("fresh").join("latchgate.toml");
    // Sockets go to the default runtime dir; point XDG_RUNTIME_DIR into the temp dir.
    let mut child = up_with_fresh_config(&dir, &config, |up| {
        up.env("XDG_RUNTIME_DIR", dir.root.join("xdg"));
    });
    let socket = dir.root.join("xdg/latchgate/gate.sock");
    let result = wait_for_status(&socket, "/readyz", 200, Duration::from_secs(60)).await;
    signal(child.id(), Signal::SIGTERM);
    let status = latchgate_tests::wait_exit(&mut child, Duration::from_secs(30));
    result.unwrap_or_else(|e| panic!("{e}\n{}", dir.log("fresh")));
    assert!(status.is_some_and(|s| s.success()));
    let text = std::fs::read_to_string(&config).expect("default config written");
    assert!(text.starts_with("# latchgate.toml"), "commented default config");
    assert!(config.parent().unwrap().join("state").is_dir());
    let keys = config.parent().unwrap().join("keys");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777, 0o700);
    let banner = dir.log("fresh");
    assert!(banner.contains("client socket") && banner.contains(&socket.display().to_string()), "{banner}");
}

/// `make up` on a host without XDG_RUNTIME_DIR (root over ssh, a CI shell):
/// the supervisor derives `/tmp/latchgate-<uid>`, and its children, which run
/// under their own uids, must use that same directory rather than derive
/// their own. This is the only test that uses the default runtime dir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_run_without_xdg_runtime_dir_uses_the_supervisors_runtime_dir() {
    let dir = GateDir::new();
    let config = dir.root.join("fresh").join("latchgate.toml");
    let runtime = std::path::PathBuf::from(format!("/tmp/latchgate-{}", nix::unistd::getuid().as_raw()));
    let _ = std::fs::remove_dir_all(&runtime);
    let mut child = up_with_fresh_config(&dir, &config, |up| {
        up.env_remove("XDG_RUNTIME_DIR").env_remove(latchgate_core::paths::RUNTIME_DIR_ENV);
    });
    let socket = runtime.join("gate.sock");
    let result = wait_for_status(&socket, "/readyz", 200, Duration::from_secs(60)).await;
    let children = latchgate_tests::children_of(child.id());
    signal(child.id(), Signal::SIGTERM);
    let status = latchgate_tests::wait_exit(&mut child, Duration::from_secs(30));
    result.unwrap_or_else(|e| panic!("{e}\n{}", dir.log("fresh")));
    assert!(status.is_some_and(|s| s.success()), "{}", dir.log("fresh"));
    for name in CHILDREN {
        assert!(children.contains_key(name), "{name} was running: {children:?}");
    }
    assert!(!socket.exists(), "client socket removed on stop");
    let _ = std::fs::remove_dir_all(&runtime);
}

/// `make up` as root from a checkout under a private directory (`/root` is
/// 0700): the children, each under its own user, cannot reach the data. The
/// first one to look names the directory that stops it, and `latchgate up`
/// fails at once instead of waiting out the stop grace of a child already dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_out_of_reach_of_the_process_users_fails_fast_naming_the_directory() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: only root drops the children to their own users");
        return;
    }
    let dir = GateDir::new();
    let private = dir.root.join("private");
    std::fs::create_dir(&private).unwrap();
    for data in ["manifests", "policies", "providers", "sandbox-profiles"] {
        std::os::unix::fs::symlink(latchgate_tests::repo_root().join(data), private.join(data)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let config = dir.root.join("fresh").join("latchgate.toml");
    let started = std::time::Instant::now();
    let mut child = up_with_fresh_config(&dir, &config, |up| {
        up.env("LATCHGATE_DATA_DIR", &private).env("XDG_RUNTIME_DIR", dir.root.join("xdg"));
    });
    let status = latchgate_tests::wait_exit(&mut child, Duration::from_secs(20));
    let log = dir.log("fresh");
    let status = status.unwrap_or_else(|| {
        signal(child.id(), Signal::SIGKILL);
        panic!("latchgate up still running {:?} after a child failed to start\n{log}", started.elapsed())
    });
    assert!(!status.success(), "{log}");
    assert!(log.contains("path_unreachable"), "stable code logged: {log}");
    assert!(log.contains(&format!("{} does not let it through", private.display())), "names the directory: {log}");
    assert!(log.contains("child_start_failed"), "{log}");
    assert!(!dir.root.join("xdg/latchgate/gate.sock").exists(), "no socket left behind");
}
