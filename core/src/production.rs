//! Production-safety validation: what `latchgate serve` refuses to start with
//! and what `latchgate doctor` reports (docs/production.md). One function, so
//! the two can never disagree; one [`Violation`] per problem, each with a
//! stable id, the config field it is about, and what to do.

use crate::action::EgressProfile;
use crate::config::{Confinement, IdentityProvider, LoadedConfig, SchemaEnforcement};
use crate::manifest::Registry;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Cargo features of this build that must never reach production. The test
/// crate enables `escape-probe` (a socket through which tests make a sealed
/// process try forbidden operations); release builds never do.
pub const DEVELOPMENT_FEATURES: &[&str] = &[
    #[cfg(feature = "escape-probe")]
    "escape-probe",
];

/// Test builds only (the variable is read only when a development feature is
/// compiled in): lets the end-to-end tests start `latchgate serve` from a
/// binary that carries the probe. It changes nothing in a release build.
pub const ACCEPT_DEVELOPMENT_BUILD_ENV: &str = "LATCHGATE_TEST_ACCEPT_DEVELOPMENT_BUILD";

/// How the binary was built, as far as production safety cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildInfo {
    pub development_features: Vec<&'static str>,
    /// A test set [`ACCEPT_DEVELOPMENT_BUILD_ENV`] on a development build.
    pub development_accepted: bool,
}

impl BuildInfo {
    pub fn current() -> BuildInfo {
        let development_features = DEVELOPMENT_FEATURES.to_vec();
        let development_accepted =
            !development_features.is_empty() && std::env::var(ACCEPT_DEVELOPMENT_BUILD_ENV).is_ok_and(|v| v == "1");
        BuildInfo { development_features, development_accepted }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Stable id (`identity_provider_none`, …) for tests, logs and `doctor --json`.
    pub id: &'static str,
    /// The config key (or file) concerned.
    pub field: String,
    pub message: String,
    pub remediation: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} [{}] (fix: {})", self.field, self.message, self.id, self.remediation)
    }
}

fn violation(id: &'static str, field: impl Into<String>, message: impl Into<String>, fix: &str) -> Violation {
    Violation { id, field: field.into(), message: message.into(), remediation: fix.to_string() }
}

/// Every reason `cfg` (whose file text is `file_text`) must not run in
/// production. Empty = safe to serve.
pub fn violations(cfg: &LoadedConfig, file_text: &str, build: &BuildInfo) -> Vec<Violation> {
    let c = &cfg.config;
    let mut found = Vec::new();
    if c.identity.provider == IdentityProvider::None {
        found.push(violation(
            "identity_provider_none",
            "identity.provider",
            "identity provider is \"none\": callers would not be identified",
            "set identity.provider = \"peercred\" and map agent uids in [identity.peercred.principals]",
        ));
    }
    if c.identity.peercred.allow_unmapped {
        found.push(violation(
            "allow_unmapped",
            "identity.peercred.allow_unmapped",
            "allow_unmapped = true: a uid without a principal mapping would be served",
            "set identity.peercred.allow_unmapped = false and map every agent uid",
        ));
    }
    operator_credential_violations(c, &mut found);
    if let Some(addr) = c.listen_tcp_addr
        && !c.unsafe_expose_http
    {
        found.push(violation(
            "tcp_listener_without_unsafe_expose_http",
            "listen_tcp_addr",
            format!("a plain-HTTP TCP listener on {addr} is configured without unsafe_expose_http = true"),
            "remove listen_tcp_addr (agents use the Unix socket), or acknowledge with unsafe_expose_http = true",
        ));
    }
    if !keys_dir_is_explicit(file_text) {
        found.push(violation(
            "key_paths_unset",
            "keys.dir",
            "the signing-key directory (private keys and the receipt-key JWKS history) is not set in the config \
             file: the gate would sign with keys from an implicit location",
            "set [keys] dir = \"/var/lib/latchgate/keys\" (an absolute, persistent path)",
        ));
    }
    if c.response_schema_enforcement == SchemaEnforcement::Warn {
        found.push(violation(
            "response_schema_enforcement_warn",
            "response_schema_enforcement",
            "response_schema_enforcement = \"warn\": provider output violating its schema would be returned",
            "set response_schema_enforcement = \"deny\"",
        ));
    }
    if c.confinement != Confinement::Strict {
        found.push(violation(
            "confinement_not_strict",
            "confinement",
            "confinement = \"best_effort\": a process would start with a missing seccomp or Landlock layer",
            "set confinement = \"strict\"",
        ));
    }
    if !c.egress.allow_private_destinations.is_empty() {
        let list: Vec<String> = c.egress.allow_private_destinations.iter().map(ToString::to_string).collect();
        found.push(violation(
            "private_destinations_allowed",
            "egress.allow_private_destinations",
            format!("the test-only private-destination list is set ({}): SSRF protection is bypassed", list.join(", ")),
            "remove egress.allow_private_destinations",
        ));
    }
    if !c.webhook_delivery.allow_insecure_destinations.is_empty() {
        let list: Vec<String> =
            c.webhook_delivery.allow_insecure_destinations.iter().map(ToString::to_string).collect();
        found.push(violation(
            "insecure_webhook_destinations_allowed",
            "webhook_delivery.allow_insecure_destinations",
            format!("the test-only plain-http webhook destinations are set ({})", list.join(", ")),
            "remove webhook_delivery.allow_insecure_destinations; receivers must be https",
        ));
    }
    found.extend(key_file_violations(&cfg.key_dir()));
    if let Some((_, age_key)) = cfg.secrets_files() {
        let mode = std::fs::metadata(&age_key).map(|m| m.mode() & 0o7777).unwrap_or(0);
        if mode & 0o077 != 0 {
            found.push(violation(
                "key_file_permissions",
                "secrets.sops_key_file",
                format!("age key {} has mode {mode:04o}: group or others can read it", age_key.display()),
                &format!("chmod 600 {}", age_key.display()),
            ));
        }
    }
    if !build.development_features.is_empty() && !build.development_accepted {
        found.push(violation(
            "development_build",
            "binary",
            format!("this binary was built with development feature(s) {}", build.development_features.join(", ")),
            "install a release build (make build-release names its packages so test features stay out)",
        ));
    }
    found
}

