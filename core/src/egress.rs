//! Egress rules shared by the broker's pre-check, the executor's host HTTP
//! import and the CLI's Squid config generator, so that all three agree on
//! what "allowed" means: one domain matcher, one sink check, one proxy config.
//!
//! The executor adds what only it can do (DNS resolution, address
//! classification, pinning); everything here is pure and needs no network.

use crate::action::{EgressProfile, EgressRules};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use url::{Host, Url};

/// Ports reachable without extra configuration.
pub const DEFAULT_PORTS: [u16; 2] = [80, 443];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    #[error("the action has no network egress")]
    NoEgress,
    #[error("URL does not parse: {0}")]
    UnparsableUrl(String),
    #[error("scheme `{0}` is not http or https")]
    Scheme(String),
    #[error("URL carries userinfo")]
    Userinfo,
    #[error("URL has no host")]
    NoHost,
    #[error("port {0} is not allowed")]
    Port(u16),
    #[error("host `{0}` is not in the allowlist")]
    Domain(String),
    #[error("method `{0}` is not allowed")]
    Method(String),
}

impl SinkError {
    /// Stable reason string for logs, observations and deny reasons.
    pub fn code(&self) -> &'static str {
        match self {
            SinkError::NoEgress => "egress_none",
            SinkError::UnparsableUrl(_) => "url_unparsable",
            SinkError::Scheme(_) => "scheme_not_allowed",
            SinkError::Userinfo => "url_userinfo",
            SinkError::NoHost => "url_no_host",
            SinkError::Port(_) => "port_not_allowed",
            SinkError::Domain(_) => "domain_not_allowed",
            SinkError::Method(_) => "method_not_allowed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("allowlist entry `{0}` is not a lower-case host name, IP address or `*.` + host name")]
    Invalid(String),
}

impl PatternError {
    pub fn code(&self) -> &'static str {
        "egress_pattern_invalid"
    }
}

/// Checks one allowlist entry: a host name (`api.example.com`), an IP literal
/// (`127.0.0.1`, exact match only) or a leading wildcard over at least two
/// labels (`*.example.com`; never `*.com`, never `a.*.com`).
pub fn validate_pattern(pattern: &str) -> Result<(), PatternError> {
    let invalid = || PatternError::Invalid(pattern.to_string());
    if pattern.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let (name, wildcard) = match pattern.strip_prefix("*.") {
        Some(rest) => (rest, true),
        None => (pattern, false),
    };
    let labels: Vec<&str> = name.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if name.len() > 253 || !labels.iter().all(label_ok) || (wildcard && labels.len() < 2) {
        return Err(invalid());
    }
    Ok(())
}

/// Whether `host` (already lower-cased by URL parsing) matches `pattern`.
/// `*.example.com` matches `a.example.com` and `a.b.example.com`, not
/// `example.com` itself and not `evilexample.com`. A trailing dot is not
/// stripped: `localhost.` does not match `localhost`.
pub fn domain_matches(pattern: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            host.len() > suffix.len() + 1
                && host.ends_with(suffix)
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
        }
        None => pattern.eq_ignore_ascii_case(&host),
    }
}

/// Whether any entry of `allowlist` matches `host`.
pub fn domain_allowed<S: AsRef<str>>(allowlist: &[S], host: &str) -> bool {
    allowlist.iter().any(|p| domain_matches(p.as_ref(), host))
}

/// Deployment-wide sink settings (not per action).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkPolicy {
    /// Ports allowed besides 80 and 443.
    pub extra_ports: Vec<u16>,
}

/// A URL that passed the sink check: what the executor resolves and connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedSink {
    pub url: Url,
    pub https: bool,
    pub host: Host<String>,
    pub port: u16,
    pub method: String,
}

impl CheckedSink {
    /// The host as written in the URL (IPv6 without brackets).
    pub fn host_str(&self) -> String {
        match &self.host {
            Host::Domain(d) => d.clone(),
            Host::Ipv4(ip) => ip.to_string(),
            Host::Ipv6(ip) => ip.to_string(),
        }
    }
}

