//! The production checklist of docs/deployment.md that is about the host
//! rather than one dependency: `config.mode`, `users.system`,
//! `ipc.peer_uids`, `paths.permissions`, `paths.hidden`, `admin.socket`,
//! `operators.credentials`, `systemd.units` and `shutdown.grace`.
//! Each is an error on a production config and a warning otherwise. The
//! unit-only items (`ipc.peer_uids`, `paths.hidden`, `systemd.units`,
//! `shutdown.grace`) are skipped when no unit is installed: under
//! `latchgate serve` the supervisor starts each child as its user itself.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use latchgate_core::config::{LoadedConfig, Mode};
use latchgate_core::confine::users::OPERATORS_GROUP;
use latchgate_core::role::Role;
use nix::unistd::{Group, User};

use super::super::systemd::{TEMPLATES, preflight};
use super::{Check, Context};

/// The group every child is a member of (it may use the IPC dir).
const PROCESS_GROUP: &str = "latchgate";
/// `systemd-analyze security` score above which a unit is reported.
const MAX_EXPOSURE: f64 = 2.0;

pub fn checks(ctx: &Context) -> Vec<Check> {
    let Some(cfg) = &ctx.cfg else { return Vec::new() };
    let units = unit_paths(ctx);
    let units_installed = units.iter().any(|p| p.is_file());
    let mut out = vec![mode(ctx, cfg), users(ctx, units_installed)];
    out.extend(permissions(ctx, cfg));
    out.push(admin_socket(ctx, cfg));
    out.push(operators(ctx, cfg));
    if units_installed {
        out.extend(peer_uids_and_hidden_paths(ctx, cfg));
        out.extend(systemd_units(ctx, cfg, &units));
    } else {
        let message = format!("no latchgate units under {} (not a systemd install)", ctx.systemd_prefix.display());
        for id in ["ipc.peer_uids", "paths.hidden", "systemd.units", "shutdown.grace"] {
            out.push(Check::skip(id, message.clone()));
        }
    }
    out
}

fn unit_paths(ctx: &Context) -> Vec<PathBuf> {
    TEMPLATES
        .iter()
        .filter(|t| t.path.starts_with("etc/systemd/system/"))
        .map(|t| ctx.systemd_prefix.join(t.path))
        .collect()
}

fn mode(ctx: &Context, cfg: &LoadedConfig) -> Check {
    if cfg.config.mode == Mode::Production {
        Check::ok("config.mode", "mode = \"production\" (Redis state store, OPA policy engine)")
    } else {
        Check::problem(
            ctx,
            "config.mode",
            "embedded mode (SQLite state, embedded Rego): a development set-up",
            "set mode = \"production\" with [redis] and [opa], and run latchgate serve",
        )
    }
}

/// The shared `latchgate` group comes from the units' sysusers file; under
/// `latchgate serve` the supervisor creates the process users itself and no
/// child needs that group, so it is required only when units are installed.
fn users(ctx: &Context, units_installed: bool) -> Check {
    let mut missing: Vec<&str> = Role::CHILDREN
        .iter()
        .map(|r| r.system_user())
        .filter(|name| !matches!(User::from_name(name), Ok(Some(_))))
        .collect();
    let groups: &[&str] = if units_installed { &[PROCESS_GROUP, OPERATORS_GROUP] } else { &[OPERATORS_GROUP] };
    missing.extend(groups.iter().copied().filter(|g| !matches!(Group::from_name(g), Ok(Some(_)))));
    if missing.is_empty() {
        return Check::ok(
            "users.system",
            format!("the four process users and the {} group(s) exist", groups.join(", ")),
        );
    }
    Check::problem(
        ctx,
        "users.system",
        format!("missing users/groups: {}", missing.join(", ")),
        "systemd-sysusers /etc/sysusers.d/latchgate.conf (written by latchgate install --systemd)",
    )
}

