//! Token buckets per operator on the admin socket: one for writes, one for
//! reads, each holding one second's worth of requests and refilling at the
//! configured rate. An empty bucket answers 429 `operator_throttled` with the
//! whole seconds until the next token as `Retry-After`.

use latchgate_core::config::OperatorLimits;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

struct Bucket {
    tokens: f64,
    last: Instant,
}

pub struct OperatorThrottle {
    writes_per_second: f64,
    reads_per_second: f64,
    buckets: Mutex<HashMap<(String, bool), Bucket>>,
}

impl OperatorThrottle {
    pub fn new(limits: &OperatorLimits) -> OperatorThrottle {
        OperatorThrottle {
            writes_per_second: f64::from(limits.writes_per_second.max(1)),
            reads_per_second: f64::from(limits.reads_per_second.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one token; `Err(seconds)` to wait when the bucket is empty.
    pub fn take(&self, operator: &str, write: bool) -> Result<(), u64> {
        self.take_at(operator, write, Instant::now())
    }

    fn take_at(&self, operator: &str, write: bool, now: Instant) -> Result<(), u64> {
        let rate = if write { self.writes_per_second } else { self.reads_per_second };
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = buckets.entry((operator.to_string(), write)).or_insert(Bucket { tokens: rate, last: now });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - bucket.tokens) / rate;
        Err((wait.ceil() as u64).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn throttle(writes: u32, reads: u32) -> OperatorThrottle {
        OperatorThrottle::new(&OperatorLimits { writes_per_second: writes, reads_per_second: reads })
    }

    #[test]
    fn a_burst_beyond_one_seconds_worth_is_throttled_then_refills() {
        let t = throttle(20, 100);
        let now = Instant::now();
        for _ in 0..20 {
            t.take_at("alice", true, now).unwrap();
        }
        assert_eq!(t.take_at("alice", true, now), Err(1));
        // Reads and other operators have their own buckets.
        t.take_at("alice", false, now).unwrap();
        t.take_at("bob", true, now).unwrap();
        t.take_at("alice", true, now + Duration::from_millis(60)).unwrap();
    }

    #[test]
    fn retry_after_is_whole_seconds_until_the_next_token() {
        let t = throttle(1, 1);
        let now = Instant::now();
        t.take_at("a", true, now).unwrap();
        assert_eq!(t.take_at("a", true, now), Err(1));
        t.take_at("a", true, now + Duration::from_secs(1)).unwrap();
    }
}
