//! The embedded default [`StateStore`]: one SQLite file, `portcullis.sqlite3`, in the data
//! directory.
//!
//! The file runs in WAL mode with `synchronous=NORMAL` (a crash may lose the last commits but
//! never corrupts the file), a busy timeout so concurrent writers queue instead of failing,
//! and foreign keys on. The schema lives in `migrations/sqlite/` and is compiled into the
//! binary; [`SqliteStore::open`] applies missing migrations with sqlx's migrator, which
//! records each applied version and its checksum in `_sqlx_migrations` and refuses to start
//! on a database whose applied migrations differ from the embedded ones.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{SqlSafeStr, SqlitePool};

use super::{StateError, StateStore};

/// The database file name inside the data directory.
pub const DATABASE_FILE: &str = "portcullis.sqlite3";

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a caller waits for a free pooled connection before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// SQLite serialises writers anyway; a few connections let reads overlap a write.
const MAX_CONNECTIONS: u32 = 4;

/// The embedded migrations, in order. Never edit an applied one; append a new version.
const MIGRATIONS: &[(i64, &str, &str)] = &[(1, "state", include_str!("../../migrations/sqlite/0001_state.sql"))];

/// The SQLite-backed [`StateStore`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) `portcullis.sqlite3` in `data_dir` and applies the embedded
    /// migrations. Fails with [`StateError::Unavailable`] when the directory or file cannot be
    /// created or opened, and with [`StateError::Corrupt`] when the file is not a usable
    /// database or its migration history does not match this build.
    pub async fn open(data_dir: &Path) -> Result<SqliteStore, StateError> {
        tokio::fs::create_dir_all(data_dir).await.map_err(|e| {
            StateError::Unavailable(format!("cannot create state directory {}: {e}", data_dir.display()))
        })?;
        let path = data_dir.join(DATABASE_FILE);
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| in_context(&format!("opening {}", path.display()), e))?;
        let store = SqliteStore { pool, path };
        store.migrate().await?;
        Ok(store)
    }

    /// The path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the pool, waiting for in-flight statements; later calls fail as unavailable.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Like [`StateStore::claim_jti`], with the time used to decide whether an existing record
    /// has expired (and may be reclaimed) given explicitly.
    pub async fn claim_jti_at(&self, issuer: &str, jti: &str, keep_until: i64, now: i64) -> Result<bool, StateError> {
        // One statement, so SQLite's write lock makes it atomic: it inserts, or replaces a
        // record whose keep_until has passed, or changes nothing (a replay).
        let done = sqlx::query(
            "INSERT INTO jti_claims (issuer, jti, keep_until) VALUES (?1, ?2, ?3) \
             ON CONFLICT (issuer, jti) DO UPDATE SET keep_until = excluded.keep_until \
             WHERE jti_claims.keep_until < ?4",
        )
        .bind(issuer)
        .bind(jti)
        .bind(keep_until)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(|e| in_context("claiming a jti", e))?;
        Ok(done.rows_affected() == 1)
    }

    async fn migrate(&self) -> Result<(), StateError> {
        let migrations = MIGRATIONS
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect();
        Migrator::with_migrations(migrations)
            .run(&self.pool)
            .await
            .map_err(|e| migrate_error(&self.path, e))
    }
}

#[async_trait]
impl StateStore for SqliteStore {
    /// Uses the system clock to decide whether an existing record has expired; see
    /// [`SqliteStore::claim_jti_at`].
    async fn claim_jti(&self, issuer: &str, jti: &str, keep_until: i64) -> Result<bool, StateError> {
        self.claim_jti_at(issuer, jti, keep_until, unix_now()).await
    }

    /// Revoking an already revoked token keeps the later of the two end times and records
    /// the newest reason, so a second revocation can never shorten the first.
    async fn revoke_token(&self, token_id: &str, until: i64, reason: &str) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO revoked_tokens (token_id, revoked_until, reason) VALUES (?1, ?2, ?3) \
             ON CONFLICT (token_id) DO UPDATE SET \
             revoked_until = max(revoked_tokens.revoked_until, excluded.revoked_until), \
             reason = excluded.reason",
        )
        .bind(token_id)
        .bind(until)
        .bind(reason)
        .execute(&self.pool)
        .await
        .map_err(|e| in_context("revoking a token", e))?;
        Ok(())
    }

    async fn is_revoked(&self, token_id: &str, now: i64) -> Result<bool, StateError> {
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE token_id = ?1 AND revoked_until >= ?2)",
        )
        .bind(token_id)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| in_context("checking a revocation", e))
    }

    async fn purge_expired(&self, now: i64) -> Result<u64, StateError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| in_context("starting the purge", e))?;
        let jtis = sqlx::query("DELETE FROM jti_claims WHERE keep_until < ?1")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| in_context("purging jti records", e))?
            .rows_affected();
        let revocations = sqlx::query("DELETE FROM revoked_tokens WHERE revoked_until < ?1")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| in_context("purging revocations", e))?
            .rows_affected();
        tx.commit().await.map_err(|e| in_context("committing the purge", e))?;
        Ok(jtis + revocations)
    }
}

