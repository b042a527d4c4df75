//! `webhooks.*`: every configured receiver loads exactly as the broker loads
//! it at start (URL under the SSRF rule, `${ENV}` references resolvable in
//! this environment, a non-empty signing secret), and no delivery is waiting
//! in the outbox as a dead letter.

use latchgate_broker::ledger::{LEDGER_FILE, outbox};
use latchgate_broker::webhooks::Webhooks;

use super::{Check, Context};

pub fn checks(ctx: &Context) -> Vec<Check> {
    let Some(cfg) = &ctx.cfg else { return Vec::new() };
    if cfg.config.webhooks.is_empty() {
        // Dead letters outlive the receiver they were for.
        return vec![Check::skip("webhooks.endpoints", "no [[webhooks]] configured"), dead_letters(ctx)];
    }
    let mut out = Vec::new();
    if let Err(e) = Webhooks::from_config(cfg) {
        out.push(Check::problem(
            ctx,
            "webhooks.endpoints",
            format!("the broker would refuse to start: {e}"),
            "fix the [[webhooks]] entry; ${NAME} references must be set in the broker's environment",
        ));
    }
    for hook in &cfg.config.webhooks {
        match cfg.webhook_destination(hook) {
            Ok(url) if url.scheme() == "https" => out.push(Check::ok(
                "webhooks.endpoints",
                format!("{}: {url} ({} event types)", hook.name, hook.events.len()),
            )),
            Ok(url) => out.push(Check::problem(
                ctx,
                "webhooks.endpoints",
                format!("{}: {url} is a test-only plain-http destination", hook.name),
                "use an https:// receiver and empty webhook_delivery.allow_insecure_destinations",
            )),
            Err(why) => out.push(Check::error(
                "webhooks.endpoints",
                format!("{}: {}: {why}", hook.name, hook.url),
                "use an https:// URL to a public host",
            )),
        }
    }
    out.push(dead_letters(ctx));
    out
}

fn dead_letters(ctx: &Context) -> Check {
    let Some(cfg) = &ctx.cfg else { return Check::skip("webhooks.dead_letters", "no config") };
    let path = cfg.state_dir().join(LEDGER_FILE);
    if !path.exists() {
        return Check::skip("webhooks.dead_letters", "no ledger yet (the broker creates it at first start)");
    }
    let counts = outbox::open_for_operator(&path).and_then(|conn| outbox::counts(&conn, None));
    match counts {
        Ok(c) if c.dead == 0 => Check::ok(
            "webhooks.dead_letters",
            format!("no dead letters ({} pending, {} delivered)", c.pending, c.delivered),
        ),
        Ok(c) => Check::warn(
            "webhooks.dead_letters",
            format!("{} deliveries gave up after their retries ({} pending)", c.dead, c.pending),
            "latchgate webhooks dead-letters, fix the receiver, then latchgate webhooks replay ID",
        ),
        Err(e) => Check::warn(
            "webhooks.dead_letters",
            format!("{}: the outbox cannot be read: {e}", path.display()),
            "run latchgate doctor as root (the ledger is the broker's)",
        ),
    }
}
