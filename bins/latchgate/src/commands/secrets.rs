//! `latchgate secrets init|set|get|list|remove|rotate-key|check`: the SOPS
//! secrets file the signer releases per grant, edited through the signer's
//! own SOPS code (`latchgate_signer::sops`) — files stay readable and
//! editable by the real `sops` 3.x, and no external program is run.
//!
//! A value is read from stdin or a no-echo prompt, never from argv (which
//! every local user can read in `/proc`). Edits are serialised with a lock
//! on the secrets file's directory, and each file is replaced atomically
//! keeping its owner (the signer's user), so the running signer sees the
//! new file on its next request.

use std::io::{IsTerminal, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use latchgate_core::config::LoadedConfig;
use latchgate_core::manifest::{Registry, is_valid_secret_name};
use latchgate_signer::secrets_check::{self, Finding, Status};
use latchgate_signer::sops::{
    self, AgeIdentities, DecryptedDocument, EncryptedDocument, Format, SopsError, read_secrets_file,
    replace_private_file,
};
use serde::Serialize;
use zeroize::Zeroizing;

use super::output::{self, Exit, Failure, Table, Tone};

/// File names `init` uses in the key dir when `[secrets]` is not configured.
const DEFAULT_SECRETS_FILE: &str = "secrets.yaml";
const DEFAULT_KEY_FILE: &str = "age-key.txt";
/// Where sops looks for its creation rules (in the file's directory or above).
const SOPS_CONFIG: &str = ".sops.yaml";
/// Longest value `set` accepts.
const MAX_VALUE_BYTES: usize = 64 * 1024;

#[derive(clap::Subcommand)]
pub enum SecretsCommand {
    /// Create an age key, an empty SOPS file and a .sops.yaml (default: in the key dir) and set [secrets].
    Init(InitArgs),
    /// Store NAME; the value is read from stdin, or from a prompt that does not echo.
    Set(NameArgs),
    /// Print the value of NAME (operators only: needs the age key).
    Get(NameArgs),
    /// Names in the secrets file and the actions that use them (never values).
    List(JsonArg),
    /// Delete NAME.
    Remove(NameArgs),
    /// New age key and new data key; the secrets file is re-encrypted, the old key stops working.
    RotateKey(JsonArg),
    /// The secrets checks of `latchgate doctor`: key permissions, decryption, required secrets present.
    Check(JsonArg),
}

#[derive(clap::Args)]
pub struct InitArgs {
    /// File format of a new secrets file (ignored when [secrets] names the file).
    #[arg(long, value_enum, default_value = "yaml")]
    format: FileFormat,
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum FileFormat {
    Yaml,
    Json,
}

#[derive(clap::Args)]
pub struct NameArgs {
    /// Secret name, as manifests declare it (`^[A-Z][A-Z0-9_]{0,63}$`).
    name: String,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct JsonArg {
    #[arg(long)]
    json: bool,
}

pub fn run(config: &Path, command: SecretsCommand) -> ExitCode {
    match command {
        SecretsCommand::Init(args) => output::finish(args.json, init(config, &args)),
        SecretsCommand::Set(args) => output::finish(args.json, set(config, &args)),
        SecretsCommand::Get(args) => output::finish(args.json, get(config, &args)),
        SecretsCommand::List(args) => output::finish(args.json, list(config, args.json)),
        SecretsCommand::Remove(args) => output::finish(args.json, remove(config, &args)),
        SecretsCommand::RotateKey(args) => output::finish(args.json, rotate_key(config, args.json)),
        SecretsCommand::Check(args) => output::finish(args.json, check(config, args.json)),
    }
}

struct Paths {
    secrets_file: PathBuf,
    key_file: PathBuf,
}

fn configured(cfg: &LoadedConfig) -> Result<Paths, Failure> {
    match cfg.secrets_files() {
        Some((secrets_file, key_file)) => Ok(Paths { secrets_file, key_file }),
        None => Err(Failure::new(
            "secrets_not_configured",
            format!("{} has no [secrets] section", cfg.path.display()),
            "run `latchgate secrets init`",
        )),
    }
}

fn sops_failure(e: SopsError) -> Failure {
    let remediation = secrets_check::remedy(&e);
    Failure::new(e.code(), e, remediation)
}

fn check_name(name: &str) -> Result<(), Failure> {
    if is_valid_secret_name(name) {
        return Ok(());
    }
    Err(Failure::new(
        "secret_name_invalid",
        format!("`{}` is not a secret name", output::sanitize(name)),
        "use upper-case letters, digits and `_`, starting with a letter (GITHUB_TOKEN), at most 64",
    ))
}

/// The file, decrypted, with the identities that opened it.
fn open(paths: &Paths) -> Result<(DecryptedDocument, AgeIdentities), Failure> {
    let identities = AgeIdentities::load(&paths.key_file).map_err(sops_failure)?;
    let (text, _) = read_secrets_file(&paths.secrets_file).map_err(sops_failure)?;
    let format = Format::from_path(&paths.secrets_file).map_err(sops_failure)?;
    let document =
        EncryptedDocument::parse(&text, format).and_then(|d| d.decrypt(&identities)).map_err(sops_failure)?;
    Ok((document, identities))
}

fn save(paths: &Paths, document: &DecryptedDocument) -> Result<(), Failure> {
    let text = document.encrypt(time::OffsetDateTime::now_utc()).map_err(sops_failure)?;
    replace_private_file(&paths.secrets_file, text.as_bytes()).map_err(sops_failure)
}

fn lock(paths: &Paths) -> Result<nix::fcntl::Flock<std::fs::File>, Failure> {
    super::lock::lock_parent_dir(
        &paths.secrets_file,
        "secrets_io_error",
        "run as a user that can read and write the secrets file's directory (usually root)",
    )
}

#[derive(Serialize)]
struct InitResult<'a> {
    ok: bool,
    secrets_file: &'a Path,
    key_file: &'a Path,
    recipient: String,
    /// `.sops.yaml` written for the real sops (none when one was already there).
    sops_config: Option<PathBuf>,
    /// `[secrets]` was added to the config file.
    config_updated: bool,
}

fn init(config: &Path, args: &InitArgs) -> Result<Exit, Failure> {
    let cfg = LoadedConfig::load(config)?;
    let (paths, config_updated) = match cfg.secrets_files() {
        Some((secrets_file, key_file)) => (Paths { secrets_file, key_file }, false),
        None => {
            let file = match args.format {
                FileFormat::Yaml => DEFAULT_SECRETS_FILE,
                FileFormat::Json => "secrets.json",
            };
            (Paths { secrets_file: cfg.key_dir().join(file), key_file: cfg.key_dir().join(DEFAULT_KEY_FILE) }, true)
        }
    };
    for existing in [&paths.secrets_file, &paths.key_file] {
        if std::fs::symlink_metadata(existing).is_ok() {
            return Err(Failure::new(
                "secrets_already_initialised",
                format!("{} already exists", existing.display()),
                "use `latchgate secrets set`, or `rotate-key` for a new key",
            ));
        }
    }
    for dir in [paths.secrets_file.parent(), paths.key_file.parent()].into_iter().flatten() {
        create_private_dir(dir)?;
    }
    let format = Format::from_path(&paths.secrets_file).map_err(sops_failure)?;
    let identities = AgeIdentities::generate();
    let recipient = identities.primary_recipient();
    let document = DecryptedDocument::new_empty(&recipient, format).map_err(sops_failure)?;
    replace_private_file(&paths.key_file, identities.to_file_text(&now_text()).as_bytes()).map_err(sops_failure)?;
    save(&paths, &document)?;
    let sops_config = write_sops_config(&paths.secrets_file, &recipient)?;
    if config_updated {
        add_secrets_section(&cfg.path, &paths)?;
    }
    let result = InitResult {
        ok: true,
        secrets_file: &paths.secrets_file,
        key_file: &paths.key_file,
        recipient,
        sops_config,
        config_updated,
    };
    if args.json {
        output::print_json(&result);
    } else {
        println!("created {} (age key, 0600)", result.key_file.display());
        println!("created {} (empty SOPS file for {})", result.secrets_file.display(), result.recipient);
        if let Some(p) = &result.sops_config {
            println!("created {} (sops finds the recipient here)", p.display());
        }
        if config_updated {
            println!("added [secrets] to {}", cfg.path.display());
        }
        println!("next: latchgate secrets set NAME   (restart the gate to load a new [secrets] section)");
    }
    Ok(Exit::Ok)
}

fn create_private_dir(dir: &Path) -> Result<(), Failure> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| {
        Failure::new("secrets_io_error", format!("{}: {e}", dir.display()), "create the directory or fix [secrets]")
    })
}

