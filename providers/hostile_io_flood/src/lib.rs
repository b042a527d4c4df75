//! Test-only hostile provider: calls the host HTTP import far beyond its io budget (params.url).
//! Never referenced by a production manifest; the executor's tests use it to show
//! the attack is contained with the right failure class.

wit_bindgen::generate!({ path: "../wit", world: "latchgate:provider/provider", generate_all });

struct Hostile;

impl Guest for Hostile {
    fn execute(task: String) -> Result<String, ProviderError> {
        let url = task
            .split("\"url\":\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("http://localhost/")
            .to_string();
        for _ in 0..10_000 {
            let request = latchgate::io::http::Request {
                method: "GET".into(),
                url: url.clone(),
                headers: Vec::new(),
                body: None,
                timeout_ms: 1_000,
            };
            let _ = latchgate::io::http::send(&request);
        }
        Err(ProviderError { code: "not_stopped".into(), message: "the host never cut the flood".into() })
    }
}

export!(Hostile);
