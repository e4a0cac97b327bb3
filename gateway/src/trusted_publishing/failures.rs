//! Failed npm exchanges, remembered briefly. The npm CLI swallows exchange errors (it logs them
//! at verbose level and publishes with whatever credential it has), so on npmjs a refused
//! exchange surfaces as an unexplained 404 on the publish. The gateway remembers why the
//! exchange failed, per package and client address, and refuses the publish that follows
//! with that reason.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use moka::future::Cache;

/// Most failures remembered at once (older ones are evicted first).
const CAPACITY: u64 = 10_000;

/// Remembered exchange failures.
pub struct FailedExchanges {
    cache: Cache<(String, IpAddr), (String, Instant)>,
}

impl FailedExchanges {
    /// Remembers failures for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        FailedExchanges {
            cache: Cache::builder().max_capacity(CAPACITY).time_to_live(ttl).build(),
        }
    }

    /// Records that `client`'s exchange for `package` failed with `reason`.
    pub async fn remember(&self, package: &str, client: IpAddr, reason: String) {
        self.cache
            .insert((package.to_owned(), client), (reason, Instant::now()))
            .await;
    }

    /// Forgets a failure once an exchange for the package succeeds.
    pub async fn forget(&self, package: &str, client: IpAddr) {
        self.cache.invalidate(&(package.to_owned(), client)).await;
    }

    /// The remembered failure for `client` and `package`: its reason and how long ago.
    pub async fn recall(&self, package: &str, client: IpAddr) -> Option<(String, Duration)> {
        self.cache
            .get(&(package.to_owned(), client))
            .await
            .map(|(reason, at)| (reason, at.elapsed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failures_are_per_package_and_client_and_expire() {
        let failures = FailedExchanges::new(Duration::from_millis(200));
        let a: IpAddr = "127.0.0.1".parse().expect("ip");
        let b: IpAddr = "127.0.0.2".parse().expect("ip");
        failures.remember("left-pad", a, "no publisher".into()).await;
        assert_eq!(
            failures.recall("left-pad", a).await.map(|(r, _)| r).as_deref(),
            Some("no publisher")
        );
        assert!(failures.recall("left-pad", b).await.is_none());
        assert!(failures.recall("right-pad", a).await.is_none());
        failures.forget("left-pad", a).await;
        assert!(failures.recall("left-pad", a).await.is_none());
        failures.remember("left-pad", a, "again".into()).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(failures.recall("left-pad", a).await.is_none(), "expired");
    }
}
