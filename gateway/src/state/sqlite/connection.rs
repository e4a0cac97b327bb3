//! The store's one SQLite connection, used in the calling thread.
//!
//! Every statement the store runs is short (an indexed insert, update or lookup on a file in
//! WAL mode with `synchronous=NORMAL`, so a commit writes the log without waiting for the
//! disk), and handing each to a worker thread and back cost more than running it: about four
//! context switches per statement, several statements per upload (bench/README.md). So a
//! caller takes the connection (an async mutex: waiting for it parks the task, never the
//! thread) and runs its statements in place, with a busy timeout of zero. The two things that
//! can take long are kept off the proxy's threads:
//! - another process holding the write lock (a backup, an operator's `sqlite3` shell): the
//!   statement fails busy at once and is run again after an asynchronous pause (1 ms, doubling
//!   to 50 ms) until [`BUSY_TIMEOUT`], so the thread serves its other connections meanwhile
//!   (whatever the runtime's flavour: the proxy's per-thread runtimes have no `block_in_place`);
//! - folding the write-ahead log back into the database (it syncs the disk): SQLite's
//!   automatic checkpoint is off, and the store's own runs on the runtime's blocking pool
//!   with a connection of its own (`checkpoint.rs`).

use std::sync::Arc;
use std::time::Duration;

use rusqlite::ErrorCode;
use tokio::sync::Mutex;

use crate::state::StateError;

/// How long a statement waits for another process's write lock before failing.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The first pause before a statement that met another process's write lock runs again.
const FIRST_BUSY_PAUSE: Duration = Duration::from_millis(1);
/// The longest pause between two runs of such a statement.
const LONGEST_BUSY_PAUSE: Duration = Duration::from_millis(50);
/// Prepared statements kept per connection: more than the store has.
const STATEMENT_CACHE: usize = 64;

/// The connection and the rules for using it. Cloning shares the one connection.
#[derive(Debug, Clone)]
pub(super) struct InThread {
    connection: Arc<Mutex<Option<rusqlite::Connection>>>,
}

impl InThread {
    /// Takes an open connection (pragmas and schema already set) and sets it up for in-place
    /// use: no busy wait, no automatic checkpoint, a statement cache.
    pub(super) fn new(connection: rusqlite::Connection) -> rusqlite::Result<InThread> {
        connection.busy_timeout(Duration::ZERO)?;
        connection.pragma_update(None, "wal_autocheckpoint", 0)?;
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(InThread {
            connection: Arc::new(Mutex::new(Some(connection))),
        })
    }

    /// Runs `work` on the connection in this thread; `doing` names it in errors. `work` may be
    /// run several times (each earlier run failed busy and changed nothing), so a closure that
    /// writes in several statements must do so in one transaction.
    pub(super) async fn run<T>(
        &self,
        doing: &str,
        work: impl Fn(&mut rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StateError> {
        let mut guard = self.connection.lock().await;
        let connection = guard.as_mut().ok_or_else(|| closed(doing))?;
        let mut waited = Duration::ZERO;
        let mut pause = FIRST_BUSY_PAUSE;
        loop {
            match work(connection) {
                Err(e) if is_busy(&e) && waited < BUSY_TIMEOUT => {
                    tokio::time::sleep(pause).await;
                    waited += pause;
                    pause = (pause * 2).min(LONGEST_BUSY_PAUSE);
                }
                done => return done.map_err(|e| in_context(doing, e)),
            }
        }
    }

    /// Holds the connection from a blocking thread (the checkpoint's, `checkpoint.rs`): the
    /// store's callers wait on its lock, parked, until the guard is dropped.
    pub(super) fn hold_blocking(&self) -> tokio::sync::MutexGuard<'_, Option<rusqlite::Connection>> {
        self.connection.blocking_lock()
    }

    /// Closes the connection; later calls fail as unavailable.
    pub(super) async fn close(&self) {
        let connection = self.connection.lock().await.take();
        if let Some(connection) = connection {
            if let Err((_, e)) = connection.close() {
                tracing::warn!(error = %e, "closing the state store");
            }
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

fn closed(doing: &str) -> StateError {
    StateError::Unavailable(format!("{doing}: the state store is closed"))
}

/// Classifies a SQLite error, prefixing what was being done.
pub(super) fn in_context(doing: &str, e: rusqlite::Error) -> StateError {
    let message = format!("{doing}: {e}");
    match &e {
        rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => StateError::Corrupt(message),
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::ReadOnly
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::CannotOpen
            | ErrorCode::PermissionDenied
            | ErrorCode::OutOfMemory => StateError::Unavailable(message),
            _ => StateError::Query(message),
        },
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::InvalidColumnName(_)
        | rusqlite::Error::Utf8Error(..) => StateError::Corrupt(message),
        _ => StateError::Query(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> InThread {
        InThread::new(rusqlite::Connection::open_in_memory().expect("open")).expect("set up")
    }

    #[tokio::test]
    async fn a_closed_connection_is_unavailable() {
        let db = memory();
        assert_eq!(
            db.run("one", |c| c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)))
                .await
                .expect("run"),
            1
        );
        db.close().await;
        let err = db
            .run("after close", |c| c.execute("SELECT 1", []))
            .await
            .expect_err("closed");
        assert!(
            matches!(err, StateError::Unavailable(ref m) if m.contains("after close")),
            "{err:?}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_statement_that_meets_another_writer_waits_for_its_lock_without_blocking_the_thread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db.sqlite3");
        let setup = rusqlite::Connection::open(&path).expect("open");
        setup
            .execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t (x INTEGER);")
            .expect("schema");
        let db = InThread::new(rusqlite::Connection::open(&path).expect("open")).expect("set up");
        // Another process's writer holds the lock for a while.
        let (locked, release) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
        let writer = std::thread::spawn(move || {
            let other = rusqlite::Connection::open(&path).expect("open");
            other
                .execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (1);")
                .expect("lock");
            locked.0.send(()).expect("send");
            release.1.recv_timeout(Duration::from_secs(5)).ok();
            std::thread::sleep(Duration::from_millis(200));
            other.execute_batch("COMMIT").expect("commit");
        });
        locked
            .1
            .recv_timeout(Duration::from_secs(5))
            .expect("the other writer holds the lock");
        release.0.send(()).expect("send");
        // Another task of this one thread keeps running while the insert waits.
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let ticker = tokio::spawn({
            let ticks = ticks.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        // Busy at first, then run again after pauses: it waits and succeeds.
        db.run("insert", |c| c.execute("INSERT INTO t VALUES (2)", []))
            .await
            .expect("waited for the lock");
        ticker.abort();
        writer.join().expect("writer");
        let ticked = ticks.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            ticked >= 5,
            "the thread was blocked while waiting: {ticked} ticks in ~200 ms"
        );
        let rows: i64 = db
            .run("count", |c| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)))
            .await
            .expect("count");
        assert_eq!(rows, 2);
    }

    #[test]
    fn corrupt_and_busy_files_are_classified() {
        let failure = |code| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error { code, extended_code: 0 }, None);
        assert!(matches!(
            in_context("x", failure(ErrorCode::NotADatabase)),
            StateError::Corrupt(_)
        ));
        assert!(matches!(
            in_context("x", failure(ErrorCode::DatabaseBusy)),
            StateError::Unavailable(_)
        ));
        assert!(matches!(
            in_context("x", failure(ErrorCode::ConstraintViolation)),
            StateError::Query(_)
        ));
    }
}
