use latchgate_core::role::Role;

/// Why an IPC exchange failed. Every variant that closes a channel is logged
/// with its code by the side that closes it.
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    #[error("i/o error on channel: {0}")]
    Io(#[from] std::io::Error),
    #[error("channel closed")]
    Closed,
    #[error("message of {size} bytes exceeds the channel limit of {limit} bytes")]
    Oversized { size: usize, limit: usize },
    #[error("datagram truncated by the kernel")]
    Truncated,
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("protocol version mismatch: peer speaks {peer}, we speak {ours}")]
    VersionMismatch { peer: u16, ours: u16 },
    #[error("unexpected peer: expected {expected} on {channel}, got {got} on {got_channel}")]
    WrongPeer { expected: Role, channel: String, got: Role, got_channel: String },
    #[error("peer uid {got} is not the expected uid {expected}")]
    WrongPeerUid { expected: u32, got: u32 },
    #[error("no reply within {0:?}")]
    Timeout(std::time::Duration),
    #[error("file descriptor passing failed: {0}")]
    FdPassing(String),
}

impl IpcError {
    /// Stable code for logs and status reports.
    pub fn code(&self) -> &'static str {
        match self {
            IpcError::Io(_) => "ipc_io",
            IpcError::Closed => "ipc_closed",
            IpcError::Oversized { .. } => "ipc_oversized",
            IpcError::Truncated => "ipc_truncated",
            IpcError::Malformed(_) => "ipc_malformed",
            IpcError::VersionMismatch { .. } => "ipc_version_mismatch",
            IpcError::WrongPeer { .. } => "ipc_wrong_peer",
            IpcError::WrongPeerUid { .. } => "ipc_wrong_peer_uid",
            IpcError::Timeout(_) => "ipc_timeout",
            IpcError::FdPassing(_) => "ipc_fd_passing",
        }
    }
}
