//! supervisor ↔ child, on the control socketpair each supervised child inherits.

use super::status::ProcessStatus;
use crate::channel::ChannelKind;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlMessage {
    /// child → supervisor: set-up is done (confined, peers reachable as far as it knows).
    Ready(ProcessStatus),
    /// supervisor → child: a peer was restarted; the attached fd is the new end of `channel`.
    ReplacePeer { channel: ChannelKind },
    /// supervisor → child: stop accepting work and exit cleanly.
    Shutdown,
}

/// Control messages are tiny.
pub const CONTROL_MAX_BYTES: usize = 16 * 1024;
