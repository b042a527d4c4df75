//! One request enum and one reply enum per channel. JSON documents travel as
//! JSON text (`String`): bincode cannot carry self-describing values.

pub mod admin;
pub mod broker_executor;
pub mod broker_signer;
pub mod control;
pub mod executor_signer;
pub mod front_broker;
pub mod status;