/// `.sops.yaml` beside the secrets file so that `sops edit` finds the
/// recipient; an existing one is left alone (it may hold other rules).
fn write_sops_config(secrets_file: &Path, recipient: &str) -> Result<Option<PathBuf>, Failure> {
    let dir = secrets_file.parent().unwrap_or(Path::new("."));
    let path = dir.join(SOPS_CONFIG);
    if path.exists() {
        return Ok(None);
    }
    let name = secrets_file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let text = format!(
        "# Written by `latchgate secrets init`: the recipient of {name}.\ncreation_rules:\n  - path_regex: '(^|/){}$'\n    age: {recipient}\n",
        regex_escape(&name)
    );
    // Owner-only like everything else in the key dir (production safety
    // refuses group- or world-readable files there).
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
        .map_err(|e| Failure::new("secrets_io_error", format!("{}: {e}", path.display()), "check the directory"))?;
    Ok(Some(path))
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c.to_string() } else { format!("\\{c}") })
        .collect()
}

/// `[secrets]` appended to the config with its comments kept (toml_edit).
fn add_secrets_section(config: &Path, paths: &Paths) -> Result<(), Failure> {
    let fail = |e: &dyn std::fmt::Display| {
        Failure::new("config_unwritable", format!("{}: {e}", config.display()), "add [secrets] to the config by hand")
    };
    let text = std::fs::read_to_string(config).map_err(|e| fail(&e))?;
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| fail(&e))?;
    let mut table = toml_edit::Table::new();
    table.decor_mut().set_prefix("\n# SOPS secrets released per grant (written by `latchgate secrets init`).\n");
    table["sops_secrets_file"] = toml_edit::value(paths.secrets_file.display().to_string());
    table["sops_key_file"] = toml_edit::value(paths.key_file.display().to_string());
    doc["secrets"] = toml_edit::Item::Table(table);
    let tmp = config.with_extension("toml.tmp");
    let mode = std::fs::metadata(config).map_err(|e| fail(&e))?.permissions();
    std::fs::write(&tmp, doc.to_string())
        .and_then(|()| std::fs::set_permissions(&tmp, mode))
        .and_then(|()| std::fs::rename(&tmp, config))
        .map_err(|e| fail(&e))
}

