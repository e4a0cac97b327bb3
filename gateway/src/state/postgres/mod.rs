//! The shared [`StateStore`] for several replicas: one PostgreSQL database.
//!
//! Every replica of a deployment points at the same database, so a `jti` used on one replica
//! is a replay on every other, a tombstone made through one is enforced by all, and download
//! counts add up. The schema lives in `migrations/postgres/` and is compiled into the binary;
//! it is applied by sqlx's migrator, which holds a PostgreSQL advisory lock while it runs, so
//! replicas starting together apply each migration once.
//!
//! The pool connects lazily: a gateway whose database is down still starts, every call fails
//! with [`StateError::Unavailable`] (the write path refuses with `state_unavailable`, reads go
//! on), and the first call after the database is back applies the migrations and succeeds.
//! [`StateStore::maintain`], called every second, retries on its own meanwhile.
//!
//! Connections are plain TCP or a Unix socket: the build carries no TLS stack for PostgreSQL
//! (sqlx's TLS features would bring OpenSSL or a second rustls configuration), so the
//! database belongs on loopback or a private network.

mod feed;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::MigrateError;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::OnceCell;

use crate::clock::unix_now;

use super::rows::{self, select_ledger, select_stored_provenance};
use super::{
    AuditRecord, DownloadKey, LedgerEntry, LedgerRecord, LedgerState, ProjectProvenance, StateError, StateStore,
    StoredProvenance, Tombstone, TombstoneKind,
};

/// The embedded migrations, in order. Never edit an applied one; append a new version.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "state", include_str!("../../../migrations/postgres/0001_state.sql")),
    (
        2,
        "tuf_feed",
        include_str!("../../../migrations/postgres/0002_tuf_feed.sql"),
    ),
    (
        3,
        "provenance_summary",
        include_str!("../../../migrations/postgres/0003_provenance_summary.sql"),
    ),
    (
        4,
        "ledger_documents",
        include_str!("../../../migrations/postgres/0004_ledger_documents.sql"),
    ),
];

/// How to reach the database and how long to wait for it.
#[derive(Clone)]
pub struct PostgresSettings {
    /// The connection string (`postgres://user:password@host:port/db` or key=value form).
    /// Secret: never logged, redacted by `Debug`.
    pub url: String,
    /// Most connections this replica holds open.
    pub pool_size: u32,
    /// How long a call waits for a connection (including connecting) before it fails as
    /// unavailable.
    pub acquire_timeout: Duration,
    /// Server-side limit on one statement (`statement_timeout`).
    pub statement_timeout: Duration,
}

impl fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSettings")
            .field("url", &"<redacted>")
            .field("pool_size", &self.pool_size)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

