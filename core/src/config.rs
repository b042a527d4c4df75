//! `latchgate.toml`: the one configuration file every process reads.
//! Unknown keys are errors; relative paths are resolved against the file's directory.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config {path}: {field}: {message}")]
    Invalid { path: PathBuf, field: String, message: String },
}

impl ConfigError {
    /// Stable code for logs and `doctor`.
    pub fn code(&self) -> &'static str {
        match self {
            ConfigError::Read { .. } => "config_unreadable",
            ConfigError::Parse { .. } => "config_parse_error",
            ConfigError::Invalid { .. } => "config_invalid",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// SQLite state + embedded Rego (`latchgate up`).
    #[default]
    Embedded,
    /// Redis state + OPA over HTTP (`latchgate serve`).
    Production,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Confinement {
    /// Refuse to start when a confinement layer is unavailable.
    Strict,
    /// Start anyway and report the degraded layer.
    #[default]
    BestEffort,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SchemaEnforcement {
    #[default]
    Deny,
    Warn,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub mode: Mode,
    /// Base of every DPoP `htu`; never derived from the Host header.
    pub public_base_url: String,
    pub listen_uds_path: Option<PathBuf>,
    pub listen_admin_uds_path: Option<PathBuf>,
    /// Directory for both sockets and the `ipc/` directory of standalone mode.
    pub runtime_dir: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub manifests_dir: PathBuf,
    pub policies_dir: PathBuf,
    pub providers_dir: PathBuf,
    /// seccomp allow-lists and Landlock rule files, one pair per process.
    pub sandbox_profiles_dir: PathBuf,
    pub confinement: Confinement,
    pub response_schema_enforcement: SchemaEnforcement,
    pub limits: Limits,
    pub keys: Keys,
    pub identity: Identity,
    pub ipc: Ipc,
    pub supervisor: Supervisor,
    /// The only tree `fs` actions may touch; `None` = fs actions cannot run.
    pub fs_root: Option<PathBuf>,
    pub egress: Egress,
    pub executor: Executor,
    /// Named operators of the admin socket (API.md): `[operator_credentials.NAME]`.
    pub operator_credentials: BTreeMap<String, OperatorCredential>,
    pub secrets: Secrets,
}

/// The SOPS secrets the signer releases per grant. Both paths or neither:
/// without them no secret exists and actions that require one are denied.
#[derive(Clone, Debug, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Secrets {
    /// SOPS 3.x file (`.yaml`, `.yml` or `.json`) encrypted to an age recipient.
    pub sops_secrets_file: Option<PathBuf>,
    /// age identity file (`AGE-SECRET-KEY-1…`); refused when group or other can access it.
    pub sops_key_file: Option<PathBuf>,
}

/// One operator: the API key sent as `Authorization: DPoP <api_key>`, bound to
/// the RFC 7638 thumbprint of the P-256 key that signs the operator's proofs.
/// `dpop_jkt` is optional only so that a config lacking it can be named by the
/// production-safety check instead of failing to parse.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorCredential {
    pub api_key: String,
    #[serde(default)]
    pub dpop_jkt: Option<String>,
}

/// Host I/O of the executor.
#[derive(Clone, Debug, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Egress {
    /// `http://host:port` of the egress proxy (Squid); every host HTTP call goes through it.
    pub proxy_url: Option<String>,
    /// Destination ports allowed besides 80 and 443.
    pub extra_ports: Vec<u16>,
    /// TEST ONLY: private `ip:port` destinations the executor may reach anyway.
    /// Logged loudly at start; refused by the production-safety check.
    pub allow_private_destinations: Vec<std::net::SocketAddr>,
    /// TEST ONLY, and only together with `allow_private_destinations`: a PEM
    /// file of extra root CAs the executor trusts besides the webpki roots
    /// (so tests can speak HTTPS to a local server).
    pub test_root_ca_file: Option<PathBuf>,
    /// TEST ONLY, and only together with `allow_private_destinations`: secrets
    /// may be sent over plain http to those destinations. Otherwise secrets
    /// travel over HTTPS only.
    pub test_secrets_over_http: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Executor {
    /// Provider calls running at once; more wait for a slot.
    pub max_concurrent_calls: u32,
    /// Ceiling of any manifest's `memory_mb`.
    pub max_memory_mb: u32,
}

impl Default for Executor {
    fn default() -> Self {
        Executor { max_concurrent_calls: 64, max_memory_mb: 256 }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mode: Mode::Embedded,
            public_base_url: "http://localhost:3000".into(),
            listen_uds_path: None,
            listen_admin_uds_path: None,
            runtime_dir: None,
            state_dir: "state".into(),
            manifests_dir: "manifests".into(),
            policies_dir: "policies".into(),
            providers_dir: "providers".into(),
            sandbox_profiles_dir: "sandbox-profiles".into(),
            confinement: Confinement::BestEffort,
            response_schema_enforcement: SchemaEnforcement::Deny,
            limits: Limits::default(),
            keys: Keys::default(),
            identity: Identity::default(),
            ipc: Ipc::default(),
            supervisor: Supervisor::default(),
            fs_root: None,
            egress: Egress::default(),
            executor: Executor::default(),
            operator_credentials: BTreeMap::new(),
            secrets: Secrets::default(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body the front reads (413 above).
    pub max_body_bytes: usize,
    /// Time to receive the request head.
    pub header_read_timeout_ms: u64,
    /// Time to receive the whole body.
    pub body_read_timeout_ms: u64,
    /// Longest any front→broker call may take before the front answers 503.
    pub request_timeout_ms: u64,
    /// Connections served at once on each socket; more wait in the backlog.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1024 * 1024,
            header_read_timeout_ms: 5_000,
            body_read_timeout_ms: 10_000,
            request_timeout_ms: 60_000,
            max_connections: 1024,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Keys {
    /// Directory holding the signer's private keys (mode 0700, files 0600).
    pub dir: PathBuf,
}

impl Default for Keys {
    fn default() -> Self {
        Keys { dir: "keys".into() }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum IdentityProvider {
    #[default]
    Peercred,
    None,
}

#[derive(Clone, Debug, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Identity {
    pub provider: IdentityProvider,
    pub peercred: Peercred,
}

#[derive(Clone, Debug, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Peercred {
    pub allow_unmapped: bool,
    /// Keyed by uid (TOML keys are strings).
    pub principals: BTreeMap<String, PrincipalEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalEntry {
    pub principal: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub owner: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Ipc {
    /// Standalone (systemd) mode: where the named SOCK_SEQPACKET sockets live.
    /// Default: `<runtime_dir>/ipc`.
    pub dir: Option<PathBuf>,
    /// Standalone mode: uid expected of each peer role (`SO_PEERCRED`).
    /// Missing entries default to the uid of the process itself.
    pub peer_uids: BTreeMap<String, u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Supervisor {
    /// First restart delay after a child dies; doubles up to `restart_max_ms`.
    pub restart_initial_ms: u64,
    pub restart_max_ms: u64,
    /// How long a child has to report ready before it is killed and restarted.
    pub ready_timeout_ms: u64,
    /// Grace period for children on shutdown before SIGKILL.
    pub shutdown_grace_ms: u64,
    /// Drop each child to its system user when started as root.
    pub drop_privileges: bool,
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor {
            restart_initial_ms: 100,
            restart_max_ms: 5_000,
            ready_timeout_ms: 30_000,
            shutdown_grace_ms: 35_000,
            drop_privileges: true,
        }
    }
}

/// A loaded config with its paths resolved.
#[derive(Clone, Debug)]
pub struct LoadedConfig {
    pub path: PathBuf,
    pub config: Config,
}

impl LoadedConfig {
    pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::from_str(path, &text)
    }

    pub fn from_str(path: &Path, text: &str) -> Result<LoadedConfig, ConfigError> {
        let config: Config = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string() })?;
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let loaded = LoadedConfig { path, config };
        loaded.validate()?;
        Ok(loaded)
    }

    fn invalid(&self, field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { path: self.path.clone(), field: field.into(), message: message.into() }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let c = &self.config;
        let url = url::Url::parse(&c.public_base_url).map_err(|e| self.invalid("public_base_url", e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(self.invalid("public_base_url", "scheme must be http or https"));
        }
        for uid in c.identity.peercred.principals.keys() {
            uid.parse::<u32>().map_err(|_| {
                self.invalid(&format!("identity.peercred.principals.{uid}"), "key must be a numeric uid")
            })?;
        }
        for role in c.ipc.peer_uids.keys() {
            if crate::role::Role::parse(role).is_none() {
                return Err(self.invalid(&format!("ipc.peer_uids.{role}"), "unknown role"));
            }
        }
        if let Some(proxy) = &c.egress.proxy_url {
            let url = url::Url::parse(proxy).map_err(|e| self.invalid("egress.proxy_url", e.to_string()))?;
            if url.scheme() != "http" || url.host_str().is_none() || url.port_or_known_default().is_none() {
                return Err(self.invalid("egress.proxy_url", "must be http://host:port"));
            }
        }
        if c.egress.test_root_ca_file.is_some() && c.egress.allow_private_destinations.is_empty() {
            return Err(self.invalid(
                "egress.test_root_ca_file",
                "is test-only and needs egress.allow_private_destinations (also test-only)",
            ));
        }
        if c.egress.test_secrets_over_http && c.egress.allow_private_destinations.is_empty() {
            return Err(self.invalid(
                "egress.test_secrets_over_http",
                "is test-only and needs egress.allow_private_destinations (also test-only)",
            ));
        }
        let secrets = &c.secrets;
        if secrets.sops_secrets_file.is_some() != secrets.sops_key_file.is_some() {
            return Err(self.invalid("secrets", "set both sops_secrets_file and sops_key_file, or neither"));
        }
        if c.executor.max_concurrent_calls == 0 {
            return Err(self.invalid("executor.max_concurrent_calls", "must be > 0"));
        }
        if c.limits.max_body_bytes == 0 {
            return Err(self.invalid("limits.max_body_bytes", "must be > 0"));
        }
        Ok(())
    }

    /// Directory the config file lives in; relative paths are resolved against it.
    pub fn base_dir(&self) -> PathBuf {
        self.path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
    }

    fn resolve(&self, p: &Path) -> PathBuf {
        crate::paths::resolve(&self.base_dir(), p)
    }

    pub fn runtime_dir(&self) -> PathBuf {
        match &self.config.runtime_dir {
            Some(d) => self.resolve(d),
            None => crate::paths::default_runtime_dir(),
        }
    }

    pub fn client_socket(&self) -> PathBuf {
        match &self.config.listen_uds_path {
            Some(p) => self.resolve(p),
            None => self.runtime_dir().join(crate::paths::CLIENT_SOCKET_NAME),
        }
    }

    /// Admin socket: configured, else `gate-admin.sock` beside the client socket.
    pub fn admin_socket(&self) -> PathBuf {
        match &self.config.listen_admin_uds_path {
            Some(p) => self.resolve(p),
            None => {
                let client = self.client_socket();
                client.parent().unwrap_or(Path::new("/")).join(crate::paths::ADMIN_SOCKET_NAME)
            }
        }
    }

    pub fn ipc_dir(&self) -> PathBuf {
        match &self.config.ipc.dir {
            Some(d) => self.resolve(d),
            None => self.runtime_dir().join(crate::paths::IPC_DIR_NAME),
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.resolve(&self.config.state_dir)
    }
    pub fn key_dir(&self) -> PathBuf {
        self.resolve(&self.config.keys.dir)
    }
    pub fn manifests_dir(&self) -> PathBuf {
        self.resolve(&self.config.manifests_dir)
    }
    pub fn policies_dir(&self) -> PathBuf {
        self.resolve(&self.config.policies_dir)
    }
    pub fn providers_dir(&self) -> PathBuf {
        self.resolve(&self.config.providers_dir)
    }
    pub fn fs_root(&self) -> Option<PathBuf> {
        self.config.fs_root.as_deref().map(|p| self.resolve(p))
    }
    /// `(sops_secrets_file, sops_key_file)`, when secrets are configured.
    pub fn secrets_files(&self) -> Option<(PathBuf, PathBuf)> {
        let s = &self.config.secrets;
        Some((self.resolve(s.sops_secrets_file.as_deref()?), self.resolve(s.sops_key_file.as_deref()?)))
    }
    pub fn test_root_ca_file(&self) -> Option<PathBuf> {
        self.config.egress.test_root_ca_file.as_deref().map(|p| self.resolve(p))
    }

    /// TCP ports the executor connects to besides 80/443: the proxy's, the
    /// configured extra ports and the test-only private destinations'.
    pub fn egress_ports(&self) -> Vec<u16> {
        let egress = &self.config.egress;
        let proxy = egress.proxy_url.as_deref().and_then(|u| url::Url::parse(u).ok()?.port_or_known_default());
        let mut ports: Vec<u16> = proxy
            .into_iter()
            .chain(egress.extra_ports.iter().copied())
            .chain(egress.allow_private_destinations.iter().map(|a| a.port()))
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    pub fn sandbox_profiles_dir(&self) -> PathBuf {
        self.resolve(&self.config.sandbox_profiles_dir)
    }

    /// The uid a peer of `role` must have in standalone mode.
    pub fn expected_peer_uid(&self, role: crate::role::Role) -> u32 {
        self.config.ipc.peer_uids.get(role.as_str()).copied().unwrap_or_else(|| nix::unistd::geteuid().as_raw())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_from_empty_file() {
        let c = LoadedConfig::from_str(Path::new("/etc/lg/latchgate.toml"), "").unwrap();
        assert_eq!(c.config.mode, Mode::Embedded);
        assert_eq!(c.state_dir(), PathBuf::from("/etc/lg/state"));
        assert_eq!(c.admin_socket().file_name().unwrap(), "gate-admin.sock");
    }

    #[test]
    fn unknown_key_is_refused_with_its_name() {
        let e = LoadedConfig::from_str(Path::new("x.toml"), "listen_udp_path = 1\n").unwrap_err();
        assert_eq!(e.code(), "config_parse_error");
        assert!(e.to_string().contains("listen_udp_path"), "{e}");
    }

    #[test]
    fn secrets_need_both_files_and_resolve_against_the_config_dir() {
        let e = LoadedConfig::from_str(Path::new("x.toml"), "[secrets]\nsops_secrets_file = \"s.yaml\"\n").unwrap_err();
        assert!(e.to_string().contains("sops_key_file"), "{e}");
        let text = "[secrets]\nsops_secrets_file = \"sec/s.yaml\"\nsops_key_file = \"/k/age.txt\"\n";
        let c = LoadedConfig::from_str(Path::new("/etc/lg/latchgate.toml"), text).unwrap();
        assert_eq!(c.secrets_files(), Some(("/etc/lg/sec/s.yaml".into(), "/k/age.txt".into())));
    }

    #[test]
    fn test_root_ca_needs_the_test_destination_list() {
        let e = LoadedConfig::from_str(Path::new("x.toml"), "[egress]\ntest_root_ca_file = \"ca.pem\"\n").unwrap_err();
        assert!(e.to_string().contains("allow_private_destinations"), "{e}");
    }

    #[test]
    fn non_numeric_principal_uid_is_refused() {
        let text = "[identity.peercred.principals.alice]\nprincipal = \"a\"\n";
        let e = LoadedConfig::from_str(Path::new("x.toml"), text).unwrap_err();
        assert!(e.to_string().contains("principals.alice"), "{e}");
    }
}
