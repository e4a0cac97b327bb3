//! Durable gateway state shared between requests: used OIDC token ids (replay protection),
//! revoked upload tokens, the publish ledger (every upload, with its accepted provenance and
//! dependencies), download counts, tombstones of deleted projects and versions, and the audit log.
//!
//! [`StateStore`] is the backend-neutral interface; [`sqlite::SqliteStore`] is the embedded
//! default for single-replica deployments. All times are Unix seconds, passed in by the
//! caller so that every decision about "now" is made in one place and tests can pick it.
//!
//! Every method can fail with a [`StateError`]; callers on the upload path must fail closed
//! (refuse the upload) when the store cannot answer.

#[cfg(any(test, feature = "store-contract"))]
pub mod contract;
pub mod feed;
mod migrations;
pub mod postgres;
mod rows;
pub mod sqlite;

use async_trait::async_trait;

pub use self::feed::{FeedAction, FeedEvent, FeedFile, FeedSettlement, FeedState, FeedStatus, FeedStore};
pub use self::postgres::{PostgresSettings, PostgresStore};
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

/// Durable, concurrency-safe gateway state. Object safe: use as `Arc<dyn StateStore>`. The TUF
/// feed's outbox ([`FeedStore`]) is part of it.
#[async_trait]
pub trait StateStore: FeedStore + Send + Sync {
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
    /// Never deletes ledger rows: the ledger is durable.
    async fn purge_expired(&self, now: i64) -> Result<u64, StateError>;

    /// Housekeeping the store needs under steady load (SQLite: folding a grown write-ahead log
    /// back into the database); called every [`MAINTAIN_INTERVAL`]. Nothing by default.
    async fn maintain(&self) -> Result<(), StateError> {
        Ok(())
    }

    /// Records an upload in the ledger as [`LedgerState::Pending`] and returns the new row's id,
    /// which [`StateStore::ledger_finish`] takes. Ids are unique and never reused.
    ///
    /// `entry.provenance` and `entry.provenance_kind` must be both set or both unset; an entry
    /// that breaks this is refused with [`StateError::Query`].
    async fn ledger_begin(&self, entry: &LedgerEntry) -> Result<i64, StateError>;

    /// Finishes a [`LedgerState::Pending`] row as [`LedgerState::Committed`] (`committed`) or
    /// [`LedgerState::Failed`], recording `detail` (for example the backend's status) and `now`
    /// as its finishing time.
    ///
    /// Finishing a row that is already finished changes nothing and succeeds, so a committed
    /// row never turns failed (or the reverse). An id that names no row is a
    /// [`StateError::Query`], and changes nothing.
    ///
    /// `audit`, the upload's audit record, is appended in the same transaction (one commit
    /// instead of two per upload), whether or not the row was still pending.
    async fn ledger_finish(
        &self,
        id: i64,
        committed: bool,
        detail: &str,
        now: i64,
        audit: Option<&AuditRecord>,
    ) -> Result<(), StateError>;

    /// The provenance stored with the newest committed upload of this file that carried
    /// provenance; `None` when there is none. Pending and failed uploads are never served.
    async fn provenance_of(
        &self,
        registry: &str,
        project: &str,
        version: &str,
        filename: &str,
    ) -> Result<Option<StoredProvenance>, StateError>;

    /// A summary of the provenance of a project's committed uploads.
    async fn project_provenance(&self, registry: &str, project: &str) -> Result<ProjectProvenance, StateError>;

    /// Every ledger row of a project in any state, oldest first.
    async fn ledger_entries(&self, registry: &str, project: &str) -> Result<Vec<LedgerRecord>, StateError>;

    /// Rows still [`LedgerState::Pending`] that were created before `older_than` (Unix seconds),
    /// oldest first: uploads whose outcome was never recorded, typically because of a crash.
    async fn stale_pending(&self, older_than: i64) -> Result<Vec<LedgerRecord>, StateError>;

    /// Records the projects the upload of ledger row `ledger_id` depends on (normalised names).
    async fn record_dependencies(&self, ledger_id: i64, depends_on: &[String]) -> Result<(), StateError>;

