//! `secrets.*`: the SOPS secrets file and its age key (presence, owner-only
//! permissions) once the config names them. This build has no secrets
//! configuration yet, so the group says so instead of passing.

use super::{Check, Context};

pub fn checks(ctx: &Context) -> Vec<Check> {
    if ctx.cfg.is_none() {
        return Vec::new();
    }
    vec![Check::skip("secrets.sops", "no SOPS secrets file configured (secret decryption is not part of this build)")]
}
