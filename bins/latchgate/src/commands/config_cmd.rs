//! `latchgate config …`: check and edit `latchgate.toml`. Edits go through
//! `toml_edit`, so comments, order and layout of everything else stay as the
//! operator wrote them; every edit is validated as a whole config before the
//! file is replaced (atomically, keeping its mode).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use latchgate_client::DpopKey;
use latchgate_core::config::LoadedConfig;
use serde_json::{Value, json};
use toml_edit::{DocumentMut, Item, Table};

use super::admin_client::{default_key_path, der_to_pem};
use super::output::{self, Exit, Failure, sanitize};

#[derive(clap::Subcommand)]
pub enum ConfigCommand {
    /// Load and check the config (exit 1 naming the first bad field).
    Validate(JsonArgs),
    /// Print the effective value of a dotted KEY (defaults included), e.g. approvals.ttl_seconds.
    Get(GetArgs),
    /// Set a dotted KEY to VALUE (a TOML literal such as 5, true, "text"; bare words are strings).
    Set(SetArgs),
    /// Map an agent uid to a principal with scopes.
    AddPrincipal(AddPrincipalArgs),
    /// Create an operator: a P-256 key (written 0600) and an api key, added to the config.
    AddOperator(AddOperatorArgs),
    /// Remove an operator's credential (and its default key file).
    RemoveOperator(RemoveOperatorArgs),
    /// Send a signed `test` delivery to one webhook now (not through the outbox).
    TestWebhook(TestWebhookArgs),
}

#[derive(clap::Args)]
pub struct TestWebhookArgs {
    #[arg(value_name = "NAME")]
    name: String,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct JsonArgs {
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct GetArgs {
    key: String,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct SetArgs {
    key: String,
    value: String,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct AddPrincipalArgs {
    /// The agent's Unix uid (SO_PEERCRED).
    #[arg(long)]
    uid: u32,
    /// The principal name (the lease's `sub`, what the ACL names).
    #[arg(long)]
    principal: String,
    /// A scope the principal may hold (repeat for more).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// Who is responsible for this agent.
    #[arg(long)]
    owner: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct AddOperatorArgs {
    #[arg(long)]
    name: String,
    /// Where to write the private key (default: <config dir>/operators/NAME.pem).
    #[arg(long, value_name = "FILE")]
    key_out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct RemoveOperatorArgs {
    #[arg(long)]
    name: String,
    /// Leave the key file in place.
    #[arg(long)]
    keep_key: bool,
    #[arg(long)]
    json: bool,
}

pub fn run(config: &Path, command: ConfigCommand) -> ExitCode {
    match command {
        ConfigCommand::Validate(args) => output::finish(args.json, validate(config, &args)),
        ConfigCommand::Get(args) => output::finish(args.json, get(config, &args)),
        ConfigCommand::Set(args) => output::finish(args.json, set(config, &args)),
        ConfigCommand::AddPrincipal(args) => output::finish(args.json, add_principal(config, &args)),
        ConfigCommand::AddOperator(args) => output::finish(args.json, add_operator(config, &args)),
        ConfigCommand::RemoveOperator(args) => output::finish(args.json, remove_operator(config, &args)),
        ConfigCommand::TestWebhook(args) => {
            output::finish(args.json, super::webhooks::test_webhook(config, &args.name, args.json))
        }
    }
}

fn validate(config: &Path, args: &JsonArgs) -> Result<Exit, Failure> {
    let cfg = LoadedConfig::load(config)?;
    let c = &cfg.config;
    let unbound: Vec<&String> =
        c.operator_credentials.iter().filter(|(_, cred)| cred.dpop_jkt.is_none()).map(|(name, _)| name).collect();
    let doc = json!({
        "ok": true,
        "file": cfg.path,
        "mode": c.mode,
        "client_socket": cfg.client_socket(),
        "admin_socket": cfg.admin_socket(),
        "principals": c.identity.peercred.principals.len(),
        "operators": c.operator_credentials.keys().collect::<Vec<_>>(),
        "operators_without_dpop_jkt": unbound,
    });
    if args.json {
        output::print_json(&doc);
    } else {
        let mut out = format!(
            "{} is valid ({} mode, {} principal(s), {} operator(s))\n",
            cfg.path.display(),
            output::sanitize(&doc["mode"].to_string()),
            c.identity.peercred.principals.len(),
            c.operator_credentials.len()
        );
        for name in &unbound {
            out.push_str(&format!(
                "  warning: operator {} has no dpop_jkt and is refused at request time; recreate it with \
                 latchgate config add-operator\n",
                sanitize(name)
            ));
        }
        output::write_stdout(&out);
    }
    Ok(Exit::Ok)
}

fn get(config: &Path, args: &GetArgs) -> Result<Exit, Failure> {
    let cfg = LoadedConfig::load(config)?;
    let mut effective = serde_json::to_value(&cfg.config)
        .map_err(|e| Failure::new("output_encoding_failed", e, "report this as a bug"))?;
    // Api keys are credentials: `get` shows that one is set, never its value.
    if let Some(operators) = effective.get_mut("operator_credentials").and_then(Value::as_object_mut) {
        for credential in operators.values_mut() {
            if let Some(key) = credential.get_mut("api_key") {
                *key = "<redacted>".into();
            }
        }
    }
    let mut value = &effective;
    for part in args.key.split('.') {
        value = value.get(part).ok_or_else(|| {
            Failure::new(
                "config_key_unknown",
                format!("no config key {}", sanitize(&args.key)),
                "use a dotted key of latchgate.toml, e.g. approvals.ttl_seconds or limits.max_body_bytes",
            )
        })?;
    }
    if args.json {
        output::print_json(&json!({"key": args.key, "value": value}));
    } else {
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        output::write_stdout(&format!("{}\n", sanitize(&text)));
    }
    Ok(Exit::Ok)
}

fn read_document(config: &Path) -> Result<(String, DocumentMut), Failure> {
    let text = std::fs::read_to_string(config).map_err(|e| {
        Failure::new(
            "config_unreadable",
            format!("cannot read config {}: {e}", config.display()),
            "pass --config FILE or set LATCHGATE_CONFIG (`latchgate up` writes a default latchgate.toml)",
        )
    })?;
    let doc = text.parse::<DocumentMut>().map_err(|e| {
        Failure::new("config_parse_error", format!("{}: {e}", config.display()), "correct the TOML syntax first")
    })?;
    Ok((text, doc))
}

/// Validate `doc` as a whole config, then replace the file atomically.
fn write_document(config: &Path, doc: &DocumentMut) -> Result<(), Failure> {
    let text = doc.to_string();
    LoadedConfig::from_str(config, &text).map_err(|e| {
        Failure::new(
            e.code(),
            format!("the edit would make the config invalid, nothing written: {e}"),
            "check the value",
        )
    })?;
    write_atomically(config, text.as_bytes(), None)
}

/// Write `bytes` to `path` through a temp file in the same directory and a
/// rename; keeps the existing mode unless `mode` is given.
fn write_atomically(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<(), Failure> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let fail = |e: std::io::Error, p: &Path| {
        Failure::new("file_unwritable", format!("{}: {e}", p.display()), "run as a user who may write it")
    };
    let mode =
        mode.unwrap_or_else(|| std::fs::metadata(path).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o600));
    let tmp = path.with_extension(format!("lgtmp-{}", std::process::id()));
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp).map_err(|e| fail(e, &tmp))?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.set_permissions(std::fs::Permissions::from_mode(mode)))
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(e, &tmp));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(e, path)
    })
}

