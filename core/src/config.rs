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
    /// `[redis]`: the production state store. Unset = the embedded SQLite store.
    pub redis: Option<RedisConfig>,
    /// `[opa]`: the production policy engine. Unset = embedded regorus.
    pub opa: Option<OpaConfig>,
    /// A plain-HTTP TCP listener. Never needed (agents use the Unix socket);
    /// `latchgate serve` refuses it unless `unsafe_expose_http = true`.
    pub listen_tcp_addr: Option<std::net::SocketAddr>,
    /// Acknowledges that `listen_tcp_addr` exposes the gate without peercred.
    pub unsafe_expose_http: bool,
    /// Human approvals of high-risk calls.
    pub approvals: Approvals,
    /// Token buckets per operator on the admin socket.
    pub operator_limits: OperatorLimits,
    /// What SIGTERM does to executions in flight.
    pub shutdown: Shutdown,
    /// `[[webhooks]]`: receivers of audit events (delivered by the broker from a durable outbox).
    pub webhooks: Vec<Webhook>,
    pub webhook_delivery: WebhookDelivery,
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

/// How long a held call waits for an operator, and how often expiry is checked.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Approvals {
    /// A pending approval expires this long after the agent's request (API default 300 s).
    pub ttl_seconds: u64,
    /// How often the broker's sweeper marks expired approvals.
    pub sweep_interval_ms: u64,
}

impl Default for Approvals {
    fn default() -> Self {
        Approvals { ttl_seconds: 300, sweep_interval_ms: 1_000 }
    }
}

/// Requests per second each operator may make (bucket size = one second's worth).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OperatorLimits {
    /// POST routes (approve, deny, revoke, drain, reload, policy edits).
    pub writes_per_second: u32,
    /// GET routes (status, audit, receipts, approvals list).
    pub reads_per_second: u32,
}

impl Default for OperatorLimits {
    fn default() -> Self {
        OperatorLimits { writes_per_second: 20, reads_per_second: 100 }
    }
}

/// The events a webhook may subscribe to (audit event types map onto these
/// in the broker's `ledger::outbox`).
pub const WEBHOOK_EVENTS: &[&str] = &[
    "approval.pending",
    "approval.granted",
    "approval.denied",
    "approval.expired",
    "action.denied",
    "action.executed",
    "action.failed",
    "revocation",
    "budget.exhausted",
];

/// Headers the broker sets itself on every delivery; a configured header may not replace them.
pub const WEBHOOK_RESERVED_HEADERS: &[&str] =
    &["host", "content-type", "content-length", "connection", "transfer-encoding"];
/// Prefix of the broker's own headers (`X-LatchGate-Signature`, ...).
pub const WEBHOOK_HEADER_PREFIX: &str = "x-latchgate-";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// `{"id", "event", "occurred_at", ..., "audit": {...}, "details": {...}}`.
    #[default]
    Generic,
    /// `{"text": "..."}` for a Slack incoming webhook.
    Slack,
}

/// One receiver. `secret` and header values may use `${ENV}`, expanded by the
/// broker (and `latchgate config test-webhook`) from its environment at start.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub name: String,
    /// `https://` only (plain `http` only for a test-only insecure destination).
    pub url: String,
    /// HMAC-SHA256 key of the `X-LatchGate-Signature` header.
    pub secret: String,
    /// Subscribed events; default: all of [`WEBHOOK_EVENTS`].
    #[serde(default = "all_webhook_events")]
    pub events: Vec<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "default_webhook_timeout_ms")]
    pub timeout_ms: u64,
    /// Retries after the first attempt (5xx, timeouts, network errors); 4xx is never retried.
    #[serde(default = "default_webhook_max_retries")]
    pub max_retries: u32,
    /// Delay before retry n (the last one repeats).
    #[serde(default = "default_webhook_backoff_ms")]
    pub backoff_ms: Vec<u64>,
    #[serde(default)]
    pub format: WebhookFormat,
}

fn all_webhook_events() -> Vec<String> {
    WEBHOOK_EVENTS.iter().map(|e| e.to_string()).collect()
}
fn default_webhook_timeout_ms() -> u64 {
    5_000
}
fn default_webhook_max_retries() -> u32 {
    3
}
fn default_webhook_backoff_ms() -> Vec<u64> {
    vec![1_000, 5_000, 30_000]
}

