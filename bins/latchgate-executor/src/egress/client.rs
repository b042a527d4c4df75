//! The executor's only HTTP client. A request resolves its name once: the
//! address that passed classification is the address it connects to (or the
//! proxy re-checks the name with its own allowlist), over a connection kept
//! from an earlier request to that same address when there is one (`pool`).
//! TLS verifies the host name against webpki roots, with SNI = the URL's host.

use super::EgressDenied;
use super::pool::{Connection, ConnectionPool, DestinationKey};
use super::resolve::{Resolve, SystemResolver};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use latchgate_core::action::EgressRules;
use latchgate_core::address::{AddressVerdict, classify};
use latchgate_core::egress::{CheckedSink, SinkPolicy, check_sink, domain_allowed};
use rustls::pki_types::ServerName;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use url::{Host, Url};

/// Provider-set headers that could carry or forge credentials. Secrets are
/// injected by the host at the transport layer, never taken from WASM.
const STRIPPED_EXACT: &[&str] = &["authorization", "cookie", "x-api-key"];
/// Headers the host owns (framing, routing): a provider value is dropped silently.
const HOST_OWNED: &[&str] =
    &["host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "keep-alive", "trailer"];

#[derive(Clone, Debug, Default)]
pub struct EgressConfig {
    /// `http://host:port` of the egress proxy (Squid); when set, every request goes through it.
    pub proxy_url: Option<Url>,
    pub sink_policy: SinkPolicy,
    /// TEST ONLY: private `ip:port` destinations that may be connected to anyway.
    /// Each use is logged at warn level; the production-safety check refuses a non-empty list.
    pub allow_private_destinations: Vec<SocketAddr>,
    /// Extra trust anchors (DER) besides webpki roots, for test servers.
    pub extra_root_certs: Vec<Vec<u8>>,
    /// TEST ONLY: secrets may go over plain http to `allow_private_destinations`.
    pub test_secrets_over_http: bool,
    /// How long the system resolver's answer for a name is reused (zero: never).
    pub dns_cache: Duration,
}

#[derive(Debug, Clone)]
pub struct OutboundRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// Added by the host, never by the provider.
    pub credentials: Credentials,
}

/// Secret-bearing headers and query parameters the host adds to a request.
/// A provider header or parameter of the same name is dropped (and, for
/// headers, reported as stripped). Wiped when dropped; `Debug` shows names.
#[derive(Clone, Default)]
pub struct Credentials {
    pub headers: Vec<(String, zeroize::Zeroizing<String>)>,
    pub query: Vec<(String, zeroize::Zeroizing<String>)>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |l: &[(String, zeroize::Zeroizing<String>)]| l.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        f.debug_struct("Credentials")
            .field("headers", &names(&self.headers))
            .field("query", &names(&self.query))
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct InboundResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressSetupError {
    #[error("extra root certificate rejected: {0}")]
    RootCertificate(String),
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("egress_proxy_url `{0}` must be http://<ip>:<port>")]
    ProxyUrl(String),
}

impl EgressSetupError {
    pub fn code(&self) -> &'static str {
        match self {
            EgressSetupError::RootCertificate(_) => "egress_root_certificate_invalid",
            EgressSetupError::Tls(_) => "egress_tls_config_failed",
            EgressSetupError::ProxyUrl(_) => "egress_proxy_url_invalid",
        }
    }
}

/// A failure the provider is told about (not a policy violation).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("network: {0}")]
    Network(String),
    #[error("timed out")]
    Timeout,
    #[error("response body larger than the limit")]
    ResponseTooLarge,
}

impl FetchError {
    pub fn code(&self) -> &'static str {
        match self {
            FetchError::InvalidRequest(_) => "invalid_request",
            FetchError::Network(_) => "network_error",
            FetchError::Timeout => "timeout",
            FetchError::ResponseTooLarge => "response_too_large",
        }
    }
}

/// A sink that passed every check, with the address to connect to.
#[derive(Debug, Clone)]
pub struct Destination {
    pub sink: CheckedSink,
    pub pinned: SocketAddr,
}

impl Destination {
    /// `scheme://host:port` (for observations; no path or query).
    pub fn origin(&self) -> String {
        let scheme = if self.sink.https { "https" } else { "http" };
        match self.sink.host {
            Host::Ipv6(ip) => format!("{scheme}://[{ip}]:{}", self.sink.port),
            _ => format!("{scheme}://{}:{}", self.sink.host_str(), self.sink.port),
        }
    }
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}
type BoxStream = Box<dyn Stream>;

