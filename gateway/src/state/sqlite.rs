//! The embedded default [`StateStore`]: one SQLite file, `portcullis.sqlite3`, in the data
//! directory.
//!
//! The file runs in WAL mode with `synchronous=NORMAL` (a crash may lose the last commits but
//! never corrupts the file), a busy timeout so concurrent writers queue instead of failing,
//! and foreign keys on. The schema lives in `migrations/sqlite/` and is compiled into the
//! binary; [`SqliteStore::open`] applies missing migrations with sqlx's migrator, which
//! records each applied version and its checksum in `_sqlx_migrations` and refuses to start
//! on a database whose applied migrations differ from the embedded ones.
//!
//! The publish ledger (migration 2) is an append-mostly table: rows are inserted pending,
//! finished once, and never deleted.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{SqlSafeStr, SqlitePool};

use crate::clock::unix_now;

use super::rows::{self, select_ledger};
use super::{
    AuditRecord, DownloadKey, LedgerEntry, LedgerRecord, LedgerState, ProjectProvenance, StateError, StateStore,
    StoredProvenance, Tombstone, TombstoneKind,
};

/// The database file name inside the data directory.
pub const DATABASE_FILE: &str = "portcullis.sqlite3";

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a caller waits for a free pooled connection before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Above this size the write-ahead log is checkpointed and truncated by [`StateStore::maintain`].
/// SQLite's own automatic checkpoint (at 1000 pages) cannot restart the log while any
/// connection reads, and under steady load one always does: the log then grows without bound
/// (measured: 150 MB after 20 s of uploads), and every read searches it.
const WAL_CHECKPOINT_BYTES: u64 = 8 << 20;
/// How much of the database file is memory-mapped for reads.
const MMAP_BYTES: u64 = 1 << 30;
/// One connection. SQLite serialises writers anyway, and with several connections each write
/// made the others drop their page caches and re-read, and kept SQLite's automatic checkpoint
/// from ever restarting the write-ahead log: measured under steady uploads, one connection
/// spent 30% less CPU per upload than four (bench/README.md). Every statement is short and no
/// code path holds a connection while it asks the store for something else.
const MAX_CONNECTIONS: u32 = 1;

/// The embedded migrations, in order. Never edit an applied one; append a new version.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "state", include_str!("../../migrations/sqlite/0001_state.sql")),
    (2, "ledger", include_str!("../../migrations/sqlite/0002_ledger.sql")),
    (3, "deletion", include_str!("../../migrations/sqlite/0003_deletion.sql")),
    (
        4,
        "lookup_indexes",
        include_str!("../../migrations/sqlite/0004_lookup_indexes.sql"),
    ),
];

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
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // An embedded file has no connection to lose: sqlx's ping before every acquire is one
            // more trip to the connection's worker thread per query, for nothing.
            .test_before_acquire(false)
            .connect_with(connect_options(&path))
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

    /// Checkpoints the write-ahead log into the database and truncates it when it is larger
    /// than `limit` bytes; whether it did. `TRUNCATE` waits (the busy timeout) for readers to
    /// finish their snapshot and holds new writers meanwhile; new readers go on.
    pub async fn checkpoint_if_wal_over(&self, limit: u64) -> Result<bool, StateError> {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let size = tokio::fs::metadata(&wal).await.map_or(0, |m| m.len());
        if size <= limit {
            return Ok(false);
        }
        let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| in_context("checkpointing the write-ahead log", e))?;
        Ok(busy == 0)
    }

    async fn migrate(&self) -> Result<(), StateError> {
        migrator(MIGRATIONS)
            .run(&self.pool)
            .await
            .map_err(|e| migrate_error(&self.path, e))
    }
}

/// How every connection to the database file at `path` is opened.
fn connect_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true)
        // Pages are read through a memory map instead of read(2) into each connection's own
        // cache, which every other connection's write invalidates: under steady uploads
        // re-reading pages was most of the store's CPU time (bench/README.md).
        .pragma("mmap_size", MMAP_BYTES.to_string())
}