#[derive(Clone, Debug, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookDelivery {
    /// TEST ONLY: `ip:port` receivers that may be reached over plain http and
    /// at a private address. Logged loudly; refused by the production-safety check.
    pub allow_insecure_destinations: Vec<std::net::SocketAddr>,
}

/// Expand `${NAME}` from the environment; `$${` is a literal `${`. A variable
/// that is not set is an error naming it (a webhook never goes out half-configured).
pub fn expand_env(value: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        if rest[..start].ends_with('$') {
            out.push_str(&rest[..start - 1]);
            out.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| format!("unterminated ${{ in {value:?}"))?;
        let name = &after[..end];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("invalid variable name {name:?}"));
        }
        let resolved = std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))?;
        out.push_str(&resolved);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// SIGTERM (supervisor or systemd): the broker refuses new executions with
/// 503 `draining` and waits for the ones in flight, at most this long; any
/// still running are then abandoned and stay listed as unresolved intents.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Shutdown {
    pub in_flight_grace_ms: u64,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown { in_flight_grace_ms: 30_000 }
    }
}

/// `[redis]`: replay cache, budgets, approval claims and revocation epoch in
/// Redis (docs/production.md). Every command is bounded by `command_timeout_ms`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port[/db]`, `rediss://host:port[/db]` (TLS) or `unix:///path/redis.sock`.
    pub url: String,
    /// Prepended to every key, so several gates can share one Redis.
    #[serde(default = "RedisConfig::default_key_prefix")]
    pub key_prefix: String,
    /// Time to (re)establish the connection.
    #[serde(default = "RedisConfig::default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Longest any one command may take before the request answers 503.
    #[serde(default = "RedisConfig::default_command_timeout_ms")]
    pub command_timeout_ms: u64,
}

impl RedisConfig {
    fn default_key_prefix() -> String {
        "latchgate:".into()
    }
    fn default_connect_timeout_ms() -> u64 {
        1_000
    }
    fn default_command_timeout_ms() -> u64 {
        500
    }
}

/// `[opa]`: the policy decision point over HTTP (`POST {url}/v1/data/latchgate/decision`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpaConfig {
    /// `http://host:port` of the OPA server (no path).
    pub url: String,
    /// Longest one decision may take before the request answers 503 `policy_engine_timeout`.
    #[serde(default = "OpaConfig::default_timeout_ms")]
    pub timeout_ms: u64,
}

impl OpaConfig {
    fn default_timeout_ms() -> u64 {
        1_000
    }
}

/// Upper bound of the Redis and OPA timeouts: a dependency slower than this is down.
pub const MAX_DEPENDENCY_TIMEOUT_MS: u64 = 30_000;

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
#[derive(Clone, Debug, Serialize, Deserialize)]
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
    /// Seconds a name's resolved addresses are reused by the executor before
    /// it resolves the name again (0: on every request). A ceiling, not the
    /// record's TTL, which the system resolver does not report. The addresses
    /// are classified on every request either way.
    pub dns_cache_seconds: u32,
}

/// Longest `egress.dns_cache_seconds` accepted.
pub const MAX_DNS_CACHE_SECONDS: u32 = 300;

impl Default for Egress {
    fn default() -> Self {
        Egress {
            proxy_url: None,
            extra_ports: Vec::new(),
            allow_private_destinations: Vec::new(),
            test_root_ca_file: None,
            test_secrets_over_http: false,
            dns_cache_seconds: 5,
        }
    }
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
            redis: None,
            opa: None,
            listen_tcp_addr: None,
            unsafe_expose_http: false,
            approvals: Approvals::default(),
            operator_limits: OperatorLimits::default(),
            shutdown: Shutdown::default(),
            webhooks: Vec::new(),
            webhook_delivery: WebhookDelivery::default(),
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
    /// Standalone mode: the same by user name (systemd units run each process
    /// as its own system user, whose uid differs per host). Resolved when the
    /// config is loaded, before any process confines itself; a name that is
    /// not a user is a config error.
    pub peer_users: BTreeMap<String, String>,
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

/// Longest an approval may stay pending (a day): a held call is not a queue.
pub const MAX_APPROVAL_TTL_SECONDS: u64 = 86_400;

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

