//! `GET /v1/admin/status`: version, uptime, every process's health and
//! confinement (each degraded layer named), dependency health, and the
//! counters an operator watches (pending approvals, unresolved intents,
//! in-flight executions, revocation epoch).

use crate::gate::Gate;
use crate::health;
use latchgate_core::confine::ConfinementReport;
use latchgate_ipc::messages::status::{ProcessHealth, ProcessStatus};
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

/// Each layer that is not fully enforced, as `layer: reason`.
pub fn degraded_layers(report: &ConfinementReport) -> Vec<String> {
    health::confinement_findings(report).into_iter().map(|(layer, why)| format!("{layer}: {why}")).collect()
}

fn process_json(health: &ProcessHealth) -> Value {
    let status = health.status.as_ref();
    let confinement = status.and_then(|s| s.confinement.as_ref());
    json!({
        "up": health.up,
        "ready": status.is_some_and(|s| s.ready),
        "pid": status.map(|s| s.pid),
        "uid": status.map(|s| s.uid),
        "error": health.error,
        "confinement": confinement.map(ConfinementReport::summary),
        "degraded": confinement.map(ConfinementReport::is_degraded),
        "degraded_layers": confinement.map(degraded_layers).unwrap_or_default(),
        "layers": confinement,
    })
}

pub async fn report(gate: &Gate, front: ProcessStatus) -> Value {
    let processes_health = health::report(gate).await;
    let mut processes = serde_json::Map::new();
    let mut all = vec![health::up(front)];
    all.extend(processes_health.processes.iter().cloned());
    let mut degraded = false;
    let mut down = false;
    for p in &all {
        let confinement = p.status.as_ref().and_then(|s| s.confinement.as_ref());
        degraded |= confinement.is_none_or(ConfinementReport::is_degraded);
        down |= !p.up;
        processes.insert(p.role.as_str().into(), process_json(p));
    }

    let epoch = gate.state.revocation_epoch().await;
    let pending = gate.ledger.count_pending_approvals().await;
    let unresolved = gate.ledger.unresolved_intents().await.map(|i| i.len());
    let outbox = gate.ledger.outbox_counts().await;
    let ledger_stats = gate.ledger.stats();
    let actions = gate.actions.current();
    let untrusted: Vec<&str> =
        actions.registry.iter().map(|a| a.id()).filter(|id| !actions.trust.is_trusted(id)).collect();
    // The state store and policy engine as /readyz probes them; the ledger
    // and the webhook outbox as the broker's own database sees them.
    let mut dependencies = serde_json::Map::new();
    for dep in &processes_health.dependencies {
        dependencies.insert(dep.name.clone(), json!(dep));
    }
    dependencies.insert(
        "evidence_ledger".into(),
        json!({
            "up": pending.is_ok() && unresolved.is_ok(),
            "error": pending.as_ref().err().or(unresolved.as_ref().err()).map(|e| e.code().to_string()),
            "batches_committed": ledger_stats.batches_committed,
            "batches_on_caller": ledger_stats.batches_on_caller,
            "batches_failed": ledger_stats.batches_failed,
        }),
    );
    dependencies.insert(
        "webhooks".into(),
        json!({
            "configured": gate.cfg.config.webhooks.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(),
            "outbox": outbox.as_ref().ok(),
            "error": outbox.as_ref().err().map(|e| e.code().to_string()),
        }),
    );
    let dependencies_ok = processes_health.dependencies_up() && pending.is_ok() && unresolved.is_ok();
    let ledger_failing = (pending.is_err() || unresolved.is_err()).then_some("evidence_ledger");
    health::count_probe(&all, health::failing_dependencies(&processes_health).chain(ledger_failing));
    let uptime = gate.started.elapsed().as_secs();
    let status = if down || !dependencies_ok {
        "unavailable"
    } else if degraded {
        "degraded"
    } else {
        "ok"
    };
    json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "mode": gate.cfg.config.mode,
        "uptime_seconds": uptime,
        "draining": gate.draining.load(Ordering::SeqCst),
        "degraded": degraded,
        "processes": processes,
        "dependencies": dependencies,
        "pending_approvals": pending.ok(),
        "approvals_executing": gate.approvals.executing_count(),
        "unresolved_intents": unresolved.ok(),
        "in_flight_executions": gate.in_flight.load(Ordering::SeqCst),
        "revocation_epoch": epoch.ok(),
        "policy_version": gate.policy.policy_version(),
        "actions": {"count": actions.registry.len(), "untrusted": untrusted},
        "operators": gate.cfg.config.operator_credentials.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchgate_core::confine::LayerStatus;

    #[test]
    fn each_degraded_layer_is_named_with_its_reason() {
        let mut report = ConfinementReport {
            seccomp: LayerStatus::Enforced,
            landlock: LayerStatus::Degraded("landlock ABI 3: no TCP port rules".into()),
            landlock_abi: Some(3),
            no_new_privs: true,
            caps_dropped: true,
            bounding_set_empty: true,
            uid: 998,
            gid: 998,
        };
        assert_eq!(degraded_layers(&report), vec!["landlock: degraded (landlock ABI 3: no TCP port rules)"]);
        report.seccomp = LayerStatus::Unavailable("kernel without seccomp".into());
        report.no_new_privs = false;
        assert_eq!(degraded_layers(&report).len(), 3);
        report.seccomp = LayerStatus::Enforced;
        report.landlock = LayerStatus::Enforced;
        report.no_new_privs = true;
        assert!(degraded_layers(&report).is_empty());
    }
}
