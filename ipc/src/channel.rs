//! The four channels of the architecture; each fixes its request/reply types,
//! which role asks, which answers, and the largest message it carries.

use crate::messages::{broker_executor, broker_signer, executor_signer, front_broker};
use latchgate_core::role::Role;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChannelKind {
    FrontBroker,
    BrokerSigner,
    BrokerExecutor,
    ExecutorSigner,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 4] =
        [ChannelKind::FrontBroker, ChannelKind::BrokerSigner, ChannelKind::BrokerExecutor, ChannelKind::ExecutorSigner];

    /// Name used for inherited fds and for the named socket in standalone mode.
    pub fn name(self) -> &'static str {
        match self {
            ChannelKind::FrontBroker => "front-broker",
            ChannelKind::BrokerSigner => "broker-signer",
            ChannelKind::BrokerExecutor => "broker-executor",
            ChannelKind::ExecutorSigner => "executor-signer",
        }
    }

    pub fn client(self) -> Role {
        match self {
            ChannelKind::FrontBroker => Role::Front,
            ChannelKind::BrokerSigner | ChannelKind::BrokerExecutor => Role::Broker,
            ChannelKind::ExecutorSigner => Role::Executor,
        }
    }

    pub fn server(self) -> Role {
        match self {
            ChannelKind::FrontBroker => Role::Broker,
            ChannelKind::BrokerSigner | ChannelKind::ExecutorSigner => Role::Signer,
            ChannelKind::BrokerExecutor => Role::Executor,
        }
    }

    /// The named socket the server listens on in standalone mode.
    pub fn socket_path(self, ipc_dir: &std::path::Path) -> std::path::PathBuf {
        ipc_dir.join(format!("{}.sock", self.name()))
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

pub trait Channel: Send + Sync + 'static {
    type Request: Serialize + DeserializeOwned + Send + fmt::Debug + 'static;
    type Reply: Serialize + DeserializeOwned + Send + fmt::Debug + 'static;
    const KIND: ChannelKind;
    /// The side that sends requests.
    const CLIENT: Role;
    /// The side that answers them.
    const SERVER: Role;
    /// Largest encoded envelope in either direction.
    const MAX_MESSAGE_BYTES: usize;
}

pub struct FrontBroker;
impl Channel for FrontBroker {
    type Request = front_broker::FrontRequest;
    type Reply = front_broker::FrontReply;
    const KIND: ChannelKind = ChannelKind::FrontBroker;
    const CLIENT: Role = Role::Front;
    const SERVER: Role = Role::Broker;
    /// Request bodies up to the front's body limit (default 1 MiB) plus outputs.
    const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;
}

pub struct BrokerSigner;
impl Channel for BrokerSigner {
    type Request = broker_signer::SignerRequest;
    type Reply = broker_signer::SignerReply;
    const KIND: ChannelKind = ChannelKind::BrokerSigner;
    const CLIENT: Role = Role::Broker;
    const SERVER: Role = Role::Signer;
    /// Only documents to sign and public keys: small.
    const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
}

pub struct BrokerExecutor;
impl Channel for BrokerExecutor {
    type Request = broker_executor::ExecutorRequest;
    type Reply = broker_executor::ExecutorReply;
    const KIND: ChannelKind = ChannelKind::BrokerExecutor;
    const CLIENT: Role = Role::Broker;
    const SERVER: Role = Role::Executor;
    /// Task input and provider output, both bounded by manifest io limits.
    const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;
}

pub struct ExecutorSigner;
impl Channel for ExecutorSigner {
    type Request = executor_signer::SecretsRequest;
    type Reply = executor_signer::SecretsReply;
    const KIND: ChannelKind = ChannelKind::ExecutorSigner;
    const CLIENT: Role = Role::Executor;
    const SERVER: Role = Role::Signer;
    /// A grant one way, a few secrets the other.
    const MAX_MESSAGE_BYTES: usize = 256 * 1024;
}
