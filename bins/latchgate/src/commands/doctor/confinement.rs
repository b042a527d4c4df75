//! `confinement.*`: the configured mode, and — when the gate is running —
//! what each process actually got from the kernel (`/readyz` of the client
//! socket), with every degraded layer named.

use std::time::Duration;

use latchgate_client::uds_http::UdsHttp;
use latchgate_core::config::Confinement;

use super::{Check, Context};

const READYZ_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn checks(ctx: &Context) -> Vec<Check> {
    let Some(cfg) = &ctx.cfg else { return Vec::new() };
    let mut out = vec![match cfg.config.confinement {
        Confinement::Strict => {
            Check::ok("confinement.mode", "confinement = \"strict\": no process starts with a missing layer")
        }
        Confinement::BestEffort => Check::problem(
            ctx,
            "confinement.mode",
            "confinement = \"best_effort\": a process may start with a missing seccomp or Landlock layer",
            "set confinement = \"strict\"",
        ),
    }];
    let socket = cfg.client_socket();
    let readyz = async {
        let mut http = UdsHttp::connect(&socket).await.ok()?;
        let response = http.request(http::Method::GET, "/readyz", &[], None).await.ok()?;
        Some(response.json())
    };
    let Ok(Some(body)) = tokio::time::timeout(READYZ_TIMEOUT, readyz).await else {
        out.push(Check::skip(
            "confinement.processes",
            format!(
                "the gate is not running at {}: live confinement not checked (kernel.* shows what this host enforces)",
                socket.display()
            ),
        ));
        return out;
    };
    out.extend(live_checks(ctx, &body));
    out
}

/// Checks from a `/readyz` answer: one per process, naming every degraded layer.
fn live_checks(ctx: &Context, body: &serde_json::Value) -> Vec<Check> {
    let mut out = Vec::new();
    let Some(processes) = body.get("processes").and_then(|p| p.as_object()) else {
        out.push(Check::warn(
            "confinement.processes",
            format!("/readyz answered without a process list: {body}"),
            "is this a LatchGate socket?",
        ));
        return out;
    };
    for (role, process) in processes {
        let id = format!("confinement.{role}");
        let summary = process.get("confinement").and_then(|c| c.as_str()).unwrap_or("no confinement report");
        let up = process.get("up").and_then(|u| u.as_bool()).unwrap_or(false);
        let degraded = process.get("degraded").and_then(|d| d.as_bool()).unwrap_or(true);
        out.push(if !up {
            Check::error(
                &id,
                format!("{role} is down: {}", process.get("error").and_then(|e| e.as_str()).unwrap_or("no answer")),
                "see the supervisor log",
            )
        } else if degraded {
            Check::problem(
                ctx,
                &id,
                format!("{role} runs DEGRADED: {summary}"),
                "run on a kernel with every layer (see kernel.*), with confinement = \"strict\"",
            )
        } else {
            Check::ok(&id, format!("{role}: {summary}"))
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::doctor::Status;

    fn context(mode: &str) -> (tempfile::TempDir, Context) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latchgate.toml");
        let extra =
            if mode == "production" { "[redis]\nurl = \"redis://r\"\n[opa]\nurl = \"http://o:8181\"\n" } else { "" };
        std::fs::write(&path, format!("mode = \"{mode}\"\n{extra}")).unwrap();
        let ctx = Context::load(&path);
        assert!(ctx.cfg.is_some());
        (dir, ctx)
    }

    #[test]
    fn a_degraded_layer_is_named_per_process() {
        let body = serde_json::json!({"processes": {
            "front": {"up": true, "degraded": false, "confinement": "uid 1, seccomp enforced"},
            "executor": {"up": true, "degraded": true, "confinement": "landlock DEGRADED (landlock ABI 3: no TCP port rules)"},
            "signer": {"up": false, "error": "ipc_closed"},
        }});
        for (mode, degraded_status) in [("embedded", Status::Warn), ("production", Status::Error)] {
            let (_dir, ctx) = context(mode);
            let checks = live_checks(&ctx, &body);
            let by_id = |id: &str| checks.iter().find(|c| c.id == id).unwrap_or_else(|| panic!("{id}: {checks:?}"));
            assert_eq!(by_id("confinement.front").status, Status::Ok);
            let executor = by_id("confinement.executor");
            assert_eq!(executor.status, degraded_status, "{mode}");
            assert!(
                executor.message.contains("DEGRADED") && executor.message.contains("ABI 3"),
                "{}",
                executor.message
            );
            assert_eq!(by_id("confinement.signer").status, Status::Error);
        }
    }
}
