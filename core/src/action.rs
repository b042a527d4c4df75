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