/// Seconds since the Unix epoch; a clock before 1970 reads as 0.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

// SQLite primary result codes (the low byte of an extended code).
const SQLITE_CORRUPT: i64 = 11;
const SQLITE_NOTADB: i64 = 26;
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;
const SQLITE_READONLY: i64 = 8;
const SQLITE_IOERR: i64 = 10;
const SQLITE_FULL: i64 = 13;
const SQLITE_CANTOPEN: i64 = 14;
const SQLITE_PERM: i64 = 3;

/// Classifies a sqlx error, prefixing what was being done.
fn in_context(doing: &str, e: sqlx::Error) -> StateError {
    let message = format!("{doing}: {e}");
    match &e {
        sqlx::Error::Database(db) => {
            let primary = db.code().and_then(|c| c.parse::<i64>().ok()).map(|c| c & 0xff);
            match primary {
                Some(SQLITE_CORRUPT | SQLITE_NOTADB) => StateError::Corrupt(message),
                Some(
                    SQLITE_BUSY | SQLITE_LOCKED | SQLITE_READONLY | SQLITE_IOERR | SQLITE_FULL | SQLITE_CANTOPEN
                    | SQLITE_PERM,
                ) => StateError::Unavailable(message),
                _ => StateError::Query(message),
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Configuration(_) => StateError::Unavailable(message),
        sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. } | sqlx::Error::ColumnNotFound(_) => {
            StateError::Corrupt(message)
        }
        _ => StateError::Query(message),
    }
}

/// Classifies a migration failure: a statement that failed is classified like any other
/// error; a history that does not match the embedded migrations means a damaged or foreign
/// database.
fn migrate_error(path: &Path, e: MigrateError) -> StateError {
    let doing = format!("migrating {}", path.display());
    match e {
        MigrateError::Execute(inner) | MigrateError::ExecuteMigration(inner, _) => in_context(&doing, inner),
        other => StateError::Corrupt(format!("{doing}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    async fn fresh() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path()).await.expect("open store");
        (dir, store)
    }

    const FAR_FUTURE: i64 = 4_000_000_000;

    #[tokio::test]
    async fn first_claim_wins_second_is_a_replay() {
        let (_dir, store) = fresh().await;
        assert!(store
            .claim_jti("https://issuer", "jti-1", FAR_FUTURE)
            .await
            .expect("claim"));
        assert!(!store
            .claim_jti("https://issuer", "jti-1", FAR_FUTURE)
            .await
            .expect("claim"));
        assert!(!store
            .claim_jti("https://issuer", "jti-1", FAR_FUTURE + 10)
            .await
            .expect("claim"));
        assert!(store
            .claim_jti("https://issuer", "jti-2", FAR_FUTURE)
            .await
            .expect("claim"));
    }

    #[tokio::test]
    async fn same_jti_from_another_issuer_is_independent() {
        let (_dir, store) = fresh().await;
        assert!(store
            .claim_jti("https://a.example", "shared", FAR_FUTURE)
            .await
            .expect("claim"));
        assert!(store
            .claim_jti("https://b.example", "shared", FAR_FUTURE)
            .await
            .expect("claim"));
        assert!(!store
            .claim_jti("https://a.example", "shared", FAR_FUTURE)
            .await
            .expect("claim"));
        assert!(!store
            .claim_jti("https://b.example", "shared", FAR_FUTURE)
            .await
            .expect("claim"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_claims_of_one_jti_yield_exactly_one_winner() {
        let (_dir, store) = fresh().await;
        let store = Arc::new(store);
        let barrier = Arc::new(tokio::sync::Barrier::new(32));
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let store = store.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.claim_jti("https://issuer", "contended", FAR_FUTURE).await
                })
            })
            .collect();
        let mut winners = 0;
        for task in tasks {
            if task.await.expect("task panicked").expect("claim") {
                winners += 1;
            }
        }
        assert_eq!(winners, 1);
    }

    #[tokio::test]
    async fn expired_record_may_be_reclaimed_but_live_one_may_not() {
        let (_dir, store) = fresh().await;
        assert!(store.claim_jti_at("iss", "j", 1_000, 900).await.expect("claim"));
        // Still live at 1000 (keep_until is inclusive): a replay.
        assert!(!store.claim_jti_at("iss", "j", 2_000, 1_000).await.expect("claim"));
        // Past keep_until: reclaimed, and the new keep_until protects it again.
        assert!(store.claim_jti_at("iss", "j", 2_000, 1_001).await.expect("claim"));
        assert!(!store.claim_jti_at("iss", "j", 3_000, 1_500).await.expect("claim"));
    }

    #[tokio::test]
    async fn revocation_holds_up_to_and_including_until() {
        let (_dir, store) = fresh().await;
        assert!(!store.is_revoked("tok", 100).await.expect("is_revoked"));
        store
            .revoke_token("tok", 1_000, "leaked in CI log")
            .await
            .expect("revoke");
        assert!(store.is_revoked("tok", 999).await.expect("is_revoked"));
        assert!(store.is_revoked("tok", 1_000).await.expect("is_revoked"));
        assert!(!store.is_revoked("tok", 1_001).await.expect("is_revoked"));
        assert!(!store.is_revoked("other", 999).await.expect("is_revoked"));
    }

    #[tokio::test]
    async fn revoking_again_never_shortens_the_revocation() {
        let (_dir, store) = fresh().await;
        store.revoke_token("tok", 1_000, "first").await.expect("revoke");
        store.revoke_token("tok", 500, "second").await.expect("revoke");
        assert!(store.is_revoked("tok", 1_000).await.expect("is_revoked"));
        store.revoke_token("tok", 2_000, "third").await.expect("revoke");
        assert!(store.is_revoked("tok", 2_000).await.expect("is_revoked"));
        assert!(!store.is_revoked("tok", 2_001).await.expect("is_revoked"));
    }

    #[tokio::test]
    async fn purge_removes_only_expired_rows_and_counts_them() {
        let (_dir, store) = fresh().await;
        store.claim_jti_at("iss", "old-1", 100, 0).await.expect("claim");
        store.claim_jti_at("iss", "old-2", 199, 0).await.expect("claim");
        store.claim_jti_at("iss", "edge", 200, 0).await.expect("claim");
        store.claim_jti_at("iss", "new", 300, 0).await.expect("claim");
        store.revoke_token("old-tok", 150, "r").await.expect("revoke");
        store.revoke_token("edge-tok", 200, "r").await.expect("revoke");
        store.revoke_token("new-tok", 900, "r").await.expect("revoke");

        assert_eq!(store.purge_expired(200).await.expect("purge"), 3);
        assert_eq!(store.purge_expired(200).await.expect("purge"), 0);

        // Survivors are still recorded (replays with a `now` before their expiry)...
        assert!(!store.claim_jti_at("iss", "edge", 200, 150).await.expect("claim"));
        assert!(!store.claim_jti_at("iss", "new", 300, 150).await.expect("claim"));
        assert!(store.is_revoked("edge-tok", 200).await.expect("is_revoked"));
        assert!(store.is_revoked("new-tok", 200).await.expect("is_revoked"));
        // ...and the purged ones are gone: claimable again even with an earlier `now`.
        assert!(store.claim_jti_at("iss", "old-1", 100, 0).await.expect("claim"));
        assert!(store.claim_jti_at("iss", "old-2", 199, 0).await.expect("claim"));
        assert!(!store.is_revoked("old-tok", 100).await.expect("is_revoked"));
    }

    #[tokio::test]
    async fn reopening_keeps_data_and_applies_migrations_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = SqliteStore::open(dir.path()).await.expect("open store");
            assert_eq!(store.path(), dir.path().join(DATABASE_FILE));
            assert!(store.claim_jti("iss", "persisted", FAR_FUTURE).await.expect("claim"));
            store.revoke_token("tok", FAR_FUTURE, "r").await.expect("revoke");
            store.close().await;
        }
        let store = SqliteStore::open(dir.path()).await.expect("open store");
        assert!(!store.claim_jti("iss", "persisted", FAR_FUTURE).await.expect("claim"));
        assert!(store.is_revoked("tok", 1).await.expect("is_revoked"));
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&store.pool)
            .await
            .expect("query");
        assert_eq!(applied, vec![1]);
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&store.pool)
            .await
            .expect("query");
        assert_eq!(journal, "wal");
    }

    #[tokio::test]
    async fn edited_migration_history_is_reported_as_corrupt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path()).await.expect("open store");
        sqlx::query("UPDATE _sqlx_migrations SET checksum = x'00' WHERE version = 1")
            .execute(&store.pool)
            .await
            .expect("query");
        store.close().await;
        let err = SqliteStore::open(dir.path()).await.expect_err("open must fail");
        assert!(matches!(err, StateError::Corrupt(_)), "{err:?}");
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_database_is_corrupt() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(DATABASE_FILE), vec![0x5a_u8; 8192]).expect("write file");
        let err = SqliteStore::open(dir.path()).await.expect_err("open must fail");
        assert!(matches!(err, StateError::Corrupt(_)), "{err:?}");
    }

    #[tokio::test]
    async fn uncreatable_directory_is_unavailable_with_a_clear_message() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").expect("write file");
        let target = file.join("state");
        let err = SqliteStore::open(&target).await.expect_err("open must fail");
        match &err {
            StateError::Unavailable(message) => {
                assert!(message.contains("cannot create state directory"), "{message}");
                assert!(message.contains(&target.display().to_string()), "{message}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert!(err.to_string().starts_with("state store unavailable: "), "{err}");
    }

    #[tokio::test]
    async fn usable_as_a_trait_object() {
        let (_dir, store) = fresh().await;
        let store: Arc<dyn StateStore> = Arc::new(store);
        assert!(store.claim_jti("iss", "dyn", FAR_FUTURE).await.expect("claim"));
        assert!(!store.claim_jti("iss", "dyn", FAR_FUTURE).await.expect("claim"));
    }
}
