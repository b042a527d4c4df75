//! One POST to a receiver. SSRF rule at every delivery, not just at config
//! load: the host is resolved, every address must be public (the shared
//! `latchgate_core::address::classify`), and the connection goes to the
//! address that was checked (no second lookup for a rebinding answer to
//! change). Redirects are not followed. TLS verifies the name against the
//! webpki roots. The one exception is a test-only `ip:port` destination of
//! `[webhook_delivery] allow_insecure_destinations`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use latchgate_core::address::{AddressVerdict, classify};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use url::{Host, Url};

/// A receiver's answer body is not needed; read at most this much of it.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("{host} resolves to {ip}, a {range} address")]
    ForbiddenAddress { host: String, ip: IpAddr, range: &'static str },
    #[error("{0} does not resolve")]
    Unresolvable(String),
    #[error("network: {0}")]
    Network(String),
    #[error("timed out")]
    Timeout,
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl SendError {
    pub fn code(&self) -> &'static str {
        match self {
            SendError::ForbiddenAddress { .. } => "webhook_destination_forbidden",
            SendError::Unresolvable(_) => "webhook_unresolvable",
            SendError::Network(_) => "webhook_network_error",
            SendError::Timeout => "webhook_timeout",
            SendError::InvalidRequest(_) => "webhook_request_invalid",
        }
    }

    /// Worth trying again later (the receiver may come back); a forbidden
    /// destination or a request we cannot even build is not.
    pub fn retryable(&self) -> bool {
        matches!(self, SendError::Network(_) | SendError::Timeout | SendError::Unresolvable(_))
    }
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// Connections to receivers; cheap to share.
#[derive(Clone)]
pub struct Sender {
    tls: tokio_rustls::TlsConnector,
    /// TEST ONLY destinations (plain http, private addresses allowed).
    insecure: Arc<Vec<SocketAddr>>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").field("insecure", &self.insecure).finish_non_exhaustive()
    }
}

impl Sender {
    pub fn new(insecure: Vec<SocketAddr>) -> Result<Sender, String> {
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        if !insecure.is_empty() {
            tracing::warn!(destinations = ?insecure,
                "TEST-ONLY webhook_delivery.allow_insecure_destinations is configured: plain http to private addresses");
        }
        Ok(Sender { tls: tokio_rustls::TlsConnector::from(Arc::new(config)), insecure: Arc::new(insecure) })
    }

    /// The address to connect to, after the SSRF rule.
    async fn destination(&self, url: &Url) -> Result<SocketAddr, SendError> {
        let host = url.host().ok_or_else(|| SendError::InvalidRequest("URL has no host".into()))?;
        let port = url.port_or_known_default().ok_or_else(|| SendError::InvalidRequest("URL has no port".into()))?;
        let (name, addrs): (String, Vec<IpAddr>) = match host {
            Host::Ipv4(ip) => (ip.to_string(), vec![IpAddr::V4(ip)]),
            Host::Ipv6(ip) => (ip.to_string(), vec![IpAddr::V6(ip)]),
            Host::Domain(d) => {
                let found = tokio::net::lookup_host((d, port)).await.map(|a| a.map(|s| s.ip()).collect());
                (d.to_string(), found.unwrap_or_default())
            }
        };
        let first = *addrs.first().ok_or_else(|| SendError::Unresolvable(name.clone()))?;
        // Every answer must pass: a mixed answer is a rebinding attempt.
        for ip in &addrs {
            let addr = SocketAddr::new(*ip, port);
            if let AddressVerdict::Forbidden(range) = classify(*ip)
                && !self.insecure.contains(&addr)
            {
                return Err(SendError::ForbiddenAddress { host: name, ip: *ip, range });
            }
        }
        let dest = SocketAddr::new(first, port);
        if url.scheme() != "https" && !self.insecure.contains(&dest) {
            return Err(SendError::InvalidRequest("plain http to a destination that is not a test destination".into()));
        }
        Ok(dest)
    }

    /// POST `body` to `url` with `headers`; the receiver's status code.
    pub async fn post(
        &self,
        url: &Url,
        headers: &[(HeaderName, HeaderValue)],
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<u16, SendError> {
        match tokio::time::timeout(timeout, self.exchange(url, headers, body)).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Timeout),
        }
    }

    async fn exchange(
        &self,
        url: &Url,
        headers: &[(HeaderName, HeaderValue)],
        body: Vec<u8>,
    ) -> Result<u16, SendError> {
        let dest = self.destination(url).await?;
        let tcp = TcpStream::connect(dest).await.map_err(|e| SendError::Network(format!("connect {dest}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Stream> = if url.scheme() == "https" {
            let name = match url.host() {
                Some(Host::Domain(d)) => ServerName::try_from(d.to_string())
                    .map_err(|_| SendError::InvalidRequest("host is not a valid TLS name".into()))?,
                _ => ServerName::IpAddress(dest.ip().into()),
            };
            Box::new(self.tls.connect(name, tcp).await.map_err(|e| SendError::Network(format!("tls: {e}")))?)
        } else {
            Box::new(tcp)
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| SendError::Network(e.to_string()))?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => return Err(SendError::InvalidRequest("URL has no host".into())),
        };
        let mut request = Request::post(target)
            .header(http::header::HOST, host)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, concat!("latchgate/", env!("CARGO_PKG_VERSION")))
            .header(http::header::CONNECTION, "close");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request =
            request.body(Full::new(Bytes::from(body))).map_err(|e| SendError::InvalidRequest(e.to_string()))?;
        let response = sender.send_request(request).await.map_err(|e| SendError::Network(e.to_string()));
        let status = match response {
            Ok(response) => {
                let status = response.status().as_u16();
                // Drain a little so the receiver sees a clean close; its content is not used.
                let _ = Limited::new(response.into_body(), MAX_RESPONSE_BYTES).collect().await;
                Ok(status)
            }
            Err(e) => Err(e),
        };
        driver.abort();
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn private_and_metadata_receivers_are_refused_before_any_connection() {
        let sender = Sender::new(Vec::new()).unwrap();
        for url in ["https://127.0.0.1/h", "https://169.254.169.254/latest", "https://[::1]:8443/", "https://10.1.2.3/"]
        {
            let e = sender.post(&url.parse().unwrap(), &[], b"{}".to_vec(), Duration::from_secs(5)).await.unwrap_err();
            assert_eq!(e.code(), "webhook_destination_forbidden", "{url}: {e}");
            assert!(!e.retryable());
        }
        // localhost is a name: resolved, then refused as loopback.
        let e = sender.post(&"https://localhost:9/".parse().unwrap(), &[], vec![], Duration::from_secs(5)).await;
        assert_eq!(e.unwrap_err().code(), "webhook_destination_forbidden");
    }

    #[tokio::test]
    async fn the_test_override_admits_exactly_its_address_and_only_it_may_be_plain_http() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let allowed = listener.local_addr().unwrap();
        let sender = Sender::new(vec![allowed]).unwrap();
        assert_eq!(sender.destination(&format!("http://{allowed}/x").parse().unwrap()).await.unwrap(), allowed);
        let other = SocketAddr::new(allowed.ip(), allowed.port().wrapping_add(1).max(1));
        let e = sender.destination(&format!("http://{other}/x").parse().unwrap()).await.unwrap_err();
        assert_eq!(e.code(), "webhook_destination_forbidden");
        let public = sender.destination(&"http://8.8.8.8/x".parse().unwrap()).await.unwrap_err();
        assert_eq!(public.code(), "webhook_request_invalid", "plain http to the Internet is refused");
    }
}
