//! The systemd units of `deploy/systemd/`, rendered for one config: every
//! `@NAME@` placeholder is replaced by a configured path. The files are data
//! (reviewed and verified as such by `systemd-analyze verify`); this module
//! only fills them in.
//!
//! Rules: an unknown placeholder is an error (a typo never reaches a unit);
//! a line whose placeholder has no value (`@FS_ROOT@` when no fs_root is
//! configured) is left out; a rendered line identical to an earlier one (the
//! admin socket in the client socket's dir) is left out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use latchgate_core::config::LoadedConfig;
use latchgate_core::role::Role;

/// One file `latchgate install --systemd` writes.
pub struct Template {
    /// Where it goes, relative to the prefix.
    pub path: &'static str,
    pub text: &'static str,
}

pub const TEMPLATES: &[Template] = &[
    Template {
        path: "etc/systemd/system/latchgate-front.service",
        text: include_str!("../../../../deploy/systemd/latchgate-front.service"),
    },
    Template {
        path: "etc/systemd/system/latchgate-broker.service",
        text: include_str!("../../../../deploy/systemd/latchgate-broker.service"),
    },
    Template {
        path: "etc/systemd/system/latchgate-executor.service",
        text: include_str!("../../../../deploy/systemd/latchgate-executor.service"),
    },
    Template {
        path: "etc/systemd/system/latchgate-signer.service",
        text: include_str!("../../../../deploy/systemd/latchgate-signer.service"),
    },
    Template {
        path: "etc/systemd/system/latchgate.target",
        text: include_str!("../../../../deploy/systemd/latchgate.target"),
    },
    Template {
        path: "etc/sysusers.d/latchgate.conf",
        text: include_str!("../../../../deploy/systemd/latchgate.sysusers.conf"),
    },
    Template {
        path: "etc/tmpfiles.d/latchgate.conf",
        text: include_str!("../../../../deploy/systemd/latchgate.tmpfiles.conf"),
    },
];

/// Seconds systemd waits for a stopping unit beyond the broker's in-flight grace.
const STOP_MARGIN_SECONDS: u64 = 15;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("{template}: unknown placeholder @{name}@")]
    UnknownPlaceholder { template: String, name: String },
}

/// Placeholder values for `cfg`; `None` = not configured (its lines are dropped).
pub fn placeholders(cfg: &LoadedConfig, bin_dir: &Path) -> BTreeMap<&'static str, Option<String>> {
    let show = |p: PathBuf| Some(p.display().to_string());
    let parent = |p: PathBuf| p.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
    let stop = cfg.config.shutdown.in_flight_grace_ms.div_ceil(1000) + STOP_MARGIN_SECONDS;
    BTreeMap::from([
        ("BIN_DIR", show(bin_dir.to_path_buf())),
        ("CONFIG", show(cfg.path.clone())),
        ("SOCKET_DIR", show(parent(cfg.client_socket()))),
        ("ADMIN_SOCKET_DIR", show(parent(cfg.admin_socket()))),
        ("IPC_DIR", show(cfg.ipc_dir())),
        ("STATE_DIR", show(cfg.state_dir())),
        ("KEY_DIR", show(cfg.key_dir())),
        ("FS_ROOT", cfg.fs_root().and_then(show)),
        ("STOP_TIMEOUT", Some(format!("{stop}s"))),
    ])
}

/// `@NAME@` with NAME in `[A-Z_]`: anything else with an `@` (`@system-service`) is text.
fn placeholder_at(rest: &str) -> Option<&str> {
    let after = rest.strip_prefix('@')?;
    let len = after.bytes().take_while(|b| b.is_ascii_uppercase() || *b == b'_').count();
    (len > 0 && after[len..].starts_with('@')).then(|| &after[..len])
}

pub fn render(
    template: &str,
    text: &str,
    values: &BTreeMap<&'static str, Option<String>>,
) -> Result<String, RenderError> {
    let mut out = String::new();
    let mut seen: Vec<String> = Vec::new();
    'lines: for line in text.lines() {
        let mut rendered = String::new();
        let mut rest = line;
        while let Some(start) = rest.find('@') {
            rendered.push_str(&rest[..start]);
            rest = &rest[start..];
            let Some(name) = placeholder_at(rest) else {
                rendered.push('@');
                rest = &rest[1..];
                continue;
            };
            match values.get(name) {
                Some(Some(value)) => rendered.push_str(value),
                Some(None) => continue 'lines,
                None => {
                    return Err(RenderError::UnknownPlaceholder { template: template.into(), name: name.into() });
                }
            }
            rest = &rest[name.len() + 2..];
        }
        rendered.push_str(rest);
        let significant = !rendered.trim().is_empty() && !rendered.trim_start().starts_with('#');
        if significant && !rendered.starts_with('[') {
            if seen.contains(&rendered) {
                continue;
            }
            seen.push(rendered.clone());
        }
        out.push_str(&rendered);
        out.push('\n');
    }
    Ok(out)
}

