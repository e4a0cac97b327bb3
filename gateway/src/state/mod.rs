//! Durable gateway state shared between requests: used OIDC token ids (replay protection) and
//! revoked upload tokens.
//!
//! [`StateStore`] is the backend-neutral interface; [`sqlite::SqliteStore`] is the embedded
//! default for single-replica deployments. All times are Unix seconds, passed in by the
//! caller so that every decision about "now" is made in one place and tests can pick it.
//!
//! Every method can fail with a [`StateError`]; callers on the upload path must fail closed
//! (refuse the upload) when the store cannot answer.

pub mod sqlite;

use async_trait::async_trait;

pub use self::sqlite::SqliteStore;

use std::sync::Arc;
use std::time::Duration;

use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

/// Why the state store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The store cannot be reached or written right now (I/O error, locked or full database,
    /// pool exhausted, directory not creatable). Retrying later may succeed.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    /// The stored data or schema is damaged or does not match what this build expects
    /// (corrupt file, edited or unknown migration, undecodable value).
    #[error("state store corrupt: {0}")]
    Corrupt(String),
    /// The backend rejected a statement for another reason (a bug or constraint violation).
    #[error("state store query failed: {0}")]
    Query(String),
}

/// Durable, concurrency-safe gateway state. Object safe: use as `Arc<dyn StateStore>`.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Atomically records that `jti` from `issuer` was used; `Ok(true)` the first time, `Ok(false)` if already recorded (a replay). The record is kept until `keep_until` (Unix seconds), after which it may be purged.
    ///
    /// A record whose `keep_until` lies in the past may be reclaimed by a later claim (which
    /// then returns `Ok(true)`), so `keep_until` must be no earlier than the moment the token
    /// itself stops being accepted (its `exp` plus any clock-skew leeway).
    async fn claim_jti(&self, issuer: &str, jti: &str, keep_until: i64) -> Result<bool, StateError>;

    /// Revokes an upload token id until `until` (Unix seconds), with a reason.
    async fn revoke_token(&self, token_id: &str, until: i64, reason: &str) -> Result<(), StateError>;

    /// Whether a token id is revoked at time `now`.
    async fn is_revoked(&self, token_id: &str, now: i64) -> Result<bool, StateError>;

    /// Deletes jti and revocation records that expired before `now`; returns how many were removed.
    async fn purge_expired(&self, now: i64) -> Result<u64, StateError>;
}

/// How often expired replay records and revocations are deleted.
const PURGE_INTERVAL: Duration = Duration::from_secs(600);

/// Background service that deletes expired records from the state store now and then.
pub struct StatePurger {
    store: Arc<dyn StateStore>,
}

impl StatePurger {
    /// A purger for `store`.
    pub fn new(store: Arc<dyn StateStore>) -> Self {
        StatePurger { store }
    }
}

#[async_trait]
impl BackgroundService for StatePurger {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(PURGE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                    match self.store.purge_expired(now).await {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(removed = n, "purged expired state records"),
                        Err(e) => tracing::warn!(error = %e, "purging expired state records failed"),
                    }
                }
            }
        }
    }
}
