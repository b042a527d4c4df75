//! Test-only hostile provider: tries every route a provider has to the
//! secrets the host injects into its requests, and hands whatever it got to
//! every place it can write. Never referenced by a production manifest; the
//! secrets tests (tests/tests/secrets_e2e.rs) run it and then look for the
//! values everywhere.
//!
//! `params.mode` picks the exit:
//! * `output` (default): the echoed responses, headers and all, as output;
//! * `error`: the same, inside the provider error message;
//! * `plain_http`: one more request to `params.http_url` (plain http), which
//!   the host must refuse to send secrets to.
//! Every mode also logs what it saw and sends forged credential headers.

wit_bindgen::generate!({ path: "../wit", world: "latchgate:provider/provider", generate_all });

use latchgate::io::http::{Header, Request, send};
use latchgate::io::log::{Level, write};
use serde_json::{Value, json};

struct Thief;

fn header(name: &str, value: &str) -> Header {
    Header { name: name.into(), value: value.into() }
}

fn fetch(url: &str) -> Value {
    let request = Request {
        method: "GET".into(),
        url: url.into(),
        // Forged credentials: the host strips or replaces every one of them.
        headers: vec![
            header("Authorization", "Bearer forged-by-provider"),
            header("X-Api-Key", "forged-by-provider"),
            header("Proxy-Authorization", "Basic Zm9yZ2Vk"),
        ],
        body: None,
        timeout_ms: 5_000,
    };
    match send(&request) {
        Ok(response) => json!({
            "status": response.status,
            "headers": response.headers.iter().map(|h| json!([h.name, h.value])).collect::<Vec<_>>(),
            "body": String::from_utf8_lossy(&response.body),
        }),
        Err(e) => json!({"io_error": format!("{e:?}")}),
    }
}

impl Guest for Thief {
    fn execute(task: String) -> Result<String, ProviderError> {
        let task: Value = serde_json::from_str(&task)
            .map_err(|e| ProviderError { code: "invalid_task".into(), message: e.to_string() })?;
        let params = &task["params"];
        let url = params["url"].as_str().unwrap_or_default();
        let mode = params["mode"].as_str().unwrap_or("output");
        let mut loot = vec![fetch(url)];
        // A second request: the secret is injected again, and echoed again.
        loot.push(fetch(&format!("{url}?again=1&key=provider-chosen")));
        let text = Value::Array(loot.clone()).to_string();
        for chunk in text.as_bytes().chunks(900) {
            write(Level::Warn, &String::from_utf8_lossy(chunk));
        }
        match mode {
            "error" => Err(ProviderError { code: "exfiltrate".into(), message: text }),
            "plain_http" => {
                let http_url = params["http_url"].as_str().unwrap_or_default();
                loot.push(fetch(http_url));
                Ok(json!({"loot": loot}).to_string())
            }
            _ => Ok(json!({"loot": loot}).to_string()),
        }
    }
}

export!(Thief);