/// What must hold for the units to work with `cfg`, as warnings and errors.
pub struct Preflight {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

pub fn preflight(cfg: &LoadedConfig, bin_dir: &Path) -> Preflight {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let ipc = &cfg.config.ipc;
    let missing: Vec<&str> = Role::CHILDREN
        .iter()
        .map(|r| r.as_str())
        .filter(|r| !ipc.peer_uids.contains_key(*r) && !ipc.peer_users.contains_key(*r))
        .collect();
    if !missing.is_empty() {
        let lines: Vec<String> =
            Role::CHILDREN.iter().map(|r| format!("{} = \"{}\"", r.as_str(), r.system_user())).collect();
        errors.push(format!(
            "every process runs as its own user under systemd, so the config must name them ({} missing): \
             add to {}:\n[ipc.peer_users]\n{}",
            missing.join(", "),
            cfg.path.display(),
            lines.join("\n")
        ));
    }
    for (what, path) in [
        ("config", cfg.path.clone()),
        ("socket dir", cfg.client_socket()),
        ("state_dir", cfg.state_dir()),
        ("keys.dir", cfg.key_dir()),
        ("manifests_dir", cfg.manifests_dir()),
        ("policies_dir", cfg.policies_dir()),
        ("providers_dir", cfg.providers_dir()),
        ("sandbox_profiles_dir", cfg.sandbox_profiles_dir()),
    ] {
        for (hidden, by) in [
            ("/tmp", "PrivateTmp=yes"),
            ("/var/tmp", "PrivateTmp=yes"),
            ("/home", "ProtectHome=yes"),
            ("/root", "ProtectHome=yes"),
        ] {
            if path.starts_with(hidden) {
                warnings.push(format!("{what} {} is under {hidden}, which {by} hides from the units", path.display()));
            }
        }
    }
    for (role, name) in &cfg.config.ipc.peer_users {
        if !matches!(nix::unistd::User::from_name(name), Ok(Some(_))) {
            warnings
                .push(format!("ipc.peer_users.{role}: user {name:?} does not exist yet (systemd-sysusers creates it)"));
        }
    }
    for role in Role::CHILDREN {
        let binary = bin_dir.join(role.binary_name());
        if !binary.is_file() {
            warnings.push(format!("{} does not exist (pass --bin-dir)", binary.display()));
        }
    }
    Preflight { errors, warnings }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> BTreeMap<&'static str, Option<String>> {
        BTreeMap::from([("A", Some("/a".into())), ("B", None)])
    }

    #[test]
    fn placeholders_are_filled_and_unset_ones_drop_their_line() {
        let out = render("t", "[S]\nX=@A@/x\nY=@B@\nZ=1\n", &values()).unwrap();
        assert_eq!(out, "[S]\nX=/a/x\nZ=1\n");
    }

    #[test]
    fn a_typo_in_a_placeholder_is_an_error_not_a_unit() {
        assert_eq!(
            render("u.service", "X=@STAET_DIR@\n", &values()),
            Err(RenderError::UnknownPlaceholder { template: "u.service".into(), name: "STAET_DIR".into() })
        );
        // Lower-case `@group` names of systemd are text, not placeholders.
        assert_eq!(render("u", "F=@system-service @A@\n", &values()).unwrap(), "F=@system-service /a\n");
    }

    #[test]
    fn a_line_rendered_twice_is_kept_once() {
        let out = render("t", "d @A@ 0755\nd @A@ 0755\n# c\n# c\n", &values()).unwrap();
        assert_eq!(out, "d /a 0755\n# c\n# c\n");
    }

    #[test]
    fn every_shipped_template_renders_with_the_default_config() {
        let cfg = LoadedConfig::from_str(Path::new("/etc/latchgate/latchgate.toml"), "").unwrap();
        let values = placeholders(&cfg, Path::new("/usr/bin"));
        for t in TEMPLATES {
            let out = render(t.path, t.text, &values).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                out.lines().all(|l| l.find('@').and_then(|i| placeholder_at(&l[i..])).is_none()),
                "{}: {out}",
                t.path
            );
        }
    }
}