/// `ipc.peer_uids` and `paths.hidden` share the unit preflight of `latchgate install`.
fn peer_uids_and_hidden_paths(ctx: &Context, cfg: &LoadedConfig) -> Vec<Check> {
    let bin_dir = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)).unwrap_or_default();
    let found = preflight(cfg, &bin_dir);
    let unresolved: Vec<&String> = found.warnings.iter().filter(|w| w.starts_with("ipc.peer_users.")).collect();
    let hidden: Vec<&String> = found.warnings.iter().filter(|w| w.contains(" is under ")).collect();
    let fix_users = "name every role under [ipc.peer_users] (latchgate install --systemd prints the lines)";
    let mut out = Vec::new();
    for error in &found.errors {
        out.push(Check::problem(ctx, "ipc.peer_uids", error.clone(), fix_users));
    }
    for warning in &unresolved {
        out.push(Check::problem(ctx, "ipc.peer_uids", (*warning).clone(), "systemd-sysusers, or fix the user name"));
    }
    if out.is_empty() {
        out.push(Check::ok("ipc.peer_uids", "[ipc.peer_users] names every role and each user exists"));
    }
    for warning in &hidden {
        out.push(Check::problem(ctx, "paths.hidden", (*warning).clone(), "move it under /etc, /var/lib or /opt"));
    }
    if hidden.is_empty() {
        out.push(Check::ok("paths.hidden", "no configured path is hidden by PrivateTmp= or ProtectHome="));
    }
    out
}

/// The tmpfiles.d layout: IPC dir `1770 root:latchgate`, state dir owner-only.
fn permissions(ctx: &Context, cfg: &LoadedConfig) -> Vec<Check> {
    let mut out = Vec::new();
    let fix = "systemd-tmpfiles --create /etc/tmpfiles.d/latchgate.conf";
    let ipc = cfg.ipc_dir();
    match std::fs::metadata(&ipc) {
        Ok(meta) => {
            let group = Group::from_gid(meta.gid().into()).ok().flatten().map(|g| g.name).unwrap_or_default();
            let mode = meta.permissions().mode() & 0o7777;
            if mode == 0o1770 && meta.uid() == 0 && group == PROCESS_GROUP {
                out.push(Check::ok("paths.permissions", format!("{} is 1770 root:{PROCESS_GROUP}", ipc.display())));
            } else {
                out.push(Check::problem(
                    ctx,
                    "paths.permissions",
                    format!(
                        "{} is {mode:04o} uid {} group {group:?}, not 1770 root:{PROCESS_GROUP}",
                        ipc.display(),
                        meta.uid()
                    ),
                    fix,
                ));
            }
        }
        Err(_) => {
            out.push(Check::skip("paths.permissions", format!("no IPC dir {} (not a systemd install)", ipc.display())))
        }
    }
    let state = cfg.state_dir();
    if let Ok(meta) = std::fs::metadata(&state) {
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 == 0 {
            out.push(Check::ok("paths.permissions", format!("state dir {} is {mode:04o}", state.display())));
        } else {
            out.push(Check::problem(
                ctx,
                "paths.permissions",
                format!("state dir {} is {mode:04o}: group or others can reach the ledger", state.display()),
                format!("chmod 700 {}", state.display()),
            ));
        }
    }
    out
}

fn admin_socket(ctx: &Context, cfg: &LoadedConfig) -> Check {
    let path = cfg.admin_socket();
    let Ok(meta) = std::fs::metadata(&path) else {
        return Check::skip("admin.socket", format!("no admin socket {} (the gate is not running)", path.display()));
    };
    let mode = meta.permissions().mode() & 0o777;
    let group = Group::from_gid(meta.gid().into()).ok().flatten().map(|g| g.name).unwrap_or_default();
    if mode & 0o007 == 0 && group == OPERATORS_GROUP {
        Check::ok("admin.socket", format!("{} is {mode:04o}, group {OPERATORS_GROUP}", path.display()))
    } else {
        Check::problem(
            ctx,
            "admin.socket",
            format!("{} is {mode:04o}, group {group:?}: expected 0660 group {OPERATORS_GROUP}", path.display()),
            "start the gate as root (the supervisor or the front unit sets it), not as an ordinary user",
        )
    }
}