fn now_text() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown".into())
}

/// The value: stdin when it is not a terminal, else a prompt without echo.
fn read_value(name: &str) -> Result<Zeroizing<String>, Failure> {
    let value = if std::io::stdin().is_terminal() {
        Zeroizing::new(
            rpassword::prompt_password(format!("value for {name} (not echoed): "))
                .map_err(|e| Failure::new("secret_value_unreadable", e, "pipe the value on stdin instead"))?,
        )
    } else {
        let mut bytes = Zeroizing::new(Vec::new());
        std::io::stdin()
            .lock()
            .take(MAX_VALUE_BYTES as u64 + 2)
            .read_to_end(&mut bytes)
            .map_err(|e| Failure::new("secret_value_unreadable", e, "pipe the value on stdin"))?;
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| Failure::new("secret_value_invalid", "the value is not UTF-8", "pipe UTF-8 text"))?;
        let mut text = Zeroizing::new(text);
        // One trailing newline is the shell's (`echo`), not part of the value.
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        text
    };
    if value.is_empty() || value.len() > MAX_VALUE_BYTES {
        return Err(Failure::new(
            "secret_value_invalid",
            format!("the value must be 1 to {MAX_VALUE_BYTES} bytes"),
            "pipe the value on stdin: `printf %s \"$TOKEN\" | latchgate secrets set NAME`",
        ));
    }
    // Injected into HTTP headers: CR/LF would split the request.
    if value.chars().any(char::is_control) {
        return Err(Failure::new(
            "secret_value_invalid",
            "the value contains control characters (newlines, tabs, ...)",
            "store the value without line breaks",
        ));
    }
    Ok(value)
}

