//! The SQLite schema: the embedded migrations, applied at open by sqlx's migrator on a
//! connection of its own, closed before the store opens its own. sqlx's migrator keeps the
//! history (`_sqlx_migrations`: each version with the checksum of its SQL) that every
//! existing database already has, and refuses a history that differs from this build's.

use std::path::Path;

use sqlx::migrate::MigrateError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions as _, Connection as _};

use super::connection::BUSY_TIMEOUT;
use crate::state::StateError;

/// The embedded migrations, in order. Never edit an applied one; append a new version.
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "state", include_str!("../../../migrations/sqlite/0001_state.sql")),
    (2, "ledger", include_str!("../../../migrations/sqlite/0002_ledger.sql")),
    (
        3,
        "deletion",
        include_str!("../../../migrations/sqlite/0003_deletion.sql"),
    ),
    (
        4,
        "lookup_indexes",
        include_str!("../../../migrations/sqlite/0004_lookup_indexes.sql"),
    ),
    (
        5,
        "tuf_feed",
        include_str!("../../../migrations/sqlite/0005_tuf_feed.sql"),
    ),
    (
        6,
        "provenance_summary",
        include_str!("../../../migrations/sqlite/0006_provenance_summary.sql"),
    ),
    (
        7,
        "ledger_documents",
        include_str!("../../../migrations/sqlite/0007_ledger_documents.sql"),
    ),
];

/// Creates the file at `path` if needed, in WAL mode, and applies the missing migrations.
pub(super) async fn apply(path: &Path) -> Result<(), StateError> {
    apply_some(path, MIGRATIONS).await
}

/// Applies `migrations` (a prefix of [`MIGRATIONS`]; tests make older databases with it).
pub(super) async fn apply_some(
    path: &Path,
    migrations: &[(i64, &'static str, &'static str)],
) -> Result<(), StateError> {
    let doing = format!("migrating {}", path.display());
    let mut connection = connect_options(path)
        .connect()
        .await
        .map_err(|e| classify(&format!("opening {}", path.display()), e))?;
    let applied = crate::state::migrations::migrator(migrations)
        .run(&mut connection)
        .await;
    let closed = connection.close().await;
    applied.map_err(|e| match e {
        MigrateError::Execute(inner) | MigrateError::ExecuteMigration(inner, _) => classify(&doing, inner),
        other => StateError::Corrupt(format!("{doing}: {other}")),
    })?;
    closed.map_err(|e| classify(&doing, e))
}

/// How the migrator's connection opens the file: created if missing, WAL mode (persistent,
/// so the store's connection finds it set).
fn connect_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true)
}

// SQLite primary result codes (the low byte of an extended code).
const SQLITE_PERM: i64 = 3;
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;
const SQLITE_READONLY: i64 = 8;
const SQLITE_IOERR: i64 = 10;
const SQLITE_CORRUPT: i64 = 11;
const SQLITE_FULL: i64 = 13;
const SQLITE_CANTOPEN: i64 = 14;
const SQLITE_NOTADB: i64 = 26;

/// Classifies an error of the migrator's connection, prefixing what was being done.
fn classify(doing: &str, e: sqlx::Error) -> StateError {
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
        sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed | sqlx::Error::Configuration(_) => {
            StateError::Unavailable(message)
        }
        _ => StateError::Query(message),
    }
}
