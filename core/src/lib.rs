//! Shared domain of LatchGate: what two or more processes need lives here,
//! never copied into a process crate.
#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod jose;
pub mod logging;
pub mod paths;
pub mod role;
