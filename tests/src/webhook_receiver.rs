//! A loopback webhook receiver: records every request (headers and body) and
//! answers with a status scripted per path (a queue, then a default).

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    /// Lower-cased names.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// What the receiver answered.
    pub status: u16,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
}

#[derive(Default)]
struct Script {
    queued: HashMap<String, VecDeque<u16>>,
    default: HashMap<String, u16>,
}

pub struct WebhookReceiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<Script>>,
}

impl Default for WebhookReceiver {
    fn default() -> Self {
        Self::start()
    }
}

impl WebhookReceiver {
    pub fn start() -> WebhookReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let addr = listener.local_addr().expect("receiver addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(Script::default()));
        let (log, answers) = (received.clone(), script.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (log, answers) = (log.clone(), answers.clone());
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let Some((path, headers, body)) = read_request(&mut stream) else { return };
                    let status = {
                        let mut script = answers.lock().unwrap();
                        let queued = script.queued.get_mut(&path).and_then(VecDeque::pop_front);
                        queued.or_else(|| script.default.get(&path).copied()).unwrap_or(200)
                    };
                    log.lock().unwrap().push(Received { path, headers, body, status });
                    let response = format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}");
                    let _ = stream.write_all(response.as_bytes());
                });
            }
        });
        WebhookReceiver { addr, received, script }
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answer the next requests to `path` with these statuses, then `then`.
    pub fn script(&self, path: &str, first: &[u16], then: u16) {
        let mut script = self.script.lock().unwrap();
        script.queued.insert(path.to_string(), first.iter().copied().collect());
        script.default.insert(path.to_string(), then);
    }

    pub fn received(&self, path: &str) -> Vec<Received> {
        self.received.lock().unwrap().iter().filter(|r| r.path == path).cloned().collect()
    }

    /// Wait until `path` saw at least `n` requests.
    pub fn wait_for(&self, path: &str, n: usize, limit: Duration) -> Vec<Received> {
        let deadline = Instant::now() + limit;
        loop {
            let seen = self.received(path);
            if seen.len() >= n {
                return seen;
            }
            assert!(Instant::now() < deadline, "{path}: {} of {n} requests within {limit:?}", seen.len());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The config line that lets the broker reach this receiver (test-only override).
    pub fn delivery_config(&self) -> String {
        format!("[webhook_delivery]\nallow_insecure_destinations = [\"{}\"]\n", self.addr)
    }
}

fn read_request(stream: &mut std::net::TcpStream) -> Option<(String, HashMap<String, String>, Vec<u8>)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 64 * 1024 || stream.read(&mut byte).ok()? != 1 {
            return None;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let path = lines.next()?.split_whitespace().nth(1)?.to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; length.min(1 << 20)];
    stream.read_exact(&mut body).ok()?;
    Some((path, headers, body))
}

/// `v1=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`, computed independently of the gate.
pub fn expected_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut message = format!("{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    let tag = ring::hmac::sign(&key, &message);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("v1={hex}")
}
