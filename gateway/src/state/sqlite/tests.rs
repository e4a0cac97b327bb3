//! The SQLite store's own tests; the store contract (`state/contract.rs`) runs here too.
use std::sync::Arc;

use super::migrate::{self, MIGRATIONS};
use super::*;
use crate::state::contract::{self, record, upload, with_provenance, FAR_FUTURE};

async fn applied_migrations(store: &SqliteStore) -> Vec<i64> {
    store
        .run(|c| {
            c.prepare("SELECT version FROM _sqlx_migrations ORDER BY version")?
                .query_map([], |row| row.get(0))?
                .collect()
        })
        .await
        .expect("applied migrations")
}

/// How many ledger rows `sample-project` has (every test upload is of it).
async fn uploads_recorded(store: &dyn StateStore) -> usize {
    store
        .ledger_entries("pypi", "sample-project")
        .await
        .expect("entries")
        .len()
}

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
async fn a_log_another_process_reads_keeps_growing_until_the_reader_is_done_then_starts_over() {
    let (dir, store) = fresh().await;
    let wal = dir.path().join(format!("{DATABASE_FILE}-wal"));
    let wal_size = || std::fs::metadata(&wal).map_or(0, |m| m.len());
    // While another connection reads (here another process's, say a backup), no checkpoint
    // can copy past its snapshot or start the log over, so the log only grows.
    let reader = rusqlite::Connection::open(dir.path().join(DATABASE_FILE)).expect("another connection");
    reader.execute_batch("BEGIN").expect("reader");
    let _: i64 = reader
        .query_row("SELECT COUNT(*) FROM ledger", [], |row| row.get(0))
        .expect("read");
    for i in 0..300 {
        record(&store, &upload(&format!("f{i}.whl"), 100), true).await;
    }
    let grown = wal_size();
    assert!(grown > 64 * 1024, "the log grew to {grown} bytes");
    // Even told to truncate the log at any size, the checkpoint does not wait for the reader
    // (it would hold the store's callers meanwhile): it gives up at once.
    let asked = std::time::Instant::now();
    assert_eq!(
        store.checkpointer.run(&store.db, 0).await.expect("checkpoint"),
        Checkpoint::Partial
    );
    assert!(
        asked.elapsed() < connection::BUSY_TIMEOUT,
        "the checkpoint waited {:?} for the reader",
        asked.elapsed()
    );
    record(&store, &upload("during.whl", 100), true).await;
    reader.execute_batch("COMMIT").expect("reader done");
    assert_ne!(store.checkpoint().await.expect("checkpoint"), Checkpoint::Partial);
    // The next uploads are written over the start of the same file.
    let before = wal_size();
    for i in 0..100 {
        record(&store, &upload(&format!("g{i}.whl"), 100), true).await;
    }
    assert_eq!(wal_size(), before, "the log started over inside its file");
    // Nothing was lost.
    assert_eq!(uploads_recorded(&store).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_steady_writes_the_checkpoint_truncates_the_log_with_the_writers_held() {
    const UPLOADS: usize = 1500;
    async fn write(store: Arc<SqliteStore>, prefix: &'static str) {
        for i in 0..UPLOADS {
            record(store.as_ref(), &upload(&format!("{prefix}{i}.whl"), 100), true).await;
        }
    }
    let wal_size = |dir: &tempfile::TempDir| {
        std::fs::metadata(dir.path().join(format!("{DATABASE_FILE}-wal"))).map_or(0, |m| m.len())
    };
    // The log's size after the uploads with no checkpoint at all.
    let (unchecked_dir, unchecked) = fresh().await;
    let unchecked = Arc::new(unchecked);
    write(unchecked.clone(), "u").await;
    let unchecked = wal_size(&unchecked_dir);
    // The same uploads with a checkpoint every few milliseconds, the writer never pausing: a
    // commit whose transaction began while the passive copy ran appends after it, so only the
    // truncation with the writers held (here at any size) keeps the log short.
    let (dir, store) = fresh().await;
    let store = Arc::new(store);
    let writer = tokio::spawn(write(store.clone(), "c"));
    let mut truncations = 0;
    while !writer.is_finished() {
        if store.checkpointer.run(&store.db, 0).await.expect("checkpoint") == Checkpoint::Truncated {
            truncations += 1;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    writer.await.expect("writer");
    assert!(truncations > 0, "no checkpoint truncated the log");
    let checked = wal_size(&dir);
    assert!(
        checked < unchecked / 2,
        "the log grew to {checked} bytes with checkpoints, {unchecked} without"
    );
    assert_eq!(uploads_recorded(store.as_ref()).await, UPLOADS);
}

#[tokio::test]
async fn after_a_passive_checkpoint_the_log_starts_over_in_the_same_file() {
    let (dir, store) = fresh().await;
    let wal = dir.path().join(format!("{DATABASE_FILE}-wal"));
    let wal_size = || std::fs::metadata(&wal).map_or(0, |m| m.len());
    for i in 0..100 {
        record(&store, &upload(&format!("a{i}.whl"), 100), true).await;
    }
    let first = wal_size();
    // Passively only (no truncation at any size): the next commit starts the log over by itself.
    assert_eq!(
        store.checkpointer.run(&store.db, i64::MAX).await.expect("checkpoint"),
        Checkpoint::Copied,
        "the whole log copied"
    );
    assert_eq!(wal_size(), first, "a passive checkpoint keeps the file");
    // As much again: written over the start of the same file, not after its end.
    for i in 0..100 {
        record(&store, &upload(&format!("b{i}.whl"), 200), true).await;
    }
    let second = wal_size();
    assert!(
        second < first + first / 4,
        "the log restarted: {first} bytes after the first 100 uploads, {second} after the next 100"
    );
    // And nothing the copy moved was lost: a fresh process reads both halves.
    store.close().await;
    let reopened = SqliteStore::open(dir.path()).await.expect("reopen");
    assert_eq!(uploads_recorded(&reopened).await, 200);
}

#[tokio::test]
async fn finishing_an_upload_does_not_write_its_provenance_document_again() {
    let (dir, store) = fresh().await;
    let wal = dir.path().join(format!("{DATABASE_FILE}-wal"));
    let frames = || std::fs::metadata(&wal).map_or(0, |m| m.len()) / (4096 + 24);
    // A 64 KiB document spans 16 pages. Written with the row, every finish rewrote them all
    // (SQLite rewrites a changed row whole); kept apart, the finish writes the row's page and
    // the pages of the indexes and summaries the commit touches.
    let document: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    let entry = with_provenance(upload("big.whl", 100), "https://github.com/o/r", document.clone());
    let before = frames();
    let id = store.ledger_begin(&entry).await.expect("ledger_begin");
    let begun = frames();
    assert!(
        begun - before >= 16,
        "the document was written once: {} frames",
        begun - before
    );
    store
        .ledger_finish(id, true, "200 OK", 101, None)
        .await
        .expect("ledger_finish");
    let finished = frames() - begun;
    assert!(finished < 10, "the finish wrote {finished} pages");
    // And it comes back whole, from its own table.
    let stored = store
        .provenance_of("pypi", "sample-project", "1.0.0", "big.whl")
        .await
        .expect("provenance_of")
        .expect("stored");
    assert!(stored.provenance == document);
    let inline: i64 = store
        .run(move |c| {
            c.query_row("SELECT length(provenance) FROM ledger WHERE id = ?1", [id], |row| {
                row.get(0)
            })
        })
        .await
        .expect("query");
    assert_eq!(inline, 0, "the row keeps only the empty marker");
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
    assert_eq!(
        applied_migrations(&store).await,
        MIGRATIONS.iter().map(|(version, ..)| *version).collect::<Vec<_>>()
    );
    let journal: String = store
        .run(|c| c.query_row("PRAGMA journal_mode", [], |row| row.get(0)))
        .await
        .expect("query");
    assert_eq!(journal, "wal");
}

#[tokio::test]
async fn edited_migration_history_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path()).await.expect("open store");
    store
        .run(|c| c.execute("UPDATE _sqlx_migrations SET checksum = x'00' WHERE version = 1", []))
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
        migrate::apply_some(&path, &MIGRATIONS[..1])
            .await
            .expect("migrate to version 1");
        let old = rusqlite::Connection::open(&path).expect("connect");
        old.execute(
            "INSERT INTO jti_claims (issuer, jti, keep_until) VALUES ('iss', 'old', ?1)",
            [FAR_FUTURE],
        )
        .expect("insert");
        let ledger: bool = old
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE name = 'ledger')",
                [],
                |row| row.get(0),
            )
            .expect("query");
        assert!(!ledger);
    }
    let store = SqliteStore::open(dir.path()).await.expect("open store");
    assert_eq!(applied_migrations(&store).await, vec![1, 2, 3, 4, 5, 6, 7]);
    assert!(!store.claim_jti("iss", "old", FAR_FUTURE).await.expect("claim"));
    let id = record(&store, &upload("a.whl", 100), true).await;
    let rows = store.ledger_entries("pypi", "sample-project").await.expect("entries");
    assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), vec![id]);
    let indexes: Vec<String> = store
        .run(|c| {
            c.prepare(
                "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'ledger' \
                 AND name NOT LIKE 'sqlite_autoindex%' ORDER BY name",
            )?
            .query_map([], |row| row.get(0))?
            .collect()
        })
        .await
        .expect("query");
    assert_eq!(
        indexes,
        vec!["ledger_committed_versions", "ledger_file", "ledger_state_created_at"]
    );
}

