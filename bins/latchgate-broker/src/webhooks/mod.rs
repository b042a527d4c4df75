//! Webhook delivery from the durable outbox (`ledger::outbox`): the broker
//! polls for due rows, POSTs each (signed, formatted, SSRF-checked), and
//! records the result in the row. 2xx: delivered. 4xx: dead letter at once
//! (the receiver refused it; retrying changes nothing). 5xx, timeouts and
//! network errors: retried after `backoff_ms[n]` until `max_retries` is spent,
//! then a dead letter. Dead letters stay until `latchgate webhooks replay`.
//!
//! Rows survive a broker restart (they are in the ledger), so a delivery that
//! was due while the broker was down goes out when it is back. A receiver may
//! see a delivery twice (the broker died between the POST and recording it):
//! `X-LatchGate-Delivery` is the same on every attempt, for deduplication.

pub mod body;
pub mod send;
pub mod sign;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use latchgate_core::config::{LoadedConfig, Webhook, WebhookFormat, expand_env};
use url::Url;

use crate::ledger::outbox::{AttemptOutcome, DueDelivery, OutboxRoutes};
use crate::ledger::{Ledger, ledger_timestamp};
use send::{SendError, Sender};
use sign::{DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, SigningSecret, TIMESTAMP_HEADER};

/// How often the outbox is looked at when it had nothing due.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Deliveries handled per look (they run concurrently).
const BATCH: u32 = 32;

#[derive(Debug, thiserror::Error)]
pub enum WebhookConfigError {
    #[error("webhooks.{name}: {message}")]
    Invalid { name: String, message: String },
}

impl WebhookConfigError {
    pub fn code(&self) -> &'static str {
        "webhook_config_invalid"
    }
}

/// One configured receiver, with `${ENV}` expanded. `Debug` shows no secret
/// and no header value.
pub struct Endpoint {
    pub name: String,
    pub url: Url,
    secret: SigningSecret,
    headers: Vec<(HeaderName, HeaderValue)>,
    pub events: Vec<String>,
    pub timeout: Duration,
    pub max_retries: u32,
    pub backoff: Vec<Duration>,
    pub format: WebhookFormat,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("headers", &self.headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>())
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    fn from_config(cfg: &LoadedConfig, hook: &Webhook) -> Result<Endpoint, WebhookConfigError> {
        let invalid = |message: String| WebhookConfigError::Invalid { name: hook.name.clone(), message };
        let url = cfg.webhook_destination(hook).map_err(|m| invalid(format!("url: {m}")))?;
        let secret = expand_env(&hook.secret).map_err(|m| invalid(format!("secret: {m}")))?;
        if secret.is_empty() {
            return Err(invalid("secret: expands to an empty string".into()));
        }
        let mut headers = Vec::new();
        for (name, value) in &hook.headers {
            let value = expand_env(value).map_err(|m| invalid(format!("headers.{name}: {m}")))?;
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| invalid(format!("headers.{name}: {e}")))?;
            let mut value = HeaderValue::from_str(&value)
                .map_err(|_| invalid(format!("headers.{name}: not a valid header value after expansion")))?;
            value.set_sensitive(true);
            headers.push((name, value));
        }
        Ok(Endpoint {
            name: hook.name.clone(),
            url,
            secret: SigningSecret::new(secret.as_bytes()),
            headers,
            events: hook.events.clone(),
            timeout: Duration::from_millis(hook.timeout_ms),
            max_retries: hook.max_retries,
            backoff: hook.backoff_ms.iter().map(|ms| Duration::from_millis(*ms)).collect(),
            format: hook.format,
        })
    }

    /// Every header of one attempt: the configured ones, then ours.
    fn headers(&self, delivery_id: &str, event: &str, timestamp: i64, body: &[u8]) -> Vec<(HeaderName, HeaderValue)> {
        let mut headers = self.headers.clone();
        let ours = [
            (EVENT_HEADER, event.to_string()),
            (DELIVERY_HEADER, delivery_id.to_string()),
            (TIMESTAMP_HEADER, timestamp.to_string()),
            (SIGNATURE_HEADER, self.secret.sign(timestamp, body)),
        ];
        for (name, value) in ours {
            // Event names, uuids, digits and hex are always valid header values.
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.push((HeaderName::from_static(name), value));
            }
        }
        headers
    }

    /// Delay before the retry following attempt number `attempt` (1-based).
    fn backoff_after(&self, attempt: u32) -> Duration {
        let index = (attempt.saturating_sub(1) as usize).min(self.backoff.len().saturating_sub(1));
        self.backoff.get(index).copied().unwrap_or(Duration::from_secs(1))
    }
}

/// The receivers of one config and the connection settings they share.
#[derive(Debug)]
pub struct Webhooks {
    endpoints: Vec<Endpoint>,
    sender: Sender,
}