pub struct EgressClient {
    config: EgressConfig,
    resolver: Arc<dyn Resolve>,
    tls: TlsConnector,
    /// Which of `allow_private_destinations` has been used (and said so in the
    /// log): once per destination, since a warning per call is a log write and
    /// a supervisor wake-up on every call of the benchmark that needs them.
    private_used: Vec<std::sync::atomic::AtomicBool>,
    pool: ConnectionPool,
}

impl EgressClient {
    pub fn new(config: EgressConfig) -> Result<Self, EgressSetupError> {
        Self::with_resolver(config, Arc::new(SystemResolver))
    }

    pub fn with_resolver(config: EgressConfig, resolver: Arc<dyn Resolve>) -> Result<Self, EgressSetupError> {
        let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        for der in &config.extra_root_certs {
            roots.add(der.clone().into()).map_err(|e| EgressSetupError::RootCertificate(e.to_string()))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| EgressSetupError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        if let Some(proxy) = &config.proxy_url {
            proxy_socket_addr(proxy).map_err(|_| EgressSetupError::ProxyUrl(proxy.to_string()))?;
        }
        let private_used = config.allow_private_destinations.iter().map(|_| Default::default()).collect();
        Ok(EgressClient {
            config,
            resolver,
            tls: TlsConnector::from(Arc::new(tls)),
            private_used,
            pool: ConnectionPool::default(),
        })
    }

    pub fn uses_proxy(&self) -> bool {
        self.config.proxy_url.is_some()
    }

    /// Secrets travel only over HTTPS — or, TEST ONLY with
    /// `test_secrets_over_http`, to a destination in `allow_private_destinations`.
    pub fn may_carry_secrets(&self, dest: &Destination) -> bool {
        if dest.sink.https {
            return true;
        }
        let test_override =
            self.config.test_secrets_over_http && self.config.allow_private_destinations.contains(&dest.pinned);
        if test_override {
            tracing::warn!(dest = %dest.pinned, "TEST-ONLY allow_private_destinations: secrets sent without TLS");
        }
        test_override
    }

    /// Steps 3 and 4: sink check against the action's rules and the grant's
    /// sinks, then resolution and classification of every returned address.
    pub async fn authorize(
        &self,
        url: &str,
        method: &str,
        rules: &EgressRules,
        grant_sinks: &[String],
    ) -> Result<Destination, EgressDenied> {
        let sink = check_sink(url, method, rules, &self.config.sink_policy)?;
        let host = sink.host_str();
        let in_grant = match &sink.host {
            Host::Domain(d) => domain_allowed(grant_sinks, d),
            Host::Ipv4(_) | Host::Ipv6(_) => grant_sinks.iter().any(|s| s == &host),
        };
        if !in_grant {
            return Err(EgressDenied::NotInGrant(host));
        }
        let addrs: Vec<IpAddr> = match &sink.host {
            Host::Ipv4(ip) => vec![IpAddr::V4(*ip)],
            Host::Ipv6(ip) => vec![IpAddr::V6(*ip)],
            Host::Domain(d) => self.resolver.resolve(d, sink.port).await.unwrap_or_default(),
        };
        if addrs.is_empty() {
            return Err(EgressDenied::Unresolvable(host));
        }
        // Every answer must pass, not just the first: a mixed answer is a rebinding attempt.
        for ip in &addrs {
            if let AddressVerdict::Forbidden(reason) = classify(*ip) {
                let dest = SocketAddr::new(*ip, sink.port);
                if let Some(index) = self.config.allow_private_destinations.iter().position(|d| *d == dest) {
                    if !self.private_used[index].swap(true, std::sync::atomic::Ordering::Relaxed) {
                        tracing::warn!(%dest, host = %host, reason,
                            "TEST-ONLY allow_private_destinations used: connecting to a private destination \
                             (said once per destination)");
                    }
                    continue;
                }
                return Err(EgressDenied::ForbiddenAddress { host, ip: *ip, reason });
            }
        }
        Ok(Destination { pinned: SocketAddr::new(addrs[0], sink.port), sink })
    }

    /// Step 5: one exchange with an authorized destination. Redirects are
    /// returned to the provider, never followed here.
    pub async fn send(
        &self,
        dest: &Destination,
        request: &OutboundRequest,
        timeout: Duration,
        max_body: u64,
    ) -> Result<(InboundResponse, Vec<String>), FetchError> {
        match tokio::time::timeout(timeout, self.exchange(dest, request, max_body)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout),
        }
    }

