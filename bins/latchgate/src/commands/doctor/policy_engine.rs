//! `policy_engine.*`: with `[opa]`, OPA answers `data.latchgate.decision`
//! with a well-formed decision (the policy is loaded: the path is not empty);
//! without it, the embedded policy in `policies_dir` loads and decides.

use latchgate_broker::policy::{EmbeddedRego, OpaClient, PolicyEngine};

use super::{Check, Context};

pub async fn checks(ctx: &Context) -> Vec<Check> {
    let Some(cfg) = &ctx.cfg else { return Vec::new() };
    let local = EmbeddedRego::load(&cfg.policies_dir());
    let Some(opa) = &cfg.config.opa else {
        return vec![match local {
            Ok(engine) => Check::ok(
                "policy_engine.embedded",
                format!(
                    "embedded policy in {} loads and decides (policy version {})",
                    cfg.policies_dir().display(),
                    engine.policy_version().unwrap_or_default()
                ),
            ),
            Err(e) => Check::error(
                "policy_engine.embedded",
                e.to_string(),
                "fix latchgate.rego / data.json (make test runs the Rego unit tests)",
            ),
        }];
    };
    let client = match OpaClient::new(opa) {
        Ok(client) => client,
        Err(e) => return vec![Check::error("policy_engine.opa", e.to_string(), "correct [opa] url in latchgate.toml")],
    };
    let endpoint = client.endpoint();
    let version = match client.probe().await {
        Ok(version) => version,
        Err(e) => {
            let fix = match e.error_code() {
                latchgate_core::error::ErrorCode::PolicyEngineInvalidResponse => {
                    "load policies/latchgate.rego and data.json into OPA (POST /v1/data/latchgate/decision must answer a decision)"
                }
                latchgate_core::error::ErrorCode::PolicyEngineTimeout => {
                    "OPA is too slow: check its load, or raise [opa] timeout_ms"
                }
                _ => "start OPA, or correct [opa] url",
            };
            return vec![Check::error(
                "policy_engine.opa",
                format!("OPA at {endpoint}: {e} [{}]", e.error_code()),
                fix,
            )];
        }
    };
    let mut out = vec![Check::ok(
        "policy_engine.opa",
        format!("OPA at {endpoint} answers data.latchgate.decision (policy version {version})"),
    )];
    if let Ok(engine) = local {
        let mine = engine.policy_version().unwrap_or_default();
        out.push(if mine == version {
            Check::ok(
                "policy_engine.version",
                format!("OPA runs the policy version of {} ({mine})", cfg.policies_dir().display()),
            )
        } else {
            Check::warn(
                "policy_engine.version",
                format!("OPA runs policy version {version}, {} holds {mine}", cfg.policies_dir().display()),
                "publish the current policies/ to OPA (latchgate policy grant|revoke edit the local data.json only)",
            )
        });
    }
    out
}
