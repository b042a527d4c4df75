//! The operator side of the admin socket: every request carries
//! `Authorization: DPoP <api_key>` and a fresh proof signed by the operator's
//! key (`ath` over the api key, `htu` from the gate's `public_base_url`).

use std::path::Path;

use http::Method;
use latchgate_core::jose::expected_htu;

use crate::dpop_key::DpopKey;
use crate::error::ClientError;
use crate::uds_http::{UdsHttp, UdsResponse};

#[derive(Debug)]
pub struct OperatorClient {
    http: UdsHttp,
    public_base_url: String,
    api_key: String,
    key: DpopKey,
}

impl OperatorClient {
    pub async fn connect(
        admin_socket: impl AsRef<Path>,
        public_base_url: &str,
        api_key: &str,
        key: DpopKey,
    ) -> Result<OperatorClient, ClientError> {
        Ok(OperatorClient {
            http: UdsHttp::connect(admin_socket).await?,
            public_base_url: public_base_url.to_owned(),
            api_key: api_key.to_owned(),
            key,
        })
    }

    pub fn dpop_key(&self) -> &DpopKey {
        &self.key
    }

    /// Raw access (unauthenticated requests, hand-made headers in tests).
    pub fn http(&mut self) -> &mut UdsHttp {
        &mut self.http
    }

    /// The two headers for `method` on `path` (the query, if any, is not part of `htu`).
    pub fn auth_headers(&self, method: &Method, path: &str) -> Result<(String, String), ClientError> {
        let route = path.split('?').next().unwrap_or(path);
        let htu = expected_htu(&self.public_base_url, route).map_err(|e| ClientError::InvalidRequest(e.to_string()))?;
        let proof = self.key.proof(method.as_str(), &htu, Some(&self.api_key))?;
        Ok((format!("DPoP {}", self.api_key), proof))
    }

    /// One authenticated request; any status is returned as is.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<UdsResponse, ClientError> {
        let (authorization, proof) = self.auth_headers(&method, path)?;
        self.http.request(method, path, &[("authorization", &authorization), ("dpop", &proof)], body).await
    }

    pub async fn get(&mut self, path: &str) -> Result<UdsResponse, ClientError> {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&mut self, path: &str, body: &serde_json::Value) -> Result<UdsResponse, ClientError> {
        self.request(Method::POST, path, Some(body.to_string().into_bytes())).await
    }
}