/// Step 3 of the egress order: scheme, userinfo, port, domain, method.
/// WHATWG parsing normalises decimal, octal and hex IPv4 hosts to dotted form,
/// so `http://2130706433/` is checked as `127.0.0.1`, never as a name.
pub fn check_sink(
    raw_url: &str,
    method: &str,
    rules: &EgressRules,
    policy: &SinkPolicy,
) -> Result<CheckedSink, SinkError> {
    if rules.profile == EgressProfile::None {
        return Err(SinkError::NoEgress);
    }
    let url = Url::parse(raw_url).map_err(|e| SinkError::UnparsableUrl(e.to_string()))?;
    let https = match url.scheme() {
        "https" => true,
        "http" => false,
        other => return Err(SinkError::Scheme(other.to_string())),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(SinkError::Userinfo);
    }
    let host = url.host().ok_or(SinkError::NoHost)?.to_owned();
    let port = url.port_or_known_default().ok_or(SinkError::NoHost)?;
    if !DEFAULT_PORTS.contains(&port) && !policy.extra_ports.contains(&port) {
        return Err(SinkError::Port(port));
    }
    let host_text = match &host {
        Host::Domain(d) => d.clone(),
        Host::Ipv4(ip) => ip.to_string(),
        Host::Ipv6(ip) => ip.to_string(),
    };
    let domain_ok = match &host {
        Host::Domain(d) => domain_allowed(&rules.allowed_domains, d),
        // IP literals match only an identical literal entry, never a wildcard.
        Host::Ipv4(_) | Host::Ipv6(_) => rules.allowed_domains.iter().any(|p| p == &host_text),
    };
    if !domain_ok {
        return Err(SinkError::Domain(host_text));
    }
    let method = method.to_ascii_uppercase();
    let method_ok = if rules.allowed_methods.is_empty() {
        method == "GET"
    } else {
        rules.allowed_methods.iter().any(|m| m.eq_ignore_ascii_case(&method))
    };
    if !method_ok {
        return Err(SinkError::Method(method));
    }
    Ok(CheckedSink { url, https, host, port, method })
}

/// Input of the Squid config generator.
#[derive(Debug, Clone)]
pub struct SquidSettings<'a> {
    /// Address Squid listens on (loopback in every sane deployment).
    pub listen: SocketAddr,
    /// Every `allowed_domains` entry of every manifest.
    pub allowed_domains: Vec<String>,
    /// Where the CLI writes the dstdomain file produced by [`squid_allowlist`].
    pub allowlist_path: &'a Path,
    /// Directory for pid file and logs (owned by the `proxy` user when Squid starts as root).
    pub state_dir: &'a Path,
    /// Ports allowed besides 80 and 443 (same as [`SinkPolicy::extra_ports`]).
    pub extra_ports: Vec<u16>,
    /// Test-only private destinations (same list as the executor's); empty in production.
    pub allow_private_destinations: Vec<SocketAddr>,
}

/// Private, loopback, link-local, CGNAT, multicast, reserved and metadata
/// ranges Squid must never connect to. IPv4-mapped IPv6 (`::ffff:0:0/96`) is
/// deliberately absent: Squid stores every IPv4 address in that form, so the
/// entry would match all IPv4 destinations.
const SQUID_PRIVATE_RANGES: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
    "64:ff9b::/96",
    "2002::/16",
];

