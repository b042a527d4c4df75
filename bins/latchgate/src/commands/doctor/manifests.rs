//! `manifests.*`: every manifest loads (schema, rules, schemas compile) and
//! every provider module matches the digest its manifest pins.

use latchgate_core::manifest::Registry;

use super::{Check, Context};

/// Beyond this many, the rest of a long list is summarised.
const MAX_LISTED: usize = 20;

pub fn checks(ctx: &Context) -> Vec<Check> {
    let Some(cfg) = &ctx.cfg else { return Vec::new() };
    let dir = cfg.manifests_dir();
    let registry = match Registry::load(&dir) {
        Ok(registry) => registry,
        Err(errors) => {
            let mut out: Vec<Check> = errors
                .iter()
                .take(MAX_LISTED)
                .map(|e| {
                    Check::error(
                        "manifests.valid",
                        e.to_string(),
                        "fix the named manifest field (the broker refuses to start)",
                    )
                })
                .collect();
            if errors.len() > MAX_LISTED {
                out.push(Check::error(
                    "manifests.valid",
                    format!("… and {} more manifest errors", errors.len() - MAX_LISTED),
                    "fix the errors above first",
                ));
            }
            return out;
        }
    };
    let mut out =
        vec![Check::ok("manifests.valid", format!("{} action manifest(s) in {} load", registry.len(), dir.display()))];
    let trust = registry.verify_module_digests(&cfg.providers_dir());
    let failures: Vec<String> = trust.failures().map(ToString::to_string).collect();
    if failures.is_empty() {
        out.push(Check::ok(
            "manifests.digests",
            format!("every provider module in {} matches its pinned digest", cfg.providers_dir().display()),
        ));
    }
    for failure in failures.iter().take(MAX_LISTED) {
        out.push(Check::error(
            "manifests.digests",
            failure.clone(),
            "rebuild the providers (make providers) or re-pin the manifest; the action is refused until they match",
        ));
    }
    out
}
