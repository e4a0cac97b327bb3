//! The TUF feed's durable outbox: what the backend committed or deleted, queued in the same
//! transaction that records it, for the replica that holds a registry's lease to send to a
//! Repository Service for TUF (`crate::tuf_feed`), in id order, once.
//!
//! An event is `queued`, then `submitted` (carried by an RSTUF task), then `done`; RSTUF
//! failures send it back to `queued` with a later `next_attempt_at`, until it has failed
//! `max_attempts` times and is set aside as `failed` for an operator.

use async_trait::async_trait;

use super::rows::{undecodable, StoreRow};
use super::{AuditRecord, StateError};

/// What an event changes in the TUF metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeedAction {
    /// A committed file becomes a target.
    Add,
    /// A deleted file stops being a target.
    Delete,
    /// A PyPI project's index page, as the backend serves it when the event is sent, becomes
    /// (or, when the project is gone, stops being) a target.
    Index,
}

impl FeedAction {
    /// The stored form: `"add"`, `"delete"` or `"index"`.
    pub fn as_str(self) -> &'static str {
        match self {
            FeedAction::Add => "add",
            FeedAction::Delete => "delete",
            FeedAction::Index => "index",
        }
    }

    fn parse(stored: &str) -> Option<FeedAction> {
        match stored {
            "add" => Some(FeedAction::Add),
            "delete" => Some(FeedAction::Delete),
            "index" => Some(FeedAction::Index),
            _ => None,
        }
    }
}

/// Where an event stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeedState {
    /// Waiting to be sent (first time or after a failure).
    Queued,
    /// Sent; its RSTUF task has not finished.
    Submitted,
    /// RSTUF reported the task done.
    Done,
    /// Set aside after too many reported failures, or because the backend does not serve the
    /// bytes the ledger recorded.
    Failed,
}

impl FeedState {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            FeedState::Queued => "queued",
            FeedState::Submitted => "submitted",
            FeedState::Done => "done",
            FeedState::Failed => "failed",
        }
    }

    fn parse(stored: &str) -> Option<FeedState> {
        match stored {
            "queued" => Some(FeedState::Queued),
            "submitted" => Some(FeedState::Submitted),
            "done" => Some(FeedState::Done),
            "failed" => Some(FeedState::Failed),
            _ => None,
        }
    }
}

/// The file an add or delete event is about, from its ledger row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedFile {
    /// The ledger row of the upload that added the file.
    pub ledger_id: i64,
    /// The release version.
    pub version: String,
    /// The file name.
    pub filename: String,
    /// Hex SHA-256 of the bytes uploaded.
    pub sha256: String,
    /// Their length.
    pub size: u64,
    /// The trusted publisher id of the upload, if any.
    pub publisher: Option<String>,
    /// The provenance signer identity, when provenance was accepted.
    pub signer: Option<String>,
    /// The provenance format, when provenance was accepted.
    pub provenance_kind: Option<String>,
    /// The request that uploaded the file.
    pub upload_request_id: String,
}

/// One outbox event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEvent {
    /// Its id: events of a registry are sent in id order.
    pub id: i64,
    /// The registry's configured name.
    pub registry: String,
    /// What it changes.
    pub action: FeedAction,
    /// The normalised project name.
    pub project: String,
    /// The request that committed or deleted it.
    pub request_id: String,
    /// When it was queued.
    pub created_at: i64,
    /// Where it stands.
    pub state: FeedState,
    /// The RSTUF task that carries (or carried) it.
    pub task_id: Option<String>,
    /// How many times RSTUF reported it failed.
    pub attempts: u32,
    /// Not sent again before this time.
    pub next_attempt_at: i64,
    /// The last failure, empty when none.
    pub last_error: String,
    /// The file, for add and delete events.
    pub file: Option<FeedFile>,
}

/// How a sent event ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedSettlement {
    /// RSTUF did it.
    Done,
    /// Send it again at `at`; `counted` when RSTUF (not the network) reported the failure.
    Retry {
        /// Why.
        error: String,
        /// Not before this time.
        at: i64,
        /// Whether it counts towards `max_attempts`.
        counted: bool,
    },
    /// Set it aside for an operator.
    Failed {
        /// Why.
        error: String,
    },
}

/// A registry's outbox at a glance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedStatus {
    /// Events waiting to be sent.
    pub queued: u64,
    /// Events sent whose task has not finished.
    pub submitted: u64,
    /// Events set aside.
    pub failed: u64,
    /// When the oldest open (queued or submitted) event was queued.
    pub oldest_open_at: Option<i64>,
}

/// The outbox operations of a [`super::StateStore`].
#[async_trait]
pub trait FeedStore: Send + Sync {
    /// Finishes the pending ledger row `id` as committed (as [`super::StateStore::ledger_finish`]
    /// does, appending `audit` with it) and, in the same transaction, queues its file for the
    /// feed, and its project's index page when `index`. A row that is already finished changes
    /// nothing and queues nothing.
    async fn ledger_commit_fed(
        &self,
        id: i64,
        detail: &str,
        now: i64,
        index: bool,
        audit: Option<&AuditRecord>,
    ) -> Result<(), StateError>;

    /// Queues the deletion of the files of ledger rows `ledger_ids` (all of `registry`'s
    /// `project`) by request `request_id`, and the project's index page when `index`, in one
    /// transaction. A file already queued for deletion is not queued again, and a request's
    /// index page is queued once; returns how many events were queued.
    async fn feed_deletions(
        &self,
        registry: &str,
        project: &str,
        request_id: &str,
        ledger_ids: &[i64],
        index: bool,
        now: i64,
    ) -> Result<u64, StateError>;

