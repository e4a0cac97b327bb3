//! The embedded default [`StateStore`]: one SQLite file, `portcullis.sqlite3`, in the data
//! directory.
//!
//! The file runs in WAL mode with `synchronous=NORMAL` (a crash of the machine may lose the
//! last commits, a crash or SIGKILL of the process loses none, and neither corrupts the file)
//! and foreign keys on. The schema lives in `migrations/sqlite/` and is compiled into the
//! binary; [`SqliteStore::open`] applies missing migrations with sqlx's migrator
//! (`migrate.rs`), which records each applied version and its checksum in `_sqlx_migrations`
//! and refuses to start on a database whose applied migrations differ from the embedded ones.
//! The statements then run on one rusqlite connection in the caller's thread
//! (`connection.rs` says why and how).
//!
//! The publish ledger (migration 2) is an append-mostly table: rows are inserted pending,
//! finished once, and never deleted.

mod checkpoint;
mod connection;
mod feed;
mod migrate;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension as _, TransactionBehavior};

use crate::clock::unix_now;

pub use self::checkpoint::Checkpoint;
use self::checkpoint::Checkpointer;
use self::connection::InThread;
use super::rows::{self, select_ledger, select_stored_provenance};
use super::{
    AuditRecord, DownloadKey, LedgerEntry, LedgerRecord, LedgerState, ProjectProvenance, StateError, StateStore,
    StoredProvenance, Tombstone, TombstoneKind,
};

/// The database file name inside the data directory.
pub const DATABASE_FILE: &str = "portcullis.sqlite3";

/// How much of the database file is memory-mapped for reads.
const MMAP_BYTES: i64 = 1 << 30;

/// The SQLite-backed [`StateStore`]. One connection: SQLite serialises writers anyway, and
/// with several connections each write made the others drop their page caches and re-read
/// (measured: one connection spent 30% less CPU per upload than four, bench/README.md).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    db: InThread,
    checkpointer: Checkpointer,
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
        migrate::apply(&path).await?;
        let doing = format!("opening {}", path.display());
        let db = open_connection(&path)
            .and_then(InThread::new)
            .map_err(|e| connection::in_context(&doing, e))?;
        let checkpointer = open_connection(&path)
            .and_then(Checkpointer::new)
            .map_err(|e| connection::in_context(&doing, e))?;
        Ok(SqliteStore { db, checkpointer, path })
    }

    /// The path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the connection, after the statement in flight; later calls fail as unavailable.
    pub async fn close(&self) {
        self.db.close().await;
        let checkpointer = self.checkpointer.clone();
        // Waits for a checkpoint in flight, off the async threads.
        if let Err(e) = tokio::task::spawn_blocking(move || checkpointer.close()).await {
            tracing::warn!(error = %e, "closing the state store's checkpoint connection");
        }
    }

    /// Like [`StateStore::claim_jti`], with the time used to decide whether an existing record
    /// has expired (and may be reclaimed) given explicitly.
    pub async fn claim_jti_at(&self, issuer: &str, jti: &str, keep_until: i64, now: i64) -> Result<bool, StateError> {
        // One statement, so SQLite's write lock makes it atomic: it inserts, or replaces a
        // record whose keep_until has passed, or changes nothing (a replay).
        let changed = self
            .db
            .run("claiming a jti", |c| {
                c.prepare_cached(
                    "INSERT INTO jti_claims (issuer, jti, keep_until) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (issuer, jti) DO UPDATE SET keep_until = excluded.keep_until \
                     WHERE jti_claims.keep_until < ?4",
                )?
                .execute(params![issuer, jti, keep_until, now])
            })
            .await?;
        Ok(changed == 1)
    }

    /// Checkpoints the write-ahead log (`checkpoint.rs` says why this way): passively, and when
    /// the log holds more than [`checkpoint::TRUNCATE_FRAMES`] pages, the rest with the store's
    /// callers held, truncating the log. Runs on the blocking pool, on a connection of its own.
    pub async fn checkpoint(&self) -> Result<Checkpoint, StateError> {
        self.checkpointer.run(&self.db, checkpoint::TRUNCATE_FRAMES).await
    }

    /// Runs `work` on the store's connection in this thread (tests inspect the schema).
    #[cfg(test)]
    async fn run<T>(&self, work: impl Fn(&mut rusqlite::Connection) -> rusqlite::Result<T>) -> Result<T, StateError> {
        self.db.run("a test's statement", work).await
    }
}

/// Opens the connection the store uses, with its pragmas (the migrator made the file and set
/// WAL mode, which is persistent).
fn open_connection(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let connection = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    connection.pragma_update(None, "foreign_keys", true)?;
    // Pages are read through a memory map instead of read(2) into the connection's cache.
    connection.pragma_update(None, "mmap_size", MMAP_BYTES)?;
    // A log that starts over after a checkpoint keeps this much of its file.
    connection.pragma_update(None, "journal_size_limit", checkpoint::LOG_KEPT_BYTES)?;
    let journal: String = connection.query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
    if !journal.eq_ignore_ascii_case("wal") {
        connection.pragma_update(None, "journal_mode", "WAL")?;
    }
    Ok(connection)
}

