//! Host-mediated HTTP egress, steps 3–5 of the egress order: sink check
//! (shared with the broker, `latchgate_core::egress`), DNS resolution with
//! address classification, then a connection to the pinned address (or
//! through the egress proxy). Steps 1–2 (import allowed, io budget) are the
//! host import's job because they are per call.

mod client;
mod pool;
mod resolve;

pub use client::{
    Credentials, Destination, EgressClient, EgressConfig, EgressSetupError, FetchError, InboundResponse,
    OutboundRequest,
};
pub use latchgate_core::address::{AddressVerdict, classify};
pub use resolve::{CachedResolver, Resolve, ResolveFuture, SystemResolver};

use latchgate_core::egress::SinkError;

/// A refusal: the call is a policy violation and ends with `egress_denied`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressDenied {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("host `{0}` is not among the grant's allowed sinks")]
    NotInGrant(String),
    #[error("host `{host}` resolves to forbidden address {ip} ({reason})")]
    ForbiddenAddress { host: String, ip: std::net::IpAddr, reason: &'static str },
    #[error("host `{0}` did not resolve")]
    Unresolvable(String),
}

impl EgressDenied {
    pub fn code(&self) -> &'static str {
        match self {
            EgressDenied::Sink(e) => e.code(),
            EgressDenied::NotInGrant(_) => "sink_not_in_grant",
            EgressDenied::ForbiddenAddress { .. } => "forbidden_address",
            EgressDenied::Unresolvable(_) => "unresolvable_host",
        }
    }
}
