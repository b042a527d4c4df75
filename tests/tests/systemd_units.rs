//! The systemd deployment: `latchgate install --systemd` renders the units of
//! deploy/systemd/ for a config; `systemd-analyze verify` accepts every one
//! without a warning; each carries the hardening the issue asks for; the
//! syscall filters let through every syscall our own seccomp profiles allow;
//! and the four binaries, started exactly as the units start them (own
//! users, supplementary group, named sockets, a credentials directory for the
//! signer's keys, tmpfiles.d and sysusers.d applied), complete an execute.
//!
//! systemd itself does not run here (a container): the units are verified
//! offline, and the last test plays systemd's part for User=, Group=,
//! SupplementaryGroups=, NoNewPrivileges=, CapabilityBoundingSet=,
//! ExecStart= and LoadCredential=.

use latchgate_client::{DpopKey, GateClient, LeaseBudgets};
use latchgate_tests::cli::{describe, json_of, latchgate};
use latchgate_tests::systemd::{
    allowed_syscalls, profile_syscalls, syscall_groups, systemd_analyze_available, value, values,
};
use latchgate_tests::{GateDir, HttpTarget, bin_dir, principal_config, repo_root, signal, wait_for_status};
use nix::sys::signal::Signal;
use serde_json::json;
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const ROLES: [&str; 4] = ["front", "broker", "executor", "signer"];
const UNIT_DIR: &str = "etc/systemd/system";

fn skip_without_systemd_analyze() -> bool {
    if systemd_analyze_available() {
        return false;
    }
    eprintln!(
        "\n*** SKIPPED: systemd-analyze is not installed; run scripts/install-deps.sh test (Debian package systemd) ***\n"
    );
    true
}

/// A gate dir whose config runs in standalone mode with the system users.
fn standalone_dir(extra: &str) -> GateDir {
    let dir = GateDir::new();
    let peers = "[ipc.peer_users]\nfront = \"latchgate-front\"\nbroker = \"latchgate-broker\"\n\
                 executor = \"latchgate-exec\"\nsigner = \"latchgate-signer\"\n";
    dir.write_config("", &format!("{peers}\n{extra}"));
    dir
}