fn operator_credential_violations(c: &crate::config::Config, found: &mut Vec<Violation>) {
    let mut by_key: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, credential) in &c.operator_credentials {
        if credential.dpop_jkt.as_deref().is_none_or(|jkt| jkt.trim().is_empty()) {
            found.push(violation(
                "operator_credential_without_dpop_jkt",
                format!("operator_credentials.{name}.dpop_jkt"),
                format!("operator {name} has no dpop_jkt: its api_key alone would be a bearer token"),
                "set dpop_jkt to the RFC 7638 thumbprint of the operator's P-256 key",
            ));
        }
        by_key.entry(credential.api_key.as_str()).or_default().push(name.as_str());
    }
    for names in by_key.values().filter(|names| names.len() > 1) {
        found.push(violation(
            "operator_api_key_shared",
            format!("operator_credentials.{}", names.join(", operator_credentials.")),
            format!("operators {} share one api_key: actions could not be told apart", names.join(" and ")),
            "give every operator its own api_key",
        ));
    }
}

/// `[keys] dir` written in the file itself (the default is a relative `keys`).
fn keys_dir_is_explicit(file_text: &str) -> bool {
    let Ok(table) = file_text.parse::<toml::Table>() else { return false };
    table.get("keys").and_then(|k| k.get("dir")).and_then(|d| d.as_str()).is_some_and(|d| !d.trim().is_empty())
}

/// Key material readable by group or others. A missing dir or file is not a
/// violation: the signer creates them 0700/0600 on first start.
pub fn key_file_violations(key_dir: &Path) -> Vec<Violation> {
    let mut found = Vec::new();
    let Ok(meta) = std::fs::symlink_metadata(key_dir) else { return found };
    let fix = |path: &Path, mode: u32| format!("chmod {mode:o} {}", path.display());
    if meta.mode() & 0o077 != 0 {
        found.push(violation(
            "key_file_permissions",
            key_dir.display().to_string(),
            format!("key directory has mode {:04o}: group or others have access", meta.mode() & 0o7777),
            &fix(key_dir, 0o700),
        ));
    }
    let Ok(entries) = std::fs::read_dir(key_dir) else { return found };
    let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        if meta.is_file() && meta.mode() & 0o077 != 0 {
            found.push(violation(
                "key_file_permissions",
                path.display().to_string(),
                format!("key file has mode {:04o}: group or others can read it", meta.mode() & 0o7777),
                &fix(&path, 0o600),
            ));
        }
    }
    found
}

