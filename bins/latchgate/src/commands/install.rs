//! `latchgate install --systemd [--prefix DIR] [--dry-run]`: write the four
//! service units, `latchgate.target`, the sysusers.d and tmpfiles.d files,
//! rendered for the paths of the config (see `systemd.rs` and
//! docs/deployment.md for what to run next).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use latchgate_core::config::LoadedConfig;
use serde::Serialize;

use super::output::{self, Exit, Failure, Tone};
use super::systemd::{TEMPLATES, placeholders, preflight, render};

#[derive(clap::Args)]
pub struct InstallArgs {
    /// Install the systemd multi-unit deployment (the only kind there is so far).
    #[arg(long, required = true)]
    systemd: bool,
    /// Root under which etc/systemd/system, etc/sysusers.d and etc/tmpfiles.d are written.
    #[arg(long, value_name = "DIR", default_value = "/")]
    prefix: PathBuf,
    /// Where the latchgate-* binaries are (default: beside this binary).
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// Print what would be written, write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Rendered {
    path: PathBuf,
    content: String,
}

#[derive(Serialize)]
struct Report<'a> {
    ok: bool,
    dry_run: bool,
    files: &'a [Rendered],
    warnings: &'a [String],
    next_steps: Vec<String>,
}

pub fn run(config: &Path, args: InstallArgs) -> ExitCode {
    output::finish(args.json, install(config, &args))
}

fn install(config: &Path, args: &InstallArgs) -> Result<Exit, Failure> {
    let cfg = LoadedConfig::load(config)?;
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_path_buf))
            .ok_or_else(|| Failure::new("bin_dir_unknown", "cannot locate this binary", "pass --bin-dir DIR"))?,
    };
    let bin_dir = std::path::absolute(&bin_dir).unwrap_or(bin_dir);
    let checks = preflight(&cfg, &bin_dir);
    if let Some(first) = checks.errors.first() {
        return Err(Failure::new(
            "install_config_incomplete",
            first,
            "edit the config as shown, then run install again",
        ));
    }
    let values = placeholders(&cfg, &bin_dir);
    let mut files = Vec::new();
    for template in TEMPLATES {
        let content = render(template.path, template.text, &values).map_err(|e| {
            Failure::new("unit_template_invalid", &e, "report this as a bug: a shipped unit does not render")
        })?;
        files.push(Rendered { path: args.prefix.join(template.path), content });
    }
    if !args.dry_run {
        for file in &files {
            write(&file.path, &file.content)?;
        }
    }
    let config_path = cfg.path.display();
    let prefix = &args.prefix;
    let next_steps = vec![
        format!("systemd-sysusers {}", prefix.join("etc/sysusers.d/latchgate.conf").display()),
        format!("systemd-tmpfiles --create {}", prefix.join("etc/tmpfiles.d/latchgate.conf").display()),
        format!("latchgate keys init --config {config_path}"),
        "systemctl daemon-reload".to_string(),
        "systemctl enable --now latchgate.target".to_string(),
        format!("latchgate doctor --config {config_path}"),
    ];
    if args.json {
        output::print_json(&Report {
            ok: true,
            dry_run: args.dry_run,
            files: &files,
            warnings: &checks.warnings,
            next_steps,
        });
        return Ok(Exit::Ok);
    }
    let colour = output::stdout_colour();
    let mut text = String::new();
    for file in &files {
        if args.dry_run {
            text.push_str(&format!("--- would write {} ---\n{}\n", file.path.display(), file.content));
        } else {
            text.push_str(&format!("{} {}\n", Tone::Good.paint("wrote", colour), file.path.display()));
        }
    }
    text.push_str("next:\n");
    for step in &next_steps {
        text.push_str(&format!("  {step}\n"));
    }
    output::write_stdout(&text);
    for warning in &checks.warnings {
        eprintln!("{} {warning}", Tone::Warn.paint("warning:", colour));
    }
    Ok(Exit::Ok)
}

/// Unit files are world-readable configuration (0644), replaced atomically.
fn write(path: &Path, content: &str) -> Result<(), Failure> {
    let fail = |e: std::io::Error| {
        Failure::new(
            "install_write_failed",
            format!("cannot write {}: {e}", path.display()),
            "run as root, or pass --prefix DIR to render into another tree",
        )
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let tmp = path.with_extension("latchgate-new");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(&tmp).map_err(fail)?;
        file.write_all(content.as_bytes()).and_then(|()| file.sync_all()).map_err(fail)?;
    }
    std::fs::rename(&tmp, path).map_err(fail)
}
