//! Attacks on a sealed process: each scenario runs in a fresh copy of this
//! test binary (re-executed with an env var), applies a real profile from
//! `sandbox-profiles/`, then tries something the profile forbids. The parent
//! asserts that the kernel refused it (errno or SIGSYS).
//!
//! `harness = false`: libtest runs each test on a spawned thread, and
//! Landlock (ABI < 8) and capability sets act on the calling thread only, so
//! the confined child must be single-threaded. `main` below is the harness.

use latchgate_core::config::Confinement;
use latchgate_core::confine::{self, ConfinementReport, LayerStatus, SealInputs};
use latchgate_core::role::Role;
use std::collections::BTreeMap;
use std::io::{ErrorKind, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SCENARIO_ENV: &str = "LATCHGATE_CONFINE_SCENARIO";
const DIR_ENV: &str = "LATCHGATE_CONFINE_DIR";
const PORT_ALLOWED_ENV: &str = "LATCHGATE_CONFINE_PORT_ALLOWED";
const PORT_FORBIDDEN_ENV: &str = "LATCHGATE_CONFINE_PORT_FORBIDDEN";
const SIGSYS: i32 = 31;

type Test = (&'static str, fn());

fn main() {
    if let Ok(scenario) = std::env::var(SCENARIO_ENV) {
        child(&scenario);
        return;
    }
    let tests: &[Test] = &[
        ("signer_has_no_network_socket", signer_has_no_network_socket),
        ("signer_cannot_ptrace_a_sibling", signer_cannot_ptrace_a_sibling),
        ("executor_cannot_execve", executor_cannot_execve),
        ("executor_cannot_make_memory_executable_after_sealing", executor_cannot_make_memory_executable_after_sealing),
        ("executor_cannot_map_new_executable_memory", executor_cannot_map_new_executable_memory),
        (
            "front_inet_socket_is_refused_with_eperm_and_front_survives",
            front_inet_socket_is_refused_with_eperm_and_front_survives,
        ),
        ("broker_cannot_read_shadow_or_write_outside_state_dir", broker_cannot_read_shadow_or_write_outside_state_dir),
        ("signer_cannot_read_another_process_files", signer_cannot_read_another_process_files),
        ("broker_tcp_connect_only_to_configured_ports", broker_tcp_connect_only_to_configured_ports),
        ("executor_tcp_connect_only_to_allowed_ports", executor_tcp_connect_only_to_allowed_ports),
        ("sealed_process_reports_every_layer_enforced", sealed_process_reports_every_layer_enforced),
        ("sealing_after_threads_started_is_refused", sealing_after_threads_started_is_refused),
        ("dropped_child_runs_as_its_user_without_capabilities", dropped_child_runs_as_its_user_without_capabilities),
    ];
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    if std::env::args().any(|a| a == "--list") {
        for (name, _) in tests {
            println!("{name}: test");
        }
        return;
    }
    let mut failed = Vec::new();
    let selected: Vec<&Test> =
        tests.iter().filter(|(n, _)| filters.is_empty() || filters.iter().any(|f| n.contains(f.as_str()))).collect();
    println!("running {} confinement tests", selected.len());
    for (name, test) in selected {
        let outcome = std::panic::catch_unwind(test);
        println!("test {name} ... {}", if outcome.is_ok() { "ok" } else { "FAILED" });
        if outcome.is_err() {
            failed.push(*name);
        }
    }
    if !failed.is_empty() {
        eprintln!("failed: {failed:?}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------- parent side

/// Directories the rule files refer to, one fresh tree per scenario.
struct Tree {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

fn tree() -> Tree {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    for dir in ["keys", "state", "manifests", "policies", "providers", "run", "fs_root"] {
        std::fs::create_dir(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("latchgate.toml"), "").unwrap();
    std::fs::write(root.join("keys/receipt.key"), "signer-secret").unwrap();
    std::fs::write(root.join("manifests/a.yaml"), "action_id: a").unwrap();
    std::fs::write(root.join("secrets.sops.yaml"), "x: y").unwrap();
    Tree { _tmp: tmp, root }
}

fn run(scenario: &str, tree: &Tree, env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env(SCENARIO_ENV, scenario).env(DIR_ENV, &tree.root);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    eprintln!(
        "--- {scenario}: {:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_killed_by_seccomp(out: &Output) {
    assert_eq!(out.status.signal(), Some(SIGSYS), "expected SIGSYS, got {:?}", out.status);
}

fn signer_has_no_network_socket() {
    let t = tree();
    let out = run("signer_inet_socket", &t, &[]);
    let text = stdout(&out);
    assert!(text.contains("unix socket: ok"), "AF_UNIX must still work: {text}");
    assert!(!text.contains("inet socket: created"), "{text}");
    assert_killed_by_seccomp(&out);
}

fn signer_cannot_ptrace_a_sibling() {
    let t = tree();
    let mut sibling = Command::new("sleep").arg("30").spawn().unwrap();
    let out = run("signer_ptrace", &t, &[("SIBLING_PID", sibling.id().to_string())]);
    sibling.kill().unwrap();
    sibling.wait().unwrap();
    assert!(!stdout(&out).contains("attached"), "{}", stdout(&out));
    assert_killed_by_seccomp(&out);
}

fn executor_cannot_execve() {
    let t = tree();
    let out = run("executor_execve", &t, &[]);
    assert!(!stdout(&out).contains("exec returned"), "{}", stdout(&out));
    assert_killed_by_seccomp(&out);
}

fn executor_cannot_make_memory_executable_after_sealing() {
    let t = tree();
    let out = run("executor_mprotect_exec", &t, &[]);
    let text = stdout(&out);
    assert!(text.contains("mprotect rw: ok"), "PROT_READ|PROT_WRITE must still work: {text}");
    assert!(!text.contains("mprotect exec: ok"), "{text}");
    assert_killed_by_seccomp(&out);
}

fn executor_cannot_map_new_executable_memory() {
    let t = tree();
    let out = run("executor_mmap_exec", &t, &[]);
    assert!(!stdout(&out).contains("mmap exec: ok"), "{}", stdout(&out));
    assert_killed_by_seccomp(&out);
}

fn front_inet_socket_is_refused_with_eperm_and_front_survives() {
    let t = tree();
    let out = run("front_inet_socket", &t, &[]);
    let text = stdout(&out);
    assert!(out.status.success(), "front must survive a refused syscall: {:?}", out.status);
    assert!(text.contains("inet socket: errno 1"), "expected EPERM: {text}");
    assert!(text.contains("execve: errno 1"), "expected EPERM: {text}");
}

fn broker_cannot_read_shadow_or_write_outside_state_dir() {
    let t = tree();
    let out = run("broker_filesystem", &t, &[]);
    let text = stdout(&out);
    assert!(out.status.success(), "{:?}", out.status);
    for line in [
        "read manifest: ok",
        "write state: ok",
        "read /etc/shadow: denied",
        "write manifests: denied",
        "write /tmp: denied",
        "read keys: denied",
        "write beside own binary: denied",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}

fn signer_cannot_read_another_process_files() {
    let t = tree();
    let out = run("signer_filesystem", &t, &[]);
    let text = stdout(&out);
    assert!(out.status.success(), "{:?}", out.status);
    for line in ["read key: ok", "read state: denied", "write key dir: denied", "read /etc/passwd: denied"] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}

fn tcp_ports_scenario(scenario: &str) {
    let allowed = TcpListener::bind("127.0.0.1:0").unwrap();
    let forbidden = TcpListener::bind("127.0.0.1:0").unwrap();
    let t = tree();
    let out = run(
        scenario,
        &t,
        &[
            (PORT_ALLOWED_ENV, allowed.local_addr().unwrap().port().to_string()),
            (PORT_FORBIDDEN_ENV, forbidden.local_addr().unwrap().port().to_string()),
        ],
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{:?}", out.status);
    assert!(text.contains("connect allowed port: ok"), "{text}");
    assert!(text.contains("connect forbidden port: denied"), "{text}");
    assert!(text.contains("bind tcp: denied"), "{text}");
}

fn broker_tcp_connect_only_to_configured_ports() {
    tcp_ports_scenario("broker_tcp");
}

fn executor_tcp_connect_only_to_allowed_ports() {
    tcp_ports_scenario("executor_tcp");
}

fn sealed_process_reports_every_layer_enforced() {
    let t = tree();
    let out = run("signer_report", &t, &[]);
    assert!(out.status.success(), "{:?}", out.status);
    let text = stdout(&out);
    let json = text.lines().find_map(|l| l.strip_prefix("report: ")).expect("report line");
    let report: ConfinementReport = serde_json::from_str(json).unwrap();
    let kernel = confine::probe();
    assert_eq!(report.seccomp, LayerStatus::Enforced);
    assert_eq!(report.landlock_abi, kernel.landlock_abi);
    if kernel.landlock_abi.is_some_and(|abi| abi >= 6) {
        assert_eq!(report.landlock, LayerStatus::Enforced);
    }
    assert!(report.no_new_privs && report.caps_dropped, "{report:?}");
    assert_eq!(report.bounding_set_empty, nix::unistd::geteuid().is_root(), "{report:?}");
    // The report was read back through an fd opened before sealing: /proc itself
    // (other processes' status, environ, fds) is outside the signer's rules.
    assert!(text.contains("proc after seal: hidden"), "{text}");
}

fn sealing_after_threads_started_is_refused() {
    let t = tree();
    let out = run("seal_with_threads", &t, &[]);
    let text = stdout(&out);
    assert!(out.status.success(), "{:?}", out.status);
    if confine::probe().landlock_abi.is_some_and(|abi| abi < 8) {
        assert!(text.contains("error: confinement_after_threads_started"), "{text}");
    }
}

fn dropped_child_runs_as_its_user_without_capabilities() {
    if !nix::unistd::geteuid().is_root() {
        println!("(skipped: needs root)");
        return;
    }
    let users = confine::ensure_system_users().unwrap();
    let t = tree();
    let out = run("drop_identity", &t, &[]);
    let text = stdout(&out);
    assert!(out.status.success(), "{:?}", out.status);
    let signer = users.signer;
    for line in [
        format!("Uid: {0} {0} {0} {0}", signer.uid),
        format!("Gid: {0} {0} {0} {0}", signer.gid),
        "Groups: ".to_string(),
        "CapInh: 0000000000000000".into(),
        "CapPrm: 0000000000000000".into(),
        "CapEff: 0000000000000000".into(),
        "CapBnd: 0000000000000000".into(),
        "CapAmb: 0000000000000000".into(),
        "NoNewPrivs: 1".into(),
        "setuid(0): errno 1".into(),
        "read /etc/shadow: denied".into(),
    ] {
        assert!(text.lines().any(|l| l.trim_end() == line.trim_end()), "missing {line:?} in:\n{text}");
    }
    assert_ne!(users.signer.uid, users.front.uid);
    assert_ne!(users.executor.uid, users.broker.uid);
}

// ----------------------------------------------------------------- child side

fn inputs(root: &Path, tcp_connect_ports: Vec<u16>) -> SealInputs {
    let paths: BTreeMap<String, PathBuf> = [
        ("config_file", "latchgate.toml"),
        ("socket_dir", "run"),
        ("state_dir", "state"),
        ("manifests_dir", "manifests"),
        ("policies_dir", "policies"),
        ("providers_dir", "providers"),
        ("key_dir", "keys"),
        ("secrets_file", "secrets.sops.yaml"),
        ("fs_root", "fs_root"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), root.join(v)))
    .collect();
    SealInputs {
        profiles_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("../sandbox-profiles"),
        paths,
        tcp_connect_ports,
        mode: Confinement::Strict,
    }
}

fn say(line: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line.as_ref());
    let _ = out.flush();
}

fn outcome<T>(what: &str, result: std::io::Result<T>) {
    match result {
        Ok(_) => say(format!("{what}: ok")),
        Err(e) if matches!(e.kind(), ErrorKind::PermissionDenied) => say(format!("{what}: denied")),
        Err(e) => say(format!("{what}: other error {e}")),
    }
}

fn errno_line(what: &str, result: nix::Result<impl Sized>) {
    match result {
        Ok(_) => say(format!("{what}: ok")),
        Err(e) => say(format!("{what}: errno {}", e as i32)),
    }
}

fn port(env: &str) -> u16 {
    std::env::var(env).unwrap().parse().unwrap()
}

/// The order every child follows: identity drop (here without a uid switch),
/// then Landlock and seccomp.
fn seal(role: Role, root: &Path, ports: Vec<u16>) -> ConfinementReport {
    if let Err(e) = confine::drop_identity(None) {
        say(format!("error: {} {e}", e.code()));
        std::process::exit(3);
    }
    match confine::seal(role, &inputs(root, ports)) {
        Ok(r) => r,
        Err(e) => {
            say(format!("error: {} {e}", e.code()));
            std::process::exit(3);
        }
    }
}

fn child(scenario: &str) {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
    let root = PathBuf::from(std::env::var(DIR_ENV).unwrap());
    match scenario {
        "signer_inet_socket" => {
            seal(Role::Signer, &root, vec![]);
            errno_line("unix socket", socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None));
            let inet = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None);
            say(format!("inet socket: created {inet:?}"));
        }
        "signer_ptrace" => {
            let pid: libc::pid_t = std::env::var("SIBLING_PID").unwrap().parse().unwrap();
            seal(Role::Signer, &root, vec![]);
            // SAFETY: PTRACE_ATTACH takes no pointers; the kernel is expected to kill us here.
            let r = unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, 0usize, 0usize) };
            say(format!("attached {r}"));
        }
        "executor_execve" => {
            seal(Role::Executor, &root, vec![]);
            let r = nix::unistd::execv(c"/bin/true", &[c"true"]);
            say(format!("exec returned {r:?}"));
        }
        "executor_mprotect_exec" => {
            seal(Role::Executor, &root, vec![]);
            let page = map_anonymous(libc::PROT_READ | libc::PROT_WRITE);
            say(format!(
                "mprotect rw: {}",
                if protect(page, libc::PROT_READ | libc::PROT_WRITE) { "ok" } else { "failed" }
            ));
            let ok = protect(page, libc::PROT_READ | libc::PROT_EXEC);
            say(format!("mprotect exec: {}", if ok { "ok" } else { "failed" }));
        }
        "executor_mmap_exec" => {
            seal(Role::Executor, &root, vec![]);
            let page = map_anonymous(libc::PROT_READ | libc::PROT_EXEC);
            say(format!("mmap exec: ok {page:?}"));
        }
        "front_inet_socket" => {
            seal(Role::Front, &root, vec![]);
            errno_line("inet socket", socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None));
            errno_line("execve", nix::unistd::execv(c"/bin/true", &[c"true"]));
        }
        "broker_filesystem" => {
            // Opening the running binary for writing fails with ETXTBSY before any LSM
            // is asked, so the probe plants a file beside it instead (path taken
            // before sealing: readlink of /proc/self/exe is not allowed after).
            let beside = std::env::current_exe().unwrap().with_file_name("planted-by-broker");
            seal(Role::Broker, &root, vec![]);
            outcome("read manifest", std::fs::read(root.join("manifests/a.yaml")));
            outcome("write state", std::fs::write(root.join("state/ledger.db"), "x"));
            outcome("read /etc/shadow", std::fs::read("/etc/shadow"));
            outcome("write manifests", std::fs::write(root.join("manifests/evil.yaml"), "x"));
            outcome("write /tmp", std::fs::write("/tmp/latchgate-escape-probe", "x"));
            outcome("read keys", std::fs::read(root.join("keys/receipt.key")));
            outcome("write beside own binary", std::fs::write(beside, "x"));
        }
        "signer_filesystem" => {
            seal(Role::Signer, &root, vec![]);
            outcome("read key", std::fs::read(root.join("keys/receipt.key")));
            outcome("read state", std::fs::read_dir(root.join("state")));
            outcome("write key dir", std::fs::write(root.join("keys/planted.key"), "x"));
            outcome("read /etc/passwd", std::fs::read("/etc/passwd"));
        }
        "broker_tcp" | "executor_tcp" => {
            let role = if scenario == "broker_tcp" { Role::Broker } else { Role::Executor };
            seal(role, &root, vec![port(PORT_ALLOWED_ENV)]);
            outcome("connect allowed port", TcpStream::connect(("127.0.0.1", port(PORT_ALLOWED_ENV))));
            outcome("connect forbidden port", TcpStream::connect(("127.0.0.1", port(PORT_FORBIDDEN_ENV))));
            outcome("bind tcp", TcpListener::bind("127.0.0.1:0"));
        }
        "signer_report" => {
            let report = seal(Role::Signer, &root, vec![]);
            say(format!("report: {}", serde_json::to_string(&report).unwrap()));
            let status = latchgate_core::confine::proc_status::ProcStatus::read_self();
            // /proc is not in the signer's rules: the report had to be read through the early fd.
            say(format!("proc after seal: {}", if status.is_err() { "hidden" } else { "visible" }));
        }
        "seal_with_threads" => {
            let _worker = std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_secs(5)));
            match confine::seal(Role::Signer, &inputs(&root, vec![])) {
                Ok(_) => say("sealed"),
                Err(e) => say(format!("error: {} {e}", e.code())),
            }
        }
        "drop_identity" => {
            let users = confine::find_system_users().unwrap().unwrap();
            if let Err(e) = confine::drop_identity(users.identity(Role::Signer)) {
                say(format!("error: {} {e}", e.code()));
                std::process::exit(3);
            }
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            for line in status
                .lines()
                .filter(|l| ["Uid:", "Gid:", "Groups:", "Cap", "NoNewPrivs:"].iter().any(|p| l.starts_with(p)))
            {
                say(line.split_whitespace().collect::<Vec<_>>().join(" "));
            }
            errno_line("setuid(0)", nix::unistd::setuid(nix::unistd::Uid::from_raw(0)));
            outcome("read /etc/shadow", std::fs::read("/etc/shadow"));
        }
        other => panic!("unknown scenario {other}"),
    }
    std::process::exit(0);
}

fn map_anonymous(prot: i32) -> *mut libc::c_void {
    // SAFETY: anonymous private mapping of one page; no existing memory is touched.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), 4096, prot, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) };
    assert_ne!(p, libc::MAP_FAILED, "mmap failed");
    p
}

fn protect(page: *mut libc::c_void, prot: i32) -> bool {
    // SAFETY: `page` is a page we mapped above and nothing references it.
    unsafe { libc::mprotect(page, 4096, prot) == 0 }
}
