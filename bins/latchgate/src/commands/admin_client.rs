//! Talking to the gate's admin socket as an operator: which operator, which
//! key, which socket — from flags, the environment or `latchgate.toml` — and
//! the request itself through the Rust client's `OperatorClient` (DPoP proof
//! per request, HTTP over the Unix socket).
//!
//! Lookup order: `--operator NAME` / `LATCHGATE_OPERATOR`, else the only
//! operator of the config; `--api-key` / `LATCHGATE_API_KEY`, else that
//! operator's `api_key` in the config; `--operator-key FILE` /
//! `LATCHGATE_OPERATOR_KEY`, else `<config dir>/operators/<name>.pem` (as
//! written by `latchgate config add-operator`); `--socket` /
//! `LATCHGATE_ADMIN_SOCKET`, else the config's admin socket.

use std::path::{Path, PathBuf};

use latchgate_client::{DpopKey, OperatorClient};
use latchgate_core::config::LoadedConfig;
use serde_json::Value;

use super::output::Failure;

/// Where operator keys live by default, relative to the config's directory.
pub const OPERATOR_KEY_DIR: &str = "operators";

#[derive(clap::Args, Clone, Debug, Default)]
pub struct OperatorArgs {
    /// Operator name ([operator_credentials.NAME]); default: the only one configured.
    #[arg(long, global = true, env = "LATCHGATE_OPERATOR")]
    pub operator: Option<String>,
    /// The operator's api key (default: from the config).
    #[arg(long, global = true, env = "LATCHGATE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The operator's P-256 private key, PKCS#8 PEM (default: <config dir>/operators/NAME.pem).
    #[arg(long, global = true, env = "LATCHGATE_OPERATOR_KEY", value_name = "FILE")]
    pub operator_key: Option<PathBuf>,
    /// The admin socket (default: from the config).
    #[arg(long, global = true, env = "LATCHGATE_ADMIN_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

/// The default key file of operator `name` next to `config`.
pub fn default_key_path(cfg: &LoadedConfig, name: &str) -> PathBuf {
    cfg.base_dir().join(OPERATOR_KEY_DIR).join(format!("{name}.pem"))
}

/// PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) → DER.
pub fn pem_to_der(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let body: String = text
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "-----BEGIN PRIVATE KEY-----")
        .skip(1)
        .take_while(|l| *l != "-----END PRIVATE KEY-----")
        .collect();
    if body.is_empty() {
        return None;
    }
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// DER → PKCS#8 PEM with 64-character lines.
pub fn der_to_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

/// A connected operator session, with its own small runtime (the CLI is synchronous).
pub struct AdminSession {
    runtime: tokio::runtime::Runtime,
    client: OperatorClient,
    pub socket: PathBuf,
}

impl AdminSession {
    pub fn connect(config: &Path, args: &OperatorArgs) -> Result<AdminSession, Failure> {
        let cfg = LoadedConfig::load(config)?;
        let operator = match &args.operator {
            Some(name) => name.clone(),
            None => {
                let names: Vec<&String> = cfg.config.operator_credentials.keys().collect();
                match names.as_slice() {
                    [only] => (*only).clone(),
                    [] => {
                        return Err(Failure::new(
                            "operator_not_configured",
                            "no operator is configured",
                            "create one: latchgate config add-operator --name NAME (then restart the gate)",
                        ));
                    }
                    _ => {
                        return Err(Failure::new(
                            "operator_ambiguous",
                            format!("{} operators are configured", names.len()),
                            "pick one with --operator NAME (or LATCHGATE_OPERATOR)",
                        ));
                    }
                }
            }
        };
        let api_key = match &args.api_key {
            Some(key) => key.clone(),
            None => cfg.config.operator_credentials.get(&operator).map(|c| c.api_key.clone()).ok_or_else(|| {
                Failure::new(
                    "operator_not_configured",
                    format!("no [operator_credentials.{operator}] in {}", cfg.path.display()),
                    "pass --api-key, or add the operator: latchgate config add-operator --name NAME",
                )
            })?,
        };
        let key_path = args.operator_key.clone().unwrap_or_else(|| default_key_path(&cfg, &operator));
        let key = load_key(&key_path)?;
        let socket = args.socket.clone().unwrap_or_else(|| cfg.admin_socket());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::new("runtime_start_failed", e, "report this as a bug"))?;
        let client = runtime
            .block_on(OperatorClient::connect(&socket, &cfg.config.public_base_url, &api_key, key))
            .map_err(|e| {
                Failure::new(
                    "admin_socket_unreachable",
                    format!("cannot connect to the admin socket {}: {e}", socket.display()),
                    "is the gate running (latchgate up)? you must be root or in group latchgate-operators; \
                     or pass --socket PATH",
                )
            })?;
        Ok(AdminSession { runtime, client, socket })
    }

    /// GET `path`; a non-2xx answer becomes a [`Failure`] with the gate's remediation.
    pub fn get(&mut self, path: &str) -> Result<Value, Failure> {
        let (status, body) = self.raw(http::Method::GET, path, None)?;
        ok_or_failure(status, body)
    }

