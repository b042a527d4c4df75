//! Connection reuse in the egress client: a request goes over a kept
//! connection only to the same destination (host, port and pinned address),
//! a connection the server closed is replaced without failing the request,
//! and a connection whose response failed is never kept.

mod common;

use common::MapResolver;
use latchgate_core::action::{EgressProfile, EgressRules};
use latchgate_executor::egress::{Destination, EgressClient, EgressConfig, FetchError, OutboundRequest};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

#[derive(Clone, Copy)]
enum Closing {
    /// Keep-alive: answer every request on the connection.
    Never,
    /// Answer with `connection: close`, then close.
    Announced,
    /// Answer without a word, then close (as an idle timeout would).
    Silently,
}

/// A raw HTTP/1.1 server on `ip` that counts connections and requests;
/// `/big` answers 4 KiB, anything else `ok`.
struct Server {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn server(ip: &str, closing: Closing) -> Server {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (connections, requests) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (c, r) = (connections.clone(), requests.clone());
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let r = r.clone();
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                loop {
                    let (mut path, mut length, mut line) = (String::new(), 0usize, String::new());
                    loop {
                        line.clear();
                        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if path.is_empty() {
                            path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                        } else if let Some((name, value)) = line.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; length];
                    let _ = stream.read_exact(&mut body).await;
                    r.fetch_add(1, Ordering::SeqCst);
                    let text = if path == "/big" { "x".repeat(4096) } else { "ok".to_string() };
                    let close = if matches!(closing, Closing::Announced) { "connection: close\r\n" } else { "" };
                    let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n{close}\r\n{text}", text.len());
                    if stream.get_mut().write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                    if !matches!(closing, Closing::Never) {
                        let _ = stream.get_mut().shutdown().await;
                        return;
                    }
                }
            });
        }
    });
    Server { addr, connections, requests, task }
}

struct Setup {
    client: EgressClient,
    resolver: MapResolver,
}

fn setup(destinations: &[SocketAddr]) -> Setup {
    let resolver = MapResolver::default().with("api.test", &["127.0.0.1"]);
    let config = EgressConfig {
        allow_private_destinations: destinations.to_vec(),
        sink_policy: latchgate_core::egress::SinkPolicy {
            extra_ports: destinations.iter().map(|d| d.port()).collect(),
        },
        ..EgressConfig::default()
    };
    Setup { client: EgressClient::with_resolver(config, Arc::new(resolver.clone())).unwrap(), resolver }
}

impl Setup {
    async fn destination(&self, port: u16, path: &str, method: &str) -> Destination {
        let rules = EgressRules {
            profile: EgressProfile::ProxyAllowlist,
            allowed_domains: vec!["api.test".into()],
            allowed_methods: vec!["GET".into(), "POST".into()],
        };
        let url = format!("http://api.test:{port}{path}");
        self.client.authorize(&url, method, &rules, &["api.test".to_string()]).await.unwrap()
    }

    async fn send(&self, port: u16, path: &str, method: &str) -> Result<u16, FetchError> {
        let dest = self.destination(port, path, method).await;
        let request = OutboundRequest {
            method: method.into(),
            url: format!("http://api.test:{port}{path}"),
            headers: vec![],
            body: (method == "POST").then(|| b"{\"n\":1}".to_vec()),
            credentials: Default::default(),
        };
        let (response, _) = self.client.send(&dest, &request, Duration::from_secs(5), 1024).await?;
        Ok(response.status)
    }
}

#[tokio::test]
async fn requests_to_one_destination_share_a_kept_connection() {
    let target = server("127.0.0.1", Closing::Never).await;
    let setup = setup(&[target.addr]);
    for method in ["GET", "POST", "GET"] {
        assert_eq!(setup.send(target.addr.port(), "/x", method).await.unwrap(), 200);
    }
    assert_eq!(target.requests.load(Ordering::SeqCst), 3);
    assert_eq!(target.connections.load(Ordering::SeqCst), 1, "each request opened its own connection");
    assert_eq!(setup.client.idle_connections(), 1);
}

#[tokio::test]
async fn a_connection_is_kept_only_for_the_address_it_was_pinned_to() {
    // Bound to every loopback address: 127.0.0.1 and 127.0.0.2 reach the same server.
    let target = server("0.0.0.0", Closing::Never).await;
    let port = target.addr.port();
    let setup = setup(&["127.0.0.1", "127.0.0.2"].map(|ip| SocketAddr::new(ip.parse().unwrap(), port)));
    assert_eq!(setup.send(port, "/x", "GET").await.unwrap(), 200);
    // The name now resolves elsewhere: the kept connection to the old address is not used.
    let setup = Setup { resolver: setup.resolver.clone().with("api.test", &["127.0.0.2"]), ..setup };
    assert_eq!(setup.destination(port, "/x", "GET").await.pinned.ip().to_string(), "127.0.0.2");
    assert_eq!(setup.send(port, "/x", "GET").await.unwrap(), 200);
    assert_eq!(target.connections.load(Ordering::SeqCst), 2);
    assert_eq!(setup.client.idle_connections(), 2);
}

#[tokio::test]
async fn connections_the_server_closes_are_replaced_without_failing_a_request() {
    for closing in [Closing::Announced, Closing::Silently] {
        let target = server("127.0.0.1", closing).await;
        let setup = setup(&[target.addr]);
        for method in ["GET", "POST", "POST", "GET"] {
            assert_eq!(setup.send(target.addr.port(), "/x", method).await.unwrap(), 200);
            // The server's close reaches the client between two calls, as it does between two agents' calls.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(target.requests.load(Ordering::SeqCst), 4, "a request was sent twice or lost");
        assert_eq!(target.connections.load(Ordering::SeqCst), 4);
    }
}

#[tokio::test]
async fn a_connection_whose_response_failed_is_not_kept() {
    let target = server("127.0.0.1", Closing::Never).await;
    let setup = setup(&[target.addr]);
    // 4 KiB against a 1 KiB limit.
    let too_large = setup.send(target.addr.port(), "/big", "GET").await.unwrap_err();
    assert_eq!(too_large, FetchError::ResponseTooLarge);
    assert_eq!(setup.client.idle_connections(), 0);
    assert_eq!(setup.send(target.addr.port(), "/x", "GET").await.unwrap(), 200);
    assert_eq!(target.connections.load(Ordering::SeqCst), 2);
}
