//! Request/reply over one channel, many requests in flight at once.
//!
//! The client tags each request with a fresh `request_id` and parks a oneshot
//! for it; a single reader task routes replies back in whatever order they come.
//! The server runs each request in its own task. Anything malformed closes the
//! channel (logged with its code) and fails every pending call with `Closed`:
//! never a panic, never a hang.

use crate::channel::Channel;
use crate::codec;
use crate::envelope::{Envelope, Hello, PROTOCOL_VERSION};
use crate::error::IpcError;
use crate::frame::FramedSocket;
use latchgate_core::role::Role;
use std::collections::HashMap;
use std::future::Future;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, oneshot, watch};
use tokio_seqpacket::UnixSeqpacket;

/// Largest hello datagram; anything bigger is not a hello.
const HELLO_LIMIT: usize = 64;

type Pending<R> = Mutex<HashMap<u64, oneshot::Sender<R>>>;

/// Exchange hellos: send ours, read theirs, and check version, channel and role.
pub async fn handshake(
    framed: &FramedSocket,
    me: Role,
    expected_peer: Role,
    channel: crate::channel::ChannelKind,
) -> Result<(), IpcError> {
    let ours = codec::encode(&Hello::new(me, channel), HELLO_LIMIT)?;
    framed.send(&ours).await?;
    let bytes = framed.recv().await?.ok_or(IpcError::Closed)?;
    let theirs: Hello = codec::decode(&bytes, HELLO_LIMIT)?;
    if theirs.magic != crate::envelope::HELLO_MAGIC {
        return Err(IpcError::Malformed("bad hello magic".into()));
    }
    if theirs.protocol_version != PROTOCOL_VERSION {
        return Err(IpcError::VersionMismatch { peer: theirs.protocol_version, ours: PROTOCOL_VERSION });
    }
    if theirs.role != expected_peer || theirs.channel != channel {
        return Err(IpcError::WrongPeer {
            expected: expected_peer,
            channel: channel.to_string(),
            got: theirs.role,
            got_channel: theirs.channel.to_string(),
        });
    }
    Ok(())
}

struct ClientShared<C: Channel> {
    framed: FramedSocket,
    pending: Pending<C::Reply>,
    next_id: AtomicU64,
    closed: AtomicBool,
    closed_signal: watch::Sender<bool>,
}

impl<C: Channel> ClientShared<C> {
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.closed_signal.send_replace(true);
        // Dropping the senders wakes every waiter with `Closed`.
        if let Ok(mut pending) = self.pending.lock() {
            pending.clear();
        }
        let _ = self.framed.socket().shutdown(std::net::Shutdown::Both);
    }
}

/// The asking side of a channel. Cheap to clone; all clones share one connection.
pub struct RpcClient<C: Channel> {
    shared: Arc<ClientShared<C>>,
}

impl<C: Channel> Clone for RpcClient<C> {
    fn clone(&self) -> Self {
        RpcClient { shared: self.shared.clone() }
    }
}

impl<C: Channel> RpcClient<C> {
    /// Handshake on `sock` and start the reply router.
    pub async fn connect(sock: UnixSeqpacket) -> Result<Self, IpcError> {
        let framed = FramedSocket::new(sock, C::MAX_MESSAGE_BYTES);
        handshake(&framed, C::CLIENT, C::SERVER, C::KIND).await?;
        let shared = Arc::new(ClientShared::<C> {
            framed,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            closed_signal: watch::channel(false).0,
        });
        tokio::spawn(route_replies(shared.clone()));
        Ok(RpcClient { shared })
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// Resolves once the channel is closed, by either side.
    pub async fn closed(&self) {
        let mut rx = self.shared.closed_signal.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Close the channel; pending calls fail with `Closed`.
    pub fn close(&self) {
        self.shared.close();
    }

    /// Send `request` and wait up to `timeout` for its reply.
    pub async fn call(&self, request: C::Request, timeout: Duration) -> Result<C::Reply, IpcError> {
        if self.is_closed() {
            return Err(IpcError::Closed);
        }
        let request_id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let envelope = Envelope { protocol_version: PROTOCOL_VERSION, request_id, body: request };
        let bytes = codec::encode(&envelope, C::MAX_MESSAGE_BYTES)?;
        let (tx, rx) = oneshot::channel();
        self.shared.pending.lock().map_err(|_| IpcError::Closed)?.insert(request_id, tx);
        // Removes our slot on every exit path (error, timeout, caller dropped the future).
        let _slot = PendingSlot { shared: &self.shared, request_id };
        if let Err(e) = self.shared.framed.send(&bytes).await {
            if !matches!(e, IpcError::Oversized { .. }) {
                tracing::warn!(channel = %C::KIND, code = e.code(), error = %e, "closing channel after send failure");
                self.shared.close();
            }
            return Err(e);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(IpcError::Closed),
            Err(_) => Err(IpcError::Timeout(timeout)),
        }
    }
}

struct PendingSlot<'a, C: Channel> {
    shared: &'a ClientShared<C>,
    request_id: u64,
}

impl<C: Channel> Drop for PendingSlot<'_, C> {
    fn drop(&mut self) {
        if let Ok(mut pending) = self.shared.pending.lock() {
            pending.remove(&self.request_id);
        }
    }
}