    /// How many other projects of `registry` have a committed, not deleted upload that depends
    /// on `project`.
    async fn dependents(&self, registry: &str, project: &str) -> Result<u64, StateError>;

    /// When the earliest committed upload of `version` (or, for `None`, of any version) of the
    /// project was recorded; `None` when the ledger has none.
    async fn published_at(
        &self,
        registry: &str,
        project: &str,
        version: Option<&str>,
    ) -> Result<Option<i64>, StateError>;

    /// Adds download counts, one `(key, count)` per version and day.
    async fn add_downloads(&self, counts: &[(DownloadKey, u64)]) -> Result<(), StateError>;

    /// Downloads of `version` (or, for `None`, of every version) of the project on days
    /// `since_day` and later.
    async fn downloads_since(
        &self,
        registry: &str,
        project: &str,
        version: Option<&str>,
        since_day: i64,
    ) -> Result<u64, StateError>;

    /// Records a tombstone.
    async fn add_tombstone(&self, tombstone: &Tombstone) -> Result<(), StateError>;

    /// Removes the tombstones recorded by request `request_id` and returns how many: they are
    /// written before a deletion is released to the backend, and removed again when the backend
    /// refuses the deletion (it did not happen).
    async fn remove_tombstones(&self, request_id: &str) -> Result<u64, StateError>;

    /// Every tombstone of a project, oldest first.
    async fn tombstones(&self, registry: &str, project: &str) -> Result<Vec<Tombstone>, StateError>;

    /// Appends an audit record and returns its id.
    async fn append_audit(&self, record: &AuditRecord) -> Result<i64, StateError>;

    /// The newest `limit` audit records of a project, newest first.
    async fn audit_of_project(&self, registry: &str, project: &str, limit: u32)
        -> Result<Vec<AuditRecord>, StateError>;
}

/// Downloads of one version on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DownloadKey {
    /// The registry's configured name.
    pub registry: String,
    /// The normalised project name.
    pub project: String,
    /// The version downloaded.
    pub version: String,
    /// The UTC day: Unix seconds / 86 400.
    pub day: i64,
}

/// What a tombstone covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TombstoneKind {
    /// The whole project: its name stays reserved.
    Project,
    /// One version: never uploaded again.
    Version(String),
    /// One file of a version (PyPI): never uploaded again.
    File {
        /// The version the file belonged to.
        version: String,
        /// The file name.
        filename: String,
    },
}

/// A deleted project, version or file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    /// The registry's configured name.
    pub registry: String,
    /// The normalised project name.
    pub project: String,
    /// What was deleted.
    pub kind: TombstoneKind,
    /// When (Unix seconds).
    pub deleted_at: i64,
    /// The request that deleted it.
    pub request_id: String,
    /// Who deleted it (publisher, token id or credential kind; never a secret).
    pub actor: String,
    /// An admin's reason for an override; empty otherwise.
    pub reason: String,
}

/// One audit log record: a decision on a delete-like request or an upload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditRecord {
    /// When (Unix seconds).
    pub at: i64,
    /// The request decided.
    pub request_id: String,
    /// The registry's configured name.
    pub registry: String,
    /// The normalised project name.
    pub project: String,
    /// Who asked (publisher, token id or credential kind; never a secret).
    pub actor: String,
    /// What was asked: `upload`, `delete_version`, `yank`, ...
    pub action: String,
    /// What it targets: `name@version`, a file name, or the project.
    pub target: String,
    /// `allow`, `refuse`, `shadow` (let through, would have refused) or `override`.
    pub outcome: String,
    /// The rule that decided.
    pub rule: String,
    /// The rules revision in force.
    pub rules_revision: String,
    /// The refusal code, when refused (or would have been).
    pub code: String,
    /// An admin's reason, or the refusal's message.
    pub reason: String,
    /// The whole record as one JSON line.
    pub line: String,
}

