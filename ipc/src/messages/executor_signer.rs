//! executor → signer: grant verification keys, secrets for one grant, liveness.

use super::broker_signer::GrantPublicKey;
use super::status::ProcessStatus;
use latchgate_core::grant::SignedGrant;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecretsRequest {
    Ping,
    /// The grant verification keys: the executor takes them from the signer
    /// itself, never from the broker whose grants it checks.
    GrantKeys,
    /// The secrets of one grant: the signer checks the grant (its signature,
    /// expiry, epoch, that it issued it and has not finalised it, that its
    /// secrets were not released before) and returns only the names in its
    /// `approved_secrets` that the secrets file holds.
    Secrets {
        grant: Box<SignedGrant>,
    },
}

/// A secret value on its way to the executor's HTTP layer. Wiped when
/// dropped; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretValue(Zeroizing<String>);

impl SecretValue {
    pub fn new(value: Zeroizing<String>) -> SecretValue {
        SecretValue(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// One released secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasedSecret {
    pub name: String,
    pub value: SecretValue,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecretsReply {
    Pong(ProcessStatus),
    GrantKeys(Vec<GrantPublicKey>),
    Secrets(Vec<ReleasedSecret>),
    Refused { code: String, message: String },
}
