//! Which state store and policy engine this broker uses, chosen from the
//! config once at start (docs/production.md):
//!
//! | config | state store | policy engine |
//! |---|---|---|
//! | no `[redis]` / no `[opa]` | SQLite `state.db` | embedded regorus (reloads `data.json`) |
//! | `[redis] url` | Redis (epoch floor mirrored in `state.db`) | |
//! | `[opa] url` | | OPA over HTTP |
//!
//! `mode = "production"` requires both (config validation), and `latchgate
//! serve` requires `mode = "production"`. `latchgate up` uses whatever the
//! config names, so tests and staging can run Redis/OPA without the
//! production-safety checks.

use crate::policy::{EmbeddedRego, OpaClient, PolicyEngine};
use crate::state::{RedisStateStore, SqliteStateStore, StateStore};
use latchgate_core::config::LoadedConfig;
use latchgate_ipc::child::ChildError;
use std::sync::Arc;

/// The embedded state database in the state dir (also the Redis store's epoch mirror).
pub const STATE_FILE: &str = "state.db";

pub async fn open_state_store(cfg: &LoadedConfig) -> Result<Arc<dyn StateStore>, ChildError> {
    let sqlite =
        SqliteStateStore::open(&cfg.state_dir().join(STATE_FILE)).map_err(|e| ChildError::setup(e.code(), e))?;
    let Some(redis) = &cfg.config.redis else {
        return Ok(Arc::new(sqlite));
    };
    let store = RedisStateStore::open(redis, sqlite).await.map_err(|e| ChildError::setup(e.code(), e))?;
    tracing::info!(endpoint = %store.endpoint(), epoch_floor = store.epoch_floor(), "state store: redis");
    Ok(Arc::new(store))
}

pub fn open_policy_engine(cfg: &LoadedConfig) -> Result<Arc<dyn PolicyEngine>, ChildError> {
    if let Some(opa) = &cfg.config.opa {
        let client = OpaClient::new(opa).map_err(|e| ChildError::setup(e.code(), e))?;
        tracing::info!(endpoint = %client.endpoint(), "policy engine: opa");
        return Ok(Arc::new(client));
    }
    // The data.json watcher is the gate's (it reloads the egress allowances too).
    Ok(Arc::new(EmbeddedRego::load(&cfg.policies_dir()).map_err(|e| ChildError::setup(e.code(), e))?))
}
