//! Building HTTP responses: JSON bodies and the error shape of API.md.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame};
use latchgate_core::error::{ApiError, ErrorCode};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A whole body, or one streamed from a channel (the audit export).
pub type HttpResponse = Response<Either<Full<Bytes>, ChannelBody>>;

/// A response body fed chunk by chunk; it ends when the sender is dropped.
pub struct ChannelBody {
    chunks: tokio::sync::mpsc::Receiver<Bytes>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.chunks.poll_recv(cx).map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// `200 application/x-ndjson`, streamed from `chunks`.
pub fn jsonl_stream(chunks: tokio::sync::mpsc::Receiver<Bytes>) -> HttpResponse {
    let mut response = Response::new(Either::Right(ChannelBody { chunks }));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub fn json(status: u16, body: &serde_json::Value) -> HttpResponse {
    raw_json(status, body.to_string())
}

pub fn error(err: &ApiError) -> HttpResponse {
    let mut response = json(err.code.http_status(), &err.to_json());
    if let Some(seconds) = err.retry_after_seconds
        && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

pub fn code(code: ErrorCode) -> HttpResponse {
    error(&ApiError::new(code))
}

/// The broker (or something behind it) could not be reached: fail closed.
pub fn component_unavailable(component: &str, cause: &latchgate_ipc::IpcError) -> HttpResponse {
    error(&unavailable_error(component, cause))
}

pub fn unavailable_error(component: &str, cause: &latchgate_ipc::IpcError) -> ApiError {
    tracing::warn!(component, code = cause.code(), "dependency unavailable");
    ApiError::component_unavailable(component)
}

/// A JSON body the broker already rendered.
pub fn raw_json(status: u16, body: String) -> HttpResponse {
    let mut response = Response::new(Either::Left(Full::new(Bytes::from(body))));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
