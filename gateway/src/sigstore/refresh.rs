//! Keeps a TUF-sourced trusted root current: at start-up from the cache alone (no network, so a
//! restart while the repository is down keeps verifying while the cached metadata is valid),
//! then from the repository at once, every `refresh_interval`, sooner after a failure, and on
//! `POST /trust/refresh`. A refresh that fails leaves the last good root in force.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::Mutex;

use super::trust::{Arrival, TrustHandle};
use super::tuf::{TufClient, TufError, TufSettings};
use crate::clock::unix_now;

/// First wait after a failed refresh; it doubles per failure up to the refresh interval.
const FIRST_RETRY: Duration = Duration::from_secs(10);

/// Refreshes the trusted root from a TUF repository.
pub struct TrustRefresher {
    handle: Arc<TrustHandle>,
    settings: TufSettings,
    /// The network client, made on first use and kept (with what it verified) across refreshes;
    /// the lock also keeps two refreshes from running at once.
    client: Mutex<Option<TufClient>>,
}

/// What a refresh did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refreshed {
    /// A different trusted root is now in force.
    Updated,
    /// The same trusted root stays in force (the metadata may have been renewed).
    Unchanged,
}

impl TrustRefresher {
    /// A refresher of `handle` from the repository in `settings`.
    pub fn new(handle: Arc<TrustHandle>, settings: TufSettings) -> TrustRefresher {
        TrustRefresher {
            handle,
            settings,
            client: Mutex::new(None),
        }
    }

    /// The handle it keeps current.
    pub fn handle(&self) -> &Arc<TrustHandle> {
        &self.handle
    }

    /// Puts the cached trusted root in force if the cached TUF metadata verifies and is
    /// unexpired; touches no network.
    pub async fn load_cache(&self) -> Result<Refreshed, TufError> {
        let now = unix_now();
        let outcome = match TufClient::cache_only(&self.settings) {
            Ok(mut client) => client.refresh(now).await,
            Err(e) => Err(e),
        };
        self.settle(outcome, Arrival::Cache, now)
    }

    /// Fetches from the repository now and adopts what verifies.
    pub async fn refresh_now(&self) -> Result<Refreshed, TufError> {
        let mut client = self.client.lock().await;
        let now = unix_now();
        let outcome = match client.as_mut() {
            Some(client) => self.bounded(client.refresh(now)).await,
            None => match TufClient::online(&self.settings) {
                Ok(mut fresh) => {
                    let outcome = self.bounded(fresh.refresh(now)).await;
                    *client = Some(fresh);
                    outcome
                }
                Err(e) => Err(e),
            },
        };
        self.settle(outcome, Arrival::Network, now)
    }

    /// A refresh bounded in time as a whole, whatever the repository does.
    async fn bounded<T>(&self, refresh: impl std::future::Future<Output = Result<T, TufError>>) -> Result<T, TufError> {
        let limit = self.settings.timeout.saturating_mul(8);
        tokio::time::timeout(limit, refresh).await.unwrap_or_else(|_| {
            Err(TufError {
                kind: super::tuf::FailureKind::Unreachable,
                message: format!("the refresh took longer than {}s", limit.as_secs()),
            })
        })
    }

    fn settle(
        &self,
        outcome: Result<super::tuf::Fetched, TufError>,
        arrival: Arrival,
        now: i64,
    ) -> Result<Refreshed, TufError> {
        match outcome {
            Ok(fetched) => match self.handle.adopt(fetched, arrival, now)? {
                true => Ok(Refreshed::Updated),
                false => Ok(Refreshed::Unchanged),
            },
            Err(error) => {
                self.handle.failed(&error, now);
                Err(error)
            }
        }
    }

    /// How long to wait after `failures` failed refreshes in a row (0: after a success).
    fn wait(&self, failures: u32) -> Duration {
        let interval = self.settings.refresh_interval;
        if failures == 0 {
            return interval;
        }
        FIRST_RETRY
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
            .min(interval)
    }
}

#[async_trait]
impl BackgroundService for TrustRefresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut failures = 0u32;
        loop {
            if *shutdown.borrow() {
                return;
            }
            failures = match self.refresh_now().await {
                Ok(_) => 0,
                Err(_) => failures.saturating_add(1),
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(self.wait(failures)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refresher(interval: Duration) -> TrustRefresher {
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let settings = TufSettings {
            repository: "http://127.0.0.1:9".to_owned(),
            anchor: super::super::anchors::Instance::Production.anchor().to_vec(),
            anchor_source: "test".to_owned(),
            cache_dir: std::env::temp_dir().join("portcullis-refresh-test-unused"),
            refresh_interval: interval,
            timeout: Duration::from_secs(1),
            extra_roots_der: Vec::new(),
        };
        let handle = Arc::new(TrustHandle::new(
            super::super::TrustSource::Tuf {
                repository: settings.repository.clone(),
                anchor_source: settings.anchor_source.clone(),
                cache_dir: settings.cache_dir.clone(),
            },
            metrics,
        ));
        TrustRefresher::new(handle, settings)
    }

    #[test]
    fn retries_back_off_from_ten_seconds_to_the_interval() {
        let r = refresher(Duration::from_secs(3600));
        let waits: Vec<u64> = (0..10).map(|f| r.wait(f).as_secs()).collect();
        assert_eq!(waits, [3600, 10, 20, 40, 80, 160, 320, 640, 1280, 2560]);
        assert_eq!(r.wait(u32::MAX).as_secs(), 3600);
        let short = refresher(Duration::from_secs(15));
        assert_eq!(short.wait(1).as_secs(), 10);
        assert_eq!(short.wait(2).as_secs(), 15);
    }

    #[tokio::test]
    async fn an_unreachable_repository_with_no_cache_leaves_no_root_and_says_why() {
        let r = refresher(Duration::from_secs(3600));
        let error = r.load_cache().await.expect_err("no cache");
        assert_eq!(error.kind, super::super::tuf::FailureKind::NoCache);
        let error = r.refresh_now().await.expect_err("nothing listens on port 9");
        assert_eq!(error.kind, super::super::tuf::FailureKind::Unreachable);
        let unavailable = r.handle().current(unix_now()).expect_err("no root");
        assert_eq!(unavailable.code(), "provenance_trust_unavailable");
        assert!(unavailable.to_string().contains("unreachable"), "{unavailable}");
    }
}
