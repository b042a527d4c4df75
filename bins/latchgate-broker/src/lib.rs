//! LatchGate broker library: the modules the broker process is built from.
#![forbid(unsafe_code)]

pub mod admin;
pub mod approvals;
pub mod auth;
pub mod backends;
pub mod catalog;
pub mod gate;
pub mod health;
pub mod identity;
pub mod leases;
pub mod ledger;
pub mod metrics;
pub mod peers;
pub mod pipeline;
pub mod policy;
pub mod receipts;
pub mod router;
pub mod signer_keys;
pub mod state;
pub mod webhooks;
