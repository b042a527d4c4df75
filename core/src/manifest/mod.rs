//! The action registry: one YAML manifest per action in `manifests/`, loaded,
//! checked and compiled once at start (and on reload). Everything the broker
//! needs about an action — its schemas, limits, egress, risk, verifier — comes
//! from here; anything the loader does not understand is an error.

mod error;
mod load;
mod model;
mod registry;
mod schema;
pub mod validate;

pub use error::{DigestError, ManifestError};
pub use load::{MAX_MANIFEST_BYTES, MAX_SCHEMA_FILE_BYTES, load_action, manifest_files, parse_manifest};
pub use model::{
    BasicAuthInjection, FsOperation, FsTemplate, InjectionTarget, IoSpec, Manifest, ProviderKind, SchemaSource,
    SecretInjection, SecretSpec, VerificationConfig, VerifierKind, is_valid_secret_name,
};
pub use registry::{ActionSummary, DigestTrust, RegisteredAction, Registry, module_digest};
pub use schema::{CompiledSchema, MAX_NESTING_DEPTH, MAX_REPORTED_ERRORS, SchemaViolation, ViolationKind};
