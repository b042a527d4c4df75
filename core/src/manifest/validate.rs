//! Rules a parsed manifest must satisfy beyond its types. Every rule reports the
//! dotted field path it is about; all broken rules of a manifest are reported
//! together so one load shows every problem.

use super::model::{InjectionTarget, Manifest, ProviderKind, VerifierKind};
use crate::action::{EgressProfile, HostImport, HttpTemplate, RiskLevel};
use std::collections::BTreeSet;

/// A broken rule: the field path and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleViolation {
    pub field: String,
    pub message: String,
}

#[derive(Default)]
struct Violations(Vec<RuleViolation>);

impl Violations {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(RuleViolation { field: field.into(), message: message.into() });
    }
}

pub const MAX_ACTION_ID_LEN: usize = 64;
/// Upper bound on `io.max_request_bytes`; the front's body limit applies first anyway.
pub const MAX_REQUEST_BYTES_CEILING: usize = 16 * 1024 * 1024;
pub const MAX_RESPONSE_BYTES_CEILING: usize = 64 * 1024 * 1024;
pub const MAX_TIMEOUT_SECONDS: u32 = 300;
/// A module starts with 17 pages (its 1 MiB stack); a cap below 2 MiB can never instantiate.
pub const MIN_MEMORY_MB: u32 = 2;

const HTTP_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];
/// Headers that carry credentials: only `secrets` may set them, so that a
/// credential is never written into a manifest or visible to the module.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "cookie", "proxy-authorization", "x-api-key"];

/// Every rule violation of `m`. `request_shape` is the request schema's
/// top-level `properties`/`required`, for checking template placeholders; `None`
/// when the schema could not be read (that error is reported on its own).
pub fn check(m: &Manifest, request_shape: Option<&RequestShape>) -> Vec<RuleViolation> {
    let mut v = Violations::default();
    check_identity(m, &mut v);
    check_provider(m, request_shape, &mut v);
    check_io(m, &mut v);
    check_limits(m, &mut v);
    check_egress(m, &mut v);
    check_secrets(m, &mut v);
    check_risk_and_verifier(m, &mut v);
    check_labels(m, &mut v);
    v.0
}

/// What the template checks need to know about the request schema.
#[derive(Clone, Debug, Default)]
pub struct RequestShape {
    pub properties: BTreeSet<String>,
    pub required: BTreeSet<String>,
    /// `properties.op.const`, which pins the `fs` provider's operation.
    pub op_const: Option<String>,
}

impl RequestShape {
    pub fn of(schema: &serde_json::Value) -> RequestShape {
        let properties = schema
            .get("properties")
            .and_then(|p| p.as_object())
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        let required = schema
            .get("required")
            .and_then(|r| r.as_array())
            .map(|r| r.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let op_const = schema.pointer("/properties/op/const").and_then(|c| c.as_str()).map(str::to_owned);
        RequestShape { properties, required, op_const }
    }
}

pub fn is_valid_action_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some('a'..='z'))
        && id.len() <= MAX_ACTION_ID_LEN
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '.' | '-'))
}

/// `sha256:` followed by exactly 64 lowercase hex digits.
pub fn is_valid_digest(digest: &str) -> bool {
    digest
        .strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// An allowlist entry: a lower-case DNS name in its ASCII (punycode) form, or
/// `*.` plus such a name with at least two labels. IP literals are refused: the
/// allowlist is about names, and the executor's SSRF rules decide addresses.
pub fn check_domain(entry: &str) -> Result<(), String> {
    let name = entry.strip_prefix("*.").unwrap_or(entry);
    if name.contains('*') {
        return Err(format!("`{entry}`: a wildcard is only allowed as a leading `*.`"));
    }
    if entry.starts_with("*.") && !name.contains('.') {
        return Err(format!("`{entry}`: a wildcard must cover a domain with at least two labels"));
    }
    match url::Host::parse(name) {
        Ok(url::Host::Domain(parsed)) if parsed == name => {}
        Ok(url::Host::Domain(parsed)) => {
            return Err(format!("`{entry}`: not in canonical form (expected `{parsed}`)"));
        }
        Ok(_) => return Err(format!("`{entry}`: IP addresses are not allowed, name a domain")),
        Err(e) => return Err(format!("`{entry}`: {e}")),
    }
    let labels_ok = name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    if !labels_ok {
        return Err(format!("`{entry}`: not a valid DNS name"));
    }
    if name.rsplit('.').next().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!("`{entry}`: looks like an IP address, name a domain"));
    }
    Ok(())
}

