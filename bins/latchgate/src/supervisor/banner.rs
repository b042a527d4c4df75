//! The start-up banner: where to connect, in which mode, and what runs.

use latchgate_core::config::LoadedConfig;
use latchgate_core::role::Role;
use latchgate_ipc::messages::status::ProcessStatus;
use std::io::Write;

pub fn print(cfg: &LoadedConfig, children: &[(Role, u32, Option<ProcessStatus>)]) {
    let mode = match cfg.config.mode {
        latchgate_core::config::Mode::Embedded => "embedded",
        latchgate_core::config::Mode::Production => "production",
    };
    let state = if cfg.config.redis.is_some() { "Redis state" } else { "SQLite state" };
    let policy = if cfg.config.opa.is_some() { "OPA" } else { "embedded Rego" };
    let mode = format!("{mode} ({state}, {policy})");
    let actions = count_manifests(&cfg.manifests_dir());
    let mut out = String::new();
    out.push_str(&format!("LatchGate {} is up — {mode}\n", env!("CARGO_PKG_VERSION")));
    out.push_str(&format!("  client socket  {}\n", cfg.client_socket().display()));
    out.push_str(&format!("  admin socket   {}\n", cfg.admin_socket().display()));
    out.push_str(&format!("  config         {}\n", cfg.path.display()));
    out.push_str(&format!("  actions        {actions} in {}\n", cfg.manifests_dir().display()));
    for (role, pid, status) in children {
        let confinement = status
            .as_ref()
            .and_then(|s| s.confinement.as_ref())
            .map(|c| c.summary())
            .unwrap_or_else(|| "NOT CONFINED".into());
        out.push_str(&format!("  {:<9} pid {:<7} {confinement}\n", role.as_str(), pid));
    }
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
}

fn count_manifests(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .count()
        })
        .unwrap_or(0)
}
