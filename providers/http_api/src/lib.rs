//! `http_api`: fills the manifest's HTTP template from the request's top-level
//! fields and performs one call through `latchgate:io/http`. Everything about
//! the network (allowlist, SSRF, credentials) is the host's job; this provider
//! only builds the request and shapes the response.

mod template;

wit_bindgen::generate!({ path: "../wit", world: "latchgate:provider/provider", generate_all });

use latchgate::io::http;
use latchgate::io::types::IoError;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
struct Task {
    params: serde_json::Map<String, serde_json::Value>,
    template: Option<Template>,
}

#[derive(Deserialize)]
struct Template {
    method: String,
    url_template: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body_template: Option<String>,
}

/// Default per-request timeout; the host caps it by the call's remaining time.
const REQUEST_TIMEOUT_MS: u32 = 10_000;

struct HttpApi;

impl Guest for HttpApi {
    fn execute(task: String) -> Result<String, ProviderError> {
        let task: Task =
            serde_json::from_str(&task).map_err(|e| error("invalid_task", e.to_string()))?;
        let template = task.template.ok_or_else(|| error("missing_template", "the action has no HTTP template"))?;
        let url = template::fill_url(&template.url_template, &task.params).map_err(template_error)?;
        let body = match &template.body_template {
            Some(body) => Some(template::fill_json_body(body, &task.params).map_err(template_error)?),
            None => None,
        };
        let mut headers: Vec<http::Header> = template
            .headers
            .iter()
            .map(|(name, value)| http::Header { name: name.clone(), value: value.clone() })
            .collect();
        if body.is_some() && !template.headers.keys().any(|k| k.eq_ignore_ascii_case("content-type")) {
            headers.push(http::Header { name: "content-type".into(), value: "application/json".into() });
        }
        let request = http::Request {
            method: template.method.to_ascii_uppercase(),
            url,
            headers,
            body: body.map(String::into_bytes),
            timeout_ms: REQUEST_TIMEOUT_MS,
        };
        let response = http::send(&request).map_err(io_error)?;
        Ok(shape_response(response).to_string())
    }
}

/// `{"status": u16, "content_type": str|null, "body": <JSON if the body parses, else text>}`.
fn shape_response(response: http::Response) -> serde_json::Value {
    let content_type = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-type"))
        .map(|h| h.value.clone());
    let body = match serde_json::from_slice::<serde_json::Value>(&response.body) {
        Ok(json) => json,
        Err(_) => serde_json::Value::String(String::from_utf8_lossy(&response.body).into_owned()),
    };
    serde_json::json!({ "status": response.status, "content_type": content_type, "body": body })
}

fn error(code: &str, message: impl Into<String>) -> ProviderError {
    ProviderError { code: code.into(), message: message.into() }
}

fn template_error(e: template::TemplateError) -> ProviderError {
    error(e.code(), e.to_string())
}

fn io_error(e: IoError) -> ProviderError {
    let (code, message) = match e {
        IoError::InvalidRequest(m) => ("invalid_request", m),
        IoError::Network(m) => ("network_error", m),
        IoError::Timeout => ("upstream_timeout", String::new()),
        IoError::ResponseTooLarge => ("response_too_large", String::new()),
        other => ("io_error", format!("{other:?}")),
    };
    error(code, message)
}

export!(HttpApi);