/// The PostgreSQL-backed [`StateStore`].
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// Set once the migrations have been applied by this process.
    migrated: std::sync::Arc<OnceCell<()>>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("migrated", &self.migrated.initialized())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// A store that connects on first use; needs no runtime and no reachable database. Fails
    /// only when the connection string cannot be parsed ([`StateError::Unavailable`], without
    /// repeating the string, which may hold a password).
    pub fn connect_lazy(settings: &PostgresSettings) -> Result<PostgresStore, StateError> {
        let statement_timeout = settings.statement_timeout.as_millis().to_string();
        let options = PgConnectOptions::from_str(&settings.url)
            .map_err(|e| {
                StateError::Unavailable(format!("the PostgreSQL connection string is invalid: {}", redact(&e)))
            })?
            .application_name("portcullis")
            .options([("statement_timeout", statement_timeout.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(settings.pool_size.max(1))
            .min_connections(0)
            .acquire_timeout(settings.acquire_timeout)
            // No maintenance task: the pool is built outside any runtime, and a connection
            // that went bad is found by the test before use.
            .idle_timeout(None)
            .max_lifetime(None)
            .test_before_acquire(true)
            .connect_lazy_with(options);
        Ok(PostgresStore {
            pool,
            migrated: std::sync::Arc::new(OnceCell::new()),
        })
    }

    /// Connects now and applies the migrations; fails when the database cannot be reached.
    pub async fn open(settings: &PostgresSettings) -> Result<PostgresStore, StateError> {
        let store = PostgresStore::connect_lazy(settings)?;
        store.ready().await?;
        Ok(store)
    }

    /// Applies the embedded migrations unless this process already has; every call goes
    /// through here, so the first one after the database comes back migrates it.
    pub async fn ready(&self) -> Result<&PgPool, StateError> {
        self.migrated
            .get_or_try_init(|| async {
                super::migrations::migrator(MIGRATIONS)
                    .run(&self.pool)
                    .await
                    .map_err(migrate_error)?;
                tracing::info!("PostgreSQL state store ready");
                Ok::<(), StateError>(())
            })
            .await?;
        Ok(&self.pool)
    }

    /// Closes the pool, waiting for in-flight statements; later calls fail as unavailable.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Like [`StateStore::claim_jti`], with the time used to decide whether an existing record
    /// has expired (and may be reclaimed) given explicitly.
    pub async fn claim_jti_at(&self, issuer: &str, jti: &str, keep_until: i64, now: i64) -> Result<bool, StateError> {
        // INSERT ... ON CONFLICT takes the row lock and re-checks the WHERE on the newest row
        // version, so of two concurrent claims (on any replicas) exactly one wins.
        let done = sqlx::query(
            "INSERT INTO jti_claims (issuer, jti, keep_until) VALUES ($1, $2, $3) \
             ON CONFLICT (issuer, jti) DO UPDATE SET keep_until = EXCLUDED.keep_until \
             WHERE jti_claims.keep_until < $4",
        )
        .bind(issuer)
        .bind(jti)
        .bind(keep_until)
        .bind(now)
        .execute(self.ready().await?)
        .await
        .map_err(|e| in_context("claiming a jti", e))?;
        Ok(done.rows_affected() == 1)
    }
}

/// The error's text with anything that looks like a connection string's password removed.
fn redact(e: &sqlx::Error) -> String {
    let text = e.to_string();
    if text.contains("://") || text.contains("password") {
        "unparseable connection string".to_owned()
    } else {
        text
    }
}

#[async_trait]
impl StateStore for PostgresStore {
    /// Uses the system clock to decide whether an existing record has expired; see
    /// [`PostgresStore::claim_jti_at`].
    async fn claim_jti(&self, issuer: &str, jti: &str, keep_until: i64) -> Result<bool, StateError> {
        self.claim_jti_at(issuer, jti, keep_until, unix_now()).await
    }

    /// Revoking an already revoked token keeps the later of the two end times.
    async fn revoke_token(&self, token_id: &str, until: i64, reason: &str) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO revoked_tokens (token_id, revoked_until, reason) VALUES ($1, $2, $3) \
             ON CONFLICT (token_id) DO UPDATE SET \
             revoked_until = GREATEST(revoked_tokens.revoked_until, EXCLUDED.revoked_until), \
             reason = EXCLUDED.reason",
        )
        .bind(token_id)
        .bind(until)
        .bind(reason)
        .execute(self.ready().await?)
        .await
        .map_err(|e| in_context("revoking a token", e))?;
        Ok(())
    }

    async fn is_revoked(&self, token_id: &str, now: i64) -> Result<bool, StateError> {
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE token_id = $1 AND revoked_until >= $2)",
        )
        .bind(token_id)
        .bind(now)
        .fetch_one(self.ready().await?)
        .await
        .map_err(|e| in_context("checking a revocation", e))
    }

    async fn purge_expired(&self, now: i64) -> Result<u64, StateError> {
        let mut tx = self
            .ready()
            .await?
            .begin()
            .await
            .map_err(|e| in_context("starting the purge", e))?;
        let jtis = sqlx::query("DELETE FROM jti_claims WHERE keep_until < $1")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| in_context("purging jti records", e))?
            .rows_affected();
        let revocations = sqlx::query("DELETE FROM revoked_tokens WHERE revoked_until < $1")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| in_context("purging revocations", e))?
            .rows_affected();
        tx.commit().await.map_err(|e| in_context("committing the purge", e))?;
        Ok(jtis + revocations)
    }

    /// Applies the migrations if they have not been yet (a start while the database was
    /// down); nothing else: PostgreSQL's autovacuum does the housekeeping.
    async fn maintain(&self) -> Result<(), StateError> {
        if self.migrated.initialized() {
            return Ok(());
        }
        self.ready().await.map(|_| ())
    }

    async fn ledger_begin(&self, entry: &LedgerEntry) -> Result<i64, StateError> {
        let size = i64::try_from(entry.size)
            .map_err(|_| StateError::Query(format!("recording an upload: size {} is too large", entry.size)))?;
        if entry.provenance.is_some() != entry.provenance_kind.is_some() {
            return Err(StateError::Query(
                "recording an upload: provenance and its kind must be both set or both unset".to_owned(),
            ));
        }
        // One statement: the row, and its document in its own table (migration 4).
        sqlx::query_scalar::<_, i64>(
            "WITH row AS ( \
                 INSERT INTO ledger (registry, project, version, filename, sha256, size, credential, publisher, signer, \
                 source_repository, provenance_kind, provenance, request_id, created_at, state) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 'pending') RETURNING id \
             ), document AS ( \
                 INSERT INTO ledger_documents (ledger_id, document) SELECT id, $15 FROM row WHERE $15::BYTEA IS NOT NULL \
             ) SELECT id FROM row",
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
        .bind(entry.provenance.as_ref().map(|_| rows::DOCUMENT_KEPT_APART))
        .bind(entry.request_id.as_str())
        .bind(entry.created_at)
        .bind(entry.provenance.as_deref())
        .fetch_one(self.ready().await?)
        .await
        .map_err(|e| in_context("recording an upload", e))
    }

    async fn ledger_finish(
        &self,
        id: i64,
        committed: bool,
        detail: &str,
        now: i64,
        audit: Option<&AuditRecord>,
    ) -> Result<(), StateError> {
        let doing = "finishing an upload";
        let state = if committed {
            LedgerState::Committed
        } else {
            LedgerState::Failed
        };
        let mut tx = self.ready().await?.begin().await.map_err(|e| in_context(doing, e))?;
        finish_row(&mut tx, (id, state, detail, now), audit, doing).await?;
        tx.commit().await.map_err(|e| in_context(doing, e))
    }

    async fn provenance_of(
        &self,
        registry: &str,
        project: &str,
        version: &str,
        filename: &str,
    ) -> Result<Option<StoredProvenance>, StateError> {
        let row = sqlx::query(select_stored_provenance!(
            "WHERE registry = $1 AND project = $2 AND version = $3 AND filename = $4 \
             AND state = 'committed' AND ledger.provenance IS NOT NULL \
             ORDER BY created_at DESC, id DESC LIMIT 1"
        ))
        .bind(registry)
        .bind(project)
        .bind(version)
        .bind(filename)
        .fetch_optional(self.ready().await?)
        .await
        .map_err(|e| in_context("looking up stored provenance", e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        rows::stored_provenance(&row).map(Some)
    }

    async fn project_provenance(&self, registry: &str, project: &str) -> Result<ProjectProvenance, StateError> {
        // One statement (one snapshot, one round trip) over the summary the commit trigger
        // keeps (migration 3): the count on every row, beside each source repository in the
        // order of its first committed upload (a NULL repository on the only row when there
        // is none).
        let rows = sqlx::query_as::<_, (i64, Option<String>)>(
            "SELECT COALESCE((SELECT uploads FROM provenance_uploads WHERE registry = $1 AND project = $2), 0), \
                    sources.source_repository \
               FROM (SELECT 1) AS one LEFT JOIN provenance_sources AS sources \
                 ON sources.registry = $1 AND sources.project = $2 \
              ORDER BY sources.first_created_at, sources.first_ledger_id",
        )
        .bind(registry)
        .bind(project)
        .fetch_all(self.ready().await?)
        .await
        .map_err(|e| in_context("summarising the project's provenance", e))?;
        rows::project_provenance(rows)
    }

    async fn ledger_entries(&self, registry: &str, project: &str) -> Result<Vec<LedgerRecord>, StateError> {
        let rows = sqlx::query(select_ledger!(
            "WHERE registry = $1 AND project = $2 ORDER BY created_at, id"
        ))
        .bind(registry)
        .bind(project)
        .fetch_all(self.ready().await?)
        .await
        .map_err(|e| in_context("listing ledger rows", e))?;
        rows.iter().map(rows::ledger_record).collect()
    }

    async fn stale_pending(&self, older_than: i64) -> Result<Vec<LedgerRecord>, StateError> {
        let rows = sqlx::query(select_ledger!(
            "WHERE state = 'pending' AND created_at < $1 ORDER BY created_at, id"
        ))
        .bind(older_than)
        .fetch_all(self.ready().await?)
        .await
        .map_err(|e| in_context("listing stale pending uploads", e))?;
        rows.iter().map(rows::ledger_record).collect()
    }

    async fn record_dependencies(&self, ledger_id: i64, depends_on: &[String]) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO dependencies (ledger_id, depends_on) SELECT $1, name FROM UNNEST($2::TEXT[]) AS n(name) \
             ON CONFLICT DO NOTHING",
        )
        .bind(ledger_id)
        .bind(depends_on)
        .execute(self.ready().await?)
        .await
        .map_err(|e| in_context("recording dependencies", e))?;
        Ok(())
    }

    async fn dependents(&self, registry: &str, project: &str) -> Result<u64, StateError> {
        let count = sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(DISTINCT l.project) FROM dependencies d JOIN ledger l ON l.id = d.ledger_id \
             WHERE d.depends_on = $2 AND l.registry = $1 AND l.project <> $2 AND l.state = 'committed' \
             AND NOT EXISTS (SELECT 1 FROM tombstones t WHERE t.registry = l.registry AND t.project = l.project \
                 AND (t.kind = 'project' OR (t.kind = 'version' AND t.version = l.version)))",
        )
        .bind(registry)
        .bind(project)
        .fetch_one(self.ready().await?)
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
            "SELECT MIN(created_at) FROM ledger WHERE registry = $1 AND project = $2 \
             AND ($3::TEXT IS NULL OR version = $3::TEXT) AND state = 'committed'",
        )
        .bind(registry)
        .bind(project)
        .bind(version)
        .fetch_one(self.ready().await?)
        .await
        .map_err(|e| in_context("looking up a publish time", e))
    }

    async fn add_downloads(&self, counts: &[(DownloadKey, u64)]) -> Result<(), StateError> {
        let mut tx = self
            .ready()
            .await?
            .begin()
            .await
            .map_err(|e| in_context("counting downloads", e))?;
        for (key, count) in counts {
            let count = i64::try_from(*count)
                .map_err(|_| StateError::Query(format!("counting downloads: {count} is too large")))?;
            sqlx::query(
                "INSERT INTO downloads (registry, project, version, day, count) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (registry, project, version, day) DO UPDATE SET count = downloads.count + EXCLUDED.count",
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
            "SELECT COALESCE(SUM(count), 0)::BIGINT FROM downloads WHERE registry = $1 AND project = $2 \
             AND ($3::TEXT IS NULL OR version = $3::TEXT) AND day >= $4",
        )
        .bind(registry)
        .bind(project)
        .bind(version)
        .bind(since_day)
        .fetch_one(self.ready().await?)
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
        .execute(self.ready().await?)
        .await
        .map_err(|e| in_context("recording a tombstone", e))?;
        Ok(())
    }

    async fn remove_tombstones(&self, request_id: &str) -> Result<u64, StateError> {
        let done = sqlx::query("DELETE FROM tombstones WHERE request_id = $1")
            .bind(request_id)
            .execute(self.ready().await?)
            .await
            .map_err(|e| in_context("removing a request's tombstones", e))?;
        Ok(done.rows_affected())
    }

    async fn tombstones(&self, registry: &str, project: &str) -> Result<Vec<Tombstone>, StateError> {
        let rows = sqlx::query(
            "SELECT registry, project, kind, version, filename, deleted_at, request_id, actor, reason \
             FROM tombstones WHERE registry = $1 AND project = $2 ORDER BY deleted_at, id",
        )
        .bind(registry)
        .bind(project)
        .fetch_all(self.ready().await?)
        .await
        .map_err(|e| in_context("listing tombstones", e))?;
        rows.iter().map(rows::tombstone).collect()
    }

    async fn append_audit(&self, record: &AuditRecord) -> Result<i64, StateError> {
        insert_audit(self.ready().await?, record)
            .await
            .map_err(|e| in_context("appending to the audit log", e))
    }

    async fn audit_of_project(
        &self,
        registry: &str,
        project: &str,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StateError> {
        let rows = sqlx::query(
            "SELECT at, request_id, registry, project, actor, action, target, outcome, rule, rules_revision, \
             code, reason, line FROM audit WHERE registry = $1 AND project = $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(registry)
        .bind(project)
        .bind(i64::from(limit))
        .fetch_all(self.ready().await?)
        .await
        .map_err(|e| in_context("reading the audit log", e))?;
        rows.iter().map(rows::audit_record).collect()
    }
}

/// Appends an audit record through `executor` (the pool or a transaction); returns its id.
async fn insert_audit<'e>(executor: impl sqlx::PgExecutor<'e>, record: &AuditRecord) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar::<_, i64>(
        "INSERT INTO audit (at, request_id, registry, project, actor, action, target, outcome, rule, \
         rules_revision, code, reason, line) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
         RETURNING id",
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
    .fetch_one(executor)
    .await
}

/// Finishes pending ledger row `id` as `state` with its `detail` and time, and appends `audit`,
/// inside transaction `tx`: whether the row changed (`false`: it was finished before, and
/// keeps its outcome). An id that names no row is a [`StateError::Query`] (`doing` names the
/// operation in errors).
async fn finish_row(
    tx: &mut sqlx::PgConnection,
    (id, state, detail, now): (i64, LedgerState, &str, i64),
    audit: Option<&AuditRecord>,
    doing: &str,
) -> Result<bool, StateError> {
    // Only a pending row changes, so a repeated or late finish can never flip the outcome.
    let changed =
        sqlx::query("UPDATE ledger SET state = $2, finished_at = $3, detail = $4 WHERE id = $1 AND state = 'pending'")
            .bind(id)
            .bind(state.as_str())
            .bind(now)
            .bind(detail)
            .execute(&mut *tx)
            .await
            .map_err(|e| in_context(doing, e))?
            .rows_affected()
            > 0;
    let exists = changed
        || sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM ledger WHERE id = $1)")
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| in_context(doing, e))?;
    if !exists {
        return Err(StateError::Query(format!("{doing}: no ledger row has id {id}")));
    }
    if let Some(record) = audit {
        insert_audit(&mut *tx, record).await.map_err(|e| in_context(doing, e))?;
    }
    Ok(changed)
}

