//! `latchgate:io/http`: the egress order, steps 1–5, for one provider request,
//! with the call's secrets added at the transport layer (step 5) and scrubbed
//! from everything handed back to the provider.

use super::CallState;
use super::latchgate::io::http::{Header, Host, Request, Response};
use super::latchgate::io::types::IoError;
use crate::egress::{FetchError, OutboundRequest};
use crate::task::{FailureClass, HttpObservation, IoObservation};
use latchgate_core::action::HostImport;
use latchgate_core::jcs::sha256_tagged;
use std::time::{Duration, Instant};

impl Host for CallState {
    async fn send(&mut self, req: Request) -> wasmtime::Result<Result<Response, IoError>> {
        self.admit_io(HostImport::Http)?;
        let started = Instant::now();
        let mut observation = HttpObservation {
            method: req.method.to_ascii_uppercase(),
            sink: String::new(),
            connected_to: None,
            via_proxy: self.egress.uses_proxy(),
            status: None,
            response_bytes: 0,
            response_sha256: None,
            stripped_headers: Vec::new(),
            error: None,
            duration_us: 0,
        };
        let egress = self.egress.clone();
        let authorized = egress.authorize(&req.url, &req.method, &self.egress_rules, &self.grant_sinks).await;
        let destination = match authorized {
            Ok(d) => d,
            Err(denied) => {
                observation.error = Some(denied.code().to_string());
                observation.duration_us = micros(started.elapsed());
                self.observations.push(IoObservation::Http(observation));
                return Err(self.violate(FailureClass::EgressDenied, denied.to_string()));
            }
        };
        observation.sink = destination.origin();
        let credentials = if self.secrets.is_empty() {
            Default::default()
        } else if egress.may_carry_secrets(&destination) {
            self.secrets.credentials()
        } else {
            observation.error = Some("secrets_need_https".into());
            observation.duration_us = micros(started.elapsed());
            self.observations.push(IoObservation::Http(observation));
            let detail = format!(
                "secrets ({}) are sent only over https, not to {}",
                self.secrets.names().join(", "),
                destination.origin()
            );
            return Err(self.violate(FailureClass::EgressDenied, detail));
        };
        if !egress.uses_proxy() {
            observation.connected_to = Some(destination.pinned.to_string());
        }
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let timeout = Duration::from_millis(u64::from(req.timeout_ms)).min(remaining);
        let outbound = OutboundRequest {
            method: req.method,
            url: req.url,
            headers: req.headers.into_iter().map(|h| (h.name, h.value)).collect(),
            body: req.body,
            credentials,
        };
        let result = if timeout.is_zero() {
            Err(FetchError::Timeout)
        } else {
            egress.send(&destination, &outbound, timeout, self.max_host_response_bytes).await
        };
        observation.duration_us = micros(started.elapsed());
        let secrets = &self.secrets;
        let answer = match result {
            Ok((response, stripped)) => {
                // Everything below is what the provider (and from it the
                // agent, receipts and logs) may see: scrubbed of the secrets.
                let body = if secrets.is_empty() { response.body.to_vec() } else { secrets.redact(&response.body) };
                observation.stripped_headers = stripped;
                observation.status = Some(response.status);
                observation.response_bytes = body.len() as u64;
                observation.response_sha256 = Some(sha256_tagged(&body));
                Ok(Response {
                    status: response.status,
                    headers: response
                        .headers
                        .into_iter()
                        .map(|(name, value)| Header {
                            name: secrets.redact_text(&name),
                            value: secrets.redact_text(&value),
                        })
                        .collect(),
                    body,
                })
            }
            Err(e) => {
                observation.error = Some(e.code().to_string());
                Err(match e {
                    FetchError::InvalidRequest(m) => IoError::InvalidRequest(secrets.redact_text(&m)),
                    FetchError::Network(m) => IoError::Network(secrets.redact_text(&m)),
                    FetchError::Timeout => IoError::Timeout,
                    FetchError::ResponseTooLarge => IoError::ResponseTooLarge,
                })
            }
        };
        self.observations.push(IoObservation::Http(observation));
        Ok(answer)
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