    /// `[ipc.peer_users]` names become `peer_uids` entries. Done by each child
    /// process at start, before it confines itself (the user database is not
    /// readable afterwards); not by the CLI, which may run before the users exist.
    pub fn resolve_peer_users(&mut self) -> Result<(), ConfigError> {
        let users = self.config.ipc.peer_users.clone();
        for (role, name) in users {
            let field = format!("ipc.peer_users.{role}");
            let uid = match nix::unistd::User::from_name(&name) {
                Ok(Some(user)) => user.uid.as_raw(),
                Ok(None) => return Err(self.invalid(&field, format!("no user named {name:?} on this host"))),
                Err(e) => return Err(self.invalid(&field, format!("cannot look up user {name:?}: {e}"))),
            };
            match self.config.ipc.peer_uids.get(&role) {
                Some(&configured) if configured != uid => {
                    return Err(self.invalid(
                        &field,
                        format!("user {name:?} is uid {uid} but ipc.peer_uids.{role} = {configured}"),
                    ));
                }
                _ => {
                    self.config.ipc.peer_uids.insert(role, uid);
                }
            }
        }
        Ok(())
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
        for role in c.ipc.peer_users.keys() {
            if crate::role::Role::parse(role).is_none() {
                return Err(self.invalid(&format!("ipc.peer_users.{role}"), "unknown role"));
            }
        }
        if let Some(proxy) = &c.egress.proxy_url {
            let url = url::Url::parse(proxy).map_err(|e| self.invalid("egress.proxy_url", e.to_string()))?;
            if url.scheme() != "http" || url.host_str().is_none() || url.port_or_known_default().is_none() {
                return Err(self.invalid("egress.proxy_url", "must be http://host:port"));
            }
        }
        if c.egress.dns_cache_seconds > MAX_DNS_CACHE_SECONDS {
            return Err(self.invalid("egress.dns_cache_seconds", format!("at most {MAX_DNS_CACHE_SECONDS}")));
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
        if !(1..=MAX_APPROVAL_TTL_SECONDS).contains(&c.approvals.ttl_seconds) {
            return Err(self.invalid("approvals.ttl_seconds", format!("must be 1..={MAX_APPROVAL_TTL_SECONDS}")));
        }
        if c.approvals.sweep_interval_ms == 0 {
            return Err(self.invalid("approvals.sweep_interval_ms", "must be > 0"));
        }
        if c.operator_limits.writes_per_second == 0 || c.operator_limits.reads_per_second == 0 {
            return Err(self.invalid("operator_limits", "rates must be > 0"));
        }
        self.validate_webhooks()?;
        self.validate_dependencies()
    }

    fn validate_dependencies(&self) -> Result<(), ConfigError> {
        let c = &self.config;
        let timeout_ok = |ms: u64| (1..=MAX_DEPENDENCY_TIMEOUT_MS).contains(&ms);
        if let Some(redis) = &c.redis {
            redis_endpoint(&redis.url).map_err(|m| self.invalid("redis.url", m))?;
            for (field, ms) in [
                ("redis.connect_timeout_ms", redis.connect_timeout_ms),
                ("redis.command_timeout_ms", redis.command_timeout_ms),
            ] {
                if !timeout_ok(ms) {
                    return Err(self.invalid(field, format!("must be 1..={MAX_DEPENDENCY_TIMEOUT_MS}")));
                }
            }
        }
        if let Some(opa) = &c.opa {
            opa_endpoint(&opa.url).map_err(|m| self.invalid("opa.url", m))?;
            if !timeout_ok(opa.timeout_ms) {
                return Err(self.invalid("opa.timeout_ms", format!("must be 1..={MAX_DEPENDENCY_TIMEOUT_MS}")));
            }
        }
        if c.mode == Mode::Production {
            if c.redis.is_none() {
                return Err(self.invalid("redis", "mode = \"production\" needs [redis] url (the state store)"));
            }
            if c.opa.is_none() {
                return Err(self.invalid("opa", "mode = \"production\" needs [opa] url (the policy engine)"));
            }
        }
        Ok(())
    }

    fn validate_webhooks(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::BTreeSet::new();
        for (index, hook) in self.config.webhooks.iter().enumerate() {
            let field = |what: &str| format!("webhooks[{index}].{what}");
            let valid_name = !hook.name.is_empty()
                && hook.name.len() <= 64
                && hook.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid_name {
                return Err(self.invalid(&field("name"), "1-64 characters of [A-Za-z0-9_-]"));
            }
            if !names.insert(hook.name.as_str()) {
                return Err(self.invalid(&field("name"), format!("{:?} is used twice", hook.name)));
            }
            self.webhook_destination(hook).map_err(|m| self.invalid(&field("url"), m))?;
            if hook.secret.is_empty() {
                return Err(self.invalid(&field("secret"), "must not be empty"));
            }
            if hook.events.is_empty() {
                return Err(self.invalid(&field("events"), "subscribe to at least one event"));
            }
            if let Some(unknown) = hook.events.iter().find(|e| !WEBHOOK_EVENTS.contains(&e.as_str())) {
                return Err(self.invalid(
                    &field("events"),
                    format!("unknown event {unknown:?}; known: {}", WEBHOOK_EVENTS.join(", ")),
                ));
            }
            for name in hook.headers.keys() {
                let lower = name.to_ascii_lowercase();
                let token = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
                if !token
                    || WEBHOOK_RESERVED_HEADERS.contains(&lower.as_str())
                    || lower.starts_with(WEBHOOK_HEADER_PREFIX)
                {
                    return Err(self.invalid(
                        &field(&format!("headers.{name}")),
                        "must be a header name the broker does not set itself",
                    ));
                }
            }
            if !(1..=60_000).contains(&hook.timeout_ms) {
                return Err(self.invalid(&field("timeout_ms"), "must be 1..=60000"));
            }
            if hook.max_retries > 20 {
                return Err(self.invalid(&field("max_retries"), "must be <= 20"));
            }
            if hook.backoff_ms.is_empty() || hook.backoff_ms.iter().any(|b| *b == 0 || *b > 3_600_000) {
                return Err(self.invalid(&field("backoff_ms"), "one or more delays of 1..=3600000 ms"));
            }
        }
        Ok(())
    }

    /// The receiver of `hook` if its URL passes the SSRF rule: `https://` to a
    /// host (names are resolved and checked again at every delivery), or plain
    /// `http://` only to a test-only insecure destination given as `ip:port`.
    pub fn webhook_destination(&self, hook: &Webhook) -> Result<url::Url, String> {
        let url = url::Url::parse(&hook.url).map_err(|e| e.to_string())?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err("credentials in the URL are not allowed; use headers".into());
        }
        let host = url.host().ok_or("URL has no host")?;
        let port = url.port_or_known_default().ok_or("URL has no port")?;
        let insecure_allowed = match host {
            url::Host::Ipv4(ip) => self.insecure_webhook_destination(std::net::SocketAddr::new(ip.into(), port)),
            url::Host::Ipv6(ip) => self.insecure_webhook_destination(std::net::SocketAddr::new(ip.into(), port)),
            url::Host::Domain(_) => false,
        };
        match url.scheme() {
            "https" => {}
            "http" if insecure_allowed => {}
            _ => return Err("must be https:// (plain http only for a test-only webhook_delivery destination)".into()),
        }
        let literal = match host {
            url::Host::Ipv4(ip) => Some(std::net::IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => Some(std::net::IpAddr::V6(ip)),
            url::Host::Domain(_) => None,
        };
        if let Some(ip) = literal
            && !insecure_allowed
            && let crate::address::AddressVerdict::Forbidden(range) = crate::address::classify(ip)
        {
            return Err(format!("{ip} is a {range} address"));
        }
        Ok(url)
    }

    /// TEST ONLY escape hatch of the webhook SSRF rule.
    pub fn insecure_webhook_destination(&self, addr: std::net::SocketAddr) -> bool {
        self.config.webhook_delivery.allow_insecure_destinations.contains(&addr)
    }

    /// TCP ports of the configured webhook receivers (the broker's Landlock rules allow these).
    pub fn webhook_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> =
            self.config.webhooks.iter().filter_map(|h| url::Url::parse(&h.url).ok()?.port_or_known_default()).collect();
        ports.sort_unstable();
        ports.dedup();
        ports
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

    /// TCP ports the broker connects to: Redis (unless over a Unix socket), OPA and webhook receivers.
    pub fn broker_tcp_ports(&self) -> Vec<u16> {
        let redis = self.config.redis.as_ref().and_then(|r| match redis_endpoint(&r.url) {
            Ok(DependencyEndpoint::Tcp { port, .. }) => Some(port),
            _ => None,
        });
        let opa = self.config.opa.as_ref().and_then(|o| match opa_endpoint(&o.url) {
            Ok(DependencyEndpoint::Tcp { port, .. }) => Some(port),
            _ => None,
        });
        let mut ports: Vec<u16> = redis.into_iter().chain(opa).chain(self.webhook_ports()).collect();
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

/// Where a dependency lives, parsed from its URL (for Landlock ports, doctor and status).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DependencyEndpoint {
    Tcp { host: String, port: u16, tls: bool },
    Unix { path: PathBuf },
}

impl std::fmt::Display for DependencyEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DependencyEndpoint::Tcp { host, port, tls } => {
                write!(f, "{}{host}:{port}", if *tls { "tls " } else { "" })
            }
            DependencyEndpoint::Unix { path } => write!(f, "unix {}", path.display()),
        }
    }
}

