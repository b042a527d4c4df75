//! Name resolution behind a trait so that tests can make any name resolve to
//! any address (the DNS-rebinding and "name points at 127.0.0.1" cases).

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;

pub type ResolveFuture<'a> = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'a>>;

pub trait Resolve: Send + Sync {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> ResolveFuture<'a>;
}

/// The system resolver (`getaddrinfo` on tokio's blocking pool).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> ResolveFuture<'a> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host, port)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// Most names kept at once; past it, expired answers are dropped and, if
/// none are, everything (a burst of new names starts over, never grows).
const MAX_CACHED_NAMES: usize = 1024;

/// Reuses each successful answer of `inner` for `max_age`. `getaddrinfo`
/// reports no TTL, so this is a fixed ceiling (like nscd's): a call made
/// `max_age` after another resolves the name again. Failures and empty
/// answers are never kept. What is reused is only the answer: every address
/// is still classified on every call, and a reused answer is one that was
/// classified before. At one call at a time, resolving "localhost" on the
/// blocking pool was an eighth of the executor's time per call.
pub struct CachedResolver<R> {
    inner: R,
    max_age: std::time::Duration,
    answers: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Vec<IpAddr>)>>,
}

impl<R: Resolve> CachedResolver<R> {
    /// `max_age` zero: every lookup goes to `inner`.
    pub fn new(inner: R, max_age: std::time::Duration) -> Self {
        CachedResolver { inner, max_age, answers: Default::default() }
    }

    fn cached(&self, name: &str) -> Option<Vec<IpAddr>> {
        let answers = self.answers.lock().ok()?;
        let (at, addrs) = answers.get(name)?;
        (at.elapsed() < self.max_age).then(|| addrs.clone())
    }

    fn keep(&self, name: String, addrs: &[IpAddr]) {
        let Ok(mut answers) = self.answers.lock() else { return };
        if answers.len() >= MAX_CACHED_NAMES {
            answers.retain(|_, (at, _)| at.elapsed() < self.max_age);
            if answers.len() >= MAX_CACHED_NAMES {
                answers.clear();
            }
        }
        answers.insert(name, (std::time::Instant::now(), addrs.to_vec()));
    }
}

impl<R: Resolve> Resolve for CachedResolver<R> {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> ResolveFuture<'a> {
        Box::pin(async move {
            if self.max_age.is_zero() {
                return self.inner.resolve(host, port).await;
            }
            // DNS names are case-insensitive; the port is not part of the answer.
            let name = host.to_ascii_lowercase();
            if let Some(addrs) = self.cached(&name) {
                return Ok(addrs);
            }
            let addrs = self.inner.resolve(host, port).await?;
            if !addrs.is_empty() {
                self.keep(name, &addrs);
            }
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Answers from a script, one per lookup, and counts lookups.
    struct Scripted {
        answers: Mutex<Vec<io::Result<Vec<IpAddr>>>>,
        lookups: AtomicUsize,
    }

    impl Scripted {
        fn new(mut answers: Vec<io::Result<Vec<IpAddr>>>) -> Self {
            answers.reverse();
            Scripted { answers: Mutex::new(answers), lookups: AtomicUsize::new(0) }
        }
    }

    impl Resolve for &Scripted {
        fn resolve<'a>(&'a self, _host: &'a str, _port: u16) -> ResolveFuture<'a> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            let next = self.answers.lock().unwrap().pop().expect("no scripted answer left");
            Box::pin(async move { next })
        }
    }

    fn ip(last: u8) -> Vec<IpAddr> {
        vec![IpAddr::V4(Ipv4Addr::new(93, 184, 216, last))]
    }

    #[tokio::test]
    async fn an_answer_is_reused_until_it_is_older_than_max_age() {
        let inner = Scripted::new(vec![Ok(ip(1)), Ok(ip(2))]);
        let cache = CachedResolver::new(&inner, Duration::from_millis(300));
        assert_eq!(cache.resolve("api.example.com", 443).await.unwrap(), ip(1));
        // Same name in another case, another port: the same answer, not asked again.
        assert_eq!(cache.resolve("API.Example.com", 80).await.unwrap(), ip(1));
        assert_eq!(inner.lookups.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(cache.resolve("api.example.com", 443).await.unwrap(), ip(2));
        assert_eq!(inner.lookups.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn failures_and_empty_answers_are_asked_again() {
        let inner = Scripted::new(vec![Err(io::Error::other("servfail")), Ok(Vec::new()), Ok(ip(3)), Ok(ip(4))]);
        let cache = CachedResolver::new(&inner, Duration::from_secs(60));
        assert!(cache.resolve("a.example", 443).await.is_err());
        assert!(cache.resolve("a.example", 443).await.unwrap().is_empty());
        assert_eq!(cache.resolve("a.example", 443).await.unwrap(), ip(3));
        assert_eq!(cache.resolve("a.example", 443).await.unwrap(), ip(3));
        assert_eq!(inner.lookups.load(Ordering::SeqCst), 3);
        // Another name is its own lookup.
        assert_eq!(cache.resolve("b.example", 443).await.unwrap(), ip(4));
    }

    #[tokio::test]
    async fn max_age_zero_asks_every_time() {
        let inner = Scripted::new(vec![Ok(ip(5)), Ok(ip(6))]);
        let cache = CachedResolver::new(&inner, Duration::ZERO);
        assert_eq!(cache.resolve("a.example", 443).await.unwrap(), ip(5));
        assert_eq!(cache.resolve("a.example", 443).await.unwrap(), ip(6));
    }
}
