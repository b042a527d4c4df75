//! Operator subcommands that do their job and exit (the supervisor lives in
//! `supervisor/`). One file per command group.

pub mod audit;
pub mod egress;
mod evidence;
pub mod install;
pub mod keys;
pub mod ledger;
pub mod output;
pub mod policy;
pub mod receipt;
mod systemd;
pub mod verify;
pub mod webhooks;
