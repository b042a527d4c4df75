//! The wire protocol between LatchGate processes.
//!
//! One `SOCK_SEQPACKET` connection per channel; every datagram is a frame of one
//! bincode-encoded [`envelope::Envelope`]. The first exchange on a channel is a
//! [`envelope::Hello`]; a mismatch closes the channel. Requests are multiplexed by
//! `request_id` and replies may come back in any order ([`rpc`]).
#![deny(unsafe_code)]

pub mod channel;
pub mod child;
pub mod codec;
pub mod control;
pub mod envelope;
pub mod error;
pub mod frame;
pub mod inherit;
pub mod link;
pub mod messages;
pub mod peer;
pub mod rpc;

pub use channel::{BrokerExecutor, BrokerSigner, Channel, ChannelKind, ExecutorSigner, FrontBroker};
pub use error::IpcError;
pub use rpc::{RpcClient, serve};