impl Webhooks {
    /// Expands every `${ENV}` now: a missing variable is a start-up error
    /// naming the webhook and the field.
    pub fn from_config(cfg: &LoadedConfig) -> Result<Webhooks, WebhookConfigError> {
        let endpoints =
            cfg.config.webhooks.iter().map(|hook| Endpoint::from_config(cfg, hook)).collect::<Result<Vec<_>, _>>()?;
        let sender = Sender::new(cfg.config.webhook_delivery.allow_insecure_destinations.clone())
            .map_err(|message| WebhookConfigError::Invalid { name: "*".into(), message })?;
        Ok(Webhooks { endpoints, sender })
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.name == name)
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// What the ledger writer needs to fill the outbox.
    pub fn routes(&self) -> OutboxRoutes {
        OutboxRoutes::new(self.endpoints.iter().map(|e| (e.name.clone(), e.events.clone())))
    }

    /// One signed POST; the receiver's status.
    pub async fn post(
        &self,
        endpoint: &Endpoint,
        delivery_id: &str,
        event: &str,
        body: Vec<u8>,
    ) -> Result<u16, SendError> {
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let headers = endpoint.headers(delivery_id, event, timestamp, &body);
        self.sender.post(&endpoint.url, &headers, body, endpoint.timeout).await
    }

