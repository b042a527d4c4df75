//! Standalone (systemd) mode: the four binaries started on their own find each
//! other through named SOCK_SEQPACKET sockets and check each other's uid.

use latchgate_tests::{GateDir, bin_dir, signal, wait_for_status};
use nix::sys::signal::Signal;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            signal(child.id(), Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

/// What systemd's tmpfiles.d does before the units start: the directories exist.
fn prepare_dirs(dir: &GateDir) {
    use std::os::unix::fs::DirBuilderExt;
    for (sub, mode) in [("run", 0o755), ("ipc", 0o755), ("state", 0o700), ("keys", 0o700)] {
        std::fs::DirBuilder::new().recursive(true).mode(mode).create(dir.root.join(sub)).unwrap();
    }
}

fn start_standalone(dir: &GateDir) -> Processes {
    prepare_dirs(dir);
    let mut children = Vec::new();
    for name in ["latchgate-signer", "latchgate-executor", "latchgate-broker", "latchgate-front"] {
        let log = std::fs::File::create(dir.log_path(name)).unwrap();
        let child = Command::new(bin_dir().join(name))
            .arg("--config")
            .arg(dir.config_path())
            .env_remove("LATCHGATE_FDS")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        children.push(child);
    }
    Processes(children)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_processes_meet_through_named_sockets() {
    let dir = GateDir::new();
    dir.write_config("", &format!("[ipc]\ndir = \"{}/ipc\"\n", dir.root.display()));
    let _processes = start_standalone(&dir);
    if let Err(e) = wait_for_status(&dir.client_socket(), "/readyz", 200, Duration::from_secs(60)).await {
        panic!("{e}\nbroker: {}\nfront: {}", dir.log("latchgate-broker"), dir.log("latchgate-front"));
    }
    for name in ["front-broker", "broker-signer", "broker-executor", "executor-signer"] {
        assert!(dir.root.join(format!("ipc/{name}.sock")).exists(), "{name}.sock");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_with_the_wrong_uid_is_refused() {
    let dir = GateDir::new();
    // The broker expects the front to run as uid 4242; ours is different, so it must refuse it.
    let me = nix::unistd::geteuid().as_raw();
    assert_ne!(me, 4242);
    dir.write_config("", &format!("[ipc]\ndir = \"{}/ipc\"\n[ipc.peer_uids]\nfront = 4242\n", dir.root.display()));
    let _processes = start_standalone(&dir);

    // The front is up (liveness) but cannot reach the broker: readiness fails closed.
    wait_for_status(&dir.client_socket(), "/healthz", 200, Duration::from_secs(60)).await.unwrap();
    let body = wait_for_status(&dir.client_socket(), "/readyz", 503, Duration::from_secs(10)).await.unwrap();
    assert_eq!(body["error"], "component_unavailable", "{body}");
    std::thread::sleep(Duration::from_millis(300));
    let broker_log = dir.log("latchgate-broker");
    assert!(broker_log.contains("ipc_wrong_peer_uid"), "broker log names the refusal:\n{broker_log}");
    // And it never becomes ready.
    assert!(wait_for_status(&dir.client_socket(), "/readyz", 200, Duration::from_secs(2)).await.is_err());
}
