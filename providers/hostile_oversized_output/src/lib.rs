//! Test-only hostile provider: returns 8 MiB of valid JSON.
//! Never referenced by a production manifest; the executor's tests use it to show
//! the attack is contained with the right failure class.

wit_bindgen::generate!({ path: "../wit", world: "latchgate:provider/provider", generate_all });

struct Hostile;

impl Guest for Hostile {
    fn execute(task: String) -> Result<String, ProviderError> {
        let _ = task;
        let mut out = String::with_capacity(8 << 20);
        out.push('"');
        out.extend(core::iter::repeat('a').take((8 << 20) - 2));
        out.push('"');
        Ok(out)
    }
}

export!(Hostile);
