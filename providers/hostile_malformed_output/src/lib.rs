//! Test-only hostile provider: returns text that is not JSON.
//! Never referenced by a production manifest; the executor's tests use it to show
//! the attack is contained with the right failure class.

wit_bindgen::generate!({ path: "../wit", world: "latchgate:provider/provider", generate_all });

struct Hostile;

impl Guest for Hostile {
    fn execute(task: String) -> Result<String, ProviderError> {
        Ok(format!("{{\"unterminated\": \"{}", task.len()))
    }
}

export!(Hostile);
