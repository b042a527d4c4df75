//! `latchgate doctor [--json]`: is this host and config fit to run the gate?
//!
//! Each check group is one module with `async fn checks(&Context) -> Vec<Check>`
//! (add a group by adding a module and a line to [`GROUPS`]). Every check has
//! a stable id (`<group>.<what>`), a status, a message and, unless it passed,
//! a remediation. A check that has nothing to look at says `skip`, never a
//! made-up `ok`. Exit status 1 when any check is an error, else 0.

mod config;
mod confinement;
mod egress;
mod host;
mod kernel;
mod keys;
mod ledger;
mod manifests;
mod policy_engine;
mod secrets;
mod state_store;
mod webhooks;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use latchgate_core::config::{LoadedConfig, Mode};
use serde::Serialize;

use super::output::{self, Exit, Tone};

#[derive(clap::Args)]
pub struct DoctorArgs {
    /// Print every check as JSON.
    #[arg(long)]
    json: bool,
    /// Where `latchgate install --systemd --prefix` put the units (default: the host's /).
    #[arg(long, value_name = "DIR", default_value = "/")]
    systemd_prefix: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Warn,
    Error,
    /// Nothing to check (not configured, or not part of this build).
    Skip,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Error => "error",
            Status::Skip => "skip",
        }
    }

    fn tone(self) -> Tone {
        match self {
            Status::Ok => Tone::Good,
            Status::Warn => Tone::Warn,
            Status::Error => Tone::Bad,
            Status::Skip => Tone::Dim,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub id: String,
    pub status: Status,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remediation: Option<String>,
}

impl Check {
    pub fn ok(id: impl Into<String>, message: impl Into<String>) -> Check {
        Check { id: id.into(), status: Status::Ok, message: message.into(), remediation: None }
    }

    pub fn warn(id: impl Into<String>, message: impl Into<String>, fix: impl Into<String>) -> Check {
        Check { id: id.into(), status: Status::Warn, message: message.into(), remediation: Some(fix.into()) }
    }

    pub fn error(id: impl Into<String>, message: impl Into<String>, fix: impl Into<String>) -> Check {
        Check { id: id.into(), status: Status::Error, message: message.into(), remediation: Some(fix.into()) }
    }

    pub fn skip(id: impl Into<String>, message: impl Into<String>) -> Check {
        Check { id: id.into(), status: Status::Skip, message: message.into(), remediation: None }
    }

    /// `error` on a production config, `warn` otherwise: what production
    /// forbids is worth knowing about on a development gate too.
    pub fn problem(ctx: &Context, id: impl Into<String>, message: impl Into<String>, fix: impl Into<String>) -> Check {
        let check = Check::error(id, message, fix);
        if ctx.production() { check } else { Check { status: Status::Warn, ..check } }
    }
}

/// What every group may look at.
pub struct Context {
    pub config_path: PathBuf,
    /// `None` when the config does not load (the `config` group says why).
    pub cfg: Option<LoadedConfig>,
    pub text: Option<String>,
    /// Root of the installed systemd units (`/` on a real host).
    pub systemd_prefix: PathBuf,
}

impl Context {
    pub fn load(config_path: &Path) -> Context {
        let text = std::fs::read_to_string(config_path).ok();
        let cfg = LoadedConfig::load(config_path).ok();
        Context { config_path: config_path.to_path_buf(), cfg, text, systemd_prefix: PathBuf::from("/") }
    }

    pub fn production(&self) -> bool {
        self.cfg.as_ref().is_some_and(|c| c.config.mode == Mode::Production)
    }
}

/// The groups, in the order they are reported.
const GROUPS: &[&str] = &[
    "config",
    "keys",
    "state_store",
    "policy_engine",
    "egress",
    "manifests",
    "secrets",
    "webhooks",
    "kernel",
    "confinement",
    "ledger",
    "host",
];

async fn group(name: &str, ctx: &Context) -> Vec<Check> {
    // Without a config only the config and host checks can say anything.
    if ctx.cfg.is_none() && !matches!(name, "config" | "kernel") {
        return vec![Check::skip(format!("{name}.all"), "not checked: the config does not load")];
    }
    match name {
        "config" => config::checks(ctx),
        "keys" => keys::checks(ctx),
        "state_store" => state_store::checks(ctx).await,
        "policy_engine" => policy_engine::checks(ctx).await,
        "egress" => egress::checks(ctx).await,
        "manifests" => manifests::checks(ctx),
        "secrets" => secrets::checks(ctx),
        "webhooks" => webhooks::checks(ctx),
        "kernel" => kernel::checks(ctx),
        "confinement" => confinement::checks(ctx).await,
        "ledger" => ledger::checks(ctx),
        "host" => host::checks(ctx),
        other => vec![Check::error(format!("{other}.all"), "unknown check group", "report this as a bug")],
    }
}

pub async fn run_checks(config_path: &Path, systemd_prefix: &Path) -> Vec<Check> {
    let ctx = Context { systemd_prefix: systemd_prefix.to_path_buf(), ..Context::load(config_path) };
    let mut checks = Vec::new();
    for name in GROUPS {
        checks.extend(group(name, &ctx).await);
    }
    checks
}

#[derive(Serialize)]
struct Report<'a> {
    ok: bool,
    config: &'a Path,
    summary: Summary,
    checks: &'a [Check],
}

#[derive(Serialize, Default)]
struct Summary {
    ok: usize,
    warn: usize,
    error: usize,
    skip: usize,
}

pub fn run(config_path: &Path, args: DoctorArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            return output::Failure::new("runtime_start_failed", e, "check the host's thread and fd limits")
                .report(args.json);
        }
    };
    let checks = runtime.block_on(run_checks(config_path, &args.systemd_prefix));
    let mut summary = Summary::default();
    for check in &checks {
        match check.status {
            Status::Ok => summary.ok += 1,
            Status::Warn => summary.warn += 1,
            Status::Error => summary.error += 1,
            Status::Skip => summary.skip += 1,
        }
    }
    let ok = summary.error == 0;
    if args.json {
        output::print_json(&Report { ok, config: config_path, summary, checks: &checks });
    } else {
        print_human(&checks, &summary);
    }
    if ok { Exit::Ok.into() } else { Exit::Error.into() }
}

fn print_human(checks: &[Check], summary: &Summary) {
    let colour = output::stdout_colour();
    let width = checks.iter().map(|c| c.id.len()).max().unwrap_or(0);
    let mut text = String::new();
    for check in checks {
        let label = format!("{:<5}", check.status.label());
        text.push_str(&format!(
            "{}  {:<width$}  {}\n",
            check.status.tone().paint(&label, colour),
            check.id,
            output::sanitize(&check.message)
        ));
        if let Some(fix) = &check.remediation {
            text.push_str(&format!("{:<5}  {:<width$}  fix: {}\n", "", "", output::sanitize(fix)));
        }
    }
    text.push_str(&format!(
        "\n{} ok, {} warn, {} error, {} skipped\n",
        summary.ok, summary.warn, summary.error, summary.skip
    ));
    output::write_stdout(&text);
}
