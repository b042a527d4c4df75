//! Idle HTTP/1.1 connections kept for the next request to the same origin,
//! so that a provider calling the same API call after call does not pay a
//! TCP (and TLS) handshake each time. A connection is kept only per exact
//! destination — scheme, host name, port and the address that host was
//! classified and pinned to — so a reused connection goes where a fresh one
//! would: a name that now resolves elsewhere gets its own connection.
//!
//! Nothing of a call stays on a connection: secrets are request headers,
//! hyper writes each request whole and reads each response to its end
//! before the connection comes back here, and a connection whose response
//! failed, was cut short or was too large is closed instead.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;

/// Idle connections older than this are closed (below the 60–90 s most
/// servers and proxies keep an idle connection open).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections kept per destination.
pub const MAX_IDLE_PER_DESTINATION: usize = 8;
/// Idle connections kept in all.
pub const MAX_IDLE: usize = 256;

/// Where a connection goes: a connection is reused only for the same key.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct DestinationKey {
    pub https: bool,
    pub host: String,
    pub port: u16,
    pub pinned: SocketAddr,
}

/// A connection: its request handle and the task that drives it.
pub struct Connection {
    pub sender: SendRequest<Full<Bytes>>,
    /// Held, never read: dropping the connection aborts the task, which
    /// closes the socket.
    _driver: AbortOnDrop,
}

impl Connection {
    pub fn new(sender: SendRequest<Full<Bytes>>, driver: tokio::task::JoinHandle<()>) -> Connection {
        Connection { sender, _driver: AbortOnDrop(driver) }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Idle {
    connection: Connection,
    since: Instant,
}

impl Idle {
    /// Not idle too long, and the server has not closed it.
    fn usable(&self) -> bool {
        self.since.elapsed() < IDLE_TIMEOUT && !self.connection.sender.is_closed()
    }
}

#[derive(Default)]
pub struct ConnectionPool {
    idle: Mutex<HashMap<DestinationKey, Vec<Idle>>>,
}

impl ConnectionPool {
    /// The most recently returned open connection to `key`, if any.
    pub fn checkout(&self, key: &DestinationKey) -> Option<Connection> {
        let mut idle = self.idle.lock().ok()?;
        let kept = idle.get_mut(key)?;
        while let Some(entry) = kept.pop() {
            if entry.usable() {
                return Some(entry.connection);
            }
        }
        idle.remove(key);
        None
    }

    /// Keeps `connection` for the next request to `key` (the caller read its
    /// last response to the end). Closed, surplus and expired connections
    /// are dropped here.
    pub fn checkin(&self, key: DestinationKey, connection: Connection) {
        if connection.sender.is_closed() {
            return;
        }
        let Ok(mut idle) = self.idle.lock() else { return };
        if total(&idle) >= MAX_IDLE {
            idle.retain(|_, kept| {
                kept.retain(Idle::usable);
                !kept.is_empty()
            });
            if total(&idle) >= MAX_IDLE {
                return;
            }
        }
        let kept = idle.entry(key).or_default();
        if kept.len() < MAX_IDLE_PER_DESTINATION {
            kept.push(Idle { connection, since: Instant::now() });
        }
    }

    /// Idle connections kept right now (for tests and logs).
    pub fn idle_count(&self) -> usize {
        self.idle.lock().map(|idle| total(&idle)).unwrap_or(0)
    }
}

fn total(idle: &HashMap<DestinationKey, Vec<Idle>>) -> usize {
    idle.values().map(Vec::len).sum()
}
