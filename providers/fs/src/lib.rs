//! `fs`: one file operation under the action's `fs_root`. Confinement is the
//! host's job (openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS); this
//! provider validates the request shape and reports hashes so that a caller can
//! chain a read with a conditional overwrite or delete.
//!
//! Task params: `{"op": "read"|"create"|"overwrite"|"delete", "path": "a/b.txt",
//! "content": "<utf-8 text>", "expected_before": "sha256:<hex>"}`.

wit_bindgen::generate!({ path: "../wit", world: "latchgate:provider/provider", generate_all });

use latchgate::io::fs;
use latchgate::io::types::IoError;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

#[derive(Deserialize)]
struct Task {
    params: Params,
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Params {
    Read { path: String },
    Create { path: String, content: String },
    Overwrite { path: String, content: String, expected_before: String },
    Delete { path: String, expected_before: String },
}

struct Fs;

impl Guest for Fs {
    fn execute(task: String) -> Result<String, ProviderError> {
        let task: Task =
            serde_json::from_str(&task).map_err(|e| error("invalid_task", e.to_string()))?;
        let output = match task.params {
            Params::Read { path } => {
                let bytes = fs::read(&path).map_err(io_error)?;
                let sha256 = sha256_tagged(&bytes);
                let content = String::from_utf8(bytes)
                    .map_err(|_| error("not_utf8", "the file is not UTF-8 text"))?;
                json!({ "op": "read", "path": path, "content": content, "sha256": sha256 })
            }
            Params::Create { path, content } => {
                let sha256 = fs::create(&path, content.as_bytes()).map_err(io_error)?;
                json!({ "op": "create", "path": path, "sha256": sha256 })
            }
            Params::Overwrite { path, content, expected_before } => {
                let sha256 = fs::overwrite(&path, &expected_before, content.as_bytes()).map_err(io_error)?;
                json!({ "op": "overwrite", "path": path, "sha256_before": expected_before, "sha256": sha256 })
            }
            Params::Delete { path, expected_before } => {
                fs::delete(&path, &expected_before).map_err(io_error)?;
                json!({ "op": "delete", "path": path, "sha256_before": expected_before })
            }
        };
        Ok(output.to_string())
    }
}

fn sha256_tagged(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn error(code: &str, message: impl Into<String>) -> ProviderError {
    ProviderError { code: code.into(), message: message.into() }
}

fn io_error(e: IoError) -> ProviderError {
    let (code, message) = match e {
        IoError::NotFound => ("not_found", String::new()),
        IoError::AlreadyExists => ("already_exists", String::new()),
        IoError::PreconditionFailed(m) => ("precondition_failed", m),
        IoError::Denied(m) => ("denied", m),
        IoError::InvalidRequest(m) => ("invalid_request", m),
        IoError::ResponseTooLarge => ("file_too_large", String::new()),
        other => ("io_error", format!("{other:?}")),
    };
    error(code, message)
}

export!(Fs);
