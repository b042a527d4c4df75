//! LatchGate broker library: the modules the broker process is built from.
#![forbid(unsafe_code)]

pub mod ledger;
pub mod policy;
pub mod state;
