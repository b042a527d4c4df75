//! Harness for the end-to-end tests: a short temporary directory with a
//! config, the real `latchgate` binaries started from the build's target dir,
//! and an HTTP client over the gate's Unix sockets.

pub mod cli;
pub mod metrics;
pub mod opa_server;
pub mod operator;
pub mod redis_server;
pub mod secrets;
pub mod serve;
pub mod systemd;
pub mod webhook_receiver;

use latchgate_client::uds_http::UdsHttp;
use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// `target/<profile>/` of this build: a test binary lives in its `deps/`, a
/// binary (the benchmark) in it directly.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().expect("binary dir");
    if dir.ends_with("deps") { dir.parent().expect("target dir").to_path_buf() } else { dir.to_path_buf() }
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_path_buf()
}

/// A temporary gate home. Kept short: Unix socket paths must stay under 108 bytes.
pub struct GateDir {
    pub root: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Default for GateDir {
    fn default() -> Self {
        Self::new()
    }
}

impl GateDir {
    pub fn new() -> GateDir {
        let tmp = tempfile::Builder::new().prefix("lg").tempdir_in("/tmp").expect("temp dir");
        // Children run as their own users when the tests run as root: let them traverse.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
        GateDir { root: tmp.path().to_path_buf(), _tmp: tmp }
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join("latchgate.toml")
    }

    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    pub fn client_socket(&self) -> PathBuf {
        self.run_dir().join("gate.sock")
    }

    pub fn admin_socket(&self) -> PathBuf {
        self.run_dir().join("gate-admin.sock")
    }

    pub fn log_path(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}.log"))
    }

    /// Write a config using the checkout's manifests/policies/providers; `extra`
    /// is appended (TOML tables for the test's needs).
    pub fn write_config(&self, top: &str, extra: &str) {
        let repo = repo_root();
        let mut text = format!(
            "{top}\nruntime_dir = \"{}\"\nstate_dir = \"{}/state\"\n",
            self.run_dir().display(),
            self.root.display()
        );
        // Paths the test did not set itself come from the checkout.
        for (key, dir) in [
            ("manifests_dir", "manifests"),
            ("policies_dir", "policies"),
            ("providers_dir", "providers"),
            ("sandbox_profiles_dir", "sandbox-profiles"),
        ] {
            if !top.contains(key) {
                text.push_str(&format!("{key} = \"{}\"\n", repo.join(dir).display()));
            }
        }
        text.push_str(&format!("\n[keys]\ndir = \"{}/keys\"\n\n{extra}\n", self.root.display()));
        std::fs::write(self.config_path(), text).expect("write config");
    }

    /// A private copy of the checkout's `policies/` (for tests that edit `data.json`).
    pub fn copy_policies(&self) -> PathBuf {
        let target = self.root.join("policies");
        std::fs::create_dir_all(&target).expect("policies dir");
        for entry in std::fs::read_dir(repo_root().join("policies")).expect("read policies").flatten() {
            std::fs::copy(entry.path(), target.join(entry.file_name())).expect("copy policy file");
        }
        target
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }
}

/// `latchgate up` running in a `GateDir`; killed (with its children) on drop.
pub struct Gate {
    pub supervisor: Child,
}

impl Gate {
    pub fn start(dir: &GateDir) -> Gate {
        Self::start_with_env(dir, &[])
    }

    /// Start with extra environment variables (inherited by every child).
    pub fn start_with_env(dir: &GateDir, env: &[(&str, &str)]) -> Gate {
        Self::start_subcommand(dir, "up", env)
    }

    /// `latchgate <subcommand> --config <the dir's config>` (`up` or `serve`), logging to `gate.log`.
    pub fn start_subcommand(dir: &GateDir, subcommand: &str, env: &[(&str, &str)]) -> Gate {
        let log = std::fs::File::create(dir.log_path("gate")).expect("log file");
        let supervisor = Command::new(bin_dir().join("latchgate"))
            .args([subcommand, "--config"])
            .arg(dir.config_path())
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start latchgate {subcommand}: {e}"));
        reap_when_gone(supervisor.id());
        Gate { supervisor }
    }

    pub fn pid(&self) -> u32 {
        self.supervisor.id()
    }

    /// Children of the supervisor by process name (`latchgate-front` …).
    pub fn children(&self) -> HashMap<String, u32> {
        children_of(self.pid())
    }