/// The dstdomain file: one entry per line, `*.example.com` written as Squid's
/// `.example.com`, entries already covered by a wildcard dropped (Squid refuses
/// overlapping dstdomain entries). Invalid entries are skipped and returned.
pub fn squid_allowlist<S: AsRef<str>>(allowed_domains: &[S]) -> (String, Vec<PatternError>) {
    let mut invalid = Vec::new();
    let mut exact = BTreeSet::new();
    let mut wildcards = BTreeSet::new();
    for entry in allowed_domains {
        let entry = entry.as_ref();
        if let Err(e) = validate_pattern(entry) {
            invalid.push(e);
            continue;
        }
        match entry.strip_prefix("*.") {
            Some(suffix) => wildcards.insert(suffix.to_string()),
            None => exact.insert(entry.to_string()),
        };
    }
    // Squid's `.example.com` also matches the apex, so both covered forms go.
    let covered = |name: &str, skip_self: bool| {
        wildcards.iter().any(|w| (!skip_self && name == w) || domain_matches(&format!("*.{w}"), name))
    };
    let mut out = String::new();
    for w in &wildcards {
        if !covered(w, true) {
            let _ = writeln!(out, ".{w}");
        }
    }
    for e in &exact {
        if !covered(e, false) {
            let _ = writeln!(out, "{e}");
        }
    }
    (out, invalid)
}

/// A Squid 5 configuration for the egress proxy: forward proxy only, no cache,
/// dstdomain allowlist with `-n` (no reverse DNS: an IP URL never matches a
/// name), CONNECT only to 443 (+ extra ports), private ranges refused.
pub fn squid_config(settings: &SquidSettings<'_>) -> String {
    let mut ports: BTreeSet<u16> = DEFAULT_PORTS.into_iter().collect();
    ports.extend(settings.extra_ports.iter().copied());
    let mut ssl_ports: BTreeSet<u16> = BTreeSet::from([443]);
    ssl_ports.extend(settings.extra_ports.iter().copied());
    let join = |set: &BTreeSet<u16>| set.iter().map(u16::to_string).collect::<Vec<_>>().join(" ");
    let state = settings.state_dir.display();

    let mut c = String::new();
    let _ = writeln!(c, "# Generated by `latchgate egress squid-config`. Do not edit: regenerate.");
    let _ = writeln!(c, "http_port {}", settings.listen);
    let _ = writeln!(c, "visible_hostname latchgate-egress");
    let _ = writeln!(c, "pid_filename {state}/squid.pid");
    let _ = writeln!(c, "cache_log {state}/cache.log");
    let _ = writeln!(c, "access_log stdio:{state}/access.log");
    let _ = writeln!(c, "cache_store_log none");
    let _ = writeln!(c, "coredump_dir {state}");
    let _ = writeln!(c, "netdb_filename none");
    let _ = writeln!(c, "cache deny all");
    let _ = writeln!(c, "shutdown_lifetime 1 seconds");
    let _ = writeln!(c, "forwarded_for delete");
    let _ = writeln!(c, "via off");
    let _ = writeln!(c, "httpd_suppress_version_string on");
    let _ = writeln!(c);
    let _ = writeln!(c, "acl Safe_ports port {}", join(&ports));
    let _ = writeln!(c, "acl SSL_ports port {}", join(&ssl_ports));
    let _ = writeln!(c, "acl CONNECT method CONNECT");
    let _ = writeln!(c, "acl allowed dstdomain -n \"{}\"", settings.allowlist_path.display());
    let _ = writeln!(c, "acl latchgate_private dst {}", SQUID_PRIVATE_RANGES.join(" "));
    for (i, dest) in settings.allow_private_destinations.iter().enumerate() {
        let _ = writeln!(c, "# TEST ONLY: private destination exception {dest}");
        let _ = writeln!(c, "acl private_exception_{i}_dst dst {}", dest.ip());
        let _ = writeln!(c, "acl private_exception_{i}_port port {}", dest.port());
    }
    let _ = writeln!(c);
    let _ = writeln!(c, "http_access deny !Safe_ports");
    let _ = writeln!(c, "http_access deny CONNECT !SSL_ports");
    let _ = writeln!(c, "http_access deny !allowed");
    for i in 0..settings.allow_private_destinations.len() {
        let _ = writeln!(c, "http_access allow private_exception_{i}_dst private_exception_{i}_port");
    }
    let _ = writeln!(c, "http_access deny latchgate_private");
    let _ = writeln!(c, "http_access allow allowed");
    let _ = writeln!(c, "http_access deny all");
    c
}