fn operators(ctx: &Context, cfg: &LoadedConfig) -> Check {
    let bound: Vec<&String> = cfg
        .config
        .operator_credentials
        .iter()
        .filter(|(_, c)| c.dpop_jkt.as_deref().is_some_and(|j| !j.is_empty()))
        .map(|(name, _)| name)
        .collect();
    if bound.is_empty() {
        return Check::problem(
            ctx,
            "operators.credentials",
            "no [operator_credentials.NAME] with a dpop_jkt: nobody can approve, revoke or drain",
            "latchgate config add-operator --name NAME",
        );
    }
    let names: Vec<&str> = bound.iter().map(|n| n.as_str()).collect();
    Check::ok("operators.credentials", format!("DPoP-bound operators: {}", names.join(", ")))
}

/// Installed units (under the prefix, `/` on a host): `systemd-analyze verify`, each unit's offline
/// exposure, and the broker's stop timeout against the in-flight grace.
fn systemd_units(ctx: &Context, cfg: &LoadedConfig, units: &[PathBuf]) -> Vec<Check> {
    let installed: Vec<&PathBuf> = units.iter().filter(|p| p.is_file()).collect();
    let mut out = Vec::new();
    if installed.len() < units.len() {
        let missing: Vec<String> = units.iter().filter(|p| !p.is_file()).map(|p| p.display().to_string()).collect();
        out.push(Check::problem(
            ctx,
            "systemd.units",
            format!("missing: {}", missing.join(", ")),
            "latchgate install --systemd",
        ));
    }
    match Command::new("systemd-analyze").arg("verify").args(&installed).output() {
        Ok(o) if o.status.success() && o.stderr.is_empty() => {
            out.push(Check::ok("systemd.units", format!("systemd-analyze verify: {} units clean", installed.len())))
        }
        Ok(o) => out.push(Check::problem(
            ctx,
            "systemd.units",
            format!("systemd-analyze verify: {}", String::from_utf8_lossy(&o.stderr).trim()),
            "latchgate install --systemd again for this config, and fix what it names",
        )),
        Err(e) => {
            out.push(Check::warn("systemd.units", format!("systemd-analyze not runnable: {e}"), "apt install systemd"))
        }
    }
    for unit in installed.iter().filter(|p| p.extension().is_some_and(|e| e == "service")) {
        out.push(exposure(ctx, unit));
    }
    out.push(stop_timeout(ctx, cfg, &ctx.systemd_prefix.join("etc/systemd/system/latchgate-broker.service")));
    out
}

fn exposure(ctx: &Context, unit: &Path) -> Check {
    let name = unit.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let output = Command::new("systemd-analyze").args(["security", "--offline=true", "--no-pager"]).arg(unit).output();
    let text = output.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    // "→ Overall exposure level for latchgate-broker.service: 1.4 OK 🙂"
    let score = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .and_then(|l| l.rsplit_once(':'))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse::<f64>().ok());
    match score {
        Some(s) if s <= MAX_EXPOSURE => Check::ok("systemd.units", format!("{name}: exposure {s}")),
        Some(s) => Check::problem(
            ctx,
            "systemd.units",
            format!("{name}: exposure {s} > {MAX_EXPOSURE}"),
            "restore the hardening of deploy/systemd (latchgate install --systemd)",
        ),
        None => Check::warn("systemd.units", format!("{name}: no exposure score"), "run systemd-analyze security"),
    }
}

fn stop_timeout(ctx: &Context, cfg: &LoadedConfig, broker_unit: &Path) -> Check {
    let grace_s = cfg.config.shutdown.in_flight_grace_ms.div_ceil(1000);
    let text = std::fs::read_to_string(broker_unit).unwrap_or_default();
    let timeout = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("TimeoutStopSec="))
        .and_then(|v| v.trim().trim_end_matches('s').parse::<u64>().ok());
    match timeout {
        Some(t) if t > grace_s => {
            Check::ok("shutdown.grace", format!("broker TimeoutStopSec={t}s outlasts the {grace_s}s in-flight grace"))
        }
        other => Check::problem(
            ctx,
            "shutdown.grace",
            format!(
                "broker TimeoutStopSec={} does not outlast [shutdown] in_flight_grace_ms ({grace_s}s): systemd would \
                 kill executions the broker is still waiting for",
                other.map(|t| format!("{t}s")).unwrap_or_else(|| "unset".into())
            ),
            "latchgate install --systemd again after changing [shutdown]",
        ),
    }
}