/// The placeholder name when a `url_template` is exactly one `{{name}}` and
/// nothing else: the whole URL is then a request parameter, passed to the host
/// unencoded (and checked there as a sink). In any other template each value
/// is percent-encoded as one URL component. `providers/http_api` applies the
/// same rule when it fills the template.
pub fn whole_url_placeholder(url_template: &str) -> Option<&str> {
    let inner = url_template.strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") {
        return None;
    }
    Some(inner.trim())
}

/// `{{name}}` placeholders of a template string, in order of appearance.
pub fn placeholders(template: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err("unterminated `{{`".into());
        };
        let name = after[..end].trim();
        let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(format!("invalid placeholder `{{{{{}}}}}`", &after[..end]));
        }
        out.push(name);
        rest = &after[end + 2..];
    }
    Ok(out)
}

fn check_identity(m: &Manifest, v: &mut Violations) {
    if !is_valid_action_id(&m.action_id) {
        v.push("action_id", format!("`{}` must match ^[a-z][a-z0-9_.-]{{0,63}}$", m.action_id));
    }
    if let Err(e) = semver::Version::parse(&m.version) {
        v.push("version", format!("`{}` is not a semantic version (MAJOR.MINOR.PATCH): {e}", m.version));
    }
    if m.description.trim().is_empty() {
        v.push("description", "must not be empty");
    }
    if !is_valid_digest(&m.provider_module_digest) {
        v.push("provider_module_digest", "must be `sha256:` followed by 64 lowercase hex digits");
    }
}

fn check_provider(m: &Manifest, shape: Option<&RequestShape>, v: &mut Violations) {
    let mut seen = BTreeSet::new();
    for (i, import) in m.required_imports.iter().enumerate() {
        if !seen.insert(*import) {
            v.push(format!("required_imports[{i}]"), "listed twice");
        }
    }
    let imports = |i: HostImport| m.required_imports.contains(&i);
    match m.provider {
        ProviderKind::HttpApi => {
            if !imports(HostImport::Http) {
                v.push("required_imports", "provider http_api needs `latchgate:io/http`");
            }
            if imports(HostImport::Fs) {
                v.push("required_imports", "provider http_api must not import `latchgate:io/fs`");
            }
            match &m.template {
                Some(t) => check_template(m, t, shape, v),
                None => v.push("template", "required for provider http_api"),
            }
            if m.fs.is_some() {
                v.push("fs", "only allowed for provider fs");
            }
        }
        ProviderKind::Fs => {
            if !imports(HostImport::Fs) {
                v.push("required_imports", "provider fs needs `latchgate:io/fs`");
            }
            if imports(HostImport::Http) {
                v.push("required_imports", "provider fs must not import `latchgate:io/http`");
            }
            if m.template.is_some() {
                v.push("template", "only allowed for provider http_api");
            }
            match &m.fs {
                Some(fs) => {
                    if fs.operation.mutates() && m.declared_side_effects.is_empty() {
                        v.push("declared_side_effects", "a mutating fs operation must declare its side effects");
                    }
                    // The provider takes its operation from the request's `op`; the
                    // schema must pin it so a read action can never be asked to delete.
                    let op = fs.operation.as_str();
                    let pinned = |s: &RequestShape| s.op_const.as_deref() == Some(op) && s.required.contains("op");
                    if shape.is_some_and(|s| !pinned(s)) {
                        v.push(
                            "io.request_schema",
                            format!("provider fs needs a required property `op` with const \"{op}\""),
                        );
                    }
                }
                None => v.push("fs", "required for provider fs (operation: read|create|overwrite|delete)"),
            }
        }
    }
}

