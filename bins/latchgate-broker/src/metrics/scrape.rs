//! One scrape of `GET /metrics`: the event counters, plus every level read
//! from its source right now (the ledger, the state store, the peers' pings,
//! the broker's own counters), encoded by the `prometheus` crate's text
//! encoder (format 0.0.4).
//!
//! A level whose source cannot be read is left out of this scrape (and the
//! failure logged) rather than reported as 0: an absent series is what an
//! alert on `absent(...)` or a stale panel shows, a false 0 would hide the
//! problem.

use super::gate_metrics;
use crate::gate::Gate;
use crate::health;
use latchgate_core::error::{ApiError, ErrorCode};
use latchgate_ipc::messages::status::ProcessStatus;
use prometheus::{Encoder, Gauge, IntCounter, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};
use std::sync::atomic::Ordering;

/// The levels of one scrape, in a registry of their own (built per scrape,
/// so nothing of one scrape survives into the next).
struct Levels {
    registry: Registry,
}

impl Levels {
    fn add(&self, collector: Box<dyn prometheus::core::Collector>) -> Result<(), prometheus::Error> {
        self.registry.register(collector)
    }

    fn gauge(&self, name: &str, help: &str, value: f64) -> Result<(), prometheus::Error> {
        let gauge = Gauge::new(name, help)?;
        gauge.set(value);
        self.add(Box::new(gauge))
    }

    fn int_gauge(&self, name: &str, help: &str, value: u64) -> Result<(), prometheus::Error> {
        let gauge = IntGauge::new(name, help)?;
        gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        self.add(Box::new(gauge))
    }

    /// A counter kept elsewhere (monotonic since the broker started), exposed as read.
    fn counter(&self, name: &str, help: &str, value: u64) -> Result<(), prometheus::Error> {
        let counter = IntCounter::new(name, help)?;
        counter.inc_by(value);
        self.add(Box::new(counter))
    }
}

/// The whole exposition text.
pub async fn render(gate: &Gate, front: ProcessStatus) -> Result<String, ApiError> {
    let levels = Levels { registry: Registry::new() };
    read_levels(gate, front, &levels).await.map_err(encoding_failed)?;
    let mut families = gate_metrics().gather();
    families.extend(levels.registry.gather());
    families.sort_by(|a, b| a.name().cmp(b.name()));
    let mut text = Vec::with_capacity(16 * 1024);
    TextEncoder::new().encode(&families, &mut text).map_err(encoding_failed)?;
    String::from_utf8(text).map_err(|_| ApiError::new(ErrorCode::InternalError))
}

fn encoding_failed(e: prometheus::Error) -> ApiError {
    tracing::error!(error = %e, "metrics not encoded");
    ApiError::new(ErrorCode::InternalError)
}

fn unreadable(level: &str, code: &str) {
    tracing::warn!(level, code, "metric level not readable; left out of this scrape");
}

async fn read_levels(gate: &Gate, front: ProcessStatus, levels: &Levels) -> Result<(), prometheus::Error> {
    let ledger = &gate.ledger;
    let (health, unresolved, pending, oldest, outbox, epoch) = tokio::join!(
        health::report(gate),
        ledger.count_unresolved_intents(),
        ledger.count_pending_approvals(),
        ledger.oldest_pending_approval(),
        ledger.outbox_counts(),
        gate.state.revocation_epoch(),
    );

    let up = IntGaugeVec::new(
        Opts::new("latchgate_process_up", "1 when the process answers (the front: when it forwarded this scrape)."),
        &["role"],
    )?;
    up.with_label_values(&[front.role.as_str()]).set(1);
    for process in &health.processes {
        up.with_label_values(&[process.role.as_str()]).set(i64::from(process.up));
    }
    levels.add(Box::new(up))?;

    match unresolved {
        Ok(n) => levels.int_gauge(
            "latchgate_unresolved_intents",
            "Dispatched calls whose outcome is not in the ledger (see latchgate intents).",
            n,
        )?,
        Err(e) => unreadable("latchgate_unresolved_intents", e.code()),
    }
    match pending {
        Ok(n) => levels.int_gauge("latchgate_pending_approvals", "Held calls waiting for an operator.", n)?,
        Err(e) => unreadable("latchgate_pending_approvals", e.code()),
    }
    match oldest {
        Ok(created_at) => levels.gauge(
            "latchgate_oldest_pending_approval_seconds",
            "Age of the oldest held call still waiting for an operator; 0 when none waits.",
            created_at.as_deref().map_or(0.0, age_seconds),
        )?,
        Err(e) => unreadable("latchgate_oldest_pending_approval_seconds", e.code()),
    }
    match outbox {
        Ok(counts) => {
            levels.int_gauge(
                "latchgate_webhook_outbox_pending",
                "Webhook deliveries waiting in the ledger's outbox (new or being retried).",
                counts.pending,
            )?;
            levels.int_gauge(
                "latchgate_webhook_outbox_dead",
                "Dead letters: webhook deliveries refused (4xx) or out of retries (latchgate webhooks replay).",
                counts.dead,
            )?;
        }
        Err(e) => {
            unreadable("latchgate_webhook_outbox_pending", e.code());
            unreadable("latchgate_webhook_outbox_dead", e.code());
        }
    }
    match epoch {
        Ok(epoch) => levels.int_gauge(
            "latchgate_revocation_epoch",
            "Revocation epoch: leases and grants of older epochs are dead.",
            epoch,
        )?,
        Err(e) => unreadable("latchgate_revocation_epoch", e.code()),
    }

    levels.int_gauge(
        "latchgate_in_flight_executions",
        "Calls admitted and not yet answered (what a drain or SIGTERM waits for).",
        gate.in_flight.load(Ordering::SeqCst),
    )?;
    levels.int_gauge(
        "latchgate_draining",
        "1 while the gate refuses new executions (latchgate drain).",
        u64::from(gate.draining.load(Ordering::SeqCst)),
    )?;
    levels.int_gauge(
        "latchgate_uptime_seconds",
        "Seconds since the broker started.",
        gate.started.elapsed().as_secs(),
    )?;

    let stats = ledger.stats();
    levels.counter(
        "latchgate_ledger_batches_committed_total",
        "Ledger transactions committed, one fsync each (group commit).",
        stats.batches_committed,
    )?;
    levels.counter(
        "latchgate_ledger_commits_total",
        "Ledger writes made durable inside committed batches (commits / batches = writes per fsync).",
        stats.jobs_committed,
    )?;
    levels.counter(
        "latchgate_ledger_batches_failed_total",
        "Ledger transactions that failed and were rolled back.",
        stats.batches_failed,
    )?;
    levels.counter(
        "latchgate_audit_write_error_total",
        "Ledger writes (audit events, intents, approvals, outbox updates) that did not become durable.",
        stats.write_errors,
    )?;
    Ok(())
}

/// Seconds from a ledger timestamp (RFC 3339) until now; 0 if it does not parse.
fn age_seconds(created_at: &str) -> f64 {
    let format = &time::format_description::well_known::Rfc3339;
    match time::OffsetDateTime::parse(created_at, format) {
        Ok(created) => (time::OffsetDateTime::now_utc() - created).as_seconds_f64().max(0.0),
        Err(_) => {
            unreadable("latchgate_oldest_pending_approval_seconds", "ledger_corrupt_row");
            0.0
        }
    }
}
