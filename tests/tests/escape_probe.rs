//! Attacks on the *running* processes: the test-only escape probe (cargo
//! feature `escape-probe` of latchgate-core, enabled only by this test crate)
//! makes each sealed child try forbidden operations; every attempt must be
//! refused by the kernel — an errno, or death by SIGSYS where the profile's
//! default action is to kill. Also: the release build has no probe.

use latchgate_core::confine::escape_probe::{PROBE_DIR_ENV, ProbeOp, ProbeReply};
use latchgate_tests::{Gate, GateDir, bin_dir, repo_root, wait_for_status};
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

const EACCES: i32 = 13;
const EPERM: i32 = 1;
const ETXTBSY: i32 = 26;

// Landlock refuses with EACCES, an errno-default seccomp filter with EPERM,
// and opening a running binary for writing with ETXTBSY.

/// `None`: the process closed the connection without answering (killed).
fn probe(dir: &Path, role: &str, op: &ProbeOp) -> Option<ProbeReply> {
    let fd = socket::socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).unwrap();
    socket::connect(fd.as_raw_fd(), &UnixAddr::new(&dir.join(format!("{role}.sock"))).unwrap()).unwrap();
    socket::send(fd.as_raw_fd(), &serde_json::to_vec(op).unwrap(), MsgFlags::empty()).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).ok()?;
    (n > 0).then(|| serde_json::from_slice(&buf[..n]).expect("probe reply"))
}

#[track_caller]
fn refused_with(reply: Option<ProbeReply>, errnos: &[i32], what: &str) {
    let reply = reply.unwrap_or_else(|| panic!("{what}: process died instead of answering"));
    assert!(!reply.allowed, "{what}: ALLOWED ({})", reply.detail);
    assert!(reply.errno.is_some_and(|e| errnos.contains(&e)), "{what}: {reply:?}");
}

fn sigsys_deaths(dir: &GateDir, role: &str) -> usize {
    let wanted = format!("role={role} ");
    dir.log("gate")
        .lines()
        .map(strip_ansi)
        .filter(|l| l.contains("child died") && l.contains("SIGSYS") && l.contains(&wanted))
        .count()
}

/// Log lines carry colour codes (ESC [ ... m).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Pids owning the other end of every Unix socket `pid` holds (`ss -xpa`:
/// the kernel's sock_diag peer inodes, which socketpairs have too).
fn unix_socket_peers(pid: u32) -> Vec<u32> {
    let out = std::process::Command::new("ss").args(["-x", "-p", "-a", "-n"]).output().expect("ss (iproute2)");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut owner_of = std::collections::HashMap::new();
    let mut mine = Vec::new();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(inode), Some(peer)) = (fields.get(5), fields.get(7)) else { continue };
        for owner in line.split("pid=").skip(1).filter_map(|rest| rest.split(',').next()?.parse::<u32>().ok()) {
            owner_of.insert(inode.to_string(), owner);
            if owner == pid {
                mine.push(peer.to_string());
            }
        }
    }
    mine.iter().filter_map(|peer| owner_of.get(peer).copied()).filter(|p| *p != pid).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_process_is_refused_by_the_kernel_when_it_tries_to_escape() {
    let dir = GateDir::new();
    dir.write_config("", "");
    let probes = dir.root.join("probe");
    std::fs::create_dir(&probes).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&probes, std::fs::Permissions::from_mode(0o777)).unwrap();
    let gate = Gate::start_with_env(&dir, &[(PROBE_DIR_ENV, probes.to_str().unwrap())]);
    let ready = || async {
        if let Err(e) = wait_for_status(&dir.client_socket(), "/readyz", 200, Duration::from_secs(60)).await {
            panic!("{e}\n{}", dir.log("gate"));
        }
    };
    ready().await;
    let children = gate.children();
    let key_file = dir.root.join("keys/lease-es256.p8").display().to_string();
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed_port.local_addr().unwrap().port();

    for role in ["front", "broker", "executor", "signer"] {
        let binary = bin_dir().join(format!("latchgate-{role}")).display().to_string();
        let shadow = ProbeOp::OpenRead { path: "/etc/shadow".into() };
        refused_with(probe(&probes, role, &shadow), &[EACCES, EPERM], &format!("{role} reads /etc/shadow"));
        if role != "signer" {
            let key = ProbeOp::OpenRead { path: key_file.clone() };
            refused_with(probe(&probes, role, &key), &[EACCES, EPERM], &format!("{role} reads the signer's key"));
        }
        let own = ProbeOp::OpenWrite { path: binary };
        refused_with(probe(&probes, role, &own), &[EACCES, EPERM, ETXTBSY], &format!("{role} writes its own binary"));
    }
    // Processes whose seccomp default is an errno answer every refusal.
    let signer_pid = children["latchgate-signer"] as i32;
    for role in ["front", "broker"] {
        let connect = ProbeOp::ConnectTcp { port };
        refused_with(probe(&probes, role, &connect), &[EACCES, EPERM], &format!("{role} connects to loopback:{port}"));
        let exec = ProbeOp::Execve { path: "/bin/true".into() };
        refused_with(probe(&probes, role, &exec), &[EACCES, EPERM], &format!("{role} execve"));
        let trace = ProbeOp::PtraceAttach { pid: signer_pid };
        refused_with(probe(&probes, role, &trace), &[EPERM, EACCES], &format!("{role} ptraces the signer"));
    }
    let connect = ProbeOp::ConnectTcp { port };
    refused_with(probe(&probes, "executor", &connect), &[EACCES], "executor connects to a port it may not use");

    // A compromised front holds no channel to the signer or the executor at all.
    let peers = unix_socket_peers(children["latchgate-front"]);
    assert!(peers.contains(&children["latchgate-broker"]), "front reaches the broker: {peers:?}");
    for other in ["latchgate-signer", "latchgate-executor"] {
        assert!(!peers.contains(&children[other]), "front holds a socket to {other}: {peers:?}");
    }

    // Kill-by-default profiles: the attempt ends the process (SIGSYS); the supervisor restarts it.
    let lethal = [
        ("executor", ProbeOp::MprotectExec),
        ("executor", ProbeOp::Execve { path: "/bin/true".into() }),
        ("signer", ProbeOp::InetSocket),
        ("signer", ProbeOp::PtraceAttach { pid: children["latchgate-broker"] as i32 }),
    ];
    for (role, op) in lethal {
        let before = sigsys_deaths(&dir, role);
        let reply = probe(&probes, role, &op);
        assert!(reply.is_none(), "{role} {op:?} was answered: {reply:?}");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while sigsys_deaths(&dir, role) == before && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(sigsys_deaths(&dir, role), before + 1, "{role} {op:?}: no SIGSYS death logged\n{}", dir.log("gate"));
        ready().await;
    }
}

/// The production build (`make build-release`/`make up`: the five binaries)
/// and `make bench` (the same plus the load generator) resolve latchgate-core
/// without the probe.
#[test]
fn release_build_does_not_contain_the_probe() {
    let output = std::process::Command::new(env!("CARGO"))
        .current_dir(repo_root())
        .args(["tree", "--locked", "-e", "features", "-i", "latchgate-core"])
        .args(["-p", "latchgate", "-p", "latchgate-front", "-p", "latchgate-broker"])
        .args(["-p", "latchgate-executor", "-p", "latchgate-signer", "-p", "latchgate-bench"])
        .output()
        .expect("cargo tree");
    let tree = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(tree.contains("latchgate-core"), "{tree}");
    assert!(!tree.contains("escape-probe"), "the release build enables the probe:\n{tree}");
}