fn check_template(m: &Manifest, t: &HttpTemplate, shape: Option<&RequestShape>, v: &mut Violations) {
    if !HTTP_METHODS.contains(&t.method.as_str()) {
        v.push("template.method", format!("`{}` must be one of {}", t.method, HTTP_METHODS.join(", ")));
    }
    let allowed_methods: Vec<&str> = if m.egress.allowed_methods.is_empty() {
        vec!["GET"]
    } else {
        m.egress.allowed_methods.iter().map(String::as_str).collect()
    };
    if !allowed_methods.contains(&t.method.as_str()) {
        v.push("template.method", format!("`{}` is not in egress.allowed_methods", t.method));
    }
    if !matches!(t.method.as_str(), "GET" | "HEAD") && m.declared_side_effects.is_empty() {
        v.push("declared_side_effects", format!("a {} request must declare its side effects", t.method));
    }
    check_url_template(m, &t.url_template, v);
    let mut vars: Vec<(&str, &str)> = Vec::new();
    match placeholders(&t.url_template) {
        Ok(names) => vars.extend(names.into_iter().map(|n| ("template.url_template", n))),
        Err(e) => v.push("template.url_template", e),
    }
    if let Some(body) = &t.body_template {
        match placeholders(body) {
            Ok(names) => {
                vars.extend(names.iter().map(|n| ("template.body_template", *n)));
                check_body_is_json(body, &names, v);
            }
            Err(e) => v.push("template.body_template", e),
        }
    }
    let Some(shape) = shape else { return check_headers(t, v) };
    for (field, name) in vars {
        if !shape.properties.contains(name) {
            v.push(field, format!("placeholder `{{{{{name}}}}}` is not a property of io.request_schema"));
        } else if !shape.required.contains(name) {
            v.push(field, format!("placeholder `{{{{{name}}}}}` must be listed in io.request_schema.required"));
        }
    }
    check_headers(t, v);
}

fn check_headers(t: &HttpTemplate, v: &mut Violations) {
    for name in t.headers.keys() {
        let lower = name.to_ascii_lowercase();
        let is_token =
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !is_token {
            v.push(format!("template.headers.{name}"), "not a valid header name");
        }
        if CREDENTIAL_HEADERS.contains(&lower.as_str()) || lower.starts_with("proxy-") {
            v.push(
                format!("template.headers.{name}"),
                "credential headers come from `secrets`, never from the template",
            );
        }
    }
}