/// A migrator for `migrations` (a prefix of [`MIGRATIONS`]).
fn migrator(migrations: &[(i64, &'static str, &'static str)]) -> Migrator {
    let migrations = migrations
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

    async fn maintain(&self) -> Result<(), StateError> {
        self.checkpoint_if_wal_over(WAL_CHECKPOINT_BYTES).await.map(|_| ())
    }

    async fn ledger_begin(&self, entry: &LedgerEntry) -> Result<i64, StateError> {
        let size = i64::try_from(entry.size)
            .map_err(|_| StateError::Query(format!("recording an upload: size {} is too large", entry.size)))?;
        let done = sqlx::query(
            "INSERT INTO ledger (registry, project, version, filename, sha256, size, credential, publisher, signer, \
             source_repository, provenance_kind, provenance, request_id, created_at, state) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, 'pending')",
        )
        .bind(entry.registry.as_str())
        .bind(entry.project.as_str())
        .bind(entry.version.as_str())
        .bind(entry.filename.as_str())
        .bind(entry.sha256.as_str())
        .bind(size)
        .bind(entry.credential.as_str())
        .bind(entry.publisher.as_deref())
        .bind(entry.signer.as_deref())
        .bind(entry.source_repository.as_deref())
        .bind(entry.provenance_kind.as_deref())
        .bind(entry.provenance.as_deref())
        .bind(entry.request_id.as_str())
        .bind(entry.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| in_context("recording an upload", e))?;
        Ok(done.last_insert_rowid())
    }

    async fn ledger_finish(&self, id: i64, committed: bool, detail: &str, now: i64) -> Result<(), StateError> {
        let state = if committed {
            LedgerState::Committed
        } else {
            LedgerState::Failed
        };
        // Only a pending row changes, so a repeated or late finish can never flip the outcome.
        let done = sqlx::query(
            "UPDATE ledger SET state = ?2, finished_at = ?3, detail = ?4 WHERE id = ?1 AND state = 'pending'",
        )
        .bind(id)
        .bind(state.as_str())
        .bind(now)
        .bind(detail)
        .execute(&self.pool)
        .await
        .map_err(|e| in_context("finishing an upload", e))?;
        if done.rows_affected() > 0 {
            return Ok(());
        }
        let exists = sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM ledger WHERE id = ?1)")
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| in_context("finishing an upload", e))?;
        if exists {
            Ok(())
        } else {
            Err(StateError::Query(format!(
                "finishing an upload: no ledger row has id {id}"
            )))
        }
    }

    async fn provenance_of(
        &self,
        registry: &str,
        project: &str,
        version: &str,
        filename: &str,
    ) -> Result<Option<StoredProvenance>, StateError> {
        let row = sqlx::query(
            "SELECT provenance_kind, provenance, publisher, signer, source_repository, created_at FROM ledger \
             WHERE registry = ?1 AND project = ?2 AND version = ?3 AND filename = ?4 \
             AND state = 'committed' AND provenance IS NOT NULL \
             ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(registry)
        .bind(project)
        .bind(version)
        .bind(filename)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| in_context("looking up stored provenance", e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        rows::stored_provenance(&row).map(Some)
    }

    async fn project_provenance(&self, registry: &str, project: &str) -> Result<ProjectProvenance, StateError> {
        // One statement (one read snapshot, one trip to the connection's worker): the count of
        // uploads with provenance on every row, beside each distinct source repository (or on
        // its own row with a NULL repository when there is none). The partial indexes hold
        // exactly the rows read; without the hints the planner may pick another (registry,
        // project) index and read every row of the project. The repositories come by a loose
        // index scan (each found by one index seek past the last), each ordered by its first
        // committed upload (one seek each): the cost follows how many repositories there are,
        // not how many uploads.
        let rows = sqlx::query_as::<_, (i64, Option<String>)>(
            "WITH RECURSIVE repos(repo) AS ( \
                 SELECT MIN(source_repository) FROM ledger INDEXED BY ledger_committed_sources \
                  WHERE registry = ?1 AND project = ?2 AND state = 'committed' AND source_repository IS NOT NULL \
                 UNION ALL \
                 SELECT (SELECT MIN(source_repository) FROM ledger INDEXED BY ledger_committed_sources \
                          WHERE registry = ?1 AND project = ?2 AND state = 'committed' AND source_repository > repos.repo) \
                   FROM repos WHERE repos.repo IS NOT NULL \
             ), \
             firsts(repo, created_at, id) AS ( \
                 SELECT repo, \
                        (SELECT created_at FROM ledger INDEXED BY ledger_committed_sources \
                          WHERE registry = ?1 AND project = ?2 AND state = 'committed' AND source_repository = repos.repo \
                          ORDER BY created_at, id LIMIT 1), \
                        (SELECT id FROM ledger INDEXED BY ledger_committed_sources \
                          WHERE registry = ?1 AND project = ?2 AND state = 'committed' AND source_repository = repos.repo \
                          ORDER BY created_at, id LIMIT 1) \
                   FROM repos WHERE repo IS NOT NULL \
             ), \
             counted(uploads) AS ( \
                 SELECT COUNT(*) FROM ledger INDEXED BY ledger_committed_provenance WHERE registry = ?1 AND project = ?2 \
                  AND state = 'committed' AND provenance IS NOT NULL \
             ) \
             SELECT counted.uploads, firsts.repo FROM counted LEFT JOIN firsts ON 1 \
             ORDER BY firsts.created_at, firsts.id",
        )
        .bind(registry)
        .bind(project)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| in_context("summarising the project's provenance", e))?;
        rows::project_provenance(rows)
    }

    async fn ledger_entries(&self, registry: &str, project: &str) -> Result<Vec<LedgerRecord>, StateError> {
        let rows = sqlx::query(select_ledger!(
            "WHERE registry = ?1 AND project = ?2 ORDER BY created_at, id"
        ))
        .bind(registry)
        .bind(project)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| in_context("listing ledger rows", e))?;
        rows.iter().map(rows::ledger_record).collect()
    }

    async fn stale_pending(&self, older_than: i64) -> Result<Vec<LedgerRecord>, StateError> {
        let rows = sqlx::query(select_ledger!(
            "WHERE state = 'pending' AND created_at < ?1 ORDER BY created_at, id"
        ))
        .bind(older_than)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| in_context("listing stale pending uploads", e))?;
        rows.iter().map(rows::ledger_record).collect()
    }

    async fn record_dependencies(&self, ledger_id: i64, depends_on: &[String]) -> Result<(), StateError> {
        // One statement for the whole list (SQLite's json_each reads it as rows).
        let names =
            serde_json::to_string(depends_on).map_err(|e| StateError::Query(format!("recording dependencies: {e}")))?;
        sqlx::query("INSERT OR IGNORE INTO dependencies (ledger_id, depends_on) SELECT ?1, value FROM json_each(?2)")
            .bind(ledger_id)
            .bind(names)
            .execute(&self.pool)
            .await
            .map_err(|e| in_context("recording dependencies", e))?;
        Ok(())
    }

    async fn dependents(&self, registry: &str, project: &str) -> Result<u64, StateError> {
        // Committed uploads of other projects naming this one, unless that version or the
        // whole dependent project has been deleted since.
        let count = sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(DISTINCT l.project) FROM dependencies d JOIN ledger l ON l.id = d.ledger_id \
             WHERE d.depends_on = ?2 AND l.registry = ?1 AND l.project != ?2 AND l.state = 'committed' \
             AND NOT EXISTS (SELECT 1 FROM tombstones t WHERE t.registry = l.registry AND t.project = l.project \
                 AND (t.kind = 'project' OR (t.kind = 'version' AND t.version = l.version)))",
        )
        .bind(registry)
        .bind(project)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| in_context("counting dependents", e))?;
        u64::try_from(count).map_err(|_| StateError::Corrupt(format!("counting dependents: negative count {count}")))
    }

    async fn published_at(
        &self,
        registry: &str,
        project: &str,
        version: Option<&str>,
    ) -> Result<Option<i64>, StateError> {
        sqlx::query_scalar::<_, Option<i64>>(
            "SELECT MIN(created_at) FROM ledger WHERE registry = ?1 AND project = ?2 \
             AND (?3 IS NULL OR version = ?3) AND state = 'committed'",
        )
        .bind(registry)
        .bind(project)
        .bind(version)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| in_context("looking up a publish time", e))
    }

    async fn add_downloads(&self, counts: &[(DownloadKey, u64)]) -> Result<(), StateError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| in_context("counting downloads", e))?;
        for (key, count) in counts {
            let count = i64::try_from(*count)
                .map_err(|_| StateError::Query(format!("counting downloads: {count} is too large")))?;
            sqlx::query(
                "INSERT INTO downloads (registry, project, version, day, count) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (registry, project, version, day) DO UPDATE SET count = count + excluded.count",
            )
            .bind(key.registry.as_str())
            .bind(key.project.as_str())
            .bind(key.version.as_str())
            .bind(key.day)
            .bind(count)
            .execute(&mut *tx)
            .await
            .map_err(|e| in_context("counting downloads", e))?;
        }
        tx.commit().await.map_err(|e| in_context("counting downloads", e))
    }

    async fn downloads_since(
        &self,
        registry: &str,
        project: &str,
        version: Option<&str>,
        since_day: i64,
    ) -> Result<u64, StateError> {
        let total = sqlx::query_scalar::<_, i64>(
            "SELECT COALESCE(SUM(count), 0) FROM downloads WHERE registry = ?1 AND project = ?2 \
             AND (?3 IS NULL OR version = ?3) AND day >= ?4",
        )
        .bind(registry)
        .bind(project)
        .bind(version)
        .bind(since_day)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| in_context("summing downloads", e))?;
        u64::try_from(total).map_err(|_| StateError::Corrupt(format!("summing downloads: negative total {total}")))
    }

    async fn add_tombstone(&self, tombstone: &Tombstone) -> Result<(), StateError> {
        let (kind, version, filename) = match &tombstone.kind {
            TombstoneKind::Project => ("project", None, None),
            TombstoneKind::Version(v) => ("version", Some(v.as_str()), None),
            TombstoneKind::File { version, filename } => ("file", Some(version.as_str()), Some(filename.as_str())),
        };
        sqlx::query(
            "INSERT INTO tombstones (registry, project, kind, version, filename, deleted_at, request_id, actor, reason) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .bind(tombstone.registry.as_str())
        .bind(tombstone.project.as_str())
        .bind(kind)
        .bind(version)
        .bind(filename)
        .bind(tombstone.deleted_at)
        .bind(tombstone.request_id.as_str())
        .bind(tombstone.actor.as_str())
        .bind(tombstone.reason.as_str())
        .execute(&self.pool)
        .await
        .map_err(|e| in_context("recording a tombstone", e))?;
        Ok(())
    }

    async fn remove_tombstones(&self, request_id: &str) -> Result<u64, StateError> {
        let done = sqlx::query("DELETE FROM tombstones WHERE request_id = ?1")
            .bind(request_id)
            .execute(&self.pool)
            .await
            .map_err(|e| in_context("removing a request's tombstones", e))?;
        Ok(done.rows_affected())
    }

    async fn tombstones(&self, registry: &str, project: &str) -> Result<Vec<Tombstone>, StateError> {
        let rows = sqlx::query(
            "SELECT registry, project, kind, version, filename, deleted_at, request_id, actor, reason \
             FROM tombstones WHERE registry = ?1 AND project = ?2 ORDER BY deleted_at, id",
        )
        .bind(registry)
        .bind(project)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| in_context("listing tombstones", e))?;
        rows.iter().map(rows::tombstone).collect()
    }

    async fn append_audit(&self, record: &AuditRecord) -> Result<i64, StateError> {
        let done = sqlx::query(
            "INSERT INTO audit (at, request_id, registry, project, actor, action, target, outcome, rule, \
             rules_revision, code, reason, line) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )
        .bind(record.at)
        .bind(record.request_id.as_str())
        .bind(record.registry.as_str())
        .bind(record.project.as_str())
        .bind(record.actor.as_str())
        .bind(record.action.as_str())
        .bind(record.target.as_str())
        .bind(record.outcome.as_str())
        .bind(record.rule.as_str())
        .bind(record.rules_revision.as_str())
        .bind(record.code.as_str())
        .bind(record.reason.as_str())
        .bind(record.line.as_str())
        .execute(&self.pool)
        .await
        .map_err(|e| in_context("appending to the audit log", e))?;
        Ok(done.last_insert_rowid())
    }

    async fn audit_of_project(
        &self,
        registry: &str,
        project: &str,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StateError> {
        let rows = sqlx::query(
            "SELECT at, request_id, registry, project, actor, action, target, outcome, rule, rules_revision, \
             code, reason, line FROM audit WHERE registry = ?1 AND project = ?2 ORDER BY id DESC LIMIT ?3",
        )
        .bind(registry)
        .bind(project)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| in_context("reading the audit log", e))?;
        rows.iter().map(rows::audit_record).collect()
    }
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
    use crate::state::contract::{self, record, upload, with_provenance, FAR_FUTURE};

    async fn fresh() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path()).await.expect("open store");
        (dir, store)
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
    async fn a_grown_write_ahead_log_is_checkpointed_and_truncated() {
        let (dir, store) = fresh().await;
        let wal = dir.path().join(format!("{DATABASE_FILE}-wal"));
        let wal_size = || std::fs::metadata(&wal).map_or(0, |m| m.len());
        // While another connection reads (here another process's, say a backup), SQLite's
        // automatic checkpoints cannot restart the log, so it only grows; the checkpoint
        // waits for the reader, then truncates.
        let other = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(connect_options(&dir.path().join(DATABASE_FILE)))
            .await
            .expect("another connection");
        let mut reader = other.begin().await.expect("reader");
        let _: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger")
            .fetch_one(&mut *reader)
            .await
            .expect("read");
        for i in 0..300 {
            record(&store, &upload(&format!("f{i}.whl"), 100), true).await;
        }
        let grown = wal_size();
        assert!(grown > 64 * 1024, "the log grew to {grown} bytes");
        assert!(!store.checkpoint_if_wal_over(grown + 1).await.expect("under the limit"));
        reader.commit().await.expect("reader done");
        assert!(store.checkpoint_if_wal_over(64 * 1024).await.expect("checkpoint"));
        assert_eq!(wal_size(), 0);
        // Nothing was lost.
        assert_eq!(
            store
                .ledger_entries("pypi", "sample-project")
                .await
                .expect("entries")
                .len(),
            300
        );
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
        assert_eq!(applied, vec![1, 2, 3, 4]);
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
    async fn purge_leaves_the_ledger_alone() {
        let (_dir, store) = fresh().await;
        let repo = "https://github.com/octo/sample";
        record(
            &store,
            &with_provenance(upload("a.whl", 100), repo, b"a".to_vec()),
            true,
        )
        .await;
        record(&store, &upload("b.whl", 100), false).await;
        store.ledger_begin(&upload("c.whl", 100)).await.expect("ledger_begin");
        store.claim_jti_at("iss", "old", 100, 0).await.expect("claim");
        let before = store.ledger_entries("pypi", "sample-project").await.expect("entries");
        assert_eq!(before.len(), 3);

        assert_eq!(store.purge_expired(FAR_FUTURE).await.expect("purge"), 1);
        assert_eq!(
            store.ledger_entries("pypi", "sample-project").await.expect("entries"),
            before
        );
        assert!(store
            .provenance_of("pypi", "sample-project", "1.0.0", "a.whl")
            .await
            .expect("provenance_of")
            .is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_begins_get_distinct_ids() {
        let (_dir, store) = fresh().await;
        let store = Arc::new(store);
        let barrier = Arc::new(tokio::sync::Barrier::new(50));
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let store = store.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.ledger_begin(&upload(&format!("{i}.whl"), 100 + i)).await
                })
            })
            .collect();
        let mut ids = std::collections::BTreeSet::new();
        for task in tasks {
            ids.insert(task.await.expect("task panicked").expect("ledger_begin"));
        }
        assert_eq!(ids.len(), 50);
        let rows = store.ledger_entries("pypi", "sample-project").await.expect("entries");
        assert_eq!(rows.len(), 50);
        assert_eq!(
            rows.iter().map(|r| r.id).collect::<std::collections::BTreeSet<_>>(),
            ids
        );
    }

    #[tokio::test]
    async fn reopening_keeps_ledger_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = "https://github.com/octo/sample";
        let entry = with_provenance(upload("a.whl", 100), repo, b"kept".to_vec());
        let (committed, pending) = {
            let store = SqliteStore::open(dir.path()).await.expect("open store");
            let committed = record(&store, &entry, true).await;
            let pending = store.ledger_begin(&upload("b.whl", 200)).await.expect("ledger_begin");
            store.close().await;
            (committed, pending)
        };
        let store = SqliteStore::open(dir.path()).await.expect("open store");
        let rows = store.ledger_entries("pypi", "sample-project").await.expect("entries");
        let states: Vec<_> = rows.iter().map(|r| (r.id, r.state)).collect();
        assert_eq!(
            states,
            vec![(committed, LedgerState::Committed), (pending, LedgerState::Pending)]
        );
        assert_eq!(rows[0].entry, entry);
        // Ids are never reused after a restart.
        let next = store.ledger_begin(&upload("c.whl", 300)).await.expect("ledger_begin");
        assert!(next > pending, "{next} after {pending}");
    }

    #[tokio::test]
    async fn later_migrations_are_applied_to_a_version_1_database() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        {
            // What an older build left behind: only migration 1, with data in it.
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(connect_options(&path))
                .await
                .expect("connect");
            migrator(&MIGRATIONS[..1])
                .run(&pool)
                .await
                .expect("migrate to version 1");
            sqlx::query("INSERT INTO jti_claims (issuer, jti, keep_until) VALUES ('iss', 'old', ?1)")
                .bind(FAR_FUTURE)
                .execute(&pool)
                .await
                .expect("insert");
            let ledger: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE name = 'ledger')")
                .fetch_one(&pool)
                .await
                .expect("query");
            assert!(!ledger);
            pool.close().await;
        }
        let store = SqliteStore::open(dir.path()).await.expect("open store");
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&store.pool)
            .await
            .expect("query");
        assert_eq!(applied, vec![1, 2, 3, 4]);
        assert!(!store.claim_jti("iss", "old", FAR_FUTURE).await.expect("claim"));
        let id = record(&store, &upload("a.whl", 100), true).await;
        let rows = store.ledger_entries("pypi", "sample-project").await.expect("entries");
        assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), vec![id]);
        let indexes: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'ledger' \
             AND name NOT LIKE 'sqlite_autoindex%' ORDER BY name",
        )
        .fetch_all(&store.pool)
        .await
        .expect("query");
        assert_eq!(
            indexes,
            vec![
                "ledger_committed_provenance",
                "ledger_committed_sources",
                "ledger_committed_versions",
                "ledger_file",
                "ledger_state_created_at"
            ]
        );
    }

    #[tokio::test]
    async fn usable_as_a_trait_object() {
        let (_dir, store) = fresh().await;
        let store: Arc<dyn StateStore> = Arc::new(store);
        assert!(store.claim_jti("iss", "dyn", FAR_FUTURE).await.expect("claim"));
        assert!(!store.claim_jti("iss", "dyn", FAR_FUTURE).await.expect("claim"));
        let id = store.ledger_begin(&upload("dyn.whl", 100)).await.expect("ledger_begin");
        store
            .ledger_finish(id, true, "200 OK", 101)
            .await
            .expect("ledger_finish");
        assert_eq!(
            store
                .ledger_entries("pypi", "sample-project")
                .await
                .expect("entries")
                .len(),
            1
        );
    }

    #[tokio::test]
    async fn the_store_contract_holds() {
        for (name, case) in contract::CASES {
            let (_dir, store) = fresh().await;
            // Printed before each case, so a failing assertion is shown under its case.
            eprintln!("store contract: {name}");
            case(&store).await;
        }
    }
}
