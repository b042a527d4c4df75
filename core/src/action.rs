//! The vocabulary an action manifest shares with the executor: resource limits,
//! egress rules and the HTTP template. The manifest loader (`manifest`) builds
//! these; the broker ships them to the executor inside a `RunTask`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Per-call limits (`resource_limits` in a manifest).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceLimits {
    /// wasmtime fuel units for one call.
    pub fuel: u64,
    /// Linear memory cap in MiB (must exceed the module's initial memory).
    pub memory_mb: u32,
    /// Wall-clock deadline for one call (epoch interruption + outer timeout).
    pub timeout_seconds: u32,
    /// Host I/O calls one execution may make.
    pub max_io_calls: u32,
    /// Largest host response body handed back to the provider.
    pub max_host_response_bytes: u64,
}

impl Default for ResourceLimits {
    fn default() -> Self {
        ResourceLimits {
            fuel: 50_000_000,
            memory_mb: 64,
            timeout_seconds: 10,
            max_io_calls: 8,
            max_host_response_bytes: 1024 * 1024,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EgressProfile {
    /// No network at all.
    None,
    /// Only the listed domains, through the host HTTP import (and the proxy when configured).
    ProxyAllowlist,
}

/// Egress rules of one action (`egress` in a manifest).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressRules {
    pub profile: EgressProfile,
    /// Exact host names or a leading `*.` wildcard.
    #[serde(default)]
    pub allowed_domains: Vec<String>,
    /// Upper-case HTTP methods; empty means GET only.
    #[serde(default)]
    pub allowed_methods: Vec<String>,
}

impl EgressRules {
    pub fn none() -> Self {
        EgressRules { profile: EgressProfile::None, allowed_domains: vec![], allowed_methods: vec![] }
    }
}

/// Host interfaces a provider may import (`required_imports` in a manifest).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum HostImport {
    #[serde(rename = "latchgate:io/http")]
    Http,
    #[serde(rename = "latchgate:io/log")]
    Log,
    #[serde(rename = "latchgate:io/fs")]
    Fs,
}

/// Template of the `http_api` provider (`template` in a manifest).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTemplate {
    pub method: String,
    /// `{{var}}` placeholders filled from top-level request fields, percent-encoded.
    pub url_template: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// JSON text with `{{var}}` placeholders; values are JSON-encoded when filled.
    #[serde(default)]
    pub body_template: Option<String>,
}

/// Risk level of an action; high and critical need a response schema, a verifier
/// and (by default policy) human approval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskLevel {
    Low,
    Medium,
    High,
    Critical,
}

/// Why a URL template could not be filled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template variable {{{{{0}}}}} is not a request field")]
    UnknownVariable(String),
    #[error("request field {0} must be a string, number or boolean to fill the template")]
    NotScalar(String),
    #[error("url_template has an unterminated placeholder")]
    Unterminated,
}

/// RFC 3986 unreserved characters stay; everything else is percent-encoded.
const URL_COMPONENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

impl HttpTemplate {
    /// The URL the provider will request, filled exactly as the `http_api`
    /// provider fills it (providers/README.md): a template that is one
    /// placeholder (the validator's `whole_url_placeholder`) takes the field
    /// as the whole URL; anywhere else a value is
    /// percent-encoded as a URL component, so it can never change the host.
    pub fn render_url(&self, params: &serde_json::Value) -> Result<String, TemplateError> {
        let template = self.url_template.as_str();
        if let Some(name) = crate::manifest::validate::whole_url_placeholder(template) {
            return scalar(params, name);
        }
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or(TemplateError::Unterminated)?;
            let value = scalar(params, after[..end].trim())?;
            out.extend(percent_encoding::utf8_percent_encode(&value, URL_COMPONENT));
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

fn scalar(params: &serde_json::Value, name: &str) -> Result<String, TemplateError> {
    match params.get(name) {
        None => Err(TemplateError::UnknownVariable(name.to_string())),
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => Ok(v.to_string()),
        Some(_) => Err(TemplateError::NotScalar(name.to_string())),
    }
}

#[cfg(test)]
mod template_tests {
    use super::*;
    use serde_json::json;

    fn template(url: &str) -> HttpTemplate {
        HttpTemplate { method: "GET".into(), url_template: url.into(), headers: BTreeMap::new(), body_template: None }
    }

    #[test]
    fn whole_url_placeholder_passes_the_url_through() {
        let url = template("{{url}}").render_url(&json!({"url": "https://example.com/a?b=c"})).unwrap();
        assert_eq!(url, "https://example.com/a?b=c");
    }

    #[test]
    fn component_values_are_percent_encoded_and_cannot_move_the_host() {
        let t = template("https://api.github.com/repos/{{owner}}/{{repo}}/issues");
        let url = t.render_url(&json!({"owner": "evil.com/x?y#z &", "repo": 7})).unwrap();
        assert_eq!(url, "https://api.github.com/repos/evil.com%2Fx%3Fy%23z%20%26/7/issues");
        let at = template("https://{{host}}.example.com/").render_url(&json!({"host": "a@b"})).unwrap();
        assert_eq!(at, "https://a%40b.example.com/");
    }

    #[test]
    fn unknown_and_non_scalar_variables_are_errors() {
        let t = template("https://x.test/{{id}}");
        assert_eq!(t.render_url(&json!({})), Err(TemplateError::UnknownVariable("id".into())));
        assert_eq!(t.render_url(&json!({"id": [1]})), Err(TemplateError::NotScalar("id".into())));
        assert_eq!(template("https://x.test/{{id").render_url(&json!({"id": 1})), Err(TemplateError::Unterminated));
    }
}
