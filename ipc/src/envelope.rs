//! What travels in a datagram: the hello that opens a channel, then envelopes.

use crate::channel::ChannelKind;
use latchgate_core::role::Role;
use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change to a message type.
pub const PROTOCOL_VERSION: u16 = 1;

/// Guards against a non-LatchGate peer (or a stray socket) being mistaken for one.
pub const HELLO_MAGIC: [u8; 4] = *b"LGIP";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub magic: [u8; 4],
    pub protocol_version: u16,
    pub role: Role,
    pub channel: ChannelKind,
}

impl Hello {
    pub fn new(role: Role, channel: ChannelKind) -> Self {
        Hello { magic: HELLO_MAGIC, protocol_version: PROTOCOL_VERSION, role, channel }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<B> {
    pub protocol_version: u16,
    pub request_id: u64,
    pub body: B,
}