    /// SIGTERM the supervisor and wait for it to exit.
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        signal(self.pid(), nix::sys::signal::Signal::SIGTERM);
        wait_exit(&mut self.supervisor, limit)
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let children = self.children();
        let _ = self.supervisor.kill();
        let _ = self.supervisor.wait();
        for pid in children.values() {
            signal(*pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// A test process killed outright (timeout, SIGKILL) runs no `Drop`: a
/// watchdog child of the test stops the gate's process group when the test
/// process disappears, so no gate outlives its test.
pub fn reap_when_gone(supervisor: u32) {
    let test_pid = std::process::id();
    let script = format!(
        "while kill -0 {test_pid} 2>/dev/null; do sleep 1; done; kill -TERM -- -{supervisor} 2>/dev/null; sleep 5; kill -KILL -- -{supervisor} 2>/dev/null"
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

pub fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

pub fn process_alive(pid: u32) -> bool {
    // A zombie still has /proc/<pid>; count it as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

/// Live children of `parent`, keyed by their `comm` name.
pub fn children_of(parent: u32) -> HashMap<String, u32> {
    let mut found = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return found };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let comm = &stat[open + 1..close];
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        if fields.first() == Some(&"Z") {
            continue;
        }
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
            // `comm` is cut at 15 bytes; argv[0] has the whole binary name.
            let name = std::fs::read(format!("/proc/{pid}/cmdline"))
                .ok()
                .and_then(|c| c.split(|b| *b == 0).next().map(|a| String::from_utf8_lossy(a).into_owned()))
                .and_then(|a| a.rsplit('/').next().map(str::to_string))
                .unwrap_or_else(|| comm.to_string());
            found.insert(name, pid);
        }
    }
    found
}

/// One GET over a fresh connection: (status, JSON body). `None` if the socket does not answer.
pub async fn get(socket: &Path, path: &str) -> Option<(u16, serde_json::Value)> {
    let mut http = tokio::time::timeout(Duration::from_secs(5), UdsHttp::connect(socket)).await.ok()?.ok()?;
    let response = tokio::time::timeout(Duration::from_secs(5), http.request(http::Method::GET, path, &[], None))
        .await
        .ok()?
        .ok()?;
    Some((response.status.as_u16(), response.json()))
}

/// Poll `path` until it answers `status`, up to `limit`. Returns the last answer.
pub async fn wait_for_status(
    socket: &Path,
    path: &str,
    status: u16,
    limit: Duration,
) -> Result<serde_json::Value, String> {
    let deadline = Instant::now() + limit;
    let mut last = None;
    while Instant::now() < deadline {
        match get(socket, path).await {
            Some((s, body)) if s == status => return Ok(body),
            other => last = other,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("{path} did not answer {status} within {limit:?}; last answer {last:?}"))
}

/// A loopback HTTP/1.1 target for provider calls: answers every request with
/// `200 {"hello":"world","path":<path>}` and counts the requests it saw.
/// Connections are kept alive (as real APIs keep them) until the client
/// closes them or asks for `connection: close`.
pub struct HttpTarget {
    pub addr: std::net::SocketAddr,
    pub hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl HttpTarget {
    /// Requests whose path starts with `/slow` are answered after `slow`.
    pub fn start() -> HttpTarget {
        Self::start_with_delay(Duration::from_secs(3))
    }

    pub fn start_with_delay(slow: Duration) -> HttpTarget {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind target");
        let addr = listener.local_addr().expect("target addr");
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let mut stream = std::io::BufReader::new(stream);
                    while let Some(request) = read_request(&mut stream) {
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let close = request.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
                        let path = request.target;
                        if path.starts_with("/slow") {
                            std::thread::sleep(slow);
                        }
                        let body = serde_json::json!({"hello": "world", "path": path}).to_string();
                        let response = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n{body}",
                            body.len(),
                            if close { "connection: close\r\n" } else { "" }
                        );
                        if stream.get_mut().write_all(response.as_bytes()).is_err() || close {
                            return;
                        }
                    }
                });
            }
        });
        HttpTarget { addr, hits }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Config lines that let the executor reach this target (test-only private destination).
    pub fn egress_config(&self) -> String {
        format!(
            "[egress]\nextra_ports = [{port}]\nallow_private_destinations = [\"{addr}\"]\n",
            port = self.addr.port(),
            addr = self.addr
        )
    }
}

/// One HTTP/1.1 request as a test server sees it.
pub struct ReceivedRequest {
    /// The request target (path and query, or an absolute URL through a proxy).
    pub target: String,
    /// Header names lowercased, values trimmed, in order.
    pub headers: Vec<(String, String)>,
}

impl ReceivedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Reads one request's head and drops the body its content-length announces,
/// so the next request on a kept connection (or a clean close) follows;
/// `None` when the peer closes first.
pub fn read_request(stream: &mut impl std::io::Read) -> Option<ReceivedRequest> {
    let head = read_request_head(stream)?;
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let target = lines.next().and_then(|l| l.split_whitespace().nth(1)).unwrap_or("/").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let request = ReceivedRequest { target, headers };
    let length = request.header("content-length").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // A body cut short ends the connection at the next read.
    let _ = std::io::copy(&mut std::io::Read::take(stream, length), &mut std::io::sink());
    Some(request)
}

/// The request line and headers of one HTTP/1.1 request (up to the blank
/// line, at most 64 KiB); `None` when the peer closes first. Reads a byte at
/// a time, so nothing past the head is consumed (give it a buffered reader).
pub fn read_request_head(stream: &mut impl std::io::Read) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(head)
}

/// `[identity.peercred]` mapping the test's own uid to `principal` with `scopes`.
pub fn principal_config(principal: &str, scopes: &[&str]) -> String {
    let uid = nix::unistd::getuid().as_raw();
    let scopes: Vec<String> = scopes.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[identity.peercred.principals.{uid}]\nprincipal = \"{principal}\"\nscopes = [{}]\n", scopes.join(", "))
}
