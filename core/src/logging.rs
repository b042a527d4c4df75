//! `tracing` set-up shared by every process: each line carries the process role,
//! whatever thread or task emitted it.

use crate::role::Role;
use std::fmt::Write as _;
use tracing::{Event, Subscriber, field::Field};
use tracing_subscriber::fmt::{self, FmtContext, FormatEvent, FormatFields, format::Writer};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, prelude::*};

/// Log format chosen by `LATCHGATE_LOG_FORMAT` (`json` or `pretty`, default pretty);
/// level by `RUST_LOG` (default `info`). Logs go to stderr.
pub fn init(role: Role) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LATCHGATE_LOG_FORMAT").is_ok_and(|f| f == "json");
    let layer = fmt::layer().with_writer(std::io::stderr);
    let _ = if json {
        tracing_subscriber::registry().with(filter).with(layer.event_format(JsonLine { role })).try_init()
    } else {
        let text = RoleTagged { role, inner: fmt::format().with_target(false) };
        tracing_subscriber::registry().with(filter).with(layer.event_format(text)).try_init()
    };
}

/// Human format: the default compact line with `[role]` in front.
struct RoleTagged<F> {
    role: Role,
    inner: F,
}

impl<S, N, F> FormatEvent<S, N> for RoleTagged<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        write!(writer, "[{}] ", self.role)?;
        self.inner.format_event(ctx, writer, event)
    }
}

/// One JSON object per line: `ts`, `level`, `role`, `target`, `message` and the event's fields.
struct JsonLine {
    role: Role,
}

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let mut fields = FieldMap(serde_json::Map::new());
        event.record(&mut fields);
        let mut line = fields.0;
        let ts =
            time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        line.insert("ts".into(), ts.into());
        line.insert("level".into(), event.metadata().level().as_str().into());
        line.insert("role".into(), self.role.as_str().into());
        line.insert("target".into(), event.metadata().target().into());
        let text = serde_json::Value::Object(line).to_string();
        writeln!(writer, "{text}")
    }
}

struct FieldMap(serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for FieldMap {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut s = String::new();
        let _ = write!(s, "{value:?}");
        self.0.insert(field.name().into(), s.into());
    }
}