#[tokio::test]
async fn the_provenance_summary_of_a_version_5_database_is_made_from_its_ledger() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(DATABASE_FILE);
    let (zeta, alpha) = ("https://github.com/zeta/sample", "https://github.com/alpha/sample");
    {
        // An older build's ledger: committed uploads with and without provenance (zeta's
        // first at 100, alpha's at 200), a failed one and a pending one, another project's.
        migrate::apply_some(&path, &MIGRATIONS[..5])
            .await
            .expect("migrate to version 5");
        let old = rusqlite::Connection::open(&path).expect("connect");
        let rows: [(&str, &str, Option<&str>, i64, &str); 7] = [
            ("sample-project", "1.whl", Some(zeta), 300, "committed"),
            ("sample-project", "2.whl", Some(alpha), 200, "committed"),
            ("sample-project", "3.whl", Some(zeta), 100, "committed"),
            ("sample-project", "4.whl", None, 50, "committed"),
            (
                "sample-project",
                "5.whl",
                Some("https://github.com/failed/x"),
                10,
                "failed",
            ),
            (
                "sample-project",
                "6.whl",
                Some("https://github.com/pending/x"),
                10,
                "pending",
            ),
            ("another", "7.whl", Some("https://github.com/other/x"), 10, "committed"),
        ];
        for (project, filename, repository, created_at, state) in rows {
            old.execute(
                "INSERT INTO ledger (registry, project, version, filename, sha256, size, credential, \
                 source_repository, provenance_kind, provenance, request_id, created_at, state, finished_at) \
                 VALUES ('pypi', ?1, '1.0.0', ?2, 'ab', 1, 'none', ?3, ?4, ?5, 'req', ?6, ?7, ?8)",
                rusqlite::params![
                    project,
                    filename,
                    repository,
                    repository.map(|_| "pep740"),
                    repository.map(|_| b"document".to_vec()),
                    created_at,
                    state,
                    (state != "pending").then_some(created_at + 1),
                ],
            )
            .expect("insert");
        }
    }
    let store = SqliteStore::open(dir.path()).await.expect("open store");
    // Documents written before migration 7 are served from the row itself.
    assert_eq!(
        store
            .provenance_of("pypi", "sample-project", "1.0.0", "1.whl")
            .await
            .expect("provenance_of")
            .expect("stored")
            .provenance,
        b"document"
    );
    assert_eq!(
        store
            .project_provenance("pypi", "sample-project")
            .await
            .expect("project_provenance"),
        ProjectProvenance {
            uploads_with_provenance: 3,
            source_repositories: vec![zeta.to_owned(), alpha.to_owned()],
        }
    );
    // And kept from there on.
    record(
        &store,
        &with_provenance(upload("8.whl", 400), alpha, b"8".to_vec()),
        true,
    )
    .await;
    assert_eq!(
        store
            .project_provenance("pypi", "sample-project")
            .await
            .expect("project_provenance")
            .uploads_with_provenance,
        4
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
        .ledger_finish(id, true, "200 OK", 101, None)
        .await
        .expect("ledger_finish");
    assert_eq!(uploads_recorded(store.as_ref()).await, 1);
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
