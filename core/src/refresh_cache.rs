//! A value fetched on first use and fetched again on demand (key rotation),
//! at most once per interval, with concurrent callers sharing one fetch.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

pub struct RefreshingCache<T> {
    current: RwLock<Option<(Arc<T>, Instant)>>,
    refresh: tokio::sync::Mutex<()>,
    min_interval: Duration,
}

impl<T> RefreshingCache<T> {
    pub fn new(min_interval: Duration) -> Self {
        RefreshingCache { current: RwLock::new(None), refresh: tokio::sync::Mutex::new(()), min_interval }
    }

    fn cached(&self) -> Option<(Arc<T>, Instant)> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The cached value, fetching it when there is none.
    pub async fn get<E, Fut: Future<Output = Result<T, E>>>(&self, fetch: impl FnOnce() -> Fut) -> Result<Arc<T>, E> {
        match self.cached() {
            Some((value, _)) => Ok(value),
            None => self.refresh(fetch).await,
        }
    }

    /// Fetch again unless the cached value is younger than the interval.
    pub async fn refresh<E, Fut: Future<Output = Result<T, E>>>(
        &self,
        fetch: impl FnOnce() -> Fut,
    ) -> Result<Arc<T>, E> {
        let _one_at_a_time = self.refresh.lock().await;
        if let Some((value, at)) = self.cached()
            && at.elapsed() < self.min_interval
        {
            return Ok(value);
        }
        self.store(fetch().await?)
    }

    /// Like [`refresh`](Self::refresh), but a caller inside the interval
    /// waits for it to pass instead of getting the old value: for a key id
    /// that may have just been rotated in, an answer at most one interval
    /// late beats a refusal. A value fetched after the call began is used as is.
    pub async fn refresh_when_allowed<E, Fut: Future<Output = Result<T, E>>>(
        &self,
        fetch: impl FnOnce() -> Fut,
    ) -> Result<Arc<T>, E> {
        let asked = Instant::now();
        let _one_at_a_time = self.refresh.lock().await;
        if let Some((value, at)) = self.cached() {
            if at >= asked {
                return Ok(value);
            }
            if let Some(wait) = self.min_interval.checked_sub(at.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        self.store(fetch().await?)
    }

    /// Fetch now, whatever the interval: for a change the caller knows
    /// happened (our own signer used a key we do not list), not for input
    /// an attacker controls.
    pub async fn refresh_now<E, Fut: Future<Output = Result<T, E>>>(
        &self,
        fetch: impl FnOnce() -> Fut,
    ) -> Result<Arc<T>, E> {
        let _one_at_a_time = self.refresh.lock().await;
        self.store(fetch().await?)
    }

    fn store<E>(&self, value: T) -> Result<Arc<T>, E> {
        let value = Arc::new(value);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some((value.clone(), Instant::now()));
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn fetches_once_then_refreshes_at_most_once_per_interval() {
        let cache = RefreshingCache::new(Duration::from_secs(3600));
        let fetches = AtomicU32::new(0);
        let fetch = || async { Ok::<_, ()>(fetches.fetch_add(1, Ordering::SeqCst)) };
        assert_eq!(*cache.get(fetch).await.unwrap(), 0);
        assert_eq!(*cache.get(fetch).await.unwrap(), 0);
        assert_eq!(*cache.refresh(fetch).await.unwrap(), 0, "refresh inside the interval reuses the value");
        let eager = RefreshingCache::new(Duration::ZERO);
        assert_eq!(*eager.get(fetch).await.unwrap(), 1);
        assert_eq!(*eager.refresh(fetch).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn refresh_when_allowed_waits_out_the_interval_instead_of_returning_the_old_value() {
        let cache = RefreshingCache::new(Duration::from_millis(200));
        let fetches = AtomicU32::new(0);
        let fetch = || async { Ok::<_, ()>(fetches.fetch_add(1, Ordering::SeqCst)) };
        assert_eq!(*cache.get(fetch).await.unwrap(), 0);
        let started = Instant::now();
        assert_eq!(*cache.refresh_when_allowed(fetch).await.unwrap(), 1, "a new value, not the cached one");
        assert!(started.elapsed() >= Duration::from_millis(150), "waited for the interval");
        assert_eq!(*cache.refresh_now(fetch).await.unwrap(), 2, "refresh_now ignores the interval");
        assert_eq!(fetches.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_failed_fetch_caches_nothing() {
        let cache: RefreshingCache<u32> = RefreshingCache::new(Duration::from_secs(1));
        assert!(cache.get(|| async { Err::<u32, _>("down") }).await.is_err());
        assert_eq!(*cache.get(|| async { Ok::<_, ()>(7) }).await.unwrap(), 7);
    }
}
