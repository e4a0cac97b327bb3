//! The TUF feed outbox's part of the store contract (`contract.rs` runs these with the rest).

use super::{record, tombstone, upload};
use crate::state::{
    FeedAction, FeedSettlement, FeedState, FeedStatus, LedgerState, StateError, StateStore, TombstoneKind,
};

/// The actions and ledger ids of `registry`'s open events, in order.
async fn open(store: &dyn StateStore) -> Vec<(FeedAction, Option<i64>)> {
    store
        .feed_open("pypi", 100)
        .await
        .expect("feed_open")
        .into_iter()
        .map(|e| (e.action, e.file.map(|f| f.ledger_id)))
        .collect()
}

pub(super) async fn committing_for_the_feed_queues_the_file_and_its_index_once(store: &dyn StateStore) {
    let mut entry = upload("sample_project-1.0.0.tar.gz", 100);
    entry.publisher = Some("github:octo/sample".into());
    let id = store.ledger_begin(&entry).await.expect("begin");
    store
        .ledger_commit_fed(id, "200 OK", 105, true, None)
        .await
        .expect("commit");
    let events = store.feed_open("pypi", 10).await.expect("open");
    assert_eq!(events.len(), 2, "{events:?}");
    let (add, index) = (&events[0], &events[1]);
    assert!(add.id < index.id);
    assert_eq!(
        (add.action, add.state, add.attempts),
        (FeedAction::Add, FeedState::Queued, 0)
    );
    assert_eq!((add.created_at, add.next_attempt_at), (105, 105));
    assert_eq!(add.request_id, entry.request_id);
    assert_eq!(add.project, "sample-project");
    let file = add.file.as_ref().expect("a file");
    assert_eq!(
        (file.ledger_id, file.filename.as_str(), file.version.as_str(), file.size),
        (id, "sample_project-1.0.0.tar.gz", "1.0.0", 1_234)
    );
    assert_eq!(file.sha256, entry.sha256);
    assert_eq!(file.publisher.as_deref(), Some("github:octo/sample"));
    assert_eq!(file.upload_request_id, entry.request_id);
    assert_eq!((index.action, index.file.as_ref()), (FeedAction::Index, None));

    let records = store.ledger_entries("pypi", "sample-project").await.expect("entries");
    assert_eq!(
        (records[0].state, records[0].finished_at),
        (LedgerState::Committed, Some(105))
    );
    // Committing again, or finishing it failed, changes and queues nothing.
    store
        .ledger_commit_fed(id, "again", 200, true, None)
        .await
        .expect("again");
    store
        .ledger_finish(id, false, "late", 201, None)
        .await
        .expect("late finish");
    assert_eq!(open(store).await.len(), 2);
    assert_eq!(
        store.ledger_entries("pypi", "sample-project").await.expect("entries")[0].detail,
        "200 OK"
    );

    // A failed upload is never queued, and an unknown id is an error.
    let failed = record(store, &upload("sample_project-1.0.0-py3-none-any.whl", 110), false).await;
    store
        .ledger_commit_fed(failed, "200 OK", 120, false, None)
        .await
        .expect("no-op");
    assert_eq!(open(store).await.len(), 2);
    assert!(matches!(
        store.ledger_commit_fed(999_999, "200 OK", 120, false, None).await,
        Err(StateError::Query(_))
    ));
    let plain = store.ledger_begin(&upload("other.tar.gz", 130)).await.expect("begin");
    store
        .ledger_commit_fed(plain, "201", 131, false, None)
        .await
        .expect("commit");
    assert_eq!(
        open(store).await,
        [
            (FeedAction::Add, Some(id)),
            (FeedAction::Index, None),
            (FeedAction::Add, Some(plain))
        ]
    );
}

pub(super) async fn events_move_from_queued_to_done_retried_or_failed(store: &dyn StateStore) {
    let mut ids = Vec::new();
    for (i, name) in ["a.tar.gz", "b.tar.gz", "c.tar.gz"].into_iter().enumerate() {
        let id = store.ledger_begin(&upload(name, 100 + i as i64)).await.expect("begin");
        store
            .ledger_commit_fed(id, "200", 110, false, None)
            .await
            .expect("commit");
        ids.push(id);
    }
    let events: Vec<i64> = store
        .feed_open("pypi", 10)
        .await
        .expect("open")
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(store.feed_open("pypi", 2).await.expect("limit").len(), 2);
    assert!(store.feed_open("npm", 10).await.expect("other registry").is_empty());
    store.feed_submitted(&events, "task-1").await.expect("submitted");
    let submitted = store.feed_open("pypi", 10).await.expect("open");
    assert!(submitted
        .iter()
        .all(|e| e.state == FeedState::Submitted && e.task_id.as_deref() == Some("task-1")));
    assert_eq!(
        store.feed_status("pypi").await.expect("status"),
        FeedStatus {
            queued: 0,
            submitted: 3,
            failed: 0,
            oldest_open_at: Some(110)
        }
    );

    store
        .feed_settle(&events[..1], &FeedSettlement::Done, 120)
        .await
        .expect("done");
    let retry = FeedSettlement::Retry {
        error: "RSTUF reported: boom".into(),
        at: 150,
        counted: true,
    };
    store.feed_settle(&events[1..], &retry, 121).await.expect("retry");
    let uncounted = FeedSettlement::Retry {
        error: "connection refused".into(),
        at: 160,
        counted: false,
    };
    store.feed_settle(&events[2..], &uncounted, 122).await.expect("retry");
    let open = store.feed_open("pypi", 10).await.expect("open");
    assert_eq!(open.iter().map(|e| e.id).collect::<Vec<_>>(), events[1..]);
    assert_eq!(
        (open[0].state, open[0].attempts, open[0].next_attempt_at),
        (FeedState::Queued, 1, 150)
    );
    assert_eq!((open[1].attempts, open[1].next_attempt_at), (1, 160));
    assert_eq!(open[1].last_error, "connection refused");
    // A settled event is not settled again.
    store.feed_settle(&events[..1], &retry, 130).await.expect("no-op");
    let done = store.feed_events("pypi", FeedState::Done, 10).await.expect("done");
    assert_eq!(done.iter().map(|e| e.id).collect::<Vec<_>>(), events[..1]);

    store
        .feed_settle(
            &events[1..2],
            &FeedSettlement::Failed {
                error: "gave up".into(),
            },
            140,
        )
        .await
        .expect("failed");
    let failed = store.feed_events("pypi", FeedState::Failed, 10).await.expect("failed");
    assert_eq!((failed.len(), failed[0].last_error.as_str()), (1, "gave up"));
    assert_eq!(
        store.feed_status("pypi").await.expect("status"),
        FeedStatus {
            queued: 1,
            submitted: 0,
            failed: 1,
            oldest_open_at: Some(110)
        }
    );
    assert_eq!(store.feed_requeue_failed("pypi", 170).await.expect("requeue"), 1);
    let open = store.feed_open("pypi", 10).await.expect("open");
    assert_eq!(open.iter().map(|e| e.id).collect::<Vec<_>>(), events[1..]);
    assert_eq!((open[0].attempts, open[0].next_attempt_at), (0, 170));
    assert_eq!(store.feed_status("pypi").await.expect("status").failed, 0);
}