#[derive(Serialize)]
struct SetResult<'a> {
    ok: bool,
    name: &'a str,
    /// False when an existing value was replaced.
    created: bool,
    secrets_file: &'a Path,
}

fn set(config: &Path, args: &NameArgs) -> Result<Exit, Failure> {
    check_name(&args.name)?;
    let paths = configured(&LoadedConfig::load(config)?)?;
    let value = read_value(&args.name)?;
    let _lock = lock(&paths)?;
    let (mut document, _) = open(&paths)?;
    let created = document.get(&args.name).is_none();
    document.set(&args.name, value);
    save(&paths, &document)?;
    let result = SetResult { ok: true, name: &args.name, created, secrets_file: &paths.secrets_file };
    if args.json {
        output::print_json(&result);
    } else {
        println!("{} {} in {}", if created { "added" } else { "replaced" }, args.name, paths.secrets_file.display());
    }
    Ok(Exit::Ok)
}

fn get(config: &Path, args: &NameArgs) -> Result<Exit, Failure> {
    check_name(&args.name)?;
    let paths = configured(&LoadedConfig::load(config)?)?;
    let (document, _) = open(&paths)?;
    let Some(value) = document.get(&args.name) else {
        return Err(missing(&args.name, &paths));
    };
    if args.json {
        output::print_json(&serde_json::json!({"ok": true, "name": args.name, "value": value.as_str()}));
    } else {
        let mut line = Zeroizing::new(value.to_string());
        line.push('\n');
        output::write_stdout(&line);
    }
    Ok(Exit::Ok)
}

fn missing(name: &str, paths: &Paths) -> Failure {
    Failure::new(
        "secret_not_found",
        format!("{name} is not in {}", paths.secrets_file.display()),
        "`latchgate secrets list` shows the names; `latchgate secrets set NAME` adds one",
    )
}

#[derive(Serialize)]
struct Listed {
    name: String,
    present: bool,
    required_by: Vec<String>,
    optional_for: Vec<String>,
}

fn list(config: &Path, json: bool) -> Result<Exit, Failure> {
    let cfg = LoadedConfig::load(config)?;
    let paths = configured(&cfg)?;
    let (document, _) = open(&paths)?;
    let declared = load_registry(&cfg).map(|r| secrets_check::declared_secrets(&r)).unwrap_or_default();
    let stored = document.secrets();
    let mut names: Vec<&String> = stored.keys().chain(declared.keys()).collect();
    names.sort();
    names.dedup();
    let listed: Vec<Listed> = names
        .into_iter()
        .map(|name| {
            let (required_by, optional_for) = declared.get(name).cloned().unwrap_or_default();
            Listed { name: name.clone(), present: stored.contains_key(name), required_by, optional_for }
        })
        .collect();
    if json {
        output::print_json(&serde_json::json!({"secrets_file": paths.secrets_file, "secrets": listed}));
        return Ok(Exit::Ok);
    }
    let colour = output::stdout_colour();
    let mut table = Table::new(&["NAME", "STORED", "REQUIRED BY", "OPTIONAL FOR"]);
    for l in &listed {
        let stored = match (l.present, l.required_by.is_empty()) {
            (true, _) => ("yes".into(), Tone::Good),
            (false, false) => ("MISSING".into(), Tone::Bad),
            (false, true) => ("no".into(), Tone::Warn),
        };
        table.row(vec![
            (l.name.clone(), Tone::Plain),
            stored,
            (l.required_by.join(", "), Tone::Plain),
            (l.optional_for.join(", "), Tone::Dim),
        ]);
    }
    output::write_stdout(&table.render(colour));
    Ok(Exit::Ok)
}

fn load_registry(cfg: &LoadedConfig) -> Result<Registry, Failure> {
    Registry::load(&cfg.manifests_dir()).map_err(|errors| {
        let first = errors.first().map(ToString::to_string).unwrap_or_default();
        Failure::new(
            "manifest_invalid",
            format!("{} manifest error(s); first: {first}", errors.len()),
            "fix the manifests",
        )
    })
}

