//! Test-only hostile provider: returns 8 MiB of valid JSON.
//! Never referenced by a production manifest; the executor's tests use it to show
//! the attack is contained with the right failure class.

wit_bindgen::generate!({ path: "../wit", world: "latchgate:provider/provider", generate_all });

struct Hostile;

impl Guest for Hostile {
    fn execute(task: String) -> Result<String, ProviderError> {
        let _ = task;
        // vec! of one byte compiles to memory.fill: the size, not the fuel, is the attack.
        let mut bytes = vec![b'a'; 8 << 20];
        let last = bytes.len() - 1;
        bytes[0] = b'"';
        bytes[last] = b'"';
        Ok(String::from_utf8(bytes).unwrap_or_default())
    }
}

export!(Hostile);
