//! Shared domain of LatchGate: what two or more processes need lives here,
//! never copied into a process crate.
// `deny`, not `forbid`: confine::kernel needs one raw syscall and says why.
#![deny(unsafe_code)]

pub mod action;
pub mod address;
pub mod config;
pub mod confine;
pub mod egress;
pub mod error;
pub mod grant;
pub mod jcs;
pub mod jose;
pub mod logging;
pub mod manifest;
pub mod paths;
pub mod process;
pub mod production;
pub mod receipt;
pub mod refresh_cache;
pub mod role;