/// Actions whose egress relies on a proxy allowlist while no proxy is
/// configured: they still run, limited by the executor's own checks and the
/// kernel's port rules only. One warning naming every such action.
pub fn egress_warnings(cfg: &LoadedConfig, registry: &Registry) -> Vec<String> {
    if cfg.config.egress.proxy_url.is_some() {
        return Vec::new();
    }
    let mut actions: Vec<&str> = registry
        .iter()
        .filter(|a| a.manifest().egress.profile == EgressProfile::ProxyAllowlist)
        .map(|a| a.id())
        .collect();
    if actions.is_empty() {
        return Vec::new();
    }
    actions.sort_unstable();
    vec![format!(
        "{} action(s) use egress proxy_allowlist but egress.proxy_url is not set: their egress is enforced by the \
         executor's allowlist and the kernel's port rules only (kernel-only egress), with no egress proxy as a \
         second layer: {}",
        actions.len(),
        actions.join(", ")
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const CLEAN: &str = r#"
mode = "production"
confinement = "strict"
[keys]
dir = "keys"
[redis]
url = "unix:///run/redis.sock"
[opa]
url = "http://127.0.0.1:8181"
[operator_credentials.alice]
api_key = "k1"
dpop_jkt = "jkt-a"
"#;

    fn release() -> BuildInfo {
        BuildInfo { development_features: vec![], development_accepted: false }
    }

    fn ids(text: &str, build: &BuildInfo) -> Vec<&'static str> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latchgate.toml");
        let cfg = LoadedConfig::from_str(&path, text).unwrap();
        violations(&cfg, text, build).into_iter().map(|v| v.id).collect()
    }

    #[test]
    fn clean_production_config_has_no_violation() {
        assert_eq!(ids(CLEAN, &release()), Vec::<&str>::new());
    }

    #[test]
    fn each_unsafe_setting_is_one_named_violation() {
        let cases = [
            ("[identity]\nprovider = \"none\"\n", "identity_provider_none"),
            ("[identity.peercred]\nallow_unmapped = true\n", "allow_unmapped"),
            ("[operator_credentials.bob]\napi_key = \"k2\"\n", "operator_credential_without_dpop_jkt"),
            ("[operator_credentials.bob]\napi_key = \"k1\"\ndpop_jkt = \"jkt-b\"\n", "operator_api_key_shared"),
            ("listen_tcp_addr = \"127.0.0.1:8080\"\n", "tcp_listener_without_unsafe_expose_http"),
            ("response_schema_enforcement = \"warn\"\n", "response_schema_enforcement_warn"),
            ("[egress]\nallow_private_destinations = [\"127.0.0.1:9\"]\n", "private_destinations_allowed"),
            (
                "[webhook_delivery]\nallow_insecure_destinations = [\"127.0.0.1:9\"]\n",
                "insecure_webhook_destinations_allowed",
            ),
        ];
        for (extra, id) in cases {
            // Top-level keys must precede the tables of CLEAN.
            let text = if extra.starts_with('[') { format!("{CLEAN}{extra}") } else { format!("{extra}{CLEAN}") };
            assert_eq!(ids(&text, &release()), vec![id], "{extra}");
        }
        assert_eq!(ids(&CLEAN.replace("\"strict\"", "\"best_effort\""), &release()), vec!["confinement_not_strict"]);
        assert_eq!(ids(&CLEAN.replace("[keys]\ndir = \"keys\"\n", ""), &release()), vec!["key_paths_unset"]);
        let acknowledged = format!("listen_tcp_addr = \"127.0.0.1:8080\"\nunsafe_expose_http = true\n{CLEAN}");
        assert_eq!(ids(&acknowledged, &release()), Vec::<&str>::new());
    }

    #[test]
    fn development_build_is_refused_unless_a_test_accepts_it() {
        let dev = BuildInfo { development_features: vec!["escape-probe"], development_accepted: false };
        assert_eq!(ids(CLEAN, &dev), vec!["development_build"]);
        let accepted = BuildInfo { development_accepted: true, ..dev };
        assert!(ids(CLEAN, &accepted).is_empty());
        assert_eq!(BuildInfo::current().development_features, DEVELOPMENT_FEATURES);
    }

    #[test]
    fn group_or_world_readable_key_material_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700)).unwrap();
        let good = keys.join("grant-ed25519.p8");
        let bad = keys.join("lease-es256.p8");
        for (path, mode) in [(&good, 0o600), (&bad, 0o640)] {
            std::fs::write(path, b"k").unwrap();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let found = key_file_violations(&keys);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].field.ends_with("lease-es256.p8") && found[0].message.contains("0640"), "{:?}", found[0]);
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(key_file_violations(&keys).len(), 2);
        assert!(key_file_violations(&dir.path().join("missing")).is_empty());
    }

    #[test]
    fn proxy_allowlist_actions_without_a_proxy_are_named_in_one_warning() {
        let registry = Registry::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests")).unwrap();
        let cfg = LoadedConfig::from_str(Path::new("/x/latchgate.toml"), "").unwrap();
        let warnings = egress_warnings(&cfg, &registry);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("http_fetch") && warnings[0].contains("kernel-only egress"), "{warnings:?}");
        let proxied = "[egress]\nproxy_url = \"http://127.0.0.1:3128\"\n";
        let cfg = LoadedConfig::from_str(Path::new("/x/latchgate.toml"), proxied).unwrap();
        assert!(egress_warnings(&cfg, &registry).is_empty());
    }
}