    pub fn post(&mut self, path: &str, body: &Value) -> Result<Value, Failure> {
        let (status, answer) = self.raw(http::Method::POST, path, Some(body.to_string().into_bytes()))?;
        ok_or_failure(status, answer)
    }

    /// Any answer with its status (callers that treat some refusals as results).
    pub fn raw(&mut self, method: http::Method, path: &str, body: Option<Vec<u8>>) -> Result<(u16, Value), Failure> {
        let socket = self.socket.clone();
        let response = self.runtime.block_on(self.client.request(method, path, body)).map_err(|e| {
            Failure::new(
                "admin_request_failed",
                format!("request to {} failed: {e}", socket.display()),
                "check that the gate is running and try again",
            )
        })?;
        Ok((response.status.as_u16(), response.json()))
    }

    /// GET `path` as raw bytes (the JSONL export).
    pub fn get_bytes(&mut self, path: &str) -> Result<Vec<u8>, Failure> {
        let response = self.runtime.block_on(self.client.request(http::Method::GET, path, None)).map_err(|e| {
            Failure::new("admin_request_failed", format!("request failed: {e}"), "check that the gate is running")
        })?;
        if !response.status.is_success() {
            return Err(api_failure(response.status.as_u16(), &response.json()));
        }
        Ok(response.body.to_vec())
    }
}

fn load_key(path: &Path) -> Result<DpopKey, Failure> {
    let remediation = "pass --operator-key FILE (the PEM written by latchgate config add-operator)";
    let text = super::evidence::read_small_file(path, "operator key", 64 * 1024)
        .map_err(|(code, message)| Failure::new(code, message, remediation))?;
    let der = pem_to_der(&text).ok_or_else(|| {
        Failure::new("operator_key_invalid", format!("{} is not a PKCS#8 PEM private key", path.display()), remediation)
    })?;
    DpopKey::from_pkcs8(&der).map_err(|e| {
        Failure::new("operator_key_invalid", format!("{}: not a P-256 key: {e}", path.display()), remediation)
    })
}

fn ok_or_failure(status: u16, body: Value) -> Result<Value, Failure> {
    if (200..300).contains(&status) { Ok(body) } else { Err(api_failure(status, &body)) }
}

/// The gate's refusal as a CLI failure: its code, reason and remediation.
pub fn api_failure(status: u16, body: &Value) -> Failure {
    let code = body.get("error").and_then(Value::as_str).unwrap_or("unexpected_response").to_string();
    let detail = ["deny_reason", "reason"]
        .iter()
        .filter_map(|k| body.get(*k).and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join(": ");
    let message = if detail.is_empty() {
        format!("the gate refused ({status} {code})")
    } else {
        format!("the gate refused ({status} {code}): {detail}")
    };
    let remediation =
        body.get("remediation").and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| match code.as_str() {
            "invalid_operator_token" | "invalid_dpop" | "missing_auth_header" => {
                "check --operator, --api-key and --operator-key against [operator_credentials] (restart the gate \
                 after changing them)"
                    .into()
            }
            "operator_throttled" => {
                format!("wait {} s and retry", body.get("retry_after_seconds").and_then(Value::as_u64).unwrap_or(1))
            }
            "component_unavailable" | "store_unavailable" | "draining" => "retry shortly; see latchgate status".into(),
            "not_found" => "check the id (latchgate approvals list --status all, latchgate audit)".into(),
            _ => "see the gate's log for details".into(),
        });
    Failure::new(code, message, remediation)
}

/// An id as one path segment: ids are letters, digits, `.`, `_` and `-`;
/// anything else is refused here rather than sent.
pub fn path_segment(id: &str) -> Result<String, Failure> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(id.to_string())
    } else {
        Err(Failure::new(
            "invalid_id",
            format!("`{}` is not an id", super::output::sanitize(id)),
            "ids are letters, digits, `.`, `_` and `-` (copy them from list output)",
        ))
    }
}

/// `?k=v&...` for the given pairs (values form-encoded); empty when none.
pub fn query_string(pairs: &[(&str, Option<String>)]) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (key, value) in pairs {
        if let Some(value) = value {
            serializer.append_pair(key, value);
            any = true;
        }
    }
    if any { format!("?{}", serializer.finish()) } else { String::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_keys_round_trip_through_pem() {
        let der = latchgate_core::jose::generate_es256_pkcs8().unwrap();
        let pem = der_to_pem(&der);
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n") && pem.lines().all(|l| l.len() <= 64));
        assert_eq!(pem_to_der(&pem).unwrap(), der);
        assert_eq!(pem_to_der("not a key"), None);
    }

    #[test]
    fn ids_outside_the_id_alphabet_never_reach_a_path() {
        assert!(path_segment("3f2a-9c").is_ok());
        for bad in ["", "../x", "a/b", "a?b", "a b"] {
            assert!(path_segment(bad).is_err(), "{bad}");
        }
        assert_eq!(query_string(&[("a", Some("x y".into())), ("b", None)]), "?a=x+y");
        assert_eq!(query_string(&[("a", None)]), "");
    }
}
