//! The agent-side flow: obtain a lease bound to a DPoP key, then call
//! authenticated routes with `Authorization: DPoP <lease>` and a fresh proof.

use std::path::Path;

use http::{Method, StatusCode};
use latchgate_core::jose::{LeaseBudgets, expected_htu};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::dpop_key::DpopKey;
use crate::error::ClientError;
use crate::uds_http::{UdsHttp, UdsResponse};

/// The `POST /v1/leases` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub lease_jwt: String,
    pub session_id: String,
    pub lease_jti: String,
    /// RFC 3339.
    pub expires_at: String,
}

#[derive(Debug)]
pub struct GateClient {
    http: UdsHttp,
    public_base_url: String,
    key: DpopKey,
    lease: Option<Lease>,
}

impl GateClient {
    /// `public_base_url` is the gate's configured one: proofs' `htu` is built
    /// from it, never from the socket transport.
    pub async fn connect(
        socket_path: impl AsRef<Path>,
        public_base_url: &str,
        key: DpopKey,
    ) -> Result<GateClient, ClientError> {
        Ok(GateClient {
            http: UdsHttp::connect(socket_path).await?,
            public_base_url: public_base_url.to_owned(),
            key,
            lease: None,
        })
    }

    pub fn dpop_key(&self) -> &DpopKey {
        &self.key
    }

    pub fn lease(&self) -> Option<&Lease> {
        self.lease.as_ref()
    }

    /// Use a lease obtained elsewhere (or a deliberately bad one in tests).
    pub fn set_lease(&mut self, lease: Lease) {
        self.lease = Some(lease);
    }

    /// Raw access for requests this type has no helper for.
    pub fn http(&mut self) -> &mut UdsHttp {
        &mut self.http
    }

    /// `POST /v1/leases`; keeps the lease for later calls and returns it.
    pub async fn request_lease(&mut self, scopes: &[&str], budgets: LeaseBudgets) -> Result<Lease, ClientError> {
        let mut body = json!({"scopes": scopes, "dpop_jwk": self.key.public_jwk().to_value()});
        if budgets != LeaseBudgets::default() {
            body["budgets"] = serde_json::to_value(&budgets).map_err(|e| ClientError::InvalidRequest(e.to_string()))?;
        }
        let response = self.http.request(Method::POST, "/v1/leases", &[], Some(body.to_string().into_bytes())).await?;
        if response.status != StatusCode::OK && response.status != StatusCode::CREATED {
            return Err(ClientError::Api { status: response.status.as_u16(), body: response.json() });
        }
        let lease: Lease = serde_json::from_slice(&response.body)
            .map_err(|e| ClientError::BadResponse(format!("lease answer: {e}")))?;
        self.lease = Some(lease.clone());
        Ok(lease)
    }

    /// `POST /v1/actions/{id}/execute` with `params` as body. Any status is
    /// returned as is so callers can assert refusals.
    pub async fn execute(&mut self, action_id: &str, params: &Value) -> Result<(StatusCode, Value), ClientError> {
        let path = format!("/v1/actions/{action_id}/execute");
        let response = self.authed(Method::POST, &path, Some(params.to_string().into_bytes())).await?;
        Ok((response.status, response.json()))
    }

    /// An authenticated GET (approvals poll, receipts…).
    pub async fn get_authed(&mut self, path: &str) -> Result<(StatusCode, Value), ClientError> {
        let response = self.authed(Method::GET, path, None).await?;
        Ok((response.status, response.json()))
    }

    /// An unauthenticated GET (health, jwks, action list…).
    pub async fn get(&mut self, path: &str) -> Result<(StatusCode, Value), ClientError> {
        let response = self.http.request(Method::GET, path, &[], None).await?;
        Ok((response.status, response.json()))
    }

    /// Any method and path with the lease and a fresh proof for it.
    pub async fn authed(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<UdsResponse, ClientError> {
        let headers = self.auth_headers(&method, path)?;
        self.send_authed(method, path, &headers, body).await
    }

    /// The lease and a fresh proof for one request, made ahead of sending it
    /// (the benchmark times the gate's answer, not the agent's own signing).
    pub fn auth_headers(&self, method: &Method, path: &str) -> Result<AuthHeaders, ClientError> {
        let lease = self.lease.as_ref().ok_or(ClientError::NoLease)?;
        let htu = expected_htu(&self.public_base_url, path).map_err(|e| ClientError::InvalidRequest(e.to_string()))?;
        let dpop = self.key.proof(method.as_str(), &htu, Some(&lease.lease_jwt))?;
        Ok(AuthHeaders { authorization: format!("DPoP {}", lease.lease_jwt), dpop })
    }

    /// Sends one request with headers from [`GateClient::auth_headers`]
    /// (each proof is good for one request).
    pub async fn send_authed(
        &mut self,
        method: Method,
        path: &str,
        headers: &AuthHeaders,
        body: Option<Vec<u8>>,
    ) -> Result<UdsResponse, ClientError> {
        let headers = [("authorization", headers.authorization.as_str()), ("dpop", headers.dpop.as_str())];
        self.http.request(method, path, &headers, body).await
    }
}

/// `Authorization` and `DPoP` headers for one request.
#[derive(Debug, Clone)]
pub struct AuthHeaders {
    authorization: String,
    dpop: String,
}
