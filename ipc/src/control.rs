//! The supervisor's control socket to a child: tiny messages, optionally with
//! one file descriptor attached (a replacement channel end after a restart).

use crate::codec;
use crate::error::IpcError;
use crate::messages::control::{CONTROL_MAX_BYTES, ControlMessage};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, OwnedFd};
use tokio_seqpacket::UnixSeqpacket;
use tokio_seqpacket::ancillary::{AncillaryMessageWriter, OwnedAncillaryMessage};

pub struct ControlSocket {
    sock: UnixSeqpacket,
}

impl ControlSocket {
    pub fn new(sock: UnixSeqpacket) -> Self {
        ControlSocket { sock }
    }

    pub async fn send(&self, message: &ControlMessage, fd: Option<&OwnedFd>) -> Result<(), IpcError> {
        let bytes = codec::encode(message, CONTROL_MAX_BYTES)?;
        let mut space = [0u8; 64];
        let mut ancillary = AncillaryMessageWriter::new(&mut space);
        if let Some(fd) = fd {
            ancillary.add_fds([fd.as_fd()]).map_err(|e| IpcError::FdPassing(e.to_string()))?;
        }
        let sent = self.sock.send_vectored_with_ancillary(&[IoSlice::new(&bytes)], &mut ancillary).await?;
        if sent != bytes.len() {
            return Err(IpcError::Truncated);
        }
        Ok(())
    }

    /// Next message and the fd attached to it, if any; `Ok(None)` when the peer is gone.
    pub async fn recv(&self) -> Result<Option<(ControlMessage, Option<OwnedFd>)>, IpcError> {
        let mut buf = vec![0u8; CONTROL_MAX_BYTES + 1];
        let mut space = [0u8; 64];
        let (info, ancillary) =
            self.sock.recv_vectored_with_ancillary(&mut [IoSliceMut::new(&mut buf)], &mut space).await?;
        // Take ownership of every fd first, so none leaks whatever we decide next.
        let mut fds: Vec<OwnedFd> = Vec::new();
        for message in ancillary.into_messages() {
            if let OwnedAncillaryMessage::FileDescriptors(received) = message {
                fds.extend(received);
            }
        }
        if info.truncated() || info.ancillary_truncated() {
            return Err(IpcError::Truncated);
        }
        if info.bytes_read() == 0 {
            return Ok(None);
        }
        if fds.len() > 1 {
            return Err(IpcError::FdPassing(format!("{} fds attached, at most 1 allowed", fds.len())));
        }
        let message: ControlMessage = codec::decode(&buf[..info.bytes_read()], CONTROL_MAX_BYTES)?;
        Ok(Some((message, fds.pop())))
    }
}