/// Every `allowed_domains` entry of the actions whose profile is
/// `proxy_allowlist`, sorted and deduplicated: what the proxy may reach.
pub fn proxy_allowlist_domains<'a>(actions: impl IntoIterator<Item = &'a EgressRules>) -> Vec<String> {
    let domains: BTreeSet<&str> = actions
        .into_iter()
        .filter(|rules| rules.profile == EgressProfile::ProxyAllowlist)
        .flat_map(|rules| rules.allowed_domains.iter().map(String::as_str))
        .collect();
    domains.into_iter().map(str::to_string).collect()
}

/// Where Squid listens when nothing else is configured.
pub const DEFAULT_SQUID_LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 3128);

/// Squid listens where the executor's `egress.proxy_url` points (else
/// [`DEFAULT_SQUID_LISTEN`]); a host name other than `localhost` cannot be a
/// listen address.
pub fn squid_listen_address(proxy_url: Option<&str>) -> Result<SocketAddr, String> {
    let Some(raw) = proxy_url else { return Ok(DEFAULT_SQUID_LISTEN) };
    let url = Url::parse(raw).map_err(|e| format!("egress.proxy_url: {e}"))?;
    let port = url.port_or_known_default().ok_or("egress.proxy_url has no port")?;
    let ip = match url.host() {
        Some(Host::Ipv4(ip)) => ip.into(),
        Some(Host::Ipv6(ip)) => ip.into(),
        Some(Host::Domain("localhost")) => std::net::Ipv4Addr::LOCALHOST.into(),
        Some(Host::Domain(other)) => {
            return Err(format!("egress.proxy_url host `{other}` is not an IP address: pass --listen"));
        }
        None => return Err("egress.proxy_url has no host".into()),
    };
    Ok(SocketAddr::new(ip, port))
}

/// File names `latchgate egress squid-config` writes into its output directory.
pub const SQUID_CONFIG_FILE: &str = "squid.conf";
pub const SQUID_ALLOWLIST_FILE: &str = "squid-allowlist.txt";

/// What the generated proxy allows and where it keeps its state.
#[derive(Debug, Clone)]
pub struct SquidPlan {
    pub listen: SocketAddr,
    /// Usually [`proxy_allowlist_domains`] over every manifest.
    pub allowed_domains: Vec<String>,
    /// Squid's pid file and logs; created if missing (the `proxy` user must be able to write it).
    pub state_dir: PathBuf,
    pub extra_ports: Vec<u16>,
    /// TEST ONLY, as [`SquidSettings::allow_private_destinations`].
    pub allow_private_destinations: Vec<SocketAddr>,
}

/// What [`write_squid_files`] wrote (absolute paths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SquidFiles {
    pub config: PathBuf,
    pub allowlist: PathBuf,
    pub state_dir: PathBuf,
    /// The dstdomain entries, as written (`.example.com` for `*.example.com`).
    pub entries: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SquidFilesError {
    #[error("{} ({} invalid allowlist entries in all)", .0[0], .0.len())]
    InvalidPatterns(Vec<PatternError>),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

impl SquidFilesError {
    pub fn code(&self) -> &'static str {
        match self {
            SquidFilesError::InvalidPatterns(_) => "egress_pattern_invalid",
            SquidFilesError::Write { .. } => "squid_config_write_failed",
        }
    }
}