fn remove(config: &Path, args: &NameArgs) -> Result<Exit, Failure> {
    check_name(&args.name)?;
    let paths = configured(&LoadedConfig::load(config)?)?;
    let _lock = lock(&paths)?;
    let (mut document, _) = open(&paths)?;
    if !document.remove(&args.name) {
        return Err(missing(&args.name, &paths));
    }
    save(&paths, &document)?;
    if args.json {
        output::print_json(&serde_json::json!({"ok": true, "name": args.name, "removed": true}));
    } else {
        println!("removed {} from {}", args.name, paths.secrets_file.display());
    }
    Ok(Exit::Ok)
}

/// Every step leaves a key file that opens the secrets file on disk: the key
/// file first holds the new and the old identity, then the file is
/// re-encrypted for the new one only, then the old identity is dropped.
fn rotate_key(config: &Path, json: bool) -> Result<Exit, Failure> {
    let paths = configured(&LoadedConfig::load(config)?)?;
    let _lock = lock(&paths)?;
    let (mut document, old) = open(&paths)?;
    let old_recipients = document.recipients();
    let new = AgeIdentities::generate();
    let recipient = new.primary_recipient();
    let created = now_text();
    let write_key = |ids: &AgeIdentities| {
        replace_private_file(&paths.key_file, ids.to_file_text(&created).as_bytes()).map_err(sops_failure)
    };
    write_key(&new.merged_with(&old))?;
    document.rekey(&recipient).map_err(sops_failure)?;
    save(&paths, &document)?;
    // The file on disk now opens with the new key alone: check before dropping the old one.
    sops::decrypt_file(&paths.secrets_file, &paths.key_file).map_err(sops_failure)?;
    write_key(&new)?;
    let sops_config = update_sops_config(&paths.secrets_file, &old_recipients, &recipient);
    if json {
        output::print_json(&serde_json::json!({
            "ok": true, "recipient": recipient, "old_recipients": old_recipients,
            "sops_config_updated": sops_config,
        }));
    } else {
        println!(
            "new age key in {} ({recipient}); {} re-encrypted",
            paths.key_file.display(),
            paths.secrets_file.display()
        );
        match sops_config {
            Some(p) => println!("updated the recipient in {}", p.display()),
            None => println!("no .sops.yaml beside the file named the old recipient: update your sops rules"),
        }
    }
    Ok(Exit::Ok)
}

/// Replaces the old recipients by the new one in the `.sops.yaml` beside the file.
fn update_sops_config(secrets_file: &Path, old: &[String], new: &str) -> Option<PathBuf> {
    let path = secrets_file.parent().unwrap_or(Path::new(".")).join(SOPS_CONFIG);
    let text = std::fs::read_to_string(&path).ok()?;
    let (first, rest) = old.split_first()?;
    if !text.contains(first.as_str()) {
        return None;
    }
    let mut updated = text.replace(first.as_str(), new);
    for other in rest {
        updated = updated.replace(&format!(",{other}"), "").replace(other.as_str(), new);
    }
    std::fs::write(&path, updated).ok()?;
    Some(path)
}

fn check(config: &Path, json: bool) -> Result<Exit, Failure> {
    let cfg = LoadedConfig::load(config)?;
    let registry = load_registry(&cfg)?;
    let findings = secrets_check::check_secrets(&cfg, &registry);
    let failed = findings.iter().any(|f| f.status == Status::Fail);
    if json {
        output::print_json(&serde_json::json!({"ok": !failed, "findings": findings}));
    } else {
        print_findings(&findings);
    }
    Ok(if failed { Exit::Invalid } else { Exit::Ok })
}

fn print_findings(findings: &[Finding]) {
    let colour = output::stdout_colour();
    let mut table = Table::new(&["STATUS", "CHECK", "FINDING"]);
    for f in findings {
        let status = match f.status {
            Status::Pass => ("ok".to_string(), Tone::Good),
            Status::Warn => ("warn".to_string(), Tone::Warn),
            Status::Fail => ("FAIL".to_string(), Tone::Bad),
        };
        let message = match &f.remediation {
            Some(fix) => format!("{} (fix: {fix})", f.message),
            None => f.message.clone(),
        };
        table.row(vec![status, (f.check.to_string(), Tone::Plain), (message, Tone::Plain)]);
    }
    output::write_stdout(&table.render(colour));
}
