//! `latchgate keys init|list|rotate`: the signer's key dir, operated on
//! directly (as root or as the signer's user; the dir is private).
//!
//! How a running gate picks a rotation up:
//! - `latchgate up` (supervised): the signer polls its key dir and reloads
//!   within about a second, keeping the grants it issued before;
//! - systemd: the signer reads a copy made at unit start (`LoadCredential=`),
//!   so the rotation takes effect with `systemctl restart latchgate-signer`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use latchgate_core::config::LoadedConfig;
use latchgate_signer::keystore::{KeyStore, KeyStoreError};
use latchgate_signer::rotation::{self, KeyKind, Rotation};
use serde::Serialize;

use super::output::{self, Exit, Failure, Table, Tone};

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Generate every missing key in the key dir (before a systemd install's first start).
    Init(KeyDirArgs),
    /// Key ids in use and retired keys still trusted.
    List(KeyDirArgs),
    /// Replace one signing key; the old public key stays trusted as long as anything it signed may be checked.
    Rotate {
        /// receipt: old receipts keep verifying forever; grant/lease: the old key verifies until what it signed expired.
        #[arg(value_enum)]
        kind: KindArg,
        #[command(flatten)]
        dir: KeyDirArgs,
    },
}

#[derive(clap::Args)]
pub struct KeyDirArgs {
    /// The key dir instead of `[keys] dir` of the config.
    #[arg(long, value_name = "DIR")]
    key_dir: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum KindArg {
    Receipt,
    Grant,
    Lease,
}

impl From<KindArg> for KeyKind {
    fn from(kind: KindArg) -> KeyKind {
        match kind {
            KindArg::Receipt => KeyKind::Receipt,
            KindArg::Grant => KeyKind::Grant,
            KindArg::Lease => KeyKind::Lease,
        }
    }
}

pub fn run(config: &Path, command: KeysCommand) -> ExitCode {
    match command {
        KeysCommand::Init(args) => output::finish(args.json, init(config, &args)),
        KeysCommand::List(args) => output::finish(args.json, list(config, &args)),
        KeysCommand::Rotate { kind, dir } => output::finish(dir.json, rotate(config, kind.into(), &dir)),
    }
}

fn key_dir(config: &Path, args: &KeyDirArgs) -> Result<PathBuf, Failure> {
    match &args.key_dir {
        Some(dir) => Ok(dir.clone()),
        None => Ok(LoadedConfig::load(config)?.key_dir()),
    }
}

fn failure(dir: &Path, e: KeyStoreError) -> Failure {
    let remediation = match &e {
        KeyStoreError::Missing { .. } => "run `latchgate keys init` (or start the gate once) first".to_string(),
        KeyStoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
            format!("run as root or as the signer's user: {} is private", dir.display())
        }
        KeyStoreError::InsecurePermissions { .. } => "apply the chmod named above".to_string(),
        _ => format!("inspect {}; restore it from a backup if a key file was damaged", dir.display()),
    };
    Failure::new(e.code(), &e, remediation)
}

#[derive(Serialize)]
struct KeyIds<'a> {
    key_dir: &'a Path,
    lease_kid: &'a str,
    grant_kid: &'a str,
    receipt_kid: &'a str,
    /// Every receipt key ever used, current first.
    receipt_history: Vec<String>,
    retired_lease_keys: Vec<Retired>,
    retired_grant_keys: Vec<Retired>,
}

#[derive(Serialize)]
struct Retired {
    kid: String,
    retired_at: i64,
    verify_until: i64,
}

