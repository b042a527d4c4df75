//! The signer's library half: everything the signer process does, testable
//! without starting the process.
#![forbid(unsafe_code)]

pub mod grant_book;
pub mod keystore;
pub mod reload;
pub mod rotation;
pub mod secrets_check;
pub mod service;
pub mod sops;
pub mod vault;
