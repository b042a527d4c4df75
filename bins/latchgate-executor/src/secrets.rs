//! Per-call secrets: asked from the signer for one grant, held by the host
//! for the duration of that call only (wiped when the call's state drops),
//! added to outgoing requests at the transport layer and scrubbed from
//! everything that goes back into the sandbox.
//!
//! A secret never enters WASM memory: the provider cannot read it, set it or
//! see it reflected. What it gets back from a destination has every
//! injected form of every value (raw, as sent in a header or a query
//! string, percent- and JSON-escaped, inside basic-auth base64) replaced by
//! `[REDACTED:NAME]`. A destination that transforms a credential in other
//! ways before echoing it cannot be caught by scrubbing; that is why secrets
//! go only to the grant's own destinations, and only over HTTPS.

use crate::egress::Credentials;
use base64::Engine;
use latchgate_core::grant::SignedGrant;
use latchgate_core::manifest::{InjectionTarget, SecretSpec};
use latchgate_ipc::ExecutorSigner;
use latchgate_ipc::link::ClientLink;
use latchgate_ipc::messages::executor_signer::{ReleasedSecret, SecretsReply, SecretsRequest};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use zeroize::Zeroizing;

/// How long the executor waits for the signer's answer.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// The signer's refusal (or an unreachable signer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretsRefused {
    pub code: String,
    pub message: String,
}

pub type ReleaseFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<ReleasedSecret>, SecretsRefused>> + Send + 'a>>;

/// Where the secrets of a grant come from: the signer (over IPC) in the
/// process, anything with the same contract in tests.
pub trait SecretSource: Send + Sync {
    fn release<'a>(&'a self, grant: &'a SignedGrant) -> ReleaseFuture<'a>;
}

impl SecretSource for ClientLink<ExecutorSigner> {
    fn release<'a>(&'a self, grant: &'a SignedGrant) -> ReleaseFuture<'a> {
        Box::pin(async move {
            let request = SecretsRequest::Secrets { grant: Box::new(grant.clone()) };
            match self.call(request, RELEASE_TIMEOUT).await {
                Ok(SecretsReply::Secrets(released)) => Ok(released),
                Ok(SecretsReply::Refused { code, message }) => Err(SecretsRefused { code, message }),
                Ok(_) => Err(SecretsRefused { code: "signer_reply_unexpected".into(), message: String::new() }),
                Err(e) => Err(SecretsRefused { code: e.code().into(), message: e.to_string() }),
            }
        })
    }
}

struct Injected {
    name: String,
    target: Target,
    /// Every form the value may come back in, longest first.
    forms: Vec<Zeroizing<Vec<u8>>>,
}

enum Target {
    Header { name: String, value: Zeroizing<String> },
    Query { name: String, value: Zeroizing<String> },
}

/// The secrets of one call, ready to inject. Empty for most calls.
#[derive(Default)]
pub struct CallSecrets {
    injected: Vec<Injected>,
}

impl std::fmt::Debug for CallSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.injected.iter().map(|i| i.name.as_str()).collect();
        f.debug_struct("CallSecrets").field("names", &names).finish()
    }
}

/// Why the secrets of a call cannot be prepared (nothing runs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallSecretsError {
    /// A required secret is not among those the signer released.
    Missing(String),
}

impl CallSecrets {
    pub fn none() -> CallSecrets {
        CallSecrets::default()
    }

    /// Pairs each spec with its released value. Values the signer sent for
    /// names not in `specs` are dropped unused.
    pub fn new(specs: &[&SecretSpec], released: Vec<ReleasedSecret>) -> Result<CallSecrets, CallSecretsError> {
        let mut injected = Vec::new();
        for spec in specs {
            let Some(secret) = released.iter().find(|r| r.name == spec.name) else {
                if spec.required {
                    return Err(CallSecretsError::Missing(spec.name.clone()));
                }
                continue;
            };
            let Some(target) = spec.inject.target() else { continue };
            injected.push(Injected::new(&spec.name, &target, secret.value.expose()));
        }
        Ok(CallSecrets { injected })
    }

    pub fn is_empty(&self) -> bool {
        self.injected.is_empty()
    }

    pub fn names(&self) -> Vec<String> {
        self.injected.iter().map(|i| i.name.clone()).collect()
    }

    /// The headers and query parameters to add to one request.
    pub fn credentials(&self) -> Credentials {
        let mut credentials = Credentials::default();
        for i in &self.injected {
            match &i.target {
                Target::Header { name, value } => credentials.headers.push((name.clone(), value.clone())),
                Target::Query { name, value } => credentials.query.push((name.clone(), value.clone())),
            }
        }
        credentials
    }

    /// `bytes` with every form of every value replaced by `[REDACTED:NAME]`.
    pub fn redact(&self, bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        for i in &self.injected {
            let marker = format!("[REDACTED:{}]", i.name);
            for form in &i.forms {
                if let Some(replaced) = replace_all(&out, form, marker.as_bytes()) {
                    out = replaced;
                }
            }
        }
        out
    }

    pub fn redact_text(&self, text: &str) -> String {
        if self.is_empty() {
            return text.to_string();
        }
        String::from_utf8_lossy(&self.redact(text.as_bytes())).into_owned()
    }
}

