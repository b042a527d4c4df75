//! Operator subcommands that do their job and exit (the supervisor lives in
//! `supervisor/`). One file per command group.

pub mod audit;
pub mod egress;
mod evidence;
mod lock;
pub mod output;
pub mod policy;
pub mod receipt;
pub mod secrets;
pub mod verify;
