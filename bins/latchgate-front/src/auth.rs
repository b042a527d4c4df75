//! The front's check of `Authorization: DPoP` + `DPoP` before anything is
//! sent to the broker (which checks again, plus replay and epoch).

use crate::FrontState;
use latchgate_core::error::{ApiError, ErrorCode};
use latchgate_core::jose::{AuthHeaders, LeaseVerifier, authenticate, authenticate_operator};
use latchgate_ipc::messages::front_broker::{FrontReply, FrontRequest, RequestAuth};
use std::time::Duration;

const KEYS_TIMEOUT: Duration = Duration::from_secs(5);

fn header<'a>(parts: &'a http::request::Parts, name: &str) -> Option<&'a str> {
    let mut values = parts.headers.get_all(name).iter();
    let first = values.next()?;
    // Two Authorization or DPoP headers are ambiguous: treat as absent.
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok()
}

pub async fn check(state: &FrontState, parts: &http::request::Parts) -> Result<RequestAuth, ApiError> {
    let headers = AuthHeaders { authorization: header(parts, "authorization"), dpop: header(parts, "dpop") };
    let method = parts.method.as_str();
    let path = parts.uri.path();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let verifier = state.lease_keys.get(|| fetch_lease_keys(state)).await?;
    match authenticate(&verifier, &state.dpop, headers, method, path, now) {
        Err(e) if e.deny_reason.as_deref() == Some("lease_unknown_kid") => {
            // Possibly a key rotated in a moment ago: wait out the refresh interval rather than refuse.
            let verifier = state.lease_keys.refresh_when_allowed(|| fetch_lease_keys(state)).await?;
            authenticate(&verifier, &state.dpop, headers, method, path, now)?;
        }
        other => {
            other?;
        }
    }
    Ok(RequestAuth {
        authorization: headers.authorization.unwrap_or_default().to_string(),
        dpop: headers.dpop.unwrap_or_default().to_string(),
        method: method.to_string(),
        path: path.to_string(),
    })
}

/// An operator request on the admin socket: api key + proof bound to the
/// credential's `dpop_jkt` (the broker checks again and records the jti).
pub fn check_operator(state: &FrontState, parts: &http::request::Parts) -> Result<RequestAuth, ApiError> {
    let headers = AuthHeaders { authorization: header(parts, "authorization"), dpop: header(parts, "dpop") };
    let method = parts.method.as_str();
    let path = parts.uri.path();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    authenticate_operator(&state.cfg.config.operator_credentials, &state.dpop, headers, method, path, now)?;
    Ok(RequestAuth {
        authorization: headers.authorization.unwrap_or_default().to_string(),
        dpop: headers.dpop.unwrap_or_default().to_string(),
        method: method.to_string(),
        path: path.to_string(),
    })
}

async fn fetch_lease_keys(state: &FrontState) -> Result<LeaseVerifier, ApiError> {
    match state.broker.call(FrontRequest::LeaseKeys, KEYS_TIMEOUT).await {
        Ok(FrontReply::LeaseKeys { jwks_json }) => LeaseVerifier::from_jwks_json(&jwks_json).map_err(|e| {
            tracing::error!(error = %e, "broker sent unusable lease keys");
            ApiError::new(ErrorCode::InternalError)
        }),
        Ok(FrontReply::Error(e)) => Err(e),
        Ok(other) => {
            tracing::error!(reply = ?other, "unexpected broker reply to LeaseKeys");
            Err(ApiError::new(ErrorCode::InternalError))
        }
        Err(e) => Err(crate::reply::unavailable_error("broker", &e)),
    }
}