impl Injected {
    fn new(name: &str, target: &InjectionTarget<'_>, value: &str) -> Injected {
        let mut forms: Vec<Zeroizing<Vec<u8>>> = vec![Zeroizing::new(value.as_bytes().to_vec())];
        let mut add = |form: String| forms.push(Zeroizing::new(form.into_bytes()));
        add(url::form_urlencoded::byte_serialize(value.as_bytes()).collect());
        add(percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string());
        if let Ok(json) = serde_json::to_string(value) {
            add(json.trim_matches('"').to_string());
        }
        let target = match target {
            InjectionTarget::Header { name, format } => {
                Target::Header { name: name.to_string(), value: Zeroizing::new(format.replacen("{}", value, 1)) }
            }
            InjectionTarget::Query { name, format } => {
                Target::Query { name: name.to_string(), value: Zeroizing::new(format.replacen("{}", value, 1)) }
            }
            InjectionTarget::BasicAuth { username } => {
                let credential = Zeroizing::new(format!("{username}:{value}"));
                let encoded = base64::engine::general_purpose::STANDARD.encode(credential.as_bytes());
                add(encoded.clone());
                Target::Header { name: "Authorization".into(), value: Zeroizing::new(format!("Basic {encoded}")) }
            }
        };
        forms.retain(|f| !f.is_empty());
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        forms.dedup_by(|a, b| a.as_slice() == b.as_slice());
        Injected { name: name.to_string(), target, forms }
    }
}

/// `hay` with every occurrence of `needle` replaced, or `None` when there is none.
fn replace_all(hay: &[u8], needle: &[u8], with: &[u8]) -> Option<Vec<u8>> {
    let mut found = memchr::memmem::find_iter(hay, needle).peekable();
    found.peek()?;
    let mut out = Vec::with_capacity(hay.len());
    let mut last = 0;
    for at in found {
        if at < last {
            continue;
        }
        out.extend_from_slice(&hay[last..at]);
        out.extend_from_slice(with);
        last = at + needle.len();
    }
    out.extend_from_slice(&hay[last..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchgate_core::manifest::{BasicAuthInjection, SecretInjection};
    use latchgate_ipc::messages::executor_signer::SecretValue;

    fn spec(name: &str, inject: SecretInjection, required: bool) -> SecretSpec {
        SecretSpec { name: name.into(), required, inject }
    }

    fn header(name: &str, format: &str) -> SecretInjection {
        SecretInjection { header: Some(name.into()), query: None, basic_auth: None, format: Some(format.into()) }
    }

    fn released(name: &str, value: &str) -> ReleasedSecret {
        ReleasedSecret { name: name.into(), value: SecretValue::new(Zeroizing::new(value.into())) }
    }

    #[test]
    fn every_injected_form_is_redacted() {
        let bearer = spec("API_TOKEN", header("Authorization", "Bearer {}"), true);
        let query = spec(
            "QUERY_KEY",
            SecretInjection { header: None, query: Some("key".into()), basic_auth: None, format: None },
            true,
        );
        let basic = spec(
            "BASIC_PW",
            SecretInjection {
                header: None,
                query: None,
                basic_auth: Some(BasicAuthInjection { username: "bot".into() }),
                format: None,
            },
            true,
        );
        let secrets = CallSecrets::new(
            &[&bearer, &query, &basic],
            vec![released("API_TOKEN", "tok-123"), released("QUERY_KEY", "a b&c"), released("BASIC_PW", "pw\"x")],
        )
        .unwrap();
        let creds = secrets.credentials();
        assert_eq!(creds.headers.len(), 2);
        let basic_b64 = base64::engine::general_purpose::STANDARD.encode("bot:pw\"x");
        let echo = format!(
            "auth=Bearer tok-123 url=/x?key=a+b%26c raw=a b&c basic=Basic {basic_b64} json=\"pw\\\"x\" plain=pw\"x"
        );
        let redacted = String::from_utf8(secrets.redact(echo.as_bytes())).unwrap();
        for leaked in ["tok-123", "a+b%26c", "a b&c", &basic_b64, "pw\\\"x", "pw\"x"] {
            assert!(!redacted.contains(leaked), "{leaked} survived: {redacted}");
        }
        assert!(redacted.contains("Bearer [REDACTED:API_TOKEN]"), "{redacted}");
        assert!(redacted.contains("key=[REDACTED:QUERY_KEY]"), "{redacted}");
        assert!(redacted.contains("Basic [REDACTED:BASIC_PW]"), "{redacted}");
    }

    #[test]
    fn a_missing_required_secret_is_refused_an_optional_one_skipped() {
        let required = spec("NEEDED", header("X-Key", "{}"), true);
        let optional = spec("NICE", header("X-Nice", "{}"), false);
        assert_eq!(
            CallSecrets::new(&[&required], vec![released("OTHER", "v")]).unwrap_err(),
            CallSecretsError::Missing("NEEDED".into())
        );
        let secrets = CallSecrets::new(&[&optional], vec![released("OTHER", "v")]).unwrap();
        assert!(secrets.is_empty(), "a value for a name the action does not declare is not used");
    }

    #[test]
    fn debug_output_names_secrets_without_values() {
        let s = spec("API_TOKEN", header("Authorization", "Bearer {}"), true);
        let secrets = CallSecrets::new(&[&s], vec![released("API_TOKEN", "tok-123")]).unwrap();
        let text = format!("{secrets:?} {:?}", secrets.credentials());
        assert!(text.contains("API_TOKEN") && !text.contains("tok-123"), "{text}");
    }
}