/// The table at `path` (dotted), created (implicit parents) as needed.
fn table_at<'d>(doc: &'d mut DocumentMut, path: &[&str]) -> Result<&'d mut Table, Failure> {
    let mut table = doc.as_table_mut();
    for part in path {
        let item = table.entry(part).or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        });
        table = item.as_table_mut().ok_or_else(|| {
            Failure::new("config_key_conflict", format!("`{part}` is not a table"), "edit latchgate.toml by hand")
        })?;
    }
    Ok(table)
}

fn set(config: &Path, args: &SetArgs) -> Result<Exit, Failure> {
    let (_, mut doc) = read_document(config)?;
    let parts: Vec<&str> = args.key.split('.').collect();
    let Some((leaf, parents)) = parts.split_last().filter(|(leaf, _)| !leaf.is_empty()) else {
        return Err(Failure::new("config_key_unknown", "empty key", "use a dotted key, e.g. approvals.ttl_seconds"));
    };
    let value: toml_edit::Value = args.value.parse().unwrap_or_else(|_| toml_edit::Value::from(args.value.as_str()));
    table_at(&mut doc, parents)?.insert(leaf, Item::Value(value.clone()));
    write_document(config, &doc)?;
    if args.json {
        output::print_json(&json!({"ok": true, "key": args.key, "value": value.to_string().trim()}));
    } else {
        output::write_stdout(&format!(
            "set {} = {} in {} (restart the gate to apply)\n",
            sanitize(&args.key),
            sanitize(value.to_string().trim()),
            config.display()
        ));
    }
    Ok(Exit::Ok)
}