pub(super) async fn deletions_are_queued_once_per_file_and_request(store: &dyn StateStore) {
    let kept = record(store, &upload("sample_project-1.0.0.tar.gz", 100), true).await;
    let deleted = record(store, &upload("sample_project-1.0.0-py3-none-any.whl", 101), true).await;
    let failed = record(store, &upload("sample_project-1.0.0-py2-none-any.whl", 102), false).await;
    let mut other = upload("other-1.0.tar.gz", 103);
    other.project = "other".into();
    let other = record(store, &other, true).await;
    let queued = store
        .feed_deletions(
            "pypi",
            "sample-project",
            "req-delete",
            &[deleted, failed, other, 999],
            true,
            200,
        )
        .await
        .expect("queue");
    assert_eq!(queued, 2, "the committed file of the project, and the index page");
    assert_eq!(
        open(store).await,
        [(FeedAction::Delete, Some(deleted)), (FeedAction::Index, None)]
    );
    let events = store.feed_open("pypi", 10).await.expect("open");
    assert_eq!(events[0].request_id, "req-delete");
    assert_eq!(
        events[0].file.as_ref().map(|f| f.upload_request_id.clone()),
        Some(upload("sample_project-1.0.0-py3-none-any.whl", 101).request_id)
    );
    // The same request again (a reconciliation) queues nothing; another request deleting the
    // same file and one more queues only the new file.
    assert_eq!(
        store
            .feed_deletions("pypi", "sample-project", "req-delete", &[deleted], true, 201)
            .await
            .expect("again"),
        0
    );
    assert_eq!(
        store
            .feed_deletions("pypi", "sample-project", "req-later", &[deleted, kept], false, 202)
            .await
            .expect("later"),
        1
    );
    assert_eq!(
        open(store).await,
        [
            (FeedAction::Delete, Some(deleted)),
            (FeedAction::Index, None),
            (FeedAction::Delete, Some(kept))
        ]
    );
}

pub(super) async fn the_feed_lease_is_held_by_one_owner_until_it_runs_out(store: &dyn StateStore) {
    assert!(store.feed_lease("pypi", "replica-a", 130, 100).await.expect("take"));
    assert!(!store.feed_lease("pypi", "replica-b", 140, 110).await.expect("held"));
    assert!(store
        .feed_lease("npm", "replica-b", 140, 110)
        .await
        .expect("another registry"));
    assert!(store.feed_lease("pypi", "replica-a", 150, 120).await.expect("renew"));
    assert!(!store.feed_lease("pypi", "replica-b", 160, 140).await.expect("renewed"));
    assert!(store.feed_lease("pypi", "replica-b", 190, 151).await.expect("ran out"));
    assert!(!store.feed_lease("pypi", "replica-a", 200, 160).await.expect("lost"));
}

pub(super) async fn unqueued_tombstones_are_the_deletions_that_queued_nothing(store: &dyn StateStore) {
    let id = record(store, &upload("sample_project-1.0.0.tar.gz", 100), true).await;
    for (kind, at) in [
        (TombstoneKind::Version("1.0.0".into()), 200),
        (TombstoneKind::Version("0.9".into()), 210),
        (TombstoneKind::Project, 50),
    ] {
        store.add_tombstone(&tombstone(kind, at)).await.expect("tombstone");
    }
    let listed = |since, before| async move {
        store
            .feed_unqueued_tombstones("pypi", since, before)
            .await
            .expect("list")
            .into_iter()
            .map(|t| t.deleted_at)
            .collect::<Vec<_>>()
    };
    assert_eq!(listed(100, 300).await, [200, 210]);
    assert_eq!(listed(0, 205).await, [200, 50]);
    store
        .feed_deletions("pypi", "sample-project", "req-200", &[id], false, 300)
        .await
        .expect("queue");
    assert_eq!(listed(100, 300).await, [210]);
    assert!(store
        .feed_unqueued_tombstones("npm", 0, 300)
        .await
        .expect("other")
        .is_empty());
}
