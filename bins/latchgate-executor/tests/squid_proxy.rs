//! The egress proxy layer with a real Debian Squid running on the files
//! `latchgate egress squid-config` writes (the same `write_squid_files` over
//! the domains of the `proxy_allowlist` actions): an allowed request passes
//! through to a loopback target, and a non-allowed destination is refused by
//! the proxy itself even when the gate's own check is bypassed (raw requests
//! straight to the proxy).
//!
//! Skipped, loudly, only when `squid` is not installed (`make` installs it).

mod common;

use common::*;
use latchgate_core::action::{EgressProfile, EgressRules};
use latchgate_core::egress::{SquidFiles, SquidPlan, proxy_allowlist_domains, write_squid_files};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SQUID: &str = "/usr/sbin/squid";

struct Squid {
    child: Child,
    name: String,
    _dir: tempfile::TempDir,
    files: SquidFiles,
    addr: SocketAddr,
}

impl Drop for Squid {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(6);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // SIGKILL (and sometimes SIGTERM) leaves shared-memory segments named after -n.
        if let Ok(entries) = std::fs::read_dir("/dev/shm") {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(&self.name) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn proxied(domains: &[&str]) -> EgressRules {
    EgressRules {
        profile: EgressProfile::ProxyAllowlist,
        allowed_domains: domains.iter().map(|d| d.to_string()).collect(),
        allowed_methods: vec![],
    }
}

/// Writes the proxy files for `actions` as the CLI does and starts Squid on them.
fn start_squid(actions: &[EgressRules], target: SocketAddr) -> Squid {
    let dir = tempfile::Builder::new().prefix("sq").tempdir_in("/tmp").unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let plan = SquidPlan {
        listen: addr,
        allowed_domains: proxy_allowlist_domains(actions),
        state_dir: dir.path().join("state"),
        extra_ports: vec![target.port()],
        allow_private_destinations: vec![target],
    };
    let files = write_squid_files(&plan, &dir.path().join("etc")).unwrap();
    if nix::unistd::geteuid().is_root() {
        // Squid started as root runs as `proxy`: it reads etc/ (owned by root)
        // and writes only its state dir.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let proxy = nix::unistd::User::from_name("proxy").unwrap().expect("user proxy");
        nix::unistd::chown(&files.state_dir, Some(proxy.uid), Some(proxy.gid)).unwrap();
    }
    let name = format!("lgsq{}{}", std::process::id(), rand::random::<u16>());
    let child = Command::new(SQUID)
        .args(["-N", "-n", &name, "-f"])
        .arg(&files.config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let squid = Squid { child, name, _dir: dir, files, addr };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "squid did not open {addr}: {}", log_of(&squid.files.state_dir));
        std::thread::sleep(Duration::from_millis(50));
    }
    squid
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("cache.log")).unwrap_or_default()
}

fn squid_missing() -> bool {
    if Path::new(SQUID).exists() {
        return false;
    }
    eprintln!("\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
    eprintln!("!!! SKIPPING squid proxy tests: {SQUID} is not installed.            !!!");
    eprintln!("!!! apt-get install -y squid  (the Makefile does this for CI)         !!!");
    eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n");
    true
}

/// Sends one raw request to the proxy, bypassing every gate check; returns the status code.
async fn raw_status(proxy: SocketAddr, request: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await.unwrap().unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad answer: {head}"))
}

#[tokio::test]
async fn squid_passes_allowed_and_refuses_unlisted_destinations_even_without_the_gate() {
    if squid_missing() {
        return;
    }
    let target = start_target().await;
    // An action without proxy egress contributes nothing, whatever it lists.
    let mut no_egress = proxied(&["not-allowed.test"]);
    no_egress.profile = EgressProfile::None;
    let squid = start_squid(&[proxied(&["localhost", "*.allowed.test"]), no_egress], target.addr);
    assert_eq!(squid.files.entries, vec![".allowed.test", "localhost"]);
    let port = target.addr.port();

    // Through the gate: the runtime's egress goes via the proxy.
    let mut config = config_with(Some(target.addr));
    config.egress.proxy_url = Some(format!("http://{}", squid.addr).parse().unwrap());
    config.resolver = Some(Arc::new(MapResolver::default().with("localhost", &["127.0.0.1"])));
    let runtime = latchgate_executor::Runtime::new(config).unwrap();
    let mut t = http_task(get_template(&format!("http://localhost:{port}/via-proxy")), serde_json::json!({}), &[]);
    t.egress.allowed_domains = vec!["localhost".into()];
    t.grant = sign(grant_for(&t.action_id, &t.module_digest, &["localhost"]), &signing_key());
    let outcome = runtime.run(t).await.unwrap();
    let out: serde_json::Value = serde_json::from_str(
        outcome
            .output_json()
            .unwrap_or_else(|| panic!("call through squid failed: {outcome:?}\n{}", log_of(&squid.files.state_dir))),
    )
    .unwrap();
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(out["body"]["uri"], "/via-proxy");
    let latchgate_executor::task::IoObservation::Http(obs) = &outcome.io[0] else { panic!() };
    assert!(obs.via_proxy);

    // Gate bypassed: raw requests straight to the proxy.
    let allowed = format!(
        "GET http://localhost:{port}/raw-allowed HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(raw_status(squid.addr, &allowed).await, 200);
    let by_ip =
        format!("GET http://127.0.0.1:{port}/raw-ip HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    assert_eq!(raw_status(squid.addr, &by_ip).await, 403, "an IP URL must not match a name (dstdomain -n)");
    let other = format!(
        "GET http://not-allowed.test:{port}/raw-other HTTP/1.1\r\nHost: not-allowed.test\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(raw_status(squid.addr, &other).await, 403, "listed only by an action without proxy egress");
    // `*.allowed.test` became `.allowed.test`: the ACL lets it through, and
    // only the (unresolvable) name stops it, with a 5xx rather than 403.
    let wildcard =
        format!("GET http://api.allowed.test:{port}/w HTTP/1.1\r\nHost: api.allowed.test\r\nConnection: close\r\n\r\n");
    let status = raw_status(squid.addr, &wildcard).await;
    assert!((500..600).contains(&status), "{status}: a subdomain of a wildcard entry must pass the ACL");
    let lookalike =
        format!("GET http://evilallowed.test:{port}/w HTTP/1.1\r\nHost: evilallowed.test\r\nConnection: close\r\n\r\n");
    assert_eq!(raw_status(squid.addr, &lookalike).await, 403);
    let connect = "CONNECT evil.example.com:443 HTTP/1.1\r\nHost: evil.example.com:443\r\n\r\n";
    assert_eq!(raw_status(squid.addr, connect).await, 403);
    let metadata =
        "GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_status(squid.addr, metadata).await, 403);

    let uris: Vec<String> = target.seen.lock().unwrap().iter().map(|s| s.uri.clone()).collect();
    assert_eq!(
        uris,
        vec!["/via-proxy".to_string(), "/raw-allowed".to_string()],
        "only allowed requests reached the target"
    );
}