/// `redis://`, `rediss://` or `unix://` (the forms the redis client accepts).
pub fn redis_endpoint(url: &str) -> Result<DependencyEndpoint, String> {
    let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    match parsed.scheme() {
        "redis" | "rediss" => {
            let host = parsed.host_str().filter(|h| !h.is_empty()).ok_or("needs a host")?;
            let port = parsed.port().unwrap_or(6379);
            Ok(DependencyEndpoint::Tcp { host: host.to_string(), port, tls: parsed.scheme() == "rediss" })
        }
        "unix" => {
            let path = PathBuf::from(parsed.path());
            if !path.is_absolute() || parsed.path().len() <= 1 {
                return Err("unix:// needs an absolute socket path (unix:///run/redis/redis.sock)".into());
            }
            Ok(DependencyEndpoint::Unix { path })
        }
        other => Err(format!("scheme {other} is not redis, rediss or unix")),
    }
}

/// `http://host:port`, nothing after the authority.
pub fn opa_endpoint(url: &str) -> Result<DependencyEndpoint, String> {
    let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    if parsed.scheme() != "http" {
        return Err("must be http://host:port (OPA runs beside the broker; TLS to OPA is not supported)".into());
    }
    let host = parsed.host_str().filter(|h| !h.is_empty()).ok_or("needs a host")?;
    if parsed.path() != "/" || parsed.query().is_some() || parsed.fragment().is_some() {
        return Err("must have no path, query or fragment (the decision path is fixed)".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not carry credentials".into());
    }
    let port = parsed.port_or_known_default().ok_or("needs a port")?;
    Ok(DependencyEndpoint::Tcp { host: host.to_string(), port, tls: false })
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
    fn peer_users_resolve_to_uids_and_unknown_users_are_named() {
        let resolved = |text: &str| {
            let mut c = LoadedConfig::from_str(Path::new("x.toml"), text)?;
            c.resolve_peer_users().map(|()| c)
        };
        let c = resolved("[ipc.peer_users]\nbroker = \"root\"\n").unwrap();
        assert_eq!(c.expected_peer_uid(crate::role::Role::Broker), 0);
        let e = resolved("[ipc.peer_users]\nsigner = \"no-such-user-lg\"\n").unwrap_err();
        assert!(e.to_string().contains("ipc.peer_users.signer") && e.to_string().contains("no-such-user-lg"), "{e}");
        let e = resolved("[ipc.peer_uids]\nbroker = 7\n[ipc.peer_users]\nbroker = \"root\"\n").unwrap_err();
        assert!(e.to_string().contains("uid 0"), "{e}");
    }

    fn webhook(url: &str) -> String {
        format!("[[webhooks]]\nname = \"ops\"\nurl = \"{url}\"\nsecret = \"s\"\n")
    }

    #[test]
    fn webhooks_must_be_https_to_a_public_host_unless_a_test_destination() {
        let load = |text: &str| LoadedConfig::from_str(Path::new("x.toml"), text);
        let ok = load(&webhook("https://hooks.example.com/x")).unwrap();
        assert_eq!(ok.config.webhooks[0].events.len(), WEBHOOK_EVENTS.len(), "default: every event");
        assert_eq!(ok.config.webhooks[0].backoff_ms, [1_000, 5_000, 30_000]);
        assert_eq!(ok.webhook_ports(), [443]);
        for bad in [
            "http://hooks.example.com/x",
            "https://127.0.0.1/x",
            "https://10.0.0.8/x",
            "https://[::1]/x",
            "https://u:p@hooks.example.com/",
        ] {
            let e = load(&webhook(bad)).unwrap_err();
            assert!(e.to_string().contains("webhooks[0].url"), "{bad}: {e}");
        }
        let test = format!(
            "{}[webhook_delivery]\nallow_insecure_destinations = [\"127.0.0.1:8080\"]\n",
            webhook("http://127.0.0.1:8080/x")
        );
        load(&test).unwrap();
        let other_port = test.replace("127.0.0.1:8080/x", "127.0.0.1:8081/x");
        assert!(load(&other_port).is_err(), "the override is for that exact ip:port only");
    }

    #[test]
    fn webhook_fields_are_checked_and_named() {
        let load = |extra: &str| {
            LoadedConfig::from_str(Path::new("x.toml"), &format!("{}{extra}", webhook("https://h.example.com/")))
        };
        for (extra, field) in [
            ("events = [\"action.exploded\"]\n", "events"),
            ("headers = { \"X-LatchGate-Signature\" = \"forged\" }\n", "headers"),
            ("headers = { \"Content-Type\" = \"text/plain\" }\n", "headers"),
            ("timeout_ms = 0\n", "timeout_ms"),
            ("backoff_ms = []\n", "backoff_ms"),
        ] {
            let e = load(extra).unwrap_err();
            assert!(e.to_string().contains(&format!("webhooks[0].{field}")), "{extra}: {e}");
        }
        let twice = format!("{}{}", webhook("https://a.example.com/"), webhook("https://b.example.com/"));
        assert!(LoadedConfig::from_str(Path::new("x.toml"), &twice).unwrap_err().to_string().contains("used twice"));
    }

    #[test]
    fn env_references_expand_and_a_missing_variable_is_named() {
        let path = std::env::var("PATH").expect("PATH is set for tests");
        assert_eq!(expand_env("Bearer ${PATH}!").unwrap(), format!("Bearer {path}!"));
        assert_eq!(expand_env("$${PATH}").unwrap(), "${PATH}");
        assert!(expand_env("${LG_TEST_NOT_SET_EVER}").unwrap_err().contains("LG_TEST_NOT_SET_EVER"));
        assert!(expand_env("${oops").is_err());
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
    fn dns_cache_seconds_defaults_to_five_and_is_bounded() {
        let c = LoadedConfig::from_str(Path::new("x.toml"), "").unwrap();
        assert_eq!(c.config.egress.dns_cache_seconds, 5);
        let c = LoadedConfig::from_str(Path::new("x.toml"), "[egress]\ndns_cache_seconds = 0\n").unwrap();
        assert_eq!(c.config.egress.dns_cache_seconds, 0);
        let e = LoadedConfig::from_str(Path::new("x.toml"), "[egress]\ndns_cache_seconds = 301\n").unwrap_err();
        assert!(e.to_string().contains("egress.dns_cache_seconds"), "{e}");
    }

    #[test]
    fn non_numeric_principal_uid_is_refused() {
        let text = "[identity.peercred.principals.alice]\nprincipal = \"a\"\n";
        let e = LoadedConfig::from_str(Path::new("x.toml"), text).unwrap_err();
        assert!(e.to_string().contains("principals.alice"), "{e}");
    }

    #[test]
    fn dependency_urls_are_checked_and_ports_collected() {
        let text = "[redis]\nurl = \"redis://10.0.0.5:6380/2\"\n[opa]\nurl = \"http://127.0.0.1:8181\"\n";
        let c = LoadedConfig::from_str(Path::new("x.toml"), text).unwrap();
        assert_eq!(c.broker_tcp_ports(), vec![6380, 8181]);
        assert_eq!(c.config.redis.as_ref().unwrap().key_prefix, "latchgate:");
        let unix = "[redis]\nurl = \"unix:///run/redis.sock\"\n";
        assert!(LoadedConfig::from_str(Path::new("x.toml"), unix).unwrap().broker_tcp_ports().is_empty());
        for (text, field) in [
            ("[redis]\nurl = \"http://x\"\n", "redis.url"),
            ("[redis]\nurl = \"unix://\"\n", "redis.url"),
            ("[redis]\nurl = \"redis://x\"\ncommand_timeout_ms = 0\n", "redis.command_timeout_ms"),
            ("[opa]\nurl = \"https://opa:8181\"\n", "opa.url"),
            ("[opa]\nurl = \"http://opa:8181/v1/data\"\n", "opa.url"),
            ("mode = \"production\"\n[opa]\nurl = \"http://opa:8181\"\n", "redis"),
            ("mode = \"production\"\n[redis]\nurl = \"redis://r\"\n", "opa"),
        ] {
            let e = LoadedConfig::from_str(Path::new("x.toml"), text).unwrap_err();
            assert!(e.to_string().contains(&format!(": {field}:")), "{text}: {e}");
        }
    }
}
