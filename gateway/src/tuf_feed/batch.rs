//! Which events the feed sends next, and when a failed one is tried again: pure functions of
//! the open events (in id order), so that the order rules are tested without a store or RSTUF.
//!
//! Events go strictly in id order: the head waits out its backoff and nothing passes it, so a
//! file's add always reaches RSTUF before its delete. A batch is the longest run from the head
//! of events of one kind (adds and index pages, or deletes) that are due, up to the batch
//! size in distinct targets; an add for a path already in the batch ends it, and index pages of one project
//! collapse into one (the page is read when sent, so it shows every change queued before).

use portcullis_rules::Protocol;

use crate::config::TufFeed;
use crate::state::{FeedAction, FeedEvent, FeedState};

/// What the feed does next for a registry.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// No open events.
    Idle,
    /// The head event is not due before `until` (Unix seconds).
    Wait {
        /// When it is.
        until: i64,
    },
    /// Events an earlier pass submitted in `task_id`: follow that task.
    Resume {
        /// The RSTUF task.
        task_id: String,
        /// The events it carries.
        events: Vec<(&'a FeedEvent, String)>,
    },
    /// Add these targets (files and index pages) in one task: `(event, target path)`.
    Add(Vec<(&'a FeedEvent, String)>),
    /// Remove these targets in one task.
    Delete(Vec<(&'a FeedEvent, String)>),
}

/// The target path of an event under `feed`; `None` for an index event when pages are not
/// signed.
pub fn target_path(feed: &TufFeed, protocol: Protocol, event: &FeedEvent) -> Option<String> {
    match &event.file {
        Some(file) => Some(file_target(
            feed,
            protocol,
            &event.project,
            &file.version,
            &file.filename,
        )),
        None => feed.index_target(&event.project),
    }
}

/// The target path of a file as the ledger names it.
pub fn file_target(feed: &TufFeed, protocol: Protocol, project: &str, version: &str, filename: &str) -> String {
    // npm names attachments `@scope/name-1.0.0.tgz`; the tarball's path uses the part after
    // the scope.
    let filename = match protocol {
        Protocol::Npm => filename.rsplit('/').next().unwrap_or(filename),
        Protocol::Pypi => filename,
    };
    feed.file_target(project, version, filename)
}

/// The next step for `open` (a registry's open events in id order) at `now`, at most `feed.batch`
/// distinct targets per task (repeated index pages of a project ride along free).
pub fn next_step<'a>(feed: &TufFeed, protocol: Protocol, open: &'a [FeedEvent], now: i64) -> Step<'a> {
    let Some(head) = open.first() else {
        return Step::Idle;
    };
    let path = |e: &FeedEvent| target_path(feed, protocol, e).unwrap_or_default();
    if head.state == FeedState::Submitted {
        let task_id = head.task_id.clone().unwrap_or_default();
        let events = open
            .iter()
            .take_while(|e| e.state == FeedState::Submitted && e.task_id.as_deref() == Some(task_id.as_str()))
            .map(|e| (e, path(e)))
            .collect();
        return Step::Resume { task_id, events };
    }
    if head.next_attempt_at > now {
        return Step::Wait {
            until: head.next_attempt_at,
        };
    }
    let deleting = head.action == FeedAction::Delete;
    let mut chosen: Vec<(&FeedEvent, String)> = Vec::new();
    let mut artifacts = 0;
    for event in open {
        let same_kind = (event.action == FeedAction::Delete) == deleting;
        if !same_kind || event.state != FeedState::Queued || event.next_attempt_at > now {
            break;
        }
        let target = path(event);
        let repeated = chosen.iter().any(|(_, p)| *p == target);
        if repeated && event.action != FeedAction::Index {
            break;
        }
        if !repeated {
            if artifacts == feed.batch {
                break;
            }
            artifacts += 1;
        }
        chosen.push((event, target));
    }
    if deleting {
        Step::Delete(chosen)
    } else {
        Step::Add(chosen)
    }
}

/// When an event RSTUF failed `attempts` times is tried again: 10 s doubling up to 10 min.
pub fn retry_after_failure(attempts: u32) -> i64 {
    10i64.saturating_mul(1 << attempts.min(6)).min(600)
}

/// When a registry whose API or backend was unreachable `streak` times in a row is tried
/// again: 1 s doubling up to 5 min.
pub fn retry_after_outage(streak: u32) -> i64 {
    (1i64 << streak.min(9)).min(300)
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