/// Appends an audit record on `c` (a connection or a transaction); returns its id.
fn insert_audit(c: &rusqlite::Connection, record: &AuditRecord) -> rusqlite::Result<i64> {
    c.prepare_cached(
        "INSERT INTO audit (at, request_id, registry, project, actor, action, target, outcome, rule, \
         rules_revision, code, reason, line) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        record.at,
        record.request_id,
        record.registry,
        record.project,
        record.actor,
        record.action,
        record.target,
        record.outcome,
        record.rule,
        record.rules_revision,
        record.code,
        record.reason,
        record.line,
    ])?;
    Ok(c.last_insert_rowid())
}

/// Finishes pending ledger row `id` as `state` with its `detail` and time, and appends `audit`,
/// inside transaction `tx`: whether the row changed (`false`: it was finished before, and
/// keeps its outcome), or `None`, appending nothing, when no row has that id.
fn finish_row(
    tx: &rusqlite::Transaction<'_>,
    (id, state, detail, now): (i64, LedgerState, &str, i64),
    audit: Option<&AuditRecord>,
) -> rusqlite::Result<Option<bool>> {
    // Only a pending row changes, so a repeated or late finish can never flip the outcome.
    let changed = tx
        .prepare_cached(
            "UPDATE ledger SET state = ?2, finished_at = ?3, detail = ?4 WHERE id = ?1 AND state = 'pending'",
        )?
        .execute(params![id, state.as_str(), now, detail])?
        > 0;
    let exists = changed
        || tx
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM ledger WHERE id = ?1)")?
            .query_row([id], |row| row.get(0))?;
    if !exists {
        return Ok(None);
    }
    if let Some(record) = audit {
        insert_audit(tx, record)?;
    }
    Ok(Some(changed))
}

/// A size or count the ledger stores as INTEGER.
fn as_integer(doing: &str, n: u64) -> Result<i64, StateError> {
    i64::try_from(n).map_err(|_| StateError::Query(format!("{doing}: {n} is too large")))
}

