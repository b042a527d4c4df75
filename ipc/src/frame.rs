//! Datagram framing on a `SOCK_SEQPACKET` socket.
//!
//! A message normally is one datagram. Hosts commonly cap `SO_SNDBUF` near
//! 208 KiB, and a seqpacket datagram cannot exceed it, so a larger message is
//! sent as a run of fragments that no other message may interleave with (the
//! send lock) and is reassembled by the single reader. Every byte count is
//! checked against the channel limit before anything is allocated.

use crate::error::IpcError;
use tokio::sync::Mutex;
use tokio_seqpacket::UnixSeqpacket;

/// Payload bytes per datagram; well under the smallest default socket buffer.
pub const FRAGMENT_PAYLOAD: usize = 64 * 1024;

const WHOLE: u8 = 0;
const FIRST: u8 = 1;
const MORE: u8 = 2;
/// `FIRST` carries the total length as a little-endian u32 after the tag.
const FIRST_HEADER: usize = 5;

pub struct FramedSocket {
    sock: UnixSeqpacket,
    send_lock: Mutex<()>,
    max_message: usize,
}

impl FramedSocket {
    pub fn new(sock: UnixSeqpacket, max_message: usize) -> Self {
        FramedSocket { sock, send_lock: Mutex::new(()), max_message }
    }

    pub fn socket(&self) -> &UnixSeqpacket {
        &self.sock
    }

    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// Send one message, fragmenting when it exceeds one datagram.
    pub async fn send(&self, message: &[u8]) -> Result<(), IpcError> {
        if message.len() > self.max_message {
            return Err(IpcError::Oversized { size: message.len(), limit: self.max_message });
        }
        let _guard = self.send_lock.lock().await;
        if message.len() <= FRAGMENT_PAYLOAD {
            let mut datagram = Vec::with_capacity(1 + message.len());
            datagram.push(WHOLE);
            datagram.extend_from_slice(message);
            return self.send_datagram(&datagram).await;
        }
        let total = u32::try_from(message.len())
            .map_err(|_| IpcError::Oversized { size: message.len(), limit: self.max_message })?;
        let mut chunks = message.chunks(FRAGMENT_PAYLOAD);
        let first = chunks.next().unwrap_or_default();
        let mut datagram = Vec::with_capacity(FIRST_HEADER + first.len());
        datagram.push(FIRST);
        datagram.extend_from_slice(&total.to_le_bytes());
        datagram.extend_from_slice(first);
        self.send_datagram(&datagram).await?;
        for chunk in chunks {
            datagram.clear();
            datagram.push(MORE);
            datagram.extend_from_slice(chunk);
            self.send_datagram(&datagram).await?;
        }
        Ok(())
    }

    async fn send_datagram(&self, datagram: &[u8]) -> Result<(), IpcError> {
        let sent = self.sock.send(datagram).await?;
        if sent != datagram.len() {
            return Err(IpcError::Truncated);
        }
        Ok(())
    }

    /// Receive one whole message; `Ok(None)` when the peer closed the channel.
    /// Must be called from one task at a time (it owns reassembly).
    pub async fn recv(&self) -> Result<Option<Vec<u8>>, IpcError> {
        // One byte more than the largest legal datagram, so an oversized one shows up as truncated.
        let mut buf = vec![0u8; FIRST_HEADER + FRAGMENT_PAYLOAD + 1];
        let Some(n) = self.recv_datagram(&mut buf).await? else {
            return Ok(None);
        };
        match buf[0] {
            WHOLE => {
                if n - 1 > FRAGMENT_PAYLOAD {
                    return Err(IpcError::Malformed("whole-message datagram larger than a fragment".into()));
                }
                buf.truncate(n);
                buf.remove(0);
                Ok(Some(buf))
            }
            FIRST => self.reassemble(&buf[..n]).await.map(Some),
            tag => Err(IpcError::Malformed(format!("unknown frame tag {tag}"))),
        }
    }

    async fn reassemble(&self, first: &[u8]) -> Result<Vec<u8>, IpcError> {
        let header: [u8; 4] = first
            .get(1..FIRST_HEADER)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| IpcError::Malformed("short fragment header".into()))?;
        let total = u32::from_le_bytes(header) as usize;
        if total > self.max_message {
            return Err(IpcError::Oversized { size: total, limit: self.max_message });
        }
        let payload = &first[FIRST_HEADER..];
        if total <= FRAGMENT_PAYLOAD || payload.len() != FRAGMENT_PAYLOAD {
            return Err(IpcError::Malformed("fragment sizes inconsistent with total".into()));
        }
        let mut message = Vec::with_capacity(total);
        message.extend_from_slice(payload);
        let mut buf = vec![0u8; FIRST_HEADER + FRAGMENT_PAYLOAD + 1];
        while message.len() < total {
            let n = self.recv_datagram(&mut buf).await?.ok_or(IpcError::Closed)?;
            if buf[0] != MORE {
                return Err(IpcError::Malformed("fragment run interrupted".into()));
            }
            let chunk = &buf[1..n];
            if chunk.is_empty() || chunk.len() > FRAGMENT_PAYLOAD || message.len() + chunk.len() > total {
                return Err(IpcError::Malformed("fragment overruns declared total".into()));
            }
            message.extend_from_slice(chunk);
        }
        Ok(message)
    }

    /// One datagram into `buf`; `None` at end of stream. Truncation is an error:
    /// the kernel dropped bytes we can never get back.
    async fn recv_datagram(&self, buf: &mut [u8]) -> Result<Option<usize>, IpcError> {
        let info = self.sock.recv(buf).await?;
        if info.truncated() || info.ancillary_truncated() {
            return Err(IpcError::Truncated);
        }
        match info.bytes_read() {
            0 => Ok(None),
            n => Ok(Some(n)),
        }
    }
}

/// Adopt a seqpacket fd (inherited, passed over the control socket, or from a
/// socketpair) as an async socket. Non-blocking is forced here: a blocking fd
/// would park a runtime worker thread inside `recvmsg`.
pub fn adopt(fd: std::os::fd::OwnedFd) -> std::io::Result<UnixSeqpacket> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL).map_err(std::io::Error::from)?);
    fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map_err(std::io::Error::from)?;
    UnixSeqpacket::try_from(fd)
}
