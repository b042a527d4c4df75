//! `latchgate webhooks list|dead-letters|replay ID` and
//! `latchgate config test-webhook NAME`. The outbox is read (and, for
//! `replay`, written) directly in the ledger database, like `latchgate audit`;
//! the running broker picks a replayed delivery up within a poll interval.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use latchgate_broker::ledger::outbox::{self, DeliveryState, OutboxCounts, OutboxRow};
use latchgate_broker::webhooks::{TestError, Webhooks};
use latchgate_core::config::LoadedConfig;
use serde::Serialize;

use super::evidence::{ledger_failure, ledger_path, open_ledger};
use super::output::{self, Exit, Failure, Table, Tone};

#[derive(clap::Subcommand)]
pub enum WebhooksCommand {
    /// Configured webhooks and their outbox (pending, delivered, dead).
    List(ListArgs),
    /// Deliveries that failed for good (4xx, or every retry spent).
    DeadLetters(ListArgs),
    /// Queue a dead letter again, with a fresh retry budget.
    Replay {
        /// The delivery id (`latchgate webhooks dead-letters`).
        #[arg(value_name = "ID")]
        delivery_id: String,
        #[command(flatten)]
        args: LedgerArgs,
    },
}

#[derive(clap::Args)]
pub struct LedgerArgs {
    /// The ledger database instead of `<state_dir>/ledger.db` of the config.
    #[arg(long, value_name = "FILE")]
    ledger: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    ledger: LedgerArgs,
    /// At most this many deliveries.
    #[arg(long, default_value_t = 100)]
    limit: u32,
}

pub fn run(config: &Path, command: WebhooksCommand) -> ExitCode {
    match command {
        WebhooksCommand::List(args) => output::finish(args.ledger.json, list(config, &args)),
        WebhooksCommand::DeadLetters(args) => output::finish(args.ledger.json, dead_letters(config, &args)),
        WebhooksCommand::Replay { delivery_id, args } => output::finish(args.json, replay(config, &delivery_id, &args)),
    }
}

#[derive(Serialize)]
struct Listed {
    name: String,
    url: String,
    events: Vec<String>,
    format: latchgate_core::config::WebhookFormat,
    outbox: OutboxCounts,
}

fn list(config: &Path, args: &ListArgs) -> Result<Exit, Failure> {
    let cfg = LoadedConfig::load(config)?;
    let path = ledger_path(config, args.ledger.ledger.as_deref())?;
    let reader = open_ledger(&path)?;
    let mut listed = Vec::new();
    for hook in &cfg.config.webhooks {
        let counts = reader.outbox_counts(Some(&hook.name)).map_err(|e| ledger_failure(&path, &e))?;
        listed.push(Listed {
            name: hook.name.clone(),
            url: hook.url.clone(),
            events: hook.events.clone(),
            format: hook.format,
            outbox: counts,
        });
    }
    let recent = reader.outbox(None, args.limit).map_err(|e| ledger_failure(&path, &e))?;
    if args.ledger.json {
        output::print_json(&serde_json::json!({"webhooks": listed, "deliveries": recent}));
        return Ok(Exit::Ok);
    }
    let colour = output::stdout_colour();
    let mut table = Table::new(&["WEBHOOK", "URL", "PENDING", "DELIVERED", "DEAD"]);
    for hook in &listed {
        let dead = if hook.outbox.dead > 0 { Tone::Bad } else { Tone::Plain };
        table.row(vec![
            (hook.name.clone(), Tone::Plain),
            (hook.url.clone(), Tone::Dim),
            (hook.outbox.pending.to_string(), Tone::Plain),
            (hook.outbox.delivered.to_string(), Tone::Good),
            (hook.outbox.dead.to_string(), dead),
        ]);
    }
    let mut text = if table.is_empty() { "no [[webhooks]] configured\n".to_string() } else { table.render(colour) };
    if !recent.is_empty() {
        text.push('\n');
        text.push_str(&deliveries_table(&recent).render(colour));
    }
    output::write_stdout(&text);
    Ok(Exit::Ok)
}