/// Classifies a sqlx error by SQLSTATE class, prefixing what was being done: connection
/// trouble, resource exhaustion, operator intervention (shutdown, statement timeout) and
/// serialisation failures are [`StateError::Unavailable`]; data corruption is
/// [`StateError::Corrupt`]; anything else is [`StateError::Query`].
fn in_context(doing: &str, e: sqlx::Error) -> StateError {
    let message = format!("{doing}: {e}");
    match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            let class = code.get(..2).unwrap_or_default();
            match class {
                "08" | "53" | "57" | "40" | "25" | "58" => StateError::Unavailable(message),
                "XX" => StateError::Corrupt(message),
                _ => StateError::Query(message),
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
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
/// error; a history that does not match the embedded migrations means a foreign database.
fn migrate_error(e: MigrateError) -> StateError {
    let doing = "migrating the PostgreSQL state store";
    match e {
        MigrateError::Execute(inner) | MigrateError::ExecuteMigration(inner, _) => in_context(doing, inner),
        other => StateError::Corrupt(format!("{doing}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_never_show_the_connection_string() {
        let settings = PostgresSettings {
            url: "postgres://portcullis:hunter2@db.internal/portcullis".to_owned(),
            pool_size: 4,
            acquire_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(5),
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn a_lazy_store_needs_no_runtime_and_no_database() {
        let settings = PostgresSettings {
            url: "postgres://portcullis:secret@127.0.0.1:1/portcullis".to_owned(),
            pool_size: 2,
            acquire_timeout: Duration::from_millis(300),
            statement_timeout: Duration::from_secs(5),
        };
        let store = PostgresStore::connect_lazy(&settings).expect("a valid connection string");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let err = runtime
            .block_on(store.claim_jti("iss", "jti", 0))
            .expect_err("nothing listens on port 1");
        assert!(matches!(err, StateError::Unavailable(_)), "{err:?}");
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn an_unparseable_connection_string_is_refused_without_echoing_it() {
        let settings = PostgresSettings {
            url: "postgres://root:secret@host:not-a-port/db".to_owned(),
            pool_size: 1,
            acquire_timeout: Duration::from_secs(1),
            statement_timeout: Duration::from_secs(1),
        };
        let err = PostgresStore::connect_lazy(&settings).expect_err("the port is not a number");
        assert!(!err.to_string().contains("secret"), "{err}");
    }
}
