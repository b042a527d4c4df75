//! The executor's sandbox as a library: verify the grant, run one provider
//! component in a fresh, bounded wasmtime store, mediate every host call, and
//! report what the host observed. `main.rs` wires this to IPC.
//!
//! Call order for the process: [`Runtime::new`] (loads, digest-checks and
//! compiles every provider, starts the epoch ticker) → [`Runtime::seal_ready`]
//! → seal the process with seccomp → [`Runtime::run`] per `RunTask`.
#![forbid(unsafe_code)]

pub mod egress;
pub mod grant;
mod host;
pub mod registry;
pub mod runtime;
pub mod secrets;
pub mod task;

pub use grant::{GrantError, GrantKeys, verify_grant};
pub use registry::{ExpectedDigests, RegistryError};
pub use runtime::{ActionSecrets, RunError, Runtime, RuntimeConfig, RuntimeInitError, SealReport};
pub use secrets::{CallSecrets, SecretSource, SecretsRefused};
pub use task::{FailureClass, IoObservation, Outcome, OutcomeResult, RunTask};