/// Writes [`SQUID_ALLOWLIST_FILE`] and [`SQUID_CONFIG_FILE`] into `out_dir`
/// (each through a temporary file and a rename, so a running Squid never reads
/// half a file) and creates the state directory. Nothing is written when an
/// allowlist entry is invalid.
pub fn write_squid_files(plan: &SquidPlan, out_dir: &Path) -> Result<SquidFiles, SquidFilesError> {
    let (allowlist, invalid) = squid_allowlist(&plan.allowed_domains);
    if !invalid.is_empty() {
        return Err(SquidFilesError::InvalidPatterns(invalid));
    }
    let absolute =
        |p: &Path| std::path::absolute(p).map_err(|source| SquidFilesError::Write { path: p.into(), source });
    let out_dir = absolute(out_dir)?;
    let state_dir = absolute(&plan.state_dir)?;
    for dir in [&out_dir, &state_dir] {
        std::fs::create_dir_all(dir).map_err(|source| SquidFilesError::Write { path: dir.clone(), source })?;
    }
    let allowlist_path = out_dir.join(SQUID_ALLOWLIST_FILE);
    let config_path = out_dir.join(SQUID_CONFIG_FILE);
    let config = squid_config(&SquidSettings {
        listen: plan.listen,
        allowed_domains: plan.allowed_domains.clone(),
        allowlist_path: &allowlist_path,
        state_dir: &state_dir,
        extra_ports: plan.extra_ports.clone(),
        allow_private_destinations: plan.allow_private_destinations.clone(),
    });
    replace_file(&allowlist_path, &allowlist)?;
    replace_file(&config_path, &config)?;
    Ok(SquidFiles {
        config: config_path,
        allowlist: allowlist_path,
        state_dir,
        entries: allowlist.lines().map(str::to_string).collect(),
    })
}

