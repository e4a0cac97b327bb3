//! Folding the write-ahead log back into the database, on a connection of its own.
//!
//! SQLite's automatic checkpoint is off on the store's connection: it would sync the disk
//! inside whichever upload's commit crossed its threshold, on a proxy thread. Instead the
//! store's housekeeping calls [`Checkpointer::run`] every [`crate::state::MAINTAIN_INTERVAL`],
//! on the runtime's blocking pool, with this second connection.
//!
//! First a passive checkpoint copies what it can while the store's callers keep writing (in
//! WAL mode a checkpoint and a writer run side by side). Once the whole log is in the database
//! and no reader needs it, the next commit that begins starts the log over from its beginning,
//! writing pages the file and the kernel's page cache already hold; `journal_size_limit` trims
//! a log grown past [`LOG_KEPT_BYTES`] back to that size then. Under steady writes that does not
//! happen by itself (a commit whose transaction began while the copy ran appends after it), so
//! once the log holds more than [`TRUNCATE_FRAMES`] pages the checkpoint takes the store's
//! connection, copies the little that is left and truncates the log. The store's callers wait
//! on the connection's lock meanwhile, parked, and go on the moment it is released; SQLite's
//! own lock would have had the checkpoint race them for it. It never waits for another
//! process: a reader's snapshot (a backup, an operator's shell) or another writer makes it give
//! up at once, and the next one tries again. (Before, it could wait up to five seconds for such
//! a reader, holding the store's writers all that time, at each tick.)
//!
//! Measured at the bench's 1 700 uploads a second (bench/README.md): the truncation with the
//! connection held adds about 2 ms to an upload's p99 latency there. Tried and not kept:
//! starting the log over every 100 ms, so that it stays inside the file it keeps, saved 5–10%
//! of an upload's CPU but doubled its p99 latency.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::connection::{in_context, InThread};
use crate::state::StateError;

/// The log's size kept when it starts over (`journal_size_limit`).
pub(super) const LOG_KEPT_BYTES: i64 = 32 << 20;
/// Pages in the log (64 MiB at SQLite's 4 KiB pages) past which a checkpoint truncates it,
/// holding the store's callers for the last copy.
pub(super) const TRUNCATE_FRAMES: i64 = 16 * 1024;

/// How a checkpoint may treat readers and writers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Copy what can be copied; wait for no one.
    Passive,
    /// Copy everything and truncate the log; run with the store's callers held, and failing
    /// busy at once when another process holds a reader or the write lock.
    Truncate,
}

/// What a checkpoint did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoint {
    /// The whole log, still short, is in the database: the next commit that begins after this
    /// starts it over.
    Copied,
    /// The log was copied with the store's callers held and truncated.
    Truncated,
    /// Part of the log is still to copy: another process holds a reader or the write lock, or
    /// the store went on writing into a log still short.
    Partial,
}

/// The checkpoint's connection. Cloning shares it.
#[derive(Debug, Clone)]
pub(super) struct Checkpointer {
    connection: Arc<Mutex<Option<rusqlite::Connection>>>,
}

impl Checkpointer {
    /// Takes a connection to the store's file (pragmas set) for checkpoints only. It never
    /// waits for a lock: a checkpoint that meets one is partial and the next one tries again.
    pub(super) fn new(connection: rusqlite::Connection) -> rusqlite::Result<Checkpointer> {
        connection.busy_timeout(Duration::ZERO)?;
        connection.pragma_update(None, "wal_autocheckpoint", 0)?;
        Ok(Checkpointer {
            connection: Arc::new(Mutex::new(Some(connection))),
        })
    }

    /// The housekeeping step, on the blocking pool: a passive copy, then, when the log holds
    /// more than `truncate_frames` pages, the rest with `writers` (the store's connection)
    /// held, truncating the log.
    pub(super) async fn run(&self, writers: &InThread, truncate_frames: i64) -> Result<Checkpoint, StateError> {
        let connection = self.connection.clone();
        let writers = writers.clone();
        tokio::task::spawn_blocking(move || {
            let guard = connection.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let connection = guard.as_ref().ok_or_else(|| {
                StateError::Unavailable("checkpointing the write-ahead log: the state store is closed".to_owned())
            })?;
            let (copied, frames) = checkpoint(connection, Mode::Passive)?;
            if frames <= truncate_frames {
                return Ok(if copied {
                    Checkpoint::Copied
                } else {
                    Checkpoint::Partial
                });
            }
            let _writers = writers.hold_blocking();
            let (copied, _) = checkpoint(connection, Mode::Truncate)?;
            Ok(if copied {
                Checkpoint::Truncated
            } else {
                Checkpoint::Partial
            })
        })
        .await
        .map_err(|e| StateError::Unavailable(format!("checkpointing the write-ahead log: {e}")))?
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

/// Runs one checkpoint: whether the whole log is now in the database, and how many pages the
/// log holds.
fn checkpoint(connection: &rusqlite::Connection, mode: Mode) -> Result<(bool, i64), StateError> {
    let pragma = match mode {
        Mode::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
        Mode::Truncate => "PRAGMA wal_checkpoint(TRUNCATE)",
    };
    // (busy, pages in the log, pages copied); -1 pages when the file is not in WAL mode.
    let (busy, log, copied): (i64, i64, i64) = connection
        .query_row(pragma, [], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .map_err(|e| in_context("checkpointing the write-ahead log", e))?;
    Ok((busy == 0 && log == copied, log))
}