/// One upload as the ledger records it, written before the upload's last bytes are released
/// to the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// The registry the upload went to (its configured name).
    pub registry: String,
    /// The project name, normalised.
    pub project: String,
    /// The release version.
    pub version: String,
    /// The uploaded file's name.
    pub filename: String,
    /// The uploaded file's SHA-256, in hex.
    pub sha256: String,
    /// The uploaded file's size in bytes.
    pub size: u64,
    /// How the upload authenticated: `"upload_token"`, `"legacy"` or `"none"`.
    pub credential: String,
    /// The trusted publisher id, when the upload came through trusted publishing.
    pub publisher: Option<String>,
    /// The provenance signer identity (the certificate's SAN), when provenance was accepted.
    pub signer: Option<String>,
    /// The provenance source repository URI, when provenance was accepted.
    pub source_repository: Option<String>,
    /// The provenance format, `"pep740"` or `"npm-sigstore"`; set exactly when `provenance` is.
    pub provenance_kind: Option<String>,
    /// The accepted provenance document(s), byte for byte as uploaded.
    pub provenance: Option<Vec<u8>>,
    /// The id of the request that carried the upload.
    pub request_id: String,
    /// When the upload was recorded (Unix seconds).
    pub created_at: i64,
}

/// Where an upload stands in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LedgerState {
    /// Recorded, but the backend's answer is not (yet) known.
    Pending,
    /// The backend accepted the upload.
    Committed,
    /// The backend refused the upload or it was abandoned.
    Failed,
}

impl LedgerState {
    /// The stored form: `"pending"`, `"committed"` or `"failed"`.
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerState::Pending => "pending",
            LedgerState::Committed => "committed",
            LedgerState::Failed => "failed",
        }
    }

    /// Parses the stored form; `None` for anything else.
    pub fn parse(stored: &str) -> Option<LedgerState> {
        match stored {
            "pending" => Some(LedgerState::Pending),
            "committed" => Some(LedgerState::Committed),
            "failed" => Some(LedgerState::Failed),
            _ => None,
        }
    }
}

impl std::fmt::Display for LedgerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One ledger row: the upload, its state and how it was finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRecord {
    /// The row id returned by [`StateStore::ledger_begin`].
    pub id: i64,
    /// The upload as recorded.
    pub entry: LedgerEntry,
    /// Where the upload stands.
    pub state: LedgerState,
    /// When the row was finished (Unix seconds); `None` while pending.
    pub finished_at: Option<i64>,
    /// Why it was finished that way (for example the backend's status); empty while pending.
    pub detail: String,
}

/// Provenance stored with a committed upload, as [`StateStore::provenance_of`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredProvenance {
    /// The provenance format, `"pep740"` or `"npm-sigstore"`.
    pub kind: String,
    /// The accepted provenance document(s), byte for byte as uploaded.
    pub provenance: Vec<u8>,
    /// The trusted publisher id of the upload, if any.
    pub publisher: Option<String>,
    /// The provenance signer identity (the certificate's SAN), if recorded.
    pub signer: Option<String>,
    /// The provenance source repository URI, if recorded.
    pub source_repository: Option<String>,
    /// When the upload was recorded (Unix seconds).
    pub created_at: i64,
}

/// A summary of the provenance of a project's committed uploads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectProvenance {
    /// How many committed uploads carried provenance.
    pub uploads_with_provenance: u64,
    /// The distinct source repositories of committed uploads, in the order they first appeared.
    pub source_repositories: Vec<String>,
}

/// How often expired replay records and revocations are deleted.
const PURGE_INTERVAL: Duration = Duration::from_secs(600);

/// How often [`StateStore::maintain`] runs.
pub const MAINTAIN_INTERVAL: Duration = Duration::from_secs(1);

/// Background service that deletes expired records from the state store now and then, and
/// runs the store's housekeeping.
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
        let mut maintain = tokio::time::interval(MAINTAIN_INTERVAL);
        maintain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = maintain.tick() => {
                    if let Err(e) = self.store.maintain().await {
                        tracing::warn!(error = %e, "state store housekeeping failed");
                    }
                }
                _ = tick.tick() => {
                    match self.store.purge_expired(crate::clock::unix_now()).await {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(removed = n, "purged expired state records"),
                        Err(e) => tracing::warn!(error = %e, "purging expired state records failed"),
                    }
                }
            }
        }
    }
}
