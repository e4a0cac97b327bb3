//! Folding the write-ahead log back into the database, on a connection of its own.
//!
//! SQLite's automatic checkpoint is off on the store's connection: it would sync the disk
//! inside whichever upload's commit crossed its threshold, on a proxy thread. Instead the
//! store's housekeeping calls [`Checkpointer::run`] every second, on the runtime's blocking
//! pool, with this second connection, so the store's callers keep writing meanwhile (in WAL
//! mode a checkpoint and a writer run side by side).
//!
//! A passive checkpoint copies what it can without waiting for anyone. Once the whole log is
//! in the database and no reader needs it, the next commit starts the log over from its
//! beginning, writing pages the file and the kernel's page cache already hold: measured, that
//! costs less than truncating the log to nothing and growing it again, block by block, at
//! every checkpoint (bench/README.md). `journal_size_limit` trims a log that a burst grew past
//! [`LOG_KEPT_BYTES`] back to that size when it starts over. A log that cannot start over
//! because a reader kept its snapshot (a backup, an operator's shell) only grows; past
//! [`LOG_TRUNCATE_BYTES`] the checkpoint waits for the readers (up to the busy timeout) and
//! truncates it.

use std::path::Path;
use std::sync::{Arc, Mutex};

use super::connection::{in_context, BUSY_TIMEOUT};
use crate::state::StateError;

/// The log's size kept between checkpoints (`journal_size_limit`).
pub(super) const LOG_KEPT_BYTES: i64 = 32 << 20;
/// Above this size the log is checkpointed and truncated, waiting for readers.
pub(super) const LOG_TRUNCATE_BYTES: u64 = 64 << 20;

/// How a checkpoint may treat readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Copy what can be copied; wait for no one.
    Passive,
    /// Wait for readers, copy everything, truncate the log to nothing.
    Truncate,
}

/// The checkpoint's connection. Cloning shares it.
#[derive(Debug, Clone)]
pub(super) struct Checkpointer {
    connection: Arc<Mutex<Option<rusqlite::Connection>>>,
}

impl Checkpointer {
    /// Takes a connection to the store's file (pragmas set) for checkpoints only.
    pub(super) fn new(connection: rusqlite::Connection) -> rusqlite::Result<Checkpointer> {
        connection.busy_timeout(BUSY_TIMEOUT)?;
        connection.pragma_update(None, "wal_autocheckpoint", 0)?;
        Ok(Checkpointer {
            connection: Arc::new(Mutex::new(Some(connection))),
        })
    }

    /// Checkpoints in `mode` on the blocking pool; whether the whole log is now in the
    /// database.
    async fn checkpoint(&self, mode: Mode) -> Result<bool, StateError> {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            let doing = "checkpointing the write-ahead log";
            let guard = connection.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let connection = guard
                .as_ref()
                .ok_or_else(|| StateError::Unavailable(format!("{doing}: the state store is closed")))?;
            let pragma = match mode {
                Mode::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
                Mode::Truncate => "PRAGMA wal_checkpoint(TRUNCATE)",
            };
            // (busy, frames in the log, frames copied); -1 frames when the file is not in WAL mode.
            let (busy, log, copied): (i64, i64, i64) = connection
                .query_row(pragma, [], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                .map_err(|e| in_context(doing, e))?;
            Ok(busy == 0 && log == copied)
        })
        .await
        .map_err(|e| StateError::Unavailable(format!("checkpointing the write-ahead log: {e}")))?
    }

    /// The housekeeping step: truncates a log grown past `truncate_over` bytes (at `path`),
    /// else copies it passively.
    pub(super) async fn run(&self, log_path: &Path, truncate_over: u64) -> Result<bool, StateError> {
        let size = tokio::fs::metadata(log_path).await.map_or(0, |m| m.len());
        self.checkpoint(if size > truncate_over {
            Mode::Truncate
        } else {
            Mode::Passive
        })
        .await
    }

    /// Closes the connection; later checkpoints fail as unavailable.
    pub(super) fn close(&self) {
        let connection = self
            .connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(connection) = connection {
            if let Err((_, e)) = connection.close() {
                tracing::warn!(error = %e, "closing the state store's checkpoint connection");
            }
        }
    }
}