/// The URL template must be absolute http(s); when its host is literal, the
/// host must be on the action's own allowlist (a manifest that can never pass
/// its own egress check is a mistake worth catching at load).
fn check_url_template(m: &Manifest, url_template: &str, v: &mut Violations) {
    let field = "template.url_template";
    if whole_url_placeholder(url_template).is_some() {
        // The host comes from the request; the executor checks it per call.
        return;
    }
    let Some((_, rest)) = url_template.split_once("://").filter(|(s, _)| matches!(*s, "https" | "http")) else {
        v.push(field, "must start with https:// or http:// (or be exactly one `{{url}}` placeholder)");
        return;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains("{{") || authority.contains('@') {
        v.push(field, "the host must be literal (no placeholders, no userinfo)");
        return;
    }
    let host = authority.split(':').next().unwrap_or_default().to_ascii_lowercase();
    let allowed = m.egress.allowed_domains.iter().any(|d| match d.strip_prefix("*.") {
        Some(base) => host.ends_with(&format!(".{base}")),
        None => *d == host,
    });
    if !allowed {
        v.push(field, format!("host `{host}` is not in egress.allowed_domains"));
    }
}

fn check_body_is_json(body: &str, names: &[&str], v: &mut Violations) {
    let mut probe = body.to_owned();
    for name in names {
        probe = probe.replace(&format!("{{{{{name}}}}}"), "null");
    }
    if let Err(e) = serde_json::from_str::<serde_json::Value>(&probe) {
        v.push("template.body_template", format!("not JSON once placeholders are filled: {e}"));
    }
}

fn check_io(m: &Manifest, v: &mut Violations) {
    if m.io.max_request_bytes == 0 || m.io.max_request_bytes > MAX_REQUEST_BYTES_CEILING {
        v.push("io.max_request_bytes", format!("must be between 1 and {MAX_REQUEST_BYTES_CEILING}"));
    }
    if m.io.max_response_bytes == 0 || m.io.max_response_bytes > MAX_RESPONSE_BYTES_CEILING {
        v.push("io.max_response_bytes", format!("must be between 1 and {MAX_RESPONSE_BYTES_CEILING}"));
    }
}

fn check_limits(m: &Manifest, v: &mut Violations) {
    let l = &m.resource_limits;
    if l.fuel == 0 {
        v.push("resource_limits.fuel", "must be positive");
    }
    if l.memory_mb < MIN_MEMORY_MB {
        v.push(
            "resource_limits.memory_mb",
            format!("must be at least {MIN_MEMORY_MB} (the module's stack alone is 1 MiB)"),
        );
    }
    if l.timeout_seconds == 0 || l.timeout_seconds > MAX_TIMEOUT_SECONDS {
        v.push("resource_limits.timeout_seconds", format!("must be between 1 and {MAX_TIMEOUT_SECONDS}"));
    }
    if l.max_io_calls == 0 {
        v.push("resource_limits.max_io_calls", "must be positive (a provider needs at least one host call)");
    }
    if l.max_host_response_bytes == 0 {
        v.push("resource_limits.max_host_response_bytes", "must be positive");
    }
}

fn check_egress(m: &Manifest, v: &mut Violations) {
    let e = &m.egress;
    match e.profile {
        EgressProfile::None => {
            if !e.allowed_domains.is_empty() {
                v.push("egress.allowed_domains", "must be empty when egress.profile is none");
            }
            if !e.allowed_methods.is_empty() {
                v.push("egress.allowed_methods", "must be empty when egress.profile is none");
            }
            if m.required_imports.contains(&HostImport::Http) {
                v.push("egress.profile", "an action importing `latchgate:io/http` needs proxy_allowlist");
            }
        }
        EgressProfile::ProxyAllowlist => {
            if e.allowed_domains.is_empty() {
                v.push("egress.allowed_domains", "proxy_allowlist needs at least one domain");
            }
            if !m.required_imports.contains(&HostImport::Http) {
                v.push("egress.profile", "proxy_allowlist without `latchgate:io/http` grants nothing; use none");
            }
        }
    }
    let mut seen = BTreeSet::new();
    for (i, d) in e.allowed_domains.iter().enumerate() {
        if let Err(msg) = check_domain(d) {
            v.push(format!("egress.allowed_domains[{i}]"), msg);
        }
        if !seen.insert(d) {
            v.push(format!("egress.allowed_domains[{i}]"), format!("`{d}` listed twice"));
        }
    }
    for (i, method) in e.allowed_methods.iter().enumerate() {
        if !HTTP_METHODS.contains(&method.as_str()) {
            v.push(
                format!("egress.allowed_methods[{i}]"),
                format!("`{method}` must be one of {}", HTTP_METHODS.join(", ")),
            );
        }
    }
}

fn check_secrets(m: &Manifest, v: &mut Violations) {
    let mut seen = BTreeSet::new();
    for (i, s) in m.secrets.iter().enumerate() {
        let at = format!("secrets[{i}]");
        if !super::model::is_valid_secret_name(&s.name) {
            v.push(format!("{at}.name"), format!("`{}` must match ^[A-Z][A-Z0-9_]{{0,63}}$", s.name));
        }
        if !seen.insert(&s.name) {
            v.push(format!("{at}.name"), format!("`{}` declared twice", s.name));
        }
        if !m.required_imports.contains(&HostImport::Http) {
            v.push(at.clone(), "secrets are injected into HTTP requests; this action has no `latchgate:io/http`");
        }
        match s.inject.target() {
            None => v.push(format!("{at}.inject"), "set exactly one of header, query, basic_auth"),
            Some(InjectionTarget::BasicAuth { username }) => {
                if s.inject.format.is_some() {
                    v.push(format!("{at}.inject.format"), "not used with basic_auth");
                }
                if username.is_empty() || username.contains(':') {
                    v.push(format!("{at}.inject.basic_auth.username"), "must be non-empty and contain no `:`");
                }
            }
            Some(InjectionTarget::Header { name, format }) | Some(InjectionTarget::Query { name, format }) => {
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                    v.push(format!("{at}.inject"), format!("`{name}` is not a valid header/parameter name"));
                }
                if format.matches("{}").count() != 1 {
                    v.push(format!("{at}.inject.format"), "must contain exactly one `{}`");
                }
            }
        }
    }
}

