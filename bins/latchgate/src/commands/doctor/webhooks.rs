//! `webhooks.*`: webhook receivers and their signing secrets once the config
//! names them. This build has no webhook configuration yet.

use super::{Check, Context};

pub fn checks(ctx: &Context) -> Vec<Check> {
    if ctx.cfg.is_none() {
        return Vec::new();
    }
    vec![Check::skip("webhooks.receivers", "no webhooks configured (webhook delivery is not part of this build)")]
}
