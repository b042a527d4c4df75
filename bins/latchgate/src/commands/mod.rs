//! Operator subcommands that do their job and exit (the supervisor lives in
//! `supervisor/`). One file per command group.

pub mod actions;
pub mod admin_client;
pub mod approvals;
pub mod audit;
pub mod config_cmd;
pub mod doctor;
pub mod egress;
mod evidence;
pub mod install;
pub mod keys;
pub mod ledger;
mod lock;
pub mod metrics;
pub mod operations;
pub mod output;
pub mod policy;
pub mod receipt;
pub mod receipts;
pub mod secrets;
pub mod status;
mod systemd;
pub mod verify;
pub mod webhooks;