fn add_principal(config: &Path, args: &AddPrincipalArgs) -> Result<Exit, Failure> {
    let name_ok = !args.principal.is_empty()
        && args.principal.len() <= 128
        && args.principal.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.@:-".contains(&b));
    if !name_ok {
        return Err(Failure::new(
            "invalid_principal",
            format!("invalid principal `{}`", sanitize(&args.principal)),
            "a principal is 1-128 letters, digits or `_ . @ : -`",
        ));
    }
    let (_, mut doc) = read_document(config)?;
    let uid = args.uid.to_string();
    let principals = table_at(&mut doc, &["identity", "peercred", "principals"])?;
    if principals.contains_key(&uid) {
        return Err(Failure::new(
            "principal_exists",
            format!("uid {uid} is already mapped"),
            "edit or remove its [identity.peercred.principals.UID] table first",
        ));
    }
    let mut entry = Table::new();
    entry.insert("principal", toml_edit::value(args.principal.as_str()));
    let mut scopes = toml_edit::Array::new();
    for scope in &args.scopes {
        scopes.push(scope.as_str());
    }
    entry.insert("scopes", toml_edit::value(scopes));
    if let Some(owner) = &args.owner {
        entry.insert("owner", toml_edit::value(owner.as_str()));
    }
    principals.insert(&uid, Item::Table(entry));
    write_document(config, &doc)?;
    if args.json {
        output::print_json(&json!({"ok": true, "uid": args.uid, "principal": args.principal, "scopes": args.scopes}));
    } else {
        output::write_stdout(&format!(
            "mapped uid {} to principal {} (scopes: {}); restart the gate to apply, and grant actions with \
             latchgate policy grant {} <action>\n",
            args.uid,
            sanitize(&args.principal),
            sanitize(&args.scopes.join(", ")),
            sanitize(&args.principal),
        ));
    }
    Ok(Exit::Ok)
}

fn check_operator_name(name: &str) -> Result<(), Failure> {
    let ok =
        !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Failure::new(
            "invalid_operator_name",
            format!("invalid operator name `{}`", sanitize(name)),
            "an operator name is 1-64 letters, digits, `_` or `-`",
        ))
    }
}

/// 32 random bytes, base64url, with a prefix that makes a leaked key easy to spot.
fn new_api_key() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("lgop_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn add_operator(config: &Path, args: &AddOperatorArgs) -> Result<Exit, Failure> {
    check_operator_name(&args.name)?;
    let cfg = LoadedConfig::load(config)?;
    if cfg.config.operator_credentials.contains_key(&args.name) {
        return Err(Failure::new(
            "operator_exists",
            format!("operator {} already exists", args.name),
            "remove it first (latchgate config remove-operator --name NAME) or pick another name",
        ));
    }
    let key_path = args.key_out.clone().unwrap_or_else(|| default_key_path(&cfg, &args.name));
    if key_path.exists() {
        return Err(Failure::new(
            "file_exists",
            format!("{} already exists", key_path.display()),
            "move it away or pass --key-out FILE",
        ));
    }
    let pkcs8 = latchgate_core::jose::generate_es256_pkcs8()
        .map_err(|e| Failure::new("key_generation_failed", e, "report this as a bug"))?;
    let key =
        DpopKey::from_pkcs8(&pkcs8).map_err(|e| Failure::new("key_generation_failed", e, "report this as a bug"))?;
    let api_key = new_api_key();
    let (_, mut doc) = read_document(config)?;
    let credentials = table_at(&mut doc, &["operator_credentials"])?;
    let mut entry = Table::new();
    entry.insert("api_key", toml_edit::value(api_key.as_str()));
    entry.insert("dpop_jkt", toml_edit::value(key.thumbprint()));
    credentials.insert(&args.name, Item::Table(entry));
    // The key file first: a config naming a key nobody holds is worse than a stray key file.
    if let Some(dir) = key_path.parent() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| {
            Failure::new("file_unwritable", format!("{}: {e}", dir.display()), "pass a writable --key-out FILE")
        })?;
    }
    write_atomically(&key_path, der_to_pem(&pkcs8).as_bytes(), Some(0o600))?;
    if let Err(e) = write_document(config, &doc) {
        let _ = std::fs::remove_file(&key_path);
        return Err(e);
    }
    if args.json {
        output::print_json(&json!({
            "ok": true, "operator": args.name, "key_file": key_path, "dpop_jkt": key.thumbprint(), "config": config,
        }));
    } else {
        output::write_stdout(&format!(
            "added operator {} (dpop_jkt {})\n  private key {} (0600: keep it secret, it is the operator)\n  \
             restart the gate to activate; then: latchgate --operator {} status\n",
            args.name,
            key.thumbprint(),
            key_path.display(),
            args.name
        ));
    }
    Ok(Exit::Ok)
}

fn remove_operator(config: &Path, args: &RemoveOperatorArgs) -> Result<Exit, Failure> {
    check_operator_name(&args.name)?;
    let cfg = LoadedConfig::load(config)?;
    let (_, mut doc) = read_document(config)?;
    let removed =
        doc.get_mut("operator_credentials").and_then(Item::as_table_like_mut).and_then(|t| t.remove(&args.name));
    if removed.is_none() {
        return Err(Failure::new(
            "operator_not_configured",
            format!("no operator {}", sanitize(&args.name)),
            "list them with latchgate config get operator_credentials",
        ));
    }
    write_document(config, &doc)?;
    let key_path = default_key_path(&cfg, &args.name);
    let key_removed = !args.keep_key && std::fs::remove_file(&key_path).is_ok();
    if args.json {
        output::print_json(&json!({"ok": true, "operator": args.name, "key_file_removed": key_removed}));
    } else {
        output::write_stdout(&format!(
            "removed operator {}{}; restart the gate to apply\n",
            args.name,
            if key_removed { format!(" and {}", key_path.display()) } else { String::new() }
        ));
    }
    Ok(Exit::Ok)
}
