//! A minimal HTTP/1.1 client over a Unix socket: one connection, reused for
//! every request and re-opened once if the gate closed it.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

use crate::error::ClientError;

/// Responses larger than this are refused rather than buffered.
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct UdsResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl UdsResponse {
    /// The body as JSON; a non-JSON body becomes a JSON string of its text.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&self.body).into_owned()))
    }
}

pub struct UdsHttp {
    socket_path: PathBuf,
    sender: Option<SendRequest<Full<Bytes>>>,
    connections_opened: u64,
}

impl std::fmt::Debug for UdsHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdsHttp").field("socket_path", &self.socket_path).finish_non_exhaustive()
    }
}

impl UdsHttp {
    /// Connect now, so a wrong path fails here rather than on first use.
    pub async fn connect(socket_path: impl AsRef<Path>) -> Result<UdsHttp, ClientError> {
        let mut client = UdsHttp { socket_path: socket_path.as_ref().to_owned(), sender: None, connections_opened: 0 };
        client.sender = Some(client.open().await?);
        Ok(client)
    }

    /// How many connections were opened so far (1 while the first is alive).
    pub fn connections_opened(&self) -> u64 {
        self.connections_opened
    }

    async fn open(&mut self) -> Result<SendRequest<Full<Bytes>>, ClientError> {
        let stream = UnixStream::connect(&self.socket_path)
            .await
            .map_err(|source| ClientError::Connect { path: self.socket_path.clone(), source })?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        // The connection future drives the socket; it ends when either side closes.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        self.connections_opened += 1;
        Ok(sender)
    }

    /// A sender whose connection is open, reconnecting once if needed.
    async fn ready_sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, ClientError> {
        let reusable = match self.sender.as_mut() {
            Some(sender) => sender.ready().await.is_ok(),
            None => false,
        };
        if !reusable {
            self.sender = Some(self.open().await?);
        }
        match self.sender.as_mut() {
            Some(sender) => {
                sender.ready().await?;
                Ok(sender)
            }
            None => Err(ClientError::BadResponse("no connection".into())),
        }
    }

    /// Send one request. `path` is the request target (`/v1/...`); a JSON
    /// `body` gets `content-type: application/json`.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<UdsResponse, ClientError> {
        let mut builder = Request::builder().method(method).uri(path).header(header::HOST, "localhost");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let has_body = body.is_some();
        let mut request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::InvalidRequest(e.to_string()))?;
        if has_body && !request.headers().contains_key(header::CONTENT_TYPE) {
            request.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let response = self.ready_sender().await?.send_request(request).await?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|_| ClientError::ResponseTooLarge(MAX_RESPONSE_BYTES))?
            .to_bytes();
        Ok(UdsResponse { status: parts.status, headers: parts.headers, body })
    }
}
