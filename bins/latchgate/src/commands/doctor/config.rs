//! `config.*`: the config parses, and passes the production-safety checks
//! that `latchgate serve` enforces (errors on a production config, warnings
//! on an embedded one). Key-file permissions are reported by `keys.*`, the
//! confinement mode by `confinement.mode`.

use latchgate_core::config::LoadedConfig;
use latchgate_core::production::{self, BuildInfo};

use super::{Check, Context};

pub fn checks(ctx: &Context) -> Vec<Check> {
    let cfg = match LoadedConfig::load(&ctx.config_path) {
        Ok(cfg) => cfg,
        Err(e) => {
            return vec![Check::error(
                "config.parse",
                e.to_string(),
                "correct the named field in latchgate.toml (unknown keys are errors)",
            )];
        }
    };
    let mode = if ctx.production() { "production" } else { "embedded" };
    let mut out = vec![Check::ok("config.parse", format!("{} parses (mode {mode})", cfg.path.display()))];
    let text = ctx.text.as_deref().unwrap_or_default();
    let violations: Vec<_> = production::violations(&cfg, text, &BuildInfo::current())
        .into_iter()
        // Reported by their own groups (keys.permissions, confinement.mode).
        .filter(|v| !matches!(v.id, "key_file_permissions" | "confinement_not_strict"))
        .collect();
    if violations.is_empty() {
        out.push(Check::ok("config.production_safety", "passes every production-safety check of `latchgate serve`"));
    }
    for v in violations {
        out.push(Check::problem(
            ctx,
            format!("config.safety.{}", v.id),
            format!("{}: {}", v.field, v.message),
            v.remediation,
        ));
    }
    out
}
