//! LatchGate's Rust client, used by the CLI, the integration tests and the
//! benchmark: a DPoP key that signs RFC 9449 proofs, a minimal HTTP/1.1
//! client over the gate's Unix socket, and the lease + execute flow on top.
#![forbid(unsafe_code)]

pub mod dpop_key;
pub mod error;
pub mod gate_client;
pub mod operator_client;
pub mod uds_http;

pub use dpop_key::DpopKey;
pub use error::ClientError;
pub use gate_client::{AuthHeaders, GateClient, Lease};
pub use latchgate_core::jose::LeaseBudgets;
pub use operator_client::OperatorClient;
pub use uds_http::{UdsHttp, UdsResponse};
