//! Shared domain of LatchGate: what two or more processes need lives here,
//! never copied into a process crate.
// `deny`, not `forbid`: confine::kernel needs one raw syscall and says why.
#![deny(unsafe_code)]

pub mod config;
pub mod confine;
pub mod error;
pub mod jose;
pub mod logging;
pub mod paths;
pub mod role;
