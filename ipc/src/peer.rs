//! `SO_PEERCRED` checks for channels made from named sockets.

use crate::error::IpcError;
use tokio_seqpacket::UnixSeqpacket;

/// Refuse a peer whose uid is not the one configured for its role.
pub fn check_peer_uid(sock: &UnixSeqpacket, expected_uid: u32) -> Result<(), IpcError> {
    let cred = sock.peer_cred()?;
    if cred.uid() != expected_uid {
        return Err(IpcError::WrongPeerUid { expected: expected_uid, got: cred.uid() });
    }
    Ok(())
}
