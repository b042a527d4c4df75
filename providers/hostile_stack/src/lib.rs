//! Test-only hostile provider: recurses until the wasm stack overflows.
//! Never referenced by a production manifest; the executor's tests use it to show
//! the attack is contained with the right failure class.

wit_bindgen::generate!({ path: "../wit", world: "latchgate:provider/provider", generate_all });

struct Hostile;

impl Guest for Hostile {
    fn execute(task: String) -> Result<String, ProviderError> {
        #[inline(never)]
        #[allow(unconditional_recursion)]
        fn dive(depth: u64, pad: [u8; 256]) -> u64 {
            let pad = core::hint::black_box(pad);
            dive(depth + 1, pad).wrapping_add(pad[(depth % 256) as usize] as u64)
        }
        let _ = dive(task.len() as u64, [0; 256]);
        Ok(String::from("null"))
    }
}

export!(Hostile);