fn replace_file(path: &Path, text: &str) -> Result<(), SquidFilesError> {
    let err = |source| SquidFilesError::Write { path: path.into(), source };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::EgressProfile;

    fn rules(domains: &[&str], methods: &[&str]) -> EgressRules {
        EgressRules {
            profile: EgressProfile::ProxyAllowlist,
            allowed_domains: domains.iter().map(|s| s.to_string()).collect(),
            allowed_methods: methods.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn wildcard_matches_subdomains_but_not_apex_or_lookalikes() {
        assert!(domain_matches("*.example.com", "a.example.com"));
        assert!(domain_matches("*.example.com", "a.b.example.com"));
        assert!(!domain_matches("*.example.com", "example.com"));
        assert!(!domain_matches("*.example.com", "evilexample.com"));
        assert!(!domain_matches("*.example.com", "example.com.evil.net"));
        assert!(domain_matches("api.example.com", "API.example.com"));
        assert!(!domain_matches("localhost", "localhost."));
    }

    #[test]
    fn overbroad_or_malformed_patterns_are_rejected() {
        for bad in ["*.com", "a.*.com", "*", "Example.com", "exa mple.com", "-a.com", "*.", ""] {
            assert!(validate_pattern(bad).is_err(), "{bad} accepted");
        }
        for good in ["example.com", "*.example.com", "127.0.0.1", "::1", "localhost"] {
            assert!(validate_pattern(good).is_ok(), "{good} rejected");
        }
    }

    #[test]
    fn sink_check_refuses_what_is_outside_the_rules() {
        let r = rules(&["api.example.com"], &[]);
        let p = SinkPolicy::default();
        assert!(check_sink("https://api.example.com/x", "get", &r, &p).is_ok());
        let deny = |url: &str, m: &str| check_sink(url, m, &r, &p).unwrap_err().code();
        assert_eq!(deny("https://api.example.com/x", "POST"), "method_not_allowed");
        assert_eq!(deny("ftp://api.example.com/x", "GET"), "scheme_not_allowed");
        assert_eq!(deny("https://u:p@api.example.com/", "GET"), "url_userinfo");
        assert_eq!(deny("https://api.example.com:8443/", "GET"), "port_not_allowed");
        assert_eq!(deny("https://other.example.com/", "GET"), "domain_not_allowed");
        assert_eq!(deny("not a url", "GET"), "url_unparsable");
        let none = EgressRules::none();
        assert_eq!(check_sink("https://api.example.com/", "GET", &none, &p).unwrap_err().code(), "egress_none");
    }

    #[test]
    fn numeric_ipv4_forms_are_normalised_before_the_allowlist() {
        let r = rules(&["127.0.0.1"], &[]);
        let p = SinkPolicy::default();
        for url in ["http://2130706433/", "http://0177.0.0.1/", "http://0x7f.1/"] {
            let sink = check_sink(url, "GET", &r, &p).unwrap();
            assert_eq!(sink.host_str(), "127.0.0.1", "{url}");
        }
    }

    #[test]
    fn squid_allowlist_uses_dot_prefix_and_drops_covered_entries() {
        let (list, invalid) =
            squid_allowlist(&["*.example.com", "api.example.com", "example.com", "other.org", "*.com"]);
        assert_eq!(list, ".example.com\nother.org\n");
        assert_eq!(invalid.len(), 1);
    }

    #[test]
    fn squid_listens_where_the_executor_sends_its_requests() {
        assert_eq!(squid_listen_address(None), Ok(DEFAULT_SQUID_LISTEN));
        assert_eq!(squid_listen_address(Some("http://127.0.0.1:3129")), Ok("127.0.0.1:3129".parse().unwrap()));
        assert_eq!(squid_listen_address(Some("http://localhost:8080/")), Ok("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(squid_listen_address(Some("http://[::1]:3128")), Ok("[::1]:3128".parse().unwrap()));
        assert!(squid_listen_address(Some("http://proxy.internal:3128")).is_err());
    }

    #[test]
    fn only_proxy_allowlist_actions_contribute_domains() {
        let mut none = rules(&["never.example.org"], &[]);
        none.profile = EgressProfile::None;
        let a = rules(&["b.example.com", "*.example.com"], &[]);
        let b = rules(&["b.example.com", "api.open-meteo.com"], &[]);
        assert_eq!(
            proxy_allowlist_domains([&a, &none, &b]),
            vec!["*.example.com", "api.open-meteo.com", "b.example.com"]
        );
    }

    #[test]
    fn squid_files_are_written_together_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let mut plan = SquidPlan {
            listen: "127.0.0.1:3128".parse().unwrap(),
            allowed_domains: vec!["*.example.com".into(), "api.example.com".into(), "other.org".into()],
            state_dir: dir.path().join("state"),
            extra_ports: vec![],
            allow_private_destinations: vec![],
        };
        let files = write_squid_files(&plan, &dir.path().join("out")).unwrap();
        assert_eq!(files.entries, vec![".example.com", "other.org"]);
        assert_eq!(std::fs::read_to_string(&files.allowlist).unwrap(), ".example.com\nother.org\n");
        let config = std::fs::read_to_string(&files.config).unwrap();
        assert!(config.contains(&format!("acl allowed dstdomain -n \"{}\"", files.allowlist.display())));
        assert!(config.contains(&format!("pid_filename {}/squid.pid", files.state_dir.display())));
        assert!(files.state_dir.is_dir());

        plan.allowed_domains.push("*.com".into());
        let err = write_squid_files(&plan, &dir.path().join("bad")).unwrap_err();
        assert_eq!(err.code(), "egress_pattern_invalid");
        assert!(!dir.path().join("bad").exists());
    }

    #[test]
    fn squid_config_denies_unlisted_domains_and_private_ranges_in_order() {
        let settings = SquidSettings {
            listen: "127.0.0.1:3128".parse().unwrap(),
            allowed_domains: vec!["api.example.com".into()],
            allowlist_path: Path::new("/etc/latchgate/squid-allowlist.txt"),
            state_dir: Path::new("/var/lib/latchgate/squid"),
            extra_ports: vec![],
            allow_private_destinations: vec![],
        };
        let c = squid_config(&settings);
        assert!(c.contains("acl allowed dstdomain -n \"/etc/latchgate/squid-allowlist.txt\""));
        let pos = |s: &str| c.find(s).unwrap_or_else(|| panic!("missing {s}"));
        assert!(pos("http_access deny !allowed") < pos("http_access deny latchgate_private"));
        assert!(pos("http_access deny latchgate_private") < pos("http_access allow allowed"));
        assert!(c.trim_end().ends_with("http_access deny all"));
        assert!(!c.contains("private_exception"));
        assert!(!c.contains("::ffff"));
    }
}