fn deliveries_table(rows: &[OutboxRow]) -> Table {
    let mut table = Table::new(&["DELIVERY", "WEBHOOK", "EVENT", "SEQ", "STATE", "ATTEMPTS", "LAST"]);
    for row in rows {
        let tone = match row.state {
            DeliveryState::Delivered => Tone::Good,
            DeliveryState::Pending => Tone::Warn,
            DeliveryState::Dead => Tone::Bad,
        };
        let last = match (&row.last_status, &row.last_error) {
            (_, Some(error)) => error.clone(),
            (Some(status), None) => status.to_string(),
            (None, None) => String::new(),
        };
        table.row(vec![
            (row.delivery_id.clone(), Tone::Plain),
            (row.webhook.clone(), Tone::Plain),
            (row.event.clone(), Tone::Plain),
            (row.event_seq.to_string(), Tone::Dim),
            (row.state.as_str().to_string(), tone),
            (row.attempts.to_string(), Tone::Plain),
            (last, Tone::Dim),
        ]);
    }
    table
}

fn dead_letters(config: &Path, args: &ListArgs) -> Result<Exit, Failure> {
    let path = ledger_path(config, args.ledger.ledger.as_deref())?;
    let reader = open_ledger(&path)?;
    let rows = reader.outbox(Some(DeliveryState::Dead), args.limit).map_err(|e| ledger_failure(&path, &e))?;
    if args.ledger.json {
        output::print_json(&serde_json::json!({"dead_letters": rows}));
    } else if rows.is_empty() {
        output::write_stdout("no dead letters\n");
    } else {
        output::write_stdout(&deliveries_table(&rows).render(output::stdout_colour()));
    }
    Ok(Exit::Ok)
}

fn replay(config: &Path, delivery_id: &str, args: &LedgerArgs) -> Result<Exit, Failure> {
    let path = ledger_path(config, args.ledger.as_deref())?;
    drop(open_ledger(&path)?);
    let conn = outbox::open_for_operator(&path).map_err(|e| ledger_failure(&path, &e))?;
    let row = match outbox::replay(&conn, delivery_id) {
        Ok(Some(row)) => row,
        Ok(None) => {
            return Err(Failure::new(
                "webhook_delivery_not_found",
                format!("no delivery {delivery_id}"),
                "list them with `latchgate webhooks dead-letters`",
            ));
        }
        Err(e) => return Err(Failure::new(e.code(), &e, "only dead letters can be replayed")),
    };
    if args.json {
        output::print_json(&serde_json::json!({"ok": true, "delivery": row}));
    } else {
        output::write_stdout(&format!(
            "{} delivery {} ({} to {}): the running gate sends it within a second\n",
            Tone::Good.paint("queued", output::stdout_colour()),
            row.delivery_id,
            row.event,
            row.webhook,
        ));
    }
    Ok(Exit::Ok)
}

/// `latchgate config test-webhook NAME`: a signed `test` delivery now, not through the outbox.
pub fn test_webhook(config: &Path, name: &str, json: bool) -> Result<Exit, Failure> {
    let cfg = LoadedConfig::load(config)?;
    let hooks = Webhooks::from_config(&cfg).map_err(|e| {
        Failure::new(e.code(), &e, "set the environment variables the webhook's secret and headers name")
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new("runtime_start_failed", e, "report this as a bug"))?;
    let result = runtime.block_on(hooks.send_test(name));
    let (delivery_id, status) = match result {
        Ok(sent) => sent,
        Err(e @ TestError::Unknown(_)) => {
            return Err(Failure::new("webhook_not_found", &e, "name a [[webhooks]] entry of the config"));
        }
        Err(TestError::Send(e)) => {
            return Err(Failure::new(e.code(), &e, "check the URL, the network path, and that the receiver is up"));
        }
    };
    let ok = (200..300).contains(&status);
    if json {
        output::print_json(
            &serde_json::json!({"ok": ok, "webhook": name, "delivery_id": delivery_id, "status": status}),
        );
    } else {
        let tone = if ok { Tone::Good } else { Tone::Bad };
        output::write_stdout(&format!(
            "{} {name}: receiver answered {status} (delivery {delivery_id})\n",
            tone.paint(if ok { "delivered" } else { "REFUSED" }, output::stdout_colour())
        ));
    }
    Ok(if ok { Exit::Ok } else { Exit::Error })
}