/// `latchgate install --systemd --prefix <dir>/prefix`; returns the prefix.
fn install(dir: &GateDir) -> PathBuf {
    let prefix = dir.root.join("prefix");
    let out = latchgate(
        &dir.config_path(),
        &["install", "--systemd", "--prefix", prefix.to_str().unwrap(), "--bin-dir", bin_dir().to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", describe(&out));
    prefix
}

fn unit_path(prefix: &Path, role: &str) -> PathBuf {
    prefix.join(UNIT_DIR).join(format!("latchgate-{role}.service"))
}

fn unit(prefix: &Path, role: &str) -> String {
    std::fs::read_to_string(unit_path(prefix, role)).unwrap()
}

#[test]
fn rendered_units_pass_systemd_analyze_verify_without_a_warning() {
    if skip_without_systemd_analyze() {
        return;
    }
    let dir = standalone_dir("");
    let prefix = install(&dir);
    let mut files: Vec<PathBuf> = ROLES.iter().map(|r| unit_path(&prefix, r)).collect();
    files.push(prefix.join(UNIT_DIR).join("latchgate.target"));
    let out = Command::new("systemd-analyze").arg("verify").args(&files).output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(out.stderr.is_empty(), "systemd-analyze verify warned:\n{}", String::from_utf8_lossy(&out.stderr));
    // Every placeholder was filled with this config's paths.
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(!text.contains("@IPC_DIR@") && !text.contains("@CONFIG@"), "{text}");
    }
    assert!(unit(&prefix, "broker").contains(&format!("ReadWritePaths={}/state", dir.root.display())));

    // The exposure of each unit, as `systemd-analyze security` scores it
    // offline; printed for the record and held below 2.0 ("OK").
    for role in ROLES {
        let path = unit_path(&prefix, role);
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager", "--threshold=20"])
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let overall = text.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_default().to_string();
        eprintln!("{overall}");
        assert!(out.status.success(), "{role}: exposure above 2.0\n{text}{}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn dry_run_prints_every_file_and_writes_nothing() {
    let dir = standalone_dir("");
    let prefix = dir.root.join("prefix");
    let out = latchgate(
        &dir.config_path(),
        &["install", "--systemd", "--prefix", prefix.to_str().unwrap(), "--dry-run", "--json"],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let report = json_of(&out);
    let paths: Vec<&str> = report["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    for role in ROLES {
        assert!(paths.iter().any(|p| p.ends_with(&format!("latchgate-{role}.service"))), "{paths:?}");
    }
    assert!(paths.iter().any(|p| p.ends_with("sysusers.d/latchgate.conf")), "{paths:?}");
    assert!(paths.iter().any(|p| p.ends_with("tmpfiles.d/latchgate.conf")), "{paths:?}");
    assert!(!prefix.exists(), "a dry run writes nothing");
    let human =
        latchgate(&dir.config_path(), &["install", "--systemd", "--prefix", prefix.to_str().unwrap(), "--dry-run"]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("would write"), "{}", describe(&human));
    assert!(!prefix.exists());
}

#[test]
fn install_refuses_a_config_that_does_not_name_the_peer_users() {
    let dir = GateDir::new();
    dir.write_config("", "");
    let out = latchgate(&dir.config_path(), &["install", "--systemd", "--prefix", "/nonexistent-lg", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let failure = json_of(&out);
    assert_eq!(failure["error"]["code"], "install_config_incomplete");
    assert!(failure["error"]["message"].as_str().unwrap().contains("[ipc.peer_users]"), "{failure}");
}

#[test]
fn every_unit_carries_the_required_hardening() {
    let dir = standalone_dir("");
    let prefix = install(&dir);
    for role in ROLES {
        let text = unit(&prefix, role);
        for (key, wanted) in [
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("ProtectProc", "invisible"),
            ("CapabilityBoundingSet", ""),
            ("SystemCallArchitectures", "native"),
        ] {
            assert_eq!(value(&text, key), wanted, "{role}: {key}");
        }
        assert!(!values(&text, "RestrictAddressFamilies").is_empty(), "{role}");
        assert!(!values(&text, "SystemCallFilter").is_empty(), "{role}");
        assert!(value(&text, "MemoryMax").ends_with(['M', 'G']), "{role}");
        assert!(values(&text, "LimitAS").is_empty(), "{role}: LimitAS must never be set");
        let mdwe = values(&text, "MemoryDenyWriteExecute");
        if role == "executor" {
            assert!(mdwe.is_empty(), "the JIT needs W^X transitions while compiling");
        } else {
            assert_eq!(mdwe, ["yes"], "{role}");
        }
        assert!(value(&text, "ExecStart").contains(&format!("latchgate-{role} --config")), "{role}");
    }
    let signer = unit(&prefix, "signer");
    assert_eq!(value(&signer, "PrivateNetwork"), "yes");
    assert_eq!(value(&signer, "RestrictAddressFamilies"), "AF_UNIX");
    let credentials: Vec<String> = values(&signer, "LoadCredential");
    for file in latchgate_signer::keystore::KEY_DIR_FILES {
        assert!(
            credentials.iter().any(|c| c.starts_with(&format!("{file}:")) && c.ends_with(&format!("/keys/{file}"))),
            "{file} not loaded as a credential: {credentials:?}"
        );
    }
    for role in ["front", "broker", "executor"] {
        assert!(values(&unit(&prefix, role), "LoadCredential").is_empty(), "{role} must get no key");
    }
}

/// What each process does before it seals itself (after that, its seccomp
/// profile applies): these must get through systemd's filter too.
const SET_UP_SYSCALLS: &[&str] = &[
    "execve",
    "seccomp",
    "landlock_create_ruleset",
    "landlock_add_rule",
    "landlock_restrict_self",
    "prctl",
    "capget",
    "openat",
    "mmap",
    "mprotect",
    "clone3",
    "sched_getaffinity",
];

#[test]
fn unit_syscall_filters_let_through_every_syscall_our_profiles_allow() {
    if skip_without_systemd_analyze() {
        return;
    }
    let dir = standalone_dir("");
    let prefix = install(&dir);
    let groups = syscall_groups();
    let profiles = repo_root().join("sandbox-profiles");
    for role in ROLES {
        let allowed = allowed_syscalls(&unit(&prefix, role), &groups);
        let mut needed = profile_syscalls(&profiles, role);
        needed.extend(SET_UP_SYSCALLS.iter().map(|s| s.to_string()));
        let missing: Vec<&String> = needed.iter().filter(|s| !allowed.contains(*s)).collect();
        assert!(missing.is_empty(), "latchgate-{role}.service filters out {missing:?}");
        // And the unit's own filter removes what none of our processes needs.
        for forbidden in ["mount", "reboot", "init_module", "ptrace", "setuid", "chroot", "kexec_load"] {
            assert!(!allowed.contains(forbidden), "latchgate-{role}.service allows {forbidden}");
        }
    }
}

// --- the four binaries started exactly as the units start them ---------------

struct Units(Vec<Child>);

impl Drop for Units {
    fn drop(&mut self) {
        for child in &mut self.0 {
            signal(child.id(), Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

fn uid_of(user: &str) -> u32 {
    nix::unistd::User::from_name(user).unwrap().unwrap_or_else(|| panic!("no user {user}")).uid.as_raw()
}

fn gid_of(group: &str) -> u32 {
    nix::unistd::Group::from_name(group).unwrap().unwrap_or_else(|| panic!("no group {group}")).gid.as_raw()
}

fn run_ok(command: &mut Command) {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(out.status.success(), "{command:?}\n{}", describe(&out));
}

/// systemd's `LoadCredential=ID:PATH`: a private copy per unit, readable by its user only.
fn load_credentials(unit: &str, dir: &Path, uid: u32, gid: u32) -> Option<PathBuf> {
    let credentials = values(unit, "LoadCredential");
    if credentials.is_empty() {
        return None;
    }
    std::fs::create_dir_all(dir).unwrap();
    for credential in credentials {
        let (id, source) = credential.split_once(':').unwrap();
        let target = dir.join(id);
        std::fs::copy(source, &target).unwrap_or_else(|e| panic!("credential {source}: {e}"));
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o400)).unwrap();
        std::os::unix::fs::chown(&target, Some(uid), Some(gid)).unwrap();
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o500)).unwrap();
    std::os::unix::fs::chown(dir, Some(uid), Some(gid)).unwrap();
    Some(dir.to_path_buf())
}

/// `setpriv` does what systemd does for User=, Group=, SupplementaryGroups=,
/// NoNewPrivileges= and an empty CapabilityBoundingSet=, then execs ExecStart=.
fn start_unit(dir: &GateDir, role: &str, text: &str) -> Child {
    let user = value(text, "User");
    let (uid, gid) = (uid_of(&user), gid_of(&value(text, "Group")));
    let groups: Vec<String> = values(text, "SupplementaryGroups")
        .iter()
        .flat_map(|g| g.split_whitespace().map(|g| gid_of(g).to_string()))
        .collect();
    assert_eq!(value(text, "NoNewPrivileges"), "yes");
    assert_eq!(value(text, "CapabilityBoundingSet"), "");
    let exec = value(text, "ExecStart");
    let argv: Vec<&str> = exec.split_whitespace().collect();
    let log = std::fs::File::create(dir.log_path(&format!("unit-{role}"))).unwrap();
    let mut command = Command::new("setpriv");
    command
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg(format!("--groups={}", groups.join(",")))
        .args(["--no-new-privs", "--bounding-set=-all", "--inh-caps=-all", "--"])
        .args(&argv)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    if let Some(credentials) = load_credentials(text, &dir.root.join(format!("credentials/{role}")), uid, gid) {
        command.env("CREDENTIALS_DIRECTORY", credentials);
    }
    command.spawn().unwrap_or_else(|e| panic!("start {role}: {e}"))
}

fn proc_uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_four_binaries_run_as_the_units_do_and_complete_an_execute() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("\n*** SKIPPED: starting processes as the units' users needs root ***\n");
        return;
    }
    for tool in ["systemd-sysusers", "systemd-tmpfiles", "setpriv"] {
        assert!(
            Command::new(tool).arg("--version").output().is_ok(),
            "{tool} missing: run scripts/install-deps.sh test"
        );
    }
    let target = HttpTarget::start();
    let dir =
        standalone_dir(&format!("{}\n{}", target.egress_config(), principal_config("agent-dev", &["http.fetch"])));
    let prefix = install(&dir);

    // What the install's next steps do: users and groups, directories, keys.
    run_ok(Command::new("systemd-sysusers").arg(prefix.join("etc/sysusers.d/latchgate.conf")));
    run_ok(Command::new("systemd-tmpfiles").arg("--create").arg(prefix.join("etc/tmpfiles.d/latchgate.conf")));
    let out = latchgate(&dir.config_path(), &["keys", "init", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    let keys = dir.root.join("keys");
    assert_eq!(std::fs::metadata(&keys).unwrap().mode() & 0o777, 0o700);
    assert_eq!(std::fs::metadata(&keys).unwrap().uid(), 0, "the key dir stays root's; the signer gets copies");
    let ipc = std::fs::metadata(dir.root.join("run/ipc")).unwrap();
    assert_eq!((ipc.mode() & 0o7777, ipc.gid()), (0o1770, gid_of("latchgate")));

    // Start order of the units' After= lines: signer, executor, front, broker.
    let mut units = Units(Vec::new());
    let mut pids = BTreeMap::new();
    for role in ["signer", "executor", "front", "broker"] {
        let child = start_unit(&dir, role, &unit(&prefix, role));
        pids.insert(role, child.id());
        units.0.push(child);
    }
    let logs = || ROLES.iter().map(|r| format!("--- {r}\n{}", dir.log(&format!("unit-{r}")))).collect::<String>();
    let ready = match wait_for_status(&dir.client_socket(), "/readyz", 200, Duration::from_secs(90)).await {
        Ok(body) => body,
        Err(e) => panic!("{e}\n{}", logs()),
    };
    for role in ROLES {
        let user = unit(&prefix, role).lines().find_map(|l| l.strip_prefix("User=").map(str::to_string)).unwrap();
        // setpriv execs the binary: same pid, now the unit's user.
        assert_eq!(proc_uid(pids[role]), Some(uid_of(&user)), "{role} runs as {user}");
        let process = &ready["processes"][role];
        assert!(process["confinement"].as_str().unwrap().contains("seccomp enforced"), "{ready}");
    }
    for name in ["front-broker", "broker-signer", "broker-executor", "executor-signer"] {
        assert!(dir.root.join(format!("run/ipc/{name}.sock")).exists(), "{name}.sock\n{}", logs());
    }
    // Operators reach the admin socket through the front's group.
    let admin = std::fs::metadata(dir.admin_socket()).unwrap();
    assert_eq!((admin.mode() & 0o777, admin.gid()), (0o660, gid_of("latchgate-operators")));
    assert!(dir.log("unit-signer").contains("keys loaded from systemd credentials"), "{}", logs());

    // An execute end to end, and its receipt verifies with the keys the signer got.
    let mut agent =
        GateClient::connect(dir.client_socket(), "http://localhost:3000", DpopKey::generate().unwrap()).await.unwrap();
    agent.request_lease(&["http.fetch"], LeaseBudgets::default()).await.unwrap();
    let url = format!("http://localhost:{}/hello", target.addr.port());
    let (status, body) = agent.execute("http_fetch", &json!({"url": url})).await.unwrap();
    assert_eq!(status.as_u16(), 200, "{body}\n{}", logs());
    let (status, receipt) =
        agent.get_authed(&format!("/v1/receipts/{}", body["receipt_id"].as_str().unwrap())).await.unwrap();
    assert_eq!(status.as_u16(), 200, "{receipt}");
    let jwks = std::fs::read_to_string(keys.join("receipt-keys.jwks.json")).unwrap();
    latchgate_core::receipt::verify_with_jwks(&receipt.to_string(), &jwks).unwrap();
    let ledger = std::fs::metadata(dir.root.join("state/ledger.db")).unwrap();
    assert_eq!(ledger.uid(), uid_of("latchgate-broker"), "the broker owns the evidence it writes");
}

/// doctor's unit checks against an installed set: `systemd-analyze verify`
/// and each exposure pass, the broker's stop timeout outlasts the in-flight
/// grace; a hand-shortened `TimeoutStopSec=` is named.
#[test]
fn doctor_checks_the_installed_units_and_the_stop_timeout() {
    if skip_without_systemd_analyze() {
        return;
    }
    let dir = standalone_dir("");
    let prefix = install(&dir);
    let doctor = |prefix: &Path| {
        let out = latchgate(&dir.config_path(), &["doctor", "--json", "--systemd-prefix", prefix.to_str().unwrap()]);
        let report = json_of(&out);
        let mut by_id: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for check in report["checks"].as_array().expect("checks") {
            by_id
                .entry(check["id"].as_str().unwrap().to_string())
                .or_default()
                .push((check["status"].as_str().unwrap().to_string(), check["message"].as_str().unwrap().to_string()));
        }
        by_id
    };
    let checks = doctor(&prefix);
    let units = &checks["systemd.units"];
    assert!(units.iter().all(|(status, _)| status == "ok"), "{units:?}");
    assert_eq!(units.iter().filter(|(_, m)| m.contains("exposure")).count(), 4, "{units:?}");
    assert_eq!(checks["shutdown.grace"][0].0, "ok", "{checks:?}");
    assert_eq!(checks["ipc.peer_uids"][0].0, "ok", "{checks:?}");
    // GateDir lives under /tmp, which PrivateTmp= hides from the units.
    assert!(checks["paths.hidden"].iter().any(|(s, m)| s == "warn" && m.contains("/tmp")), "{checks:?}");

    let broker = unit_path(&prefix, "broker");
    let text = std::fs::read_to_string(&broker).unwrap();
    let shortened: String = text
        .lines()
        .map(|l| if l.starts_with("TimeoutStopSec=") { "TimeoutStopSec=5s".to_string() } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&broker, shortened + "\n").unwrap();
    let checks = doctor(&prefix);
    let (status, message) = &checks["shutdown.grace"][0];
    assert_eq!(status, "warn", "embedded config: a warning; {message}");
    assert!(message.contains("TimeoutStopSec=5s") && message.contains("30s"), "{message}");

    let empty = dir.root.join("no-units");
    let checks = doctor(&empty);
    assert_eq!(checks["systemd.units"][0].0, "skip", "{checks:?}");
}