    async fn exchange(
        &self,
        dest: &Destination,
        request: &OutboundRequest,
        max_body: u64,
    ) -> Result<(InboundResponse, Vec<String>), FetchError> {
        let (http_request, stripped) = self.build_request(dest, request)?;
        let key = DestinationKey {
            https: dest.sink.https,
            host: dest.sink.host_str(),
            port: dest.sink.port,
            pinned: dest.pinned,
        };
        let (mut connection, reused) = match self.pool.checkout(&key) {
            Some(kept) => (kept, true),
            None => (self.connect(dest).await?, false),
        };
        let response = match connection.sender.try_send_request(http_request).await {
            Ok(response) => response,
            Err(mut failed) => match failed.take_message() {
                // The kept connection was closed before any of the request was
                // written: sending it on a fresh one cannot repeat a side effect.
                Some(unsent) if reused => {
                    connection = self.connect(dest).await?;
                    connection.sender.send_request(unsent).await.map_err(|e| FetchError::Network(e.to_string()))?
                }
                _ => return Err(FetchError::Network(failed.into_error().to_string())),
            },
        };
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let limit = usize::try_from(max_body).unwrap_or(usize::MAX);
        // On any failure here the connection is dropped (closed), never kept.
        let body = Limited::new(response.into_body(), limit).collect().await.map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                FetchError::ResponseTooLarge
            } else {
                FetchError::Network(e.to_string())
            }
        })?;
        self.pool.checkin(key, connection);
        Ok((InboundResponse { status, headers, body: body.to_bytes() }, stripped))
    }

    /// A new connection to `dest`, its driver task running.
    async fn connect(&self, dest: &Destination) -> Result<Connection, FetchError> {
        let stream = self.open_stream(dest).await?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| FetchError::Network(e.to_string()))?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection::new(sender, driver))
    }

    /// Idle connections kept for reuse right now.
    pub fn idle_connections(&self) -> usize {
        self.pool.idle_count()
    }

    fn build_request(
        &self,
        dest: &Destination,
        request: &OutboundRequest,
    ) -> Result<(Request<Full<Bytes>>, Vec<String>), FetchError> {
        let method =
            Method::from_bytes(dest.sink.method.as_bytes()).map_err(|_| FetchError::InvalidRequest("method".into()))?;
        let mut url = dest.sink.url.clone();
        url.set_fragment(None);
        if !request.credentials.query.is_empty() {
            let names: Vec<&str> = request.credentials.query.iter().map(|(n, _)| n.as_str()).collect();
            let kept: Vec<(String, String)> = url
                .query_pairs()
                .filter(|(k, _)| !names.contains(&k.as_ref()))
                .map(|(k, v)| (k.into(), v.into()))
                .collect();
            url.set_query(None);
            let mut pairs = url.query_pairs_mut();
            pairs.extend_pairs(kept);
            for (name, value) in &request.credentials.query {
                pairs.append_pair(name, value);
            }
            drop(pairs);
        }
        // Through a plain-http proxy the request line carries the absolute URL; otherwise origin-form.
        let target = if self.config.proxy_url.is_some() && !dest.sink.https {
            url.to_string()
        } else {
            match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_string(),
            }
        };
        let uri: Uri = target.parse().map_err(|_| FetchError::InvalidRequest("url".into()))?;
        let mut builder = Request::builder().method(method).uri(uri);
        let mut stripped = Vec::new();
        let injected: Vec<String> = request.credentials.headers.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
        for (name, value) in &request.headers {
            let lower = name.to_ascii_lowercase();
            if STRIPPED_EXACT.contains(&lower.as_str()) || lower.starts_with("proxy-") || injected.contains(&lower) {
                stripped.push(lower);
                continue;
            }
            if HOST_OWNED.contains(&lower.as_str()) {
                continue;
            }
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| FetchError::InvalidRequest(format!("header name `{name}`")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| FetchError::InvalidRequest(format!("header value for `{name}`")))?;
            builder = builder.header(name, value);
        }
        for (name, value) in &request.credentials.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| FetchError::InvalidRequest(format!("secret header name `{name}`")))?;
            // The message names the header, never the value.
            let mut value = HeaderValue::from_str(value).map_err(|_| {
                FetchError::InvalidRequest(format!("the secret for `{name}` is not a valid header value"))
            })?;
            value.set_sensitive(true);
            builder = builder.header(name, value);
        }
        let default_port = if dest.sink.https { 443 } else { 80 };
        let host_header = match (&dest.sink.host, dest.sink.port == default_port) {
            (Host::Ipv6(ip), true) => format!("[{ip}]"),
            (Host::Ipv6(ip), false) => format!("[{ip}]:{}", dest.sink.port),
            (_, true) => dest.sink.host_str(),
            (_, false) => format!("{}:{}", dest.sink.host_str(), dest.sink.port),
        };
        builder = builder.header(http::header::HOST, host_header);
        let body = Bytes::from(request.body.clone().unwrap_or_default());
        let request = builder.body(Full::new(body)).map_err(|e| FetchError::InvalidRequest(e.to_string()))?;
        Ok((request, stripped))
    }

    /// A byte stream to the origin: TCP to the pinned address, or to the proxy
    /// (with CONNECT for https), then TLS for https.
    async fn open_stream(&self, dest: &Destination) -> Result<BoxStream, FetchError> {
        let tcp: BoxStream = match &self.config.proxy_url {
            None => Box::new(connect_tcp(dest.pinned).await?),
            Some(proxy) => {
                let proxy_addr = proxy_socket_addr(proxy)?;
                let tcp = connect_tcp(proxy_addr).await?;
                if dest.sink.https { connect_tunnel(tcp, &dest.sink).await? } else { Box::new(tcp) }
            }
        };
        if !dest.sink.https {
            return Ok(tcp);
        }
        let server_name = match &dest.sink.host {
            Host::Domain(d) => {
                ServerName::try_from(d.as_str()).map_err(|_| FetchError::InvalidRequest("host".into()))?.to_owned()
            }
            Host::Ipv4(ip) => ServerName::IpAddress(IpAddr::V4(*ip).into()),
            Host::Ipv6(ip) => ServerName::IpAddress(IpAddr::V6(*ip).into()),
        };
        let tls = self.tls.connect(server_name, tcp).await.map_err(|e| FetchError::Network(format!("tls: {e}")))?;
        Ok(Box::new(tls))
    }
}

