//! What `latchgate serve` checks before it starts anything: every
//! production-safety violation (core::production) is printed, one per line,
//! and the gate refuses to start (exit 1). Warnings are printed and the gate
//! starts.

use latchgate_core::config::LoadedConfig;
use latchgate_core::manifest::Registry;
use latchgate_core::production::{self, BuildInfo};

/// `Err(())` when the gate must not start; everything is already printed.
pub fn check_serve(cfg: &LoadedConfig) -> Result<(), ()> {
    let text = match std::fs::read_to_string(&cfg.path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("latchgate serve: cannot re-read {}: {e}", cfg.path.display());
            return Err(());
        }
    };
    let build = BuildInfo::current();
    let violations = production::violations(cfg, &text, &build);
    if !violations.is_empty() {
        eprintln!(
            "latchgate serve: refusing to start: {} production-safety violation(s) in {}",
            violations.len(),
            cfg.path.display()
        );
        for v in &violations {
            tracing::error!(id = v.id, field = %v.field, "production-safety violation: {}", v.message);
            eprintln!("  - {}: {} [{}]", v.field, v.message, v.id);
            eprintln!("    fix: {}", v.remediation);
        }
        return Err(());
    }
    for warning in warnings(cfg, &build) {
        tracing::warn!("{warning}");
        eprintln!("latchgate serve: warning: {warning}");
    }
    Ok(())
}

/// Conditions that are allowed but that an operator must see at start.
pub fn warnings(cfg: &LoadedConfig, build: &BuildInfo) -> Vec<String> {
    let mut out = Vec::new();
    if build.development_accepted {
        out.push(format!(
            "TEST ONLY: development build ({}) accepted because {} = 1",
            build.development_features.join(", "),
            production::ACCEPT_DEVELOPMENT_BUILD_ENV
        ));
    }
    if let Some(addr) = cfg.config.listen_tcp_addr {
        out.push(format!(
            "listen_tcp_addr = {addr} with unsafe_expose_http = true: this build serves no TCP listener; agents use the Unix socket"
        ));
    }
    // A manifest that does not load is the broker's start-up error, named there.
    if let Ok(registry) = Registry::load(&cfg.manifests_dir()) {
        out.extend(production::egress_warnings(cfg, &registry));
    }
    out
}
