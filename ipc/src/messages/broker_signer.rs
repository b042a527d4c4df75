//! broker → signer. The signer answers a fixed set of typed requests and keeps
//! the state that makes them safe: it signs a receipt only for a grant it
//! issued and has not finalised (OpenSSH-privsep style).

use super::status::ProcessStatus;
use latchgate_core::grant::{Grant, SignedGrant};
use serde::{Deserialize, Serialize};

/// An Ed25519 grant verification key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantPublicKey {
    pub kid: String,
    pub key: [u8; 32],
}

/// Public halves of every signer key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeys {
    /// Lease verification keys (ES256 JWKS, JSON text).
    pub lease_jwks_json: String,
    /// Every receipt key ever used (Ed25519 JWKS, JSON text), current first.
    pub receipt_jwks_json: String,
    pub grant_keys: Vec<GrantPublicKey>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignerRequest {
    Ping,
    PublicKeys,
    /// Sign a lease; `claims_json` is a `LeaseClaims` document.
    SignLease {
        claims_json: String,
    },
    /// Sign a grant and remember it as issued (until it expires or is finalised).
    SignGrant {
        grant: Box<Grant>,
    },
    /// Sign a receipt (JSON text, without signature) for a grant this signer
    /// issued and has not finalised; finalises the grant.
    SignReceipt {
        receipt_json: String,
    },
    /// Which of these secret names the secrets file holds (names only: the
    /// broker never sees a value). Answered with `SecretsPresent`.
    SecretsPresent {
        names: Vec<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignerReply {
    Pong(ProcessStatus),
    PublicKeys(PublicKeys),
    Lease {
        jwt: String,
    },
    Grant(Box<SignedGrant>),
    Receipt {
        signing_key_id: String,
        result_hash: String,
        signature: Vec<u8>,
    },
    SecretsPresent {
        present: Vec<String>,
    },
    /// The signer refused (stable code + message for logs; never key material).
    Refused {
        code: String,
        message: String,
    },
}