async fn connect_tcp(addr: SocketAddr) -> Result<TcpStream, FetchError> {
    let stream = TcpStream::connect(addr).await.map_err(|e| FetchError::Network(format!("connect {addr}: {e}")))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

fn proxy_socket_addr(proxy: &Url) -> Result<SocketAddr, FetchError> {
    let port = proxy.port_or_known_default().unwrap_or(3128);
    match proxy.host() {
        Some(Host::Ipv4(ip)) => Ok(SocketAddr::new(IpAddr::V4(ip), port)),
        Some(Host::Ipv6(ip)) => Ok(SocketAddr::new(IpAddr::V6(ip), port)),
        // A name would need resolving on every call; the proxy is configured by address.
        _ => Err(FetchError::Network("egress_proxy_url must name an IP address".into())),
    }
}

/// `CONNECT host:port` through the proxy, by name, so that the proxy applies
/// its own dstdomain allowlist to the same name the gate checked.
async fn connect_tunnel(tcp: TcpStream, sink: &CheckedSink) -> Result<BoxStream, FetchError> {
    let authority = match sink.host {
        Host::Ipv6(ip) => format!("[{ip}]:{}", sink.port),
        _ => format!("{}:{}", sink.host_str(), sink.port),
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| FetchError::Network(format!("proxy: {e}")))?;
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    let request = Request::builder()
        .method(Method::CONNECT)
        .uri(authority.as_str())
        .header(http::header::HOST, authority.as_str())
        .body(Full::new(Bytes::new()))
        .map_err(|e| FetchError::InvalidRequest(e.to_string()))?;
    let response = sender.send_request(request).await.map_err(|e| FetchError::Network(format!("proxy: {e}")))?;
    if response.status() != http::StatusCode::OK {
        return Err(FetchError::Network(format!("proxy refused CONNECT: {}", response.status())));
    }
    let upgraded = hyper::upgrade::on(response).await.map_err(|e| FetchError::Network(format!("proxy: {e}")))?;
    Ok(Box::new(TokioIo::new(upgraded)))
}
