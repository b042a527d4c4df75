//! `secrets.*`: the same findings as `latchgate secrets check` — `[secrets]`
//! configured when an action needs it, the age key owner-only, the SOPS file
//! decrypting with a verified MAC, every required secret of every action
//! present. Findings name files, actions and secret names, never a value.

use latchgate_core::manifest::Registry;
use latchgate_signer::secrets_check::{self, Status as FindingStatus};

use super::{Check, Context, Status};

pub fn checks(ctx: &Context) -> Vec<Check> {
    let Some(cfg) = &ctx.cfg else { return Vec::new() };
    // An unloadable registry is the manifests group's error; secrets are then unknowable.
    let Ok(registry) = Registry::load(&cfg.manifests_dir()) else {
        return vec![Check::skip("secrets.required_present", "the manifests do not load (see manifests.valid)")];
    };
    secrets_check::check_secrets(cfg, &registry)
        .into_iter()
        .map(|f| Check {
            id: f.check.to_string(),
            status: match f.status {
                FindingStatus::Pass => Status::Ok,
                FindingStatus::Warn => Status::Warn,
                FindingStatus::Fail => Status::Error,
            },
            message: f.message,
            remediation: f.remediation,
        })
        .collect()
}