fn key_ids<'a>(dir: &'a Path, store: &'a KeyStore) -> KeyIds<'a> {
    let retired = store.retired();
    KeyIds {
        key_dir: dir,
        lease_kid: store.lease_kid(),
        grant_kid: store.grant_kid(),
        receipt_kid: store.receipt_kid(),
        receipt_history: store.receipt_jwks().keys.into_iter().map(|k| k.kid).collect(),
        retired_lease_keys: retired
            .lease
            .iter()
            .map(|k| Retired { kid: k.jwk.kid.clone(), retired_at: k.retired_at, verify_until: k.verify_until })
            .collect(),
        retired_grant_keys: retired
            .grant
            .iter()
            .map(|k| Retired { kid: k.jwk.kid.clone(), retired_at: k.retired_at, verify_until: k.verify_until })
            .collect(),
    }
}

fn init(config: &Path, args: &KeyDirArgs) -> Result<Exit, Failure> {
    let dir = key_dir(config, args)?;
    let store = rotation::init(&dir).map_err(|e| failure(&dir, e))?;
    print_ids(args.json, &key_ids(&dir, &store));
    Ok(Exit::Ok)
}

fn list(config: &Path, args: &KeyDirArgs) -> Result<Exit, Failure> {
    let dir = key_dir(config, args)?;
    let store = KeyStore::load(&dir).map_err(|e| failure(&dir, e))?;
    print_ids(args.json, &key_ids(&dir, &store));
    Ok(Exit::Ok)
}

fn print_ids(json: bool, ids: &KeyIds<'_>) {
    if json {
        output::print_json(ids);
        return;
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut table = Table::new(&["KEY", "KID", "STATE"]);
    table.row(vec![("lease".into(), Tone::Plain), (ids.lease_kid.into(), Tone::Plain), ("current".into(), Tone::Good)]);
    table.row(vec![("grant".into(), Tone::Plain), (ids.grant_kid.into(), Tone::Plain), ("current".into(), Tone::Good)]);
    for kid in &ids.receipt_history {
        let state = if kid == ids.receipt_kid {
            ("current".into(), Tone::Good)
        } else {
            ("verifies old receipts".into(), Tone::Dim)
        };
        table.row(vec![("receipt".into(), Tone::Plain), (kid.clone(), Tone::Plain), state]);
    }
    for (kind, keys) in [("lease", &ids.retired_lease_keys), ("grant", &ids.retired_grant_keys)] {
        for key in keys {
            let state = if key.verify_until > now {
                (format!("retired, verifies until {}", rfc3339(key.verify_until)), Tone::Warn)
            } else {
                ("retired, expired".into(), Tone::Dim)
            };
            table.row(vec![(kind.into(), Tone::Plain), (key.kid.clone(), Tone::Plain), state]);
        }
    }
    output::write_stdout(&format!("key dir {}\n{}", ids.key_dir.display(), table.render(output::stdout_colour())));
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

#[derive(Serialize)]
struct Rotated<'a> {
    ok: bool,
    key_dir: &'a Path,
    #[serde(flatten)]
    rotation: &'a Rotation,
    takes_effect: &'static str,
}

const TAKES_EFFECT: &str = "a signer started by `latchgate up` reloads within a second; \
     under systemd run `systemctl restart latchgate-signer.service`";

fn rotate(config: &Path, kind: KeyKind, args: &KeyDirArgs) -> Result<Exit, Failure> {
    let dir = key_dir(config, args)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let rotation = rotation::rotate(&dir, kind, now).map_err(|e| failure(&dir, e))?;
    if args.json {
        output::print_json(&Rotated { ok: true, key_dir: &dir, rotation: &rotation, takes_effect: TAKES_EFFECT });
        return Ok(Exit::Ok);
    }
    let colour = output::stdout_colour();
    let kept = match rotation.old_key_verifies_until {
        None => "old receipts keep verifying with receipt-keys.jwks.json (keys are never removed)".to_string(),
        Some(until) => format!("the old key still verifies what it signed until {}", rfc3339(until)),
    };
    output::write_stdout(&format!(
        "{} {} key: {} -> {}\n  {kept}\n  {TAKES_EFFECT}\n",
        Tone::Good.paint("rotated", colour),
        kind.as_str(),
        rotation.old_kid,
        rotation.new_kid,
    ));
    Ok(Exit::Ok)
}
