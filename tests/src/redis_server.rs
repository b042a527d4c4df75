//! A real `redis-server` per test, on a Unix socket in a short temporary
//! directory (Debian `redis-server`, installed by `scripts/install-deps.sh test`).
//! It can be stopped, restarted with its data (AOF), restarted empty (a
//! Redis without persistence), and slowed down with `DEBUG SLEEP`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Redis timeouts the tests configure (see [`RedisServer::config`]).
pub const COMMAND_TIMEOUT_MS: u64 = 2_000;

pub struct RedisServer {
    pub dir: PathBuf,
    pub socket: PathBuf,
    child: Option<Child>,
    _tmp: tempfile::TempDir,
}

impl RedisServer {
    /// Started with AOF persistence (`appendonly yes`, fsync every write).
    pub fn start() -> RedisServer {
        let tmp = tempfile::Builder::new().prefix("rd").tempdir_in("/tmp").expect("redis temp dir");
        // The broker runs as its own user when the tests run as root: let it reach the socket.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod redis dir");
        let dir = tmp.path().to_path_buf();
        let mut server = RedisServer { socket: dir.join("redis.sock"), dir, child: None, _tmp: tmp };
        server.spawn();
        server
    }

    pub fn url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// `[redis]` config for the gate, with a key prefix of the test's choice.
    /// Timeouts are generous for a loaded test machine, and still far below
    /// the `DEBUG SLEEP`s the tests use to play a stuck Redis.
    pub fn config(&self, key_prefix: &str) -> String {
        format!(
            "[redis]\nurl = \"{}\"\nkey_prefix = \"{key_prefix}\"\nconnect_timeout_ms = {COMMAND_TIMEOUT_MS}\ncommand_timeout_ms = {COMMAND_TIMEOUT_MS}\n",
            self.url()
        )
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.join("redis.log")).expect("redis log");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(&self.socket)
            .args(["--unixsocketperm", "777", "--dir"])
            .arg(&self.dir)
            .args(["--appendonly", "yes", "--appendfsync", "always", "--save", ""])
            .args(["--enable-debug-command", "local"])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start redis-server (apt-get install redis-server)");
        crate::reap_when_gone(child.id());
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.try_command(&["PING"]).is_some_and(|r| r.starts_with("+PONG")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server did not answer PING: {}",
            std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
        );
    }

    /// Kill the server outright (no save, no goodbye to clients).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Start again on the same directory: the AOF brings the data back.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Start again with nothing: what a Redis without persistence looks like after a restart.
    pub fn restart_empty(&mut self) {
        self.stop();
        for entry in std::fs::read_dir(&self.dir).expect("redis dir").flatten() {
            let path = entry.path();
            if path.file_name().is_some_and(|n| n != "redis.log") {
                let _ = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            }
        }
        self.spawn();
    }

    /// `DEBUG SLEEP secs` on a connection of its own; the thread ends when Redis wakes up.
    pub fn sleep_in_background(&self, secs: f64) -> std::thread::JoinHandle<()> {
        let socket = self.socket.clone();
        let started = std::sync::Arc::new(std::sync::Barrier::new(2));
        let ready = started.clone();
        let handle = std::thread::spawn(move || {
            let mut stream = UnixStream::connect(&socket).expect("connect redis");
            stream.write_all(&encode(&["DEBUG", "SLEEP", &secs.to_string()])).expect("send DEBUG SLEEP");
            ready.wait();
            let mut reply = [0u8; 64];
            let _ = stream.read(&mut reply);
        });
        started.wait();
        // Let the command reach the server before callers race it.
        std::thread::sleep(Duration::from_millis(100));
        handle
    }

    /// One command, its raw RESP reply (`None` if the server does not answer).
    pub fn try_command(&self, args: &[&str]) -> Option<String> {
        let mut stream = UnixStream::connect(&self.socket).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        stream.write_all(&encode(args)).ok()?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        // Replies used by the tests are small; read until a complete line set arrives.
        loop {
            let n = stream.read(&mut buf).ok()?;
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&buf[..n]);
            if complete(&reply) {
                break;
            }
        }
        Some(String::from_utf8_lossy(&reply).into_owned())
    }

    pub fn command(&self, args: &[&str]) -> String {
        self.try_command(args).unwrap_or_else(|| panic!("redis did not answer {args:?}"))
    }

    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// Number of client connections the server holds (`INFO clients`).
    pub fn connected_clients(&self) -> usize {
        let info = self.command(&["INFO", "clients"]);
        info.lines()
            .find_map(|l| l.strip_prefix("connected_clients:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("connected_clients in INFO")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
    }
    out
}

/// Whether `reply` holds one whole RESP value (simple, error, integer, bulk or array of those).
fn complete(reply: &[u8]) -> bool {
    fn value(buf: &[u8]) -> Option<usize> {
        let end = buf.windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(&buf[1..end]).ok()?;
        let rest = end + 2;
        match buf.first()? {
            b'+' | b'-' | b':' => Some(rest),
            b'$' => {
                let len: i64 = line.parse().ok()?;
                if len < 0 {
                    return Some(rest);
                }
                let total = rest + len as usize + 2;
                (buf.len() >= total).then_some(total)
            }
            b'*' => {
                let count: i64 = line.parse().ok()?;
                let mut at = rest;
                for _ in 0..count.max(0) {
                    at += value(&buf[at..])?;
                }
                Some(at)
            }
            _ => None,
        }
    }
    value(reply).is_some()
}