fn check_risk_and_verifier(m: &Manifest, v: &mut Violations) {
    let high = matches!(m.risk_level, RiskLevel::High | RiskLevel::Critical);
    if high && m.io.response_schema.is_none() {
        v.push("io.response_schema", "a high/critical-risk action needs a response schema");
    }
    if high && m.verifier_kind == VerifierKind::None {
        v.push("verifier_kind", "a high/critical-risk action needs a verifier other than none");
    }
    let c = &m.verification_config;
    match m.verifier_kind {
        VerifierKind::None | VerifierKind::FsEffect if !c.is_empty() => {
            v.push("verification_config", format!("verifier {} takes no configuration", m.verifier_kind.as_str()));
        }
        VerifierKind::HttpStatus => {
            if c.expected_status.is_empty() {
                v.push("verification_config.expected_status", "http_status needs at least one status");
            }
            for (i, s) in c.expected_status.iter().enumerate() {
                if !(100..=599).contains(s) {
                    v.push(format!("verification_config.expected_status[{i}]"), format!("{s} is not an HTTP status"));
                }
            }
            for (i, f) in c.required_fields.iter().enumerate() {
                if !f.starts_with('/') {
                    v.push(
                        format!("verification_config.required_fields[{i}]"),
                        format!("`{f}` must be a JSON Pointer such as `/body/id`"),
                    );
                }
            }
        }
        _ => {}
    }
    let provider_fits = match m.verifier_kind {
        VerifierKind::None => true,
        VerifierKind::HttpStatus => m.provider == ProviderKind::HttpApi,
        VerifierKind::FsEffect => m.provider == ProviderKind::Fs,
    };
    if !provider_fits {
        v.push(
            "verifier_kind",
            format!("verifier {} does not fit provider {}", m.verifier_kind.as_str(), m.provider.as_str()),
        );
    }
}

fn check_labels(m: &Manifest, v: &mut Violations) {
    for (i, effect) in m.declared_side_effects.iter().enumerate() {
        if effect.trim().is_empty() {
            v.push(format!("declared_side_effects[{i}]"), "must not be empty");
        }
    }
    let mut seen = BTreeSet::new();
    for (i, scope) in m.required_scopes.iter().enumerate() {
        let ok = scope.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
            && scope.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.:-".contains(&b));
        if !ok {
            v.push(format!("required_scopes[{i}]"), format!("`{scope}` must match ^[a-z][a-z0-9_.:-]*$"));
        }
        if !seen.insert(scope) {
            v.push(format!("required_scopes[{i}]"), format!("`{scope}` listed twice"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_rules_refuse_ip_literals_and_bare_wildcards() {
        assert!(check_domain("api.github.com").is_ok());
        assert!(check_domain("*.example.com").is_ok());
        assert!(check_domain("localhost").is_ok());
        assert!(check_domain("127.0.0.1").is_err());
        assert!(check_domain("[::1]").is_err());
        assert!(check_domain("*.com").is_err());
        assert!(check_domain("a.*.com").is_err());
        assert!(check_domain("API.github.com").is_err());
        assert!(check_domain("exa mple.com").is_err());
        assert!(check_domain("-bad.com").is_err());
        assert!(check_domain("example.com:443").is_err());
    }

    #[test]
    fn digest_format_is_strict() {
        let hex = "a".repeat(64);
        assert!(is_valid_digest(&format!("sha256:{hex}")));
        assert!(!is_valid_digest(&format!("sha256:{}", "A".repeat(64))));
        assert!(!is_valid_digest(&format!("sha512:{hex}")));
        assert!(!is_valid_digest(&format!("sha256:{}", &hex[1..])));
    }

    #[test]
    fn placeholders_are_extracted_and_malformed_ones_refused() {
        assert_eq!(placeholders("https://x/{{owner}}/{{ repo }}").unwrap(), vec!["owner", "repo"]);
        assert!(placeholders("https://x/{{owner").is_err());
        assert!(placeholders("https://x/{{a-b}}").is_err());
    }

    #[test]
    fn only_a_template_that_is_one_placeholder_is_a_whole_url() {
        assert_eq!(whole_url_placeholder("{{url}}"), Some("url"));
        assert_eq!(whole_url_placeholder("{{ url }}"), Some("url"));
        assert_eq!(whole_url_placeholder(" {{url}}"), None);
        assert_eq!(whole_url_placeholder("{{host}}/path"), None);
        assert_eq!(whole_url_placeholder("{{a}}{{b}}"), None);
        assert_eq!(whole_url_placeholder("https://x/{{id}}"), None);
    }

    #[test]
    fn action_id_pattern() {
        assert!(is_valid_action_id("github.issue_create"));
        assert!(!is_valid_action_id("Github"));
        assert!(!is_valid_action_id("1abc"));
        assert!(!is_valid_action_id(&"a".repeat(65)));
        assert!(is_valid_action_id(&"a".repeat(64)));
    }
}