/// A count SQLite returned, which cannot be negative in a sound file.
fn as_count(doing: &str, n: i64) -> Result<u64, StateError> {
    u64::try_from(n).map_err(|_| StateError::Corrupt(format!("{doing}: negative count {n}")))
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
        self.db
            .run("revoking a token", |c| {
                c.prepare_cached(
                    "INSERT INTO revoked_tokens (token_id, revoked_until, reason) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (token_id) DO UPDATE SET \
                     revoked_until = max(revoked_tokens.revoked_until, excluded.revoked_until), \
                     reason = excluded.reason",
                )?
                .execute(params![token_id, until, reason])
            })
            .await?;
        Ok(())
    }

    async fn is_revoked(&self, token_id: &str, now: i64) -> Result<bool, StateError> {
        self.db
            .run("checking a revocation", |c| {
                c.prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE token_id = ?1 AND revoked_until >= ?2)",
                )?
                .query_row(params![token_id, now], |row| row.get(0))
            })
            .await
    }

    async fn purge_expired(&self, now: i64) -> Result<u64, StateError> {
        let purged = self
            .db
            .run("purging expired jti records and revocations", |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let jtis = tx.execute("DELETE FROM jti_claims WHERE keep_until < ?1", [now])?;
                let revocations = tx.execute("DELETE FROM revoked_tokens WHERE revoked_until < ?1", [now])?;
                tx.commit()?;
                Ok(jtis + revocations)
            })
            .await?;
        Ok(purged as u64)
    }

    async fn maintain(&self) -> Result<(), StateError> {
        self.checkpoint().await.map(|_| ())
    }

    async fn ledger_begin(&self, entry: &LedgerEntry) -> Result<i64, StateError> {
        let size = as_integer("recording an upload: size", entry.size)?;
        // The document goes to its own table (migration 7), in the same transaction.
        let marker = entry.provenance.as_ref().map(|_| rows::DOCUMENT_KEPT_APART);
        self.db
            .run("recording an upload", |c| {
                let transaction = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                transaction
                    .prepare_cached(
                        "INSERT INTO ledger (registry, project, version, filename, sha256, size, credential, publisher, \
                         signer, source_repository, provenance_kind, provenance, request_id, created_at, state) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, 'pending')",
                    )?
                    .execute(params![
                        entry.registry,
                        entry.project,
                        entry.version,
                        entry.filename,
                        entry.sha256,
                        size,
                        entry.credential,
                        entry.publisher,
                        entry.signer,
                        entry.source_repository,
                        entry.provenance_kind,
                        marker,
                        entry.request_id,
                        entry.created_at,
                    ])?;
                let id = transaction.last_insert_rowid();
                if let Some(document) = &entry.provenance {
                    transaction
                        .prepare_cached("INSERT INTO ledger_documents (ledger_id, document) VALUES (?1, ?2)")?
                        .execute(params![id, document])?;
                }
                transaction.commit()?;
                Ok(id)
            })
            .await
    }

    async fn ledger_finish(
        &self,
        id: i64,
        committed: bool,
        detail: &str,
        now: i64,
        audit: Option<&AuditRecord>,
    ) -> Result<(), StateError> {
        let state = if committed {
            LedgerState::Committed
        } else {
            LedgerState::Failed
        };
        let exists = self
            .db
            .run("finishing an upload", |c| {
                let transaction = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                if finish_row(&transaction, (id, state, detail, now), audit)?.is_none() {
                    return Ok(false);
                }
                transaction.commit()?;
                Ok(true)
            })
            .await?;
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
        self.db
            .run("looking up stored provenance", |c| {
                c.prepare_cached(select_stored_provenance!(
                    "WHERE registry = ?1 AND project = ?2 AND version = ?3 AND filename = ?4 \
                     AND state = 'committed' AND ledger.provenance IS NOT NULL \
                     ORDER BY created_at DESC, id DESC LIMIT 1"
                ))?
                .query_row(params![registry, project, version, filename], |row| {
                    Ok(rows::stored_provenance(row))
                })
                .optional()
            })
            .await?
            .transpose()
    }

    async fn project_provenance(&self, registry: &str, project: &str) -> Result<ProjectProvenance, StateError> {
        // One statement (one read snapshot) over the summary the commit trigger keeps
        // (migration 6): the count on every row, beside each source repository in the order
        // of its first committed upload (or on its own row with a NULL repository when there
        // is none). Two primary-key seeks and a range: the cost follows how many repositories
        // there are, not how many uploads.
        let rows = self
            .db
            .run("summarising the project's provenance", |c| {
                c.prepare_cached(
                    "SELECT COALESCE((SELECT uploads FROM provenance_uploads WHERE registry = ?1 AND project = ?2), 0), \
                            sources.source_repository \
                       FROM (SELECT 1) LEFT JOIN provenance_sources AS sources \
                         ON sources.registry = ?1 AND sources.project = ?2 \
                      ORDER BY sources.first_created_at, sources.first_ledger_id",
                )?
                .query_map(params![registry, project], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<rusqlite::Result<Vec<(i64, Option<String>)>>>()
            })
            .await?;
        rows::project_provenance(rows)
    }

    async fn ledger_entries(&self, registry: &str, project: &str) -> Result<Vec<LedgerRecord>, StateError> {
        self.db
            .run("listing ledger rows", |c| {
                c.prepare_cached(select_ledger!(
                    "WHERE registry = ?1 AND project = ?2 ORDER BY created_at, id"
                ))?
                .query_map(params![registry, project], |row| Ok(rows::ledger_record(row)))?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?
            .into_iter()
            .collect()
    }

    async fn stale_pending(&self, older_than: i64) -> Result<Vec<LedgerRecord>, StateError> {
        self.db
            .run("listing stale pending uploads", |c| {
                c.prepare_cached(select_ledger!(
                    "WHERE state = 'pending' AND created_at < ?1 ORDER BY created_at, id"
                ))?
                .query_map([older_than], |row| Ok(rows::ledger_record(row)))?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?
            .into_iter()
            .collect()
    }

    async fn record_dependencies(&self, ledger_id: i64, depends_on: &[String]) -> Result<(), StateError> {
        // One statement for the whole list (SQLite's json_each reads it as rows).
        let names =
            serde_json::to_string(depends_on).map_err(|e| StateError::Query(format!("recording dependencies: {e}")))?;
        self.db
            .run("recording dependencies", |c| {
                c.prepare_cached(
                    "INSERT OR IGNORE INTO dependencies (ledger_id, depends_on) SELECT ?1, value FROM json_each(?2)",
                )?
                .execute(params![ledger_id, names])
            })
            .await?;
        Ok(())
    }

    async fn dependents(&self, registry: &str, project: &str) -> Result<u64, StateError> {
        // Committed uploads of other projects naming this one, unless that version or the
        // whole dependent project has been deleted since.
        let count = self
            .db
            .run("counting dependents", |c| {
                c.prepare_cached(
                    "SELECT COUNT(DISTINCT l.project) FROM dependencies d JOIN ledger l ON l.id = d.ledger_id \
                     WHERE d.depends_on = ?2 AND l.registry = ?1 AND l.project != ?2 AND l.state = 'committed' \
                     AND NOT EXISTS (SELECT 1 FROM tombstones t WHERE t.registry = l.registry AND t.project = l.project \
                         AND (t.kind = 'project' OR (t.kind = 'version' AND t.version = l.version)))",
                )?
                .query_row(params![registry, project], |row| row.get(0))
            })
            .await?;
        as_count("counting dependents", count)
    }

    async fn published_at(
        &self,
        registry: &str,
        project: &str,
        version: Option<&str>,
    ) -> Result<Option<i64>, StateError> {
        self.db
            .run("looking up a publish time", |c| {
                c.prepare_cached(
                    "SELECT MIN(created_at) FROM ledger WHERE registry = ?1 AND project = ?2 \
                     AND (?3 IS NULL OR version = ?3) AND state = 'committed'",
                )?
                .query_row(params![registry, project, version], |row| row.get(0))
            })
            .await
    }

    async fn add_downloads(&self, counts: &[(DownloadKey, u64)]) -> Result<(), StateError> {
        let counts = counts
            .iter()
            .map(|(key, count)| Ok((key, as_integer("counting downloads", *count)?)))
            .collect::<Result<Vec<_>, StateError>>()?;
        self.db
            .run("counting downloads", |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                {
                    let mut add = tx.prepare_cached(
                        "INSERT INTO downloads (registry, project, version, day, count) VALUES (?1, ?2, ?3, ?4, ?5) \
                         ON CONFLICT (registry, project, version, day) DO UPDATE SET count = count + excluded.count",
                    )?;
                    for (key, count) in &counts {
                        add.execute(params![key.registry, key.project, key.version, key.day, count])?;
                    }
                }
                tx.commit()
            })
            .await
    }

    async fn downloads_since(
        &self,
        registry: &str,
        project: &str,
        version: Option<&str>,
        since_day: i64,
    ) -> Result<u64, StateError> {
        let total = self
            .db
            .run("summing downloads", |c| {
                c.prepare_cached(
                    "SELECT COALESCE(SUM(count), 0) FROM downloads WHERE registry = ?1 AND project = ?2 \
                     AND (?3 IS NULL OR version = ?3) AND day >= ?4",
                )?
                .query_row(params![registry, project, version, since_day], |row| row.get(0))
            })
            .await?;
        as_count("summing downloads", total)
    }

    async fn add_tombstone(&self, tombstone: &Tombstone) -> Result<(), StateError> {
        let (kind, version, filename) = match &tombstone.kind {
            TombstoneKind::Project => ("project", None, None),
            TombstoneKind::Version(v) => ("version", Some(v.as_str()), None),
            TombstoneKind::File { version, filename } => ("file", Some(version.as_str()), Some(filename.as_str())),
        };
        self.db
            .run("recording a tombstone", |c| {
                c.prepare_cached(
                    "INSERT INTO tombstones (registry, project, kind, version, filename, deleted_at, request_id, \
                     actor, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?
                .execute(params![
                    tombstone.registry,
                    tombstone.project,
                    kind,
                    version,
                    filename,
                    tombstone.deleted_at,
                    tombstone.request_id,
                    tombstone.actor,
                    tombstone.reason,
                ])
            })
            .await?;
        Ok(())
    }

    async fn remove_tombstones(&self, request_id: &str) -> Result<u64, StateError> {
        let removed = self
            .db
            .run("removing a request's tombstones", |c| {
                c.prepare_cached("DELETE FROM tombstones WHERE request_id = ?1")?
                    .execute([request_id])
            })
            .await?;
        Ok(removed as u64)
    }

    async fn tombstones(&self, registry: &str, project: &str) -> Result<Vec<Tombstone>, StateError> {
        self.db
            .run("listing tombstones", |c| {
                c.prepare_cached(
                    "SELECT registry, project, kind, version, filename, deleted_at, request_id, actor, reason \
                     FROM tombstones WHERE registry = ?1 AND project = ?2 ORDER BY deleted_at, id",
                )?
                .query_map(params![registry, project], |row| Ok(rows::tombstone(row)))?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?
            .into_iter()
            .collect()
    }

    async fn append_audit(&self, record: &AuditRecord) -> Result<i64, StateError> {
        self.db
            .run("appending to the audit log", |c| insert_audit(c, record))
            .await
    }

    async fn audit_of_project(
        &self,
        registry: &str,
        project: &str,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StateError> {
        self.db
            .run("reading the audit log", |c| {
                c.prepare_cached(
                    "SELECT at, request_id, registry, project, actor, action, target, outcome, rule, rules_revision, \
                     code, reason, line FROM audit WHERE registry = ?1 AND project = ?2 ORDER BY id DESC LIMIT ?3",
                )?
                .query_map(params![registry, project, limit], |row| Ok(rows::audit_record(row)))?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?
            .into_iter()
            .collect()
    }
}

#[cfg(test)]
mod tests;
