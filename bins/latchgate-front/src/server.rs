//! Accept loop of one socket: `SO_PEERCRED` per connection, a cap on
//! concurrent connections, and hyper's HTTP/1.1 with a header-read deadline.

use crate::FrontState;
use crate::routes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use latchgate_ipc::messages::front_broker::PeerCred;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UnixListener;
use tokio::sync::Semaphore;

/// Which socket a request came in on; routes are served on one plane only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plane {
    Client,
    Admin,
}

/// Counts one request being handled (the front waits for these on shutdown).
struct InProgress(Arc<FrontState>);

impl InProgress {
    fn enter(state: &Arc<FrontState>) -> InProgress {
        state.requests_in_progress.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InProgress(state.clone())
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.requests_in_progress.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Largest request head hyper buffers (431 above it).
const MAX_HEAD_BYTES: usize = 64 * 1024;

pub async fn serve(listener: UnixListener, plane: Plane, state: Arc<FrontState>) {
    let limits = &state.cfg.config.limits;
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let header_timeout = Duration::from_millis(limits.header_read_timeout_ms);
    loop {
        let Ok(permit) = connections.clone().acquire_owned().await else { return };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(?plane, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let peer = match stream.peer_cred() {
            Ok(cred) => PeerCred { uid: cred.uid(), gid: cred.gid(), pid: cred.pid().unwrap_or(0) },
            Err(e) => {
                // Without a peer identity nothing can be decided: drop the connection.
                tracing::warn!(?plane, error = %e, "no SO_PEERCRED; closing connection");
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let state = state.clone();
                async move {
                    let _in_progress = InProgress::enter(&state);
                    routes::handle(state.clone(), plane, peer, request).await
                }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_buf_size(MAX_HEAD_BYTES)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                tracing::debug!(?plane, error = %e, "connection ended with error");
            }
            drop(permit);
        });
    }
}