    /// Takes or renews the lease on `registry`'s events for `owner` until `until`; whether
    /// `owner` holds it (false while another owner's lease runs past `now`).
    async fn feed_lease(&self, registry: &str, owner: &str, until: i64, now: i64) -> Result<bool, StateError>;

    /// The first `limit` open (queued or submitted) events of `registry`, in id order.
    async fn feed_open(&self, registry: &str, limit: u32) -> Result<Vec<FeedEvent>, StateError>;

    /// Marks open events `ids` as submitted in RSTUF task `task_id`.
    async fn feed_submitted(&self, ids: &[i64], task_id: &str) -> Result<(), StateError>;

    /// Settles open events `ids`.
    async fn feed_settle(&self, ids: &[i64], settlement: &FeedSettlement, now: i64) -> Result<(), StateError>;

    /// Sends `registry`'s failed events again (an operator's retry); returns how many.
    async fn feed_requeue_failed(&self, registry: &str, now: i64) -> Result<u64, StateError>;

    /// `registry`'s open and failed events at a glance (done events are counted by the
    /// feed's metrics, not here: counting them would read the whole history).
    async fn feed_status(&self, registry: &str) -> Result<FeedStatus, StateError>;

    /// The newest `limit` events of `registry` in `state`, newest first.
    async fn feed_events(&self, registry: &str, state: FeedState, limit: u32) -> Result<Vec<FeedEvent>, StateError>;

    /// `registry`'s tombstones recorded in `[since, before)` by requests that queued nothing:
    /// deletions whose events a crash may have lost, for the feed to queue again.
    async fn feed_unqueued_tombstones(
        &self,
        registry: &str,
        since: i64,
        before: i64,
    ) -> Result<Vec<super::Tombstone>, StateError>;
}

/// `SELECT <every event column>` from the outbox joined with the ledger, followed by the given
/// clauses: the columns [`feed_event`] reads.
macro_rules! select_feed {
    ($($rest:literal),+) => {
        concat!(
            "SELECT o.id, o.registry, o.action, o.project, o.request_id, o.created_at, o.state, o.task_id, \
             o.attempts, o.next_attempt_at, o.last_error, o.ledger_id, l.version, l.filename, l.sha256, l.size, \
             l.publisher, l.signer, l.provenance_kind, l.request_id AS upload_request_id \
             FROM tuf_outbox o LEFT JOIN ledger l ON l.id = o.ledger_id ",
            $($rest),+
        )
    };
}
pub(crate) use select_feed;

/// Decodes an event selected with [`select_feed!`].
pub(crate) fn feed_event(row: &impl StoreRow) -> Result<FeedEvent, StateError> {
    let e = |e| undecodable("an outbox event", e);
    let id = row.int("id").map_err(e)?;
    let corrupt = |what: String| StateError::Corrupt(format!("decoding outbox event {id}: {what}"));
    let action = row.text("action").map_err(e)?;
    let action = FeedAction::parse(&action).ok_or_else(|| corrupt(format!("unknown action {action:?}")))?;
    let state = row.text("state").map_err(e)?;
    let state = FeedState::parse(&state).ok_or_else(|| corrupt(format!("unknown state {state:?}")))?;
    let attempts = row.int("attempts").map_err(e)?;
    let attempts = u32::try_from(attempts).map_err(|_| corrupt(format!("attempts {attempts}")))?;
    let file = match row.optional_int("ledger_id").map_err(e)? {
        None => None,
        Some(ledger_id) => {
            let size = row.int("size").map_err(e)?;
            Some(FeedFile {
                ledger_id,
                version: row.text("version").map_err(e)?,
                filename: row.text("filename").map_err(e)?,
                sha256: row.text("sha256").map_err(e)?,
                size: u64::try_from(size).map_err(|_| corrupt(format!("size {size}")))?,
                publisher: row.optional_text("publisher").map_err(e)?,
                signer: row.optional_text("signer").map_err(e)?,
                provenance_kind: row.optional_text("provenance_kind").map_err(e)?,
                upload_request_id: row.text("upload_request_id").map_err(e)?,
            })
        }
    };
    if file.is_some() == (action == FeedAction::Index) {
        return Err(corrupt("an index event names a file, or a file event none".to_owned()));
    }
    Ok(FeedEvent {
        id,
        registry: row.text("registry").map_err(e)?,
        action,
        project: row.text("project").map_err(e)?,
        request_id: row.text("request_id").map_err(e)?,
        created_at: row.int("created_at").map_err(e)?,
        state,
        task_id: row.optional_text("task_id").map_err(e)?,
        attempts,
        next_attempt_at: row.int("next_attempt_at").map_err(e)?,
        last_error: row.text("last_error").map_err(e)?,
        file,
    })
}

/// Decodes a `feed_status` row (`state, n, oldest`) into `status`.
pub(crate) fn add_status_row(
    status: &mut FeedStatus,
    state: &str,
    n: i64,
    oldest: Option<i64>,
) -> Result<(), StateError> {
    let n = u64::try_from(n).map_err(|_| StateError::Corrupt(format!("counting outbox events: {n}")))?;
    match FeedState::parse(state) {
        Some(FeedState::Queued) => status.queued = n,
        Some(FeedState::Submitted) => status.submitted = n,
        Some(FeedState::Failed) => status.failed = n,
        Some(FeedState::Done) | None => {
            return Err(StateError::Corrupt(format!(
                "counting outbox events: unknown state {state:?}"
            )))
        }
    }
    if matches!(FeedState::parse(state), Some(FeedState::Queued | FeedState::Submitted)) {
        status.oldest_open_at = match (status.oldest_open_at, oldest) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(())
}