async fn route_replies<C: Channel>(shared: Arc<ClientShared<C>>) {
    let reason = loop {
        let bytes = match shared.framed.recv().await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => break IpcError::Closed,
            Err(e) => break e,
        };
        let envelope: Envelope<C::Reply> = match codec::decode(&bytes, C::MAX_MESSAGE_BYTES) {
            Ok(envelope) => envelope,
            Err(e) => break e,
        };
        if envelope.protocol_version != PROTOCOL_VERSION {
            break IpcError::VersionMismatch { peer: envelope.protocol_version, ours: PROTOCOL_VERSION };
        }
        let waiter = shared.pending.lock().ok().and_then(|mut p| p.remove(&envelope.request_id));
        // A reply for a request nobody waits for any more (timed out) is dropped.
        if let Some(waiter) = waiter {
            let _ = waiter.send(envelope.body);
        }
    };
    match reason {
        IpcError::Closed => tracing::info!(channel = %C::KIND, "channel closed by peer"),
        e => tracing::warn!(channel = %C::KIND, code = e.code(), error = %e, "closing channel"),
    }
    shared.close();
}

/// How many requests one channel may run at once before reading the next.
pub const DEFAULT_SERVER_CONCURRENCY: usize = 1024;

/// Answer requests on `sock` with `handler` until the peer closes the channel
/// or sends something malformed. Returns the reason the channel ended.
pub async fn serve<C, H, F>(sock: UnixSeqpacket, handler: H) -> IpcError
where
    C: Channel,
    H: Fn(C::Request) -> F + Send + Sync + 'static,
    F: Future<Output = C::Reply> + Send + 'static,
{
    let framed = Arc::new(FramedSocket::new(sock, C::MAX_MESSAGE_BYTES));
    if let Err(e) = handshake(&framed, C::SERVER, C::CLIENT, C::KIND).await {
        tracing::warn!(channel = %C::KIND, code = e.code(), error = %e, "refusing channel");
        return e;
    }
    let handler = Arc::new(handler);
    let permits = Arc::new(Semaphore::new(DEFAULT_SERVER_CONCURRENCY));
    let reason = loop {
        let bytes = match framed.recv().await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => break IpcError::Closed,
            Err(e) => break e,
        };
        let envelope: Envelope<C::Request> = match codec::decode(&bytes, C::MAX_MESSAGE_BYTES) {
            Ok(envelope) => envelope,
            Err(e) => break e,
        };
        if envelope.protocol_version != PROTOCOL_VERSION {
            break IpcError::VersionMismatch { peer: envelope.protocol_version, ours: PROTOCOL_VERSION };
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break IpcError::Closed;
        };
        let (framed, handler) = (framed.clone(), handler.clone());
        tokio::spawn(async move {
            let reply = handler(envelope.body).await;
            let out = Envelope { protocol_version: PROTOCOL_VERSION, request_id: envelope.request_id, body: reply };
            match codec::encode(&out, C::MAX_MESSAGE_BYTES) {
                Ok(bytes) => {
                    if let Err(e) = framed.send(&bytes).await {
                        tracing::debug!(channel = %C::KIND, code = e.code(), "reply not delivered");
                    }
                }
                Err(e) => {
                    tracing::error!(channel = %C::KIND, code = e.code(), error = %e, "reply could not be encoded")
                }
            }
            drop(permit);
        });
    };
    match &reason {
        IpcError::Closed => tracing::info!(channel = %C::KIND, "channel closed by peer"),
        e => tracing::warn!(channel = %C::KIND, code = e.code(), error = %e, "closing channel"),
    }
    let _ = framed.socket().shutdown(std::net::Shutdown::Both);
    reason
}
