//! The OPA-REST-compatible test server (`tests/opa-server`, binary
//! `latchgate-opa-test-server` in the build's target dir) on a loopback port,
//! serving a policies dir; it can be told to misbehave, stopped and restarted
//! on the same port.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// OPA timeout the tests configure.
pub const OPA_TIMEOUT_MS: u64 = 2_000;

pub struct OpaServer {
    pub addr: SocketAddr,
    policies: PathBuf,
    child: Option<Child>,
    _tmp: tempfile::TempDir,
}

impl OpaServer {
    pub fn start(policies: &Path) -> OpaServer {
        let tmp = tempfile::Builder::new().prefix("opa").tempdir_in("/tmp").expect("opa temp dir");
        let mut server = OpaServer {
            addr: "127.0.0.1:0".parse().expect("addr"),
            policies: policies.to_path_buf(),
            child: None,
            _tmp: tmp,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let addr_file = self._tmp.path().join("addr");
        let _ = std::fs::remove_file(&addr_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self._tmp.path().join("opa.log"))
            .expect("opa log");
        let child = Command::new(crate::bin_dir().join("latchgate-opa-test-server"))
            .arg("--policies")
            .arg(&self.policies)
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--addr-file")
            .arg(&addr_file)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start latchgate-opa-test-server (cargo build --workspace)");
        crate::reap_when_gone(child.id());
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(text) = std::fs::read_to_string(&addr_file)
                && let Ok(addr) = text.trim().parse()
            {
                self.addr = addr;
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("OPA test server did not start: {}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self._tmp.path().join("opa.log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `[opa]` config for the gate (the timeout is generous for a loaded test
    /// machine; the product default is 1 s).
    pub fn config(&self) -> String {
        format!("[opa]\nurl = \"{}\"\ntimeout_ms = {OPA_TIMEOUT_MS}\n", self.url())
    }

    /// `normal`, `hang`, `fail`, `garbage`, `ill_typed`, `undefined` or `widening`.
    pub fn set_mode(&self, mode: &str) {
        let (status, body) = self.request("PUT", "/test/mode", mode);
        assert_eq!(status, 204, "set mode {mode}: {body}");
    }

    /// `(decisions served, TCP connections accepted)`.
    pub fn stats(&self) -> (u64, u64) {
        let (_, body) = self.request("GET", "/test/stats", "");
        let v: serde_json::Value = serde_json::from_str(&body).expect("stats JSON");
        (v["decisions"].as_u64().unwrap_or(0), v["connections"].as_u64().unwrap_or(0))
    }

    fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(self.addr).expect("connect OPA test server");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: opa\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(head.as_bytes()).expect("send");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        let status = answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (status, body)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for OpaServer {
    fn drop(&mut self) {
        self.stop();
    }
}
