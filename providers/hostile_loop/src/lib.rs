//! Test-only hostile provider: spins forever (stopped by fuel or the epoch deadline).
//! Never referenced by a production manifest; the executor's tests use it to show
//! the attack is contained with the right failure class.

wit_bindgen::generate!({ path: "../wit", world: "latchgate:provider/provider", generate_all });

struct Hostile;

impl Guest for Hostile {
    fn execute(task: String) -> Result<String, ProviderError> {
        let mut n: u64 = task.len() as u64;
        loop {
            n = core::hint::black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

export!(Hostile);