    /// `latchgate config test-webhook NAME`: a signed `test` delivery now, outside the outbox.
    pub async fn send_test(&self, name: &str) -> Result<(String, u16), TestError> {
        let endpoint = self.get(name).ok_or_else(|| TestError::Unknown(name.to_string()))?;
        let delivery_id = format!("test-{}", uuid::Uuid::new_v4());
        let now = ledger_timestamp(time::OffsetDateTime::now_utc());
        let body = body::test_body(endpoint.format, &delivery_id, &now);
        let status = self.post(endpoint, &delivery_id, "test", body).await?;
        Ok((delivery_id, status))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TestError {
    #[error("no webhook named {0:?} in the config")]
    Unknown(String),
    #[error(transparent)]
    Send(#[from] SendError),
}

/// What an attempt's result means for the row (pure; see the module docs).
pub fn outcome_of(
    endpoint: &Endpoint,
    attempt: u32,
    result: &Result<u16, SendError>,
    now: time::OffsetDateTime,
) -> AttemptOutcome {
    let retry = |status: Option<u16>, error: String| {
        if attempt <= endpoint.max_retries {
            let at = now + endpoint.backoff_after(attempt);
            AttemptOutcome::Retry { status, error, next_attempt_at: ledger_timestamp(at) }
        } else {
            AttemptOutcome::Dead { status, error: format!("{error} (after {attempt} attempts)") }
        }
    };
    match result {
        Ok(status @ 200..=299) => AttemptOutcome::Delivered { status: *status },
        Ok(status @ 500..=599) => retry(Some(*status), format!("receiver answered {status}")),
        Ok(status @ 400..=499) => AttemptOutcome::Dead {
            status: Some(*status),
            error: format!("receiver refused with {status}; not retried"),
        },
        Ok(status) => AttemptOutcome::Dead {
            status: Some(*status),
            error: format!("unexpected status {status} (redirects are not followed)"),
        },
        Err(e) if e.retryable() => retry(None, format!("{}: {e}", e.code())),
        Err(e) => AttemptOutcome::Dead { status: None, error: format!("{}: {e}", e.code()) },
    }
}

async fn deliver(ledger: &Ledger, hooks: &Webhooks, due: DueDelivery) {
    let DueDelivery { row, event } = due;
    let attempt = row.attempts + 1;
    let outcome = match hooks.get(&row.webhook) {
        None => {
            AttemptOutcome::Dead { status: None, error: format!("webhook {:?} is no longer configured", row.webhook) }
        }
        Some(endpoint) => {
            let body = body::delivery_body(endpoint.format, &row.delivery_id, &row.event, &event);
            let result = hooks.post(endpoint, &row.delivery_id, &row.event, body).await;
            outcome_of(endpoint, attempt, &result, time::OffsetDateTime::now_utc())
        }
    };
    match &outcome {
        AttemptOutcome::Delivered { status } => {
            tracing::info!(webhook = %row.webhook, delivery = %row.delivery_id, event = %row.event, status, attempt, "webhook delivered")
        }
        AttemptOutcome::Retry { error, next_attempt_at, .. } => {
            tracing::warn!(webhook = %row.webhook, delivery = %row.delivery_id, attempt, %error, %next_attempt_at, "webhook delivery failed; will retry")
        }
        AttemptOutcome::Dead { error, .. } => {
            tracing::error!(webhook = %row.webhook, delivery = %row.delivery_id, attempt, %error,
                "webhook delivery is a dead letter (latchgate webhooks dead-letters / replay)")
        }
    }
    if let Err(e) = ledger.record_delivery_attempt(row.delivery_id.clone(), outcome).await {
        // Left pending: it is retried (possibly delivered twice; the delivery id lets receivers dedupe).
        tracing::error!(code = e.code(), error = %e, delivery = %row.delivery_id, "delivery result not recorded");
    }
}

/// Runs for the life of the broker.
pub async fn run_deliveries(ledger: Ledger, hooks: Arc<Webhooks>) {
    loop {
        match ledger.due_deliveries(BATCH).await {
            Ok(due) if !due.is_empty() => {
                let mut tasks = tokio::task::JoinSet::new();
                for delivery in due {
                    let (ledger, hooks) = (ledger.clone(), hooks.clone());
                    tasks.spawn(async move { deliver(&ledger, &hooks, delivery).await });
                }
                while tasks.join_next().await.is_some() {}
            }
            Ok(_) => tokio::time::sleep(POLL_INTERVAL).await,
            Err(e) => {
                tracing::error!(code = e.code(), error = %e, "webhook outbox unreadable");
                tokio::time::sleep(POLL_INTERVAL * 4).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(max_retries: u32) -> Endpoint {
        let text = format!(
            "[[webhooks]]\nname = \"ops\"\nurl = \"https://hooks.example.com/\"\nsecret = \"s\"\nmax_retries = {max_retries}\n"
        );
        let cfg = LoadedConfig::from_str(std::path::Path::new("x.toml"), &text).unwrap();
        Endpoint::from_config(&cfg, &cfg.config.webhooks[0]).unwrap()
    }

    #[test]
    fn retries_on_5xx_and_timeouts_with_the_default_backoff_then_dead_letters() {
        let e = endpoint(3);
        let now = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let at = |s: i64| ledger_timestamp(now + Duration::from_secs(s as u64));
        for (attempt, delay) in [(1, 1), (2, 5), (3, 30)] {
            match outcome_of(&e, attempt, &Ok(503), now) {
                AttemptOutcome::Retry { next_attempt_at, status, .. } => {
                    assert_eq!((next_attempt_at, status), (at(delay), Some(503)), "attempt {attempt}")
                }
                other => panic!("attempt {attempt}: {other:?}"),
            }
        }
        assert!(matches!(outcome_of(&e, 4, &Ok(500), now), AttemptOutcome::Dead { .. }), "max_retries spent");
        assert!(matches!(outcome_of(&e, 1, &Err(SendError::Timeout), now), AttemptOutcome::Retry { .. }));
    }

    #[test]
    fn a_4xx_is_never_retried_and_a_2xx_is_delivered() {
        let e = endpoint(3);
        let now = time::OffsetDateTime::now_utc();
        assert!(matches!(outcome_of(&e, 1, &Ok(400), now), AttemptOutcome::Dead { status: Some(400), .. }));
        assert!(matches!(outcome_of(&e, 1, &Ok(302), now), AttemptOutcome::Dead { .. }));
        assert_eq!(outcome_of(&e, 1, &Ok(204), now), AttemptOutcome::Delivered { status: 204 });
        let forbidden =
            Err(SendError::ForbiddenAddress { host: "h".into(), ip: "10.0.0.1".parse().unwrap(), range: "private" });
        assert!(matches!(outcome_of(&e, 1, &forbidden, now), AttemptOutcome::Dead { .. }));
    }

    #[test]
    fn debug_shows_no_secret_and_no_header_value() {
        let text = "[[webhooks]]\nname = \"ops\"\nurl = \"https://hooks.example.com/\"\nsecret = \"s3cr3t-value\"\n\
                    headers = { \"X-Token\" = \"t0ken-value\" }\n";
        let cfg = LoadedConfig::from_str(std::path::Path::new("x.toml"), text).unwrap();
        let hooks = Webhooks::from_config(&cfg).unwrap();
        let shown = format!("{hooks:?}");
        assert!(!shown.contains("s3cr3t") && !shown.contains("t0ken"), "{shown}");
        assert!(shown.contains("x-token"), "{shown}");
    }

    #[test]
    fn a_missing_environment_variable_is_a_start_up_error_naming_the_field() {
        let text =
            "[[webhooks]]\nname = \"ops\"\nurl = \"https://hooks.example.com/\"\nsecret = \"${LG_NEVER_SET_SECRET}\"\n";
        let cfg = LoadedConfig::from_str(std::path::Path::new("x.toml"), text).unwrap();
        let e = Webhooks::from_config(&cfg).unwrap_err();
        assert!(e.to_string().contains("webhooks.ops: secret") && e.to_string().contains("LG_NEVER_SET_SECRET"), "{e}");
    }
}
