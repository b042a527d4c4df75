//! `state_store.*`: with `[redis]`, Redis answers and keeps its data across
//! restarts. Without persistence the gate stays safe (docs/production.md:
//! the broker mirrors the revocation epoch and refuses proofs issued before a
//! data loss) but every budget starts fresh, so that is a warning.

use latchgate_broker::state::{RedisStateStore, SqliteStateStore, StateStore};

use super::{Check, Context};

pub async fn checks(ctx: &Context) -> Vec<Check> {
    let Some(cfg) = &ctx.cfg else { return Vec::new() };
    let Some(redis) = &cfg.config.redis else {
        return vec![Check::skip(
            "state_store.redis",
            "no [redis]: the embedded SQLite state store (state.db) is used",
        )];
    };
    // The doctor never writes the broker's state.db: a scratch epoch mirror will do.
    let scratch = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => return vec![Check::error("state_store.redis", format!("no scratch dir: {e}"), "check /tmp")],
    };
    let store = match SqliteStateStore::open(&scratch.path().join("state.db")) {
        Ok(mirror) => RedisStateStore::open(redis, mirror).await,
        Err(e) => Err(e),
    };
    let store = match store {
        Ok(store) => store,
        Err(e) => {
            return vec![Check::error("state_store.redis", e.to_string(), "correct [redis] url in latchgate.toml")];
        }
    };
    let endpoint = store.endpoint();
    if let Err(e) = store.probe().await {
        return vec![Check::error(
            "state_store.redis",
            format!("Redis at {endpoint} does not answer: {e}"),
            "start Redis, or correct [redis] url (the broker's user must be able to reach it)",
        )];
    }
    let mut out = vec![Check::ok("state_store.redis", format!("Redis at {endpoint} answers PING"))];
    out.push(match store.persistence().await {
        Ok(p) if p.aof_enabled => Check::ok("state_store.persistence", "Redis persists every write (appendonly yes)"),
        Ok(p) if p.is_durable() => Check::warn(
            "state_store.persistence",
            format!(
                "Redis saves RDB snapshots only (save \"{}\"): a crash loses the writes since the last one",
                p.rdb_save.unwrap_or_default()
            ),
            "set appendonly yes in redis.conf",
        ),
        Ok(p) => Check::warn(
            "state_store.persistence",
            format!(
                "Redis has no persistence{}: after a Redis restart every session budget starts fresh and DPoP proofs \
                 issued before it are refused; revoked leases stay revoked (the broker mirrors the epoch)",
                if p.rdb_save.is_none() { " (CONFIG GET save not permitted; AOF off)" } else { "" }
            ),
            "set appendonly yes in redis.conf",
        ),
        Err(e) => Check::warn(
            "state_store.persistence",
            format!("cannot read Redis persistence: {e}"),
            "allow INFO for the gate's Redis user",
        ),
    });
    out
}
