use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {path}: {source}")]
    Connect { path: PathBuf, source: std::io::Error },
    #[error("HTTP exchange failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("response body larger than {0} bytes")]
    ResponseTooLarge(usize),
    #[error("DPoP key operation failed: {0}")]
    Key(String),
    #[error("gate answered {status}: {body}")]
    Api { status: u16, body: serde_json::Value },
    #[error("unexpected response: {0}")]
    BadResponse(String),
    #[error("no lease yet: call request_lease first")]
    NoLease,
}

impl ClientError {
    pub fn code(&self) -> &'static str {
        match self {
            ClientError::Connect { .. } => "client_connect",
            ClientError::Http(_) => "client_http",
            ClientError::InvalidRequest(_) => "client_invalid_request",
            ClientError::ResponseTooLarge(_) => "client_response_too_large",
            ClientError::Key(_) => "client_key",
            ClientError::Api { .. } => "client_api_error",
            ClientError::BadResponse(_) => "client_bad_response",
            ClientError::NoLease => "client_no_lease",
        }
    }

    /// The gate's `error` code when the gate refused the request.
    pub fn api_error_code(&self) -> Option<&str> {
        match self {
            ClientError::Api { body, .. } => body.get("error").and_then(|e| e.as_str()),
            _ => None,
        }
    }
}
