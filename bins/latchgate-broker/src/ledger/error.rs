//! Ledger failures. Every SQLite failure on the write path is a persistence
//! failure: the client is told `evidence_persistence_failed` and nothing it
//! was told had committed is ever rolled back.

use latchgate_core::error::ErrorCode;

use super::verify::ChainBreak;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The database could not be written or read (disk full, read-only file,
    /// I/O error, corruption). Detail is for logs only.
    #[error("evidence ledger persistence failed: {0}")]
    Persistence(String),
    /// The writer thread is gone; nothing can be made durable.
    #[error("evidence ledger writer is not running")]
    WriterUnavailable,
    /// The grant was already consumed by an earlier intent.
    #[error("grant {0} was already consumed")]
    GrantConsumed(String),
    #[error("execution intent {0} does not exist")]
    IntentNotFound(String),
    /// Finalising an intent that is already resolved/failed, or whose grant is
    /// not the receipt's grant.
    #[error("execution intent {0} cannot be finalised: {1}")]
    IntentNotPending(String, &'static str),
    #[error("receipt {0} already exists")]
    ReceiptExists(String),
    #[error("approval {0} already has an outcome")]
    ApprovalAlreadyDecided(String),
    #[error("approval {0} already exists")]
    ApprovalExists(String),
    /// A value could not be serialized or hashed (JCS).
    #[error("ledger record cannot be encoded: {0}")]
    Encoding(String),
    /// A stored row does not parse; the ledger has been edited or corrupted.
    #[error("ledger row is corrupt: {0}")]
    CorruptRow(String),
    /// The database was written by a newer LatchGate.
    #[error("ledger schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("evidence chain broken: {0}")]
    ChainBroken(ChainBreak),
}

impl LedgerError {
    /// Stable code string per variant (logs, CLI output, metrics labels).
    pub fn code(&self) -> &'static str {
        match self {
            LedgerError::Persistence(_) => "ledger_persistence_failed",
            LedgerError::WriterUnavailable => "ledger_writer_unavailable",
            LedgerError::GrantConsumed(_) => "ledger_grant_consumed",
            LedgerError::IntentNotFound(_) => "ledger_intent_not_found",
            LedgerError::IntentNotPending(..) => "ledger_intent_not_pending",
            LedgerError::ReceiptExists(_) => "ledger_receipt_exists",
            LedgerError::ApprovalAlreadyDecided(_) => "ledger_approval_already_decided",
            LedgerError::ApprovalExists(_) => "ledger_approval_exists",
            LedgerError::Encoding(_) => "ledger_encoding_failed",
            LedgerError::CorruptRow(_) => "ledger_corrupt_row",
            LedgerError::SchemaTooNew { .. } => "ledger_schema_too_new",
            LedgerError::ChainBroken(_) => "ledger_chain_broken",
        }
    }

    /// The client-visible code this failure is answered with.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            LedgerError::Persistence(_) | LedgerError::WriterUnavailable => ErrorCode::EvidencePersistenceFailed,
            LedgerError::GrantConsumed(_) => ErrorCode::GrantConsumed,
            _ => ErrorCode::InternalError,
        }
    }
}

impl From<rusqlite::Error> for LedgerError {
    fn from(e: rusqlite::Error) -> Self {
        LedgerError::Persistence(e.to_string())
    }
}

impl From<latchgate_core::jcs::JcsError> for LedgerError {
    fn from(e: latchgate_core::jcs::JcsError) -> Self {
        LedgerError::Encoding(e.to_string())
    }
}

impl From<serde_json::Error> for LedgerError {
    fn from(e: serde_json::Error) -> Self {
        LedgerError::Encoding(e.to_string())
    }
}
