//! The state store's contract: one suite of behaviours every [`StateStore`] shows, run on a
//! fresh store per case — against SQLite by `state::sqlite`'s unit tests and against a real
//! PostgreSQL server by `tests/tests/state_postgres.rs` (feature `store-contract`). What only
//! one store has (SQLite's file and write-ahead log, PostgreSQL's replicas and reconnects) is
//! tested beside that store.

use std::future::Future;
use std::pin::Pin;

use super::{
    AuditRecord, DownloadKey, LedgerEntry, LedgerRecord, LedgerState, ProjectProvenance, StateError, StateStore,
    StoredProvenance, Tombstone, TombstoneKind,
};

/// A `keep_until` no test reaches.
pub const FAR_FUTURE: i64 = 4_000_000_000;

/// One case: its name and the check, run on a fresh, empty store.
pub type Case = (
    &'static str,
    for<'a> fn(&'a dyn StateStore) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>,
);

/// The case table: each function by its name, boxed.
macro_rules! cases {
    ($($case:ident),+ $(,)?) => {
        /// Every case of the contract.
        pub const CASES: &[Case] = &[$((stringify!($case), |store| Box::pin($case(store)))),+];
    };
}

cases![
    first_claim_wins_second_is_a_replay,
    same_jti_from_another_issuer_is_independent,
    revocation_holds_up_to_and_including_until,
    revoking_again_never_shortens_the_revocation,
    ledger_begin_and_finish_round_trip,
    finishing_twice_never_flips_the_outcome,
    failed_and_pending_uploads_are_not_served_as_provenance,
    provenance_of_returns_the_newest_committed_document_byte_for_byte,
    project_provenance_counts_committed_uploads_and_lists_repositories_in_order,
    stale_pending_lists_only_old_pending_rows_oldest_first,
    inconsistent_or_oversized_entries_are_refused,
    removing_a_requests_tombstones_leaves_the_others,
    tombstones_round_trip_per_project_in_order,
    downloads_add_up_per_day_and_version_and_old_days_drop_out,
    dependents_count_committed_other_projects_that_are_not_deleted,
    published_at_is_the_earliest_committed_upload,
    audit_records_come_back_newest_first_per_project,
    an_uploads_audit_record_is_appended_with_its_ledger_finish,
    committing_for_the_feed_queues_the_file_and_its_index_once,
    events_move_from_queued_to_done_retried_or_failed,
    deletions_are_queued_once_per_file_and_request,
    the_feed_lease_is_held_by_one_owner_until_it_runs_out,
    unqueued_tombstones_are_the_deletions_that_queued_nothing,
];

#[path = "contract_feed.rs"]
mod feed;
use feed::*;

/// A ledger entry of `sample-project` 1.0.0 (file `filename`) recorded at `created_at`.
pub fn upload(filename: &str, created_at: i64) -> LedgerEntry {
    LedgerEntry {
        registry: "pypi".to_owned(),
        project: "sample-project".to_owned(),
        version: "1.0.0".to_owned(),
        filename: filename.to_owned(),
        sha256: "ab".repeat(32),
        size: 1_234,
        credential: "upload_token".to_owned(),
        publisher: None,
        signer: None,
        source_repository: None,
        provenance_kind: None,
        provenance: None,
        request_id: format!("req-{filename}-{created_at}"),
        created_at,
    }
}

/// `entry` with a verified PEP 740 document from `repository`.
pub fn with_provenance(mut entry: LedgerEntry, repository: &str, document: Vec<u8>) -> LedgerEntry {
    entry.credential = "none".to_owned();
    entry.publisher = Some("github:octo/sample".to_owned());
    entry.signer = Some(format!("{repository}/.github/workflows/release.yml@refs/tags/v1"));
    entry.source_repository = Some(repository.to_owned());
    entry.provenance_kind = Some("pep740".to_owned());
    entry.provenance = Some(document);
    entry
}

/// A tombstone of `sample-project` of `kind`, written at `deleted_at`.
fn tombstone(kind: TombstoneKind, deleted_at: i64) -> Tombstone {
    Tombstone {
        registry: "pypi".to_owned(),
        project: "sample-project".to_owned(),
        kind,
        deleted_at,
        request_id: format!("req-{deleted_at}"),
        actor: "legacy-credential".to_owned(),
        reason: String::new(),
    }
}

/// Begins and finishes an upload in one go.
pub async fn record(store: &dyn StateStore, entry: &LedgerEntry, committed: bool) -> i64 {
    let id = store.ledger_begin(entry).await.expect("ledger_begin");
    let detail = if committed { "200 OK" } else { "400 Bad Request" };
    store
        .ledger_finish(id, committed, detail, entry.created_at + 1, None)
        .await
        .expect("ledger_finish");
    id
}

async fn first_claim_wins_second_is_a_replay(store: &dyn StateStore) {
    assert!(store
        .claim_jti("https://issuer", "jti-1", FAR_FUTURE)
        .await
        .expect("claim"));
    assert!(!store
        .claim_jti("https://issuer", "jti-1", FAR_FUTURE)
        .await
        .expect("claim"));
    assert!(!store
        .claim_jti("https://issuer", "jti-1", FAR_FUTURE + 10)
        .await
        .expect("claim"));
    assert!(store
        .claim_jti("https://issuer", "jti-2", FAR_FUTURE)
        .await
        .expect("claim"));
}

async fn same_jti_from_another_issuer_is_independent(store: &dyn StateStore) {
    assert!(store
        .claim_jti("https://a.example", "shared", FAR_FUTURE)
        .await
        .expect("claim"));
    assert!(store
        .claim_jti("https://b.example", "shared", FAR_FUTURE)
        .await
        .expect("claim"));
    assert!(!store
        .claim_jti("https://a.example", "shared", FAR_FUTURE)
        .await
        .expect("claim"));
    assert!(!store
        .claim_jti("https://b.example", "shared", FAR_FUTURE)
        .await
        .expect("claim"));
}

async fn revocation_holds_up_to_and_including_until(store: &dyn StateStore) {
    assert!(!store.is_revoked("tok", 100).await.expect("is_revoked"));
    store
        .revoke_token("tok", 1_000, "leaked in CI log")
        .await
        .expect("revoke");
    assert!(store.is_revoked("tok", 999).await.expect("is_revoked"));
    assert!(store.is_revoked("tok", 1_000).await.expect("is_revoked"));
    assert!(!store.is_revoked("tok", 1_001).await.expect("is_revoked"));
    assert!(!store.is_revoked("other", 999).await.expect("is_revoked"));
}

async fn revoking_again_never_shortens_the_revocation(store: &dyn StateStore) {
    store.revoke_token("tok", 1_000, "first").await.expect("revoke");
    store.revoke_token("tok", 500, "second").await.expect("revoke");
    assert!(store.is_revoked("tok", 1_000).await.expect("is_revoked"));
    store.revoke_token("tok", 2_000, "third").await.expect("revoke");
    assert!(store.is_revoked("tok", 2_000).await.expect("is_revoked"));
    assert!(!store.is_revoked("tok", 2_001).await.expect("is_revoked"));
}

async fn ledger_begin_and_finish_round_trip(store: &dyn StateStore) {
    let entry = with_provenance(
        upload("sample-1.0.0.tar.gz", 1_000),
        "https://github.com/octo/sample",
        b"{\"attestations\": []}".to_vec(),
    );
    let id = store.ledger_begin(&entry).await.expect("ledger_begin");
    let rows = store.ledger_entries("pypi", "sample-project").await.expect("entries");
    assert_eq!(
        rows,
        vec![LedgerRecord {
            id,
            entry: entry.clone(),
            state: LedgerState::Pending,
            finished_at: None,
            detail: String::new(),
        }]
    );
    store
        .ledger_finish(id, true, "201 Created", 1_005, None)
        .await
        .expect("ledger_finish");
    let rows = store.ledger_entries("pypi", "sample-project").await.expect("entries");
    assert_eq!(
        rows,
        vec![LedgerRecord {
            id,
            entry,
            state: LedgerState::Committed,
            finished_at: Some(1_005),
            detail: "201 Created".to_owned(),
        }]
    );
    assert!(store.ledger_entries("pypi", "other").await.expect("entries").is_empty());
    assert!(store
        .ledger_entries("npm", "sample-project")
        .await
        .expect("entries")
        .is_empty());
}

async fn finishing_twice_never_flips_the_outcome(store: &dyn StateStore) {
    let good = store.ledger_begin(&upload("a.whl", 100)).await.expect("ledger_begin");
    let bad = store.ledger_begin(&upload("b.whl", 101)).await.expect("ledger_begin");
    store
        .ledger_finish(good, true, "200 OK", 110, None)
        .await
        .expect("finish");
    store
        .ledger_finish(bad, false, "502 Bad Gateway", 111, None)
        .await
        .expect("finish");
    // Repeats (the same or the opposite outcome) succeed and change nothing.
    store
        .ledger_finish(good, false, "late failure", 120, None)
        .await
        .expect("finish");
    store
        .ledger_finish(good, true, "again", 121, None)
        .await
        .expect("finish");
    store
        .ledger_finish(bad, true, "late success", 122, None)
        .await
        .expect("finish");
    let rows = store.ledger_entries("pypi", "sample-project").await.expect("entries");
    let outcomes: Vec<_> = rows
        .iter()
        .map(|r| (r.id, r.state, r.finished_at, r.detail.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (good, LedgerState::Committed, Some(110), "200 OK"),
            (bad, LedgerState::Failed, Some(111), "502 Bad Gateway"),
        ]
    );
    let err = store
        .ledger_finish(bad + 1_000, true, "x", 130, None)
        .await
        .expect_err("unknown id");
    assert!(matches!(err, StateError::Query(_)), "{err:?}");
}

async fn failed_and_pending_uploads_are_not_served_as_provenance(store: &dyn StateStore) {
    let repo = "https://github.com/octo/sample";
    let failed = with_provenance(upload("f.whl", 100), repo, b"failed".to_vec());
    record(store, &failed, false).await;
    let pending = with_provenance(upload("f.whl", 200), repo, b"pending".to_vec());
    store.ledger_begin(&pending).await.expect("ledger_begin");
    assert_eq!(
        store
            .provenance_of("pypi", "sample-project", "1.0.0", "f.whl")
            .await
            .expect("provenance_of"),
        None
    );
    assert_eq!(
        store
            .project_provenance("pypi", "sample-project")
            .await
            .expect("project_provenance"),
        ProjectProvenance::default()
    );
    // A committed upload without provenance is not served either.
    record(store, &upload("f.whl", 300), true).await;
    assert_eq!(
        store
            .provenance_of("pypi", "sample-project", "1.0.0", "f.whl")
            .await
            .expect("provenance_of"),
        None
    );
}

async fn provenance_of_returns_the_newest_committed_document_byte_for_byte(store: &dyn StateStore) {
    let repo = "https://github.com/octo/sample";
    // 1 MiB covering every byte value, NULs and invalid UTF-8 included.
    let big: Vec<u8> = (0..(1_u32 << 20))
        .map(|i| u8::try_from((i * 7 + i / 256) % 256).expect("byte"))
        .collect();
    record(
        store,
        &with_provenance(upload("w.whl", 100), repo, b"old".to_vec()),
        true,
    )
    .await;
    let newest = with_provenance(upload("w.whl", 200), repo, big.clone());
    record(store, &newest, true).await;
    // Later, but failed, pending, or without provenance: none of them shadow it.
    record(
        store,
        &with_provenance(upload("w.whl", 300), repo, b"failed".to_vec()),
        false,
    )
    .await;
    store
        .ledger_begin(&with_provenance(upload("w.whl", 400), repo, b"pending".to_vec()))
        .await
        .expect("ledger_begin");
    record(store, &upload("w.whl", 500), true).await;

    let stored = store
        .provenance_of("pypi", "sample-project", "1.0.0", "w.whl")
        .await
        .expect("provenance_of")
        .expect("stored provenance");
    assert_eq!(stored.provenance.len(), 1 << 20);
    assert!(stored.provenance == big, "provenance must come back byte for byte");
    assert_eq!(
        stored,
        StoredProvenance {
            kind: "pep740".to_owned(),
            provenance: big,
            publisher: newest.publisher.clone(),
            signer: newest.signer.clone(),
            source_repository: Some(repo.to_owned()),
            created_at: 200,
        }
    );
    for (registry, project, version, filename) in [
        ("npm", "sample-project", "1.0.0", "w.whl"),
        ("pypi", "other", "1.0.0", "w.whl"),
        ("pypi", "sample-project", "2.0.0", "w.whl"),
        ("pypi", "sample-project", "1.0.0", "x.whl"),
    ] {
        assert_eq!(
            store
                .provenance_of(registry, project, version, filename)
                .await
                .expect("provenance_of"),
            None
        );
    }
}

async fn project_provenance_counts_committed_uploads_and_lists_repositories_in_order(store: &dyn StateStore) {
    let zeta = "https://github.com/zeta/sample";
    let alpha = "https://github.com/alpha/sample";
    let mid = "https://github.com/mid/sample";
    record(store, &with_provenance(upload("1.whl", 100), zeta, b"1".to_vec()), true).await;
    record(
        store,
        &with_provenance(upload("2.whl", 200), alpha, b"2".to_vec()),
        true,
    )
    .await;
    record(store, &with_provenance(upload("3.whl", 300), zeta, b"3".to_vec()), true).await;
    record(store, &upload("4.whl", 350), true).await;
    // Not committed: neither counted nor listed.
    record(store, &with_provenance(upload("5.whl", 50), mid, b"5".to_vec()), false).await;
    let late = store
        .ledger_begin(&with_provenance(upload("6.whl", 60), mid, b"6".to_vec()))
        .await
        .expect("ledger_begin");
    record(store, &with_provenance(upload("7.whl", 400), mid, b"7".to_vec()), true).await;
    // Another project's uploads do not count.
    let mut elsewhere = with_provenance(upload("8.whl", 10), "https://github.com/x/y", b"8".to_vec());
    elsewhere.project = "another".to_owned();
    record(store, &elsewhere, true).await;

    let summary = store
        .project_provenance("pypi", "sample-project")
        .await
        .expect("project_provenance");
    assert_eq!(
        summary,
        ProjectProvenance {
            uploads_with_provenance: 4,
            source_repositories: vec![zeta.to_owned(), alpha.to_owned(), mid.to_owned()],
        }
    );
    assert_eq!(
        store
            .project_provenance("pypi", "unknown")
            .await
            .expect("project_provenance"),
        ProjectProvenance::default()
    );

    // The pending upload made first commits last: counted, and its repository now comes
    // first (the ledger's order is when an upload began, not when it committed). Finishing
    // it again changes nothing.
    store
        .ledger_finish(late, true, "200 OK", 500, None)
        .await
        .expect("ledger_finish");
    store
        .ledger_finish(late, true, "200 OK", 501, None)
        .await
        .expect("ledger_finish again");
    assert_eq!(
        store
            .project_provenance("pypi", "sample-project")
            .await
            .expect("project_provenance"),
        ProjectProvenance {
            uploads_with_provenance: 5,
            source_repositories: vec![mid.to_owned(), zeta.to_owned(), alpha.to_owned()],
        }
    );
}

async fn stale_pending_lists_only_old_pending_rows_oldest_first(store: &dyn StateStore) {
    let later = store.ledger_begin(&upload("b.whl", 150)).await.expect("ledger_begin");
    let oldest = store.ledger_begin(&upload("a.whl", 100)).await.expect("ledger_begin");
    store
        .ledger_begin(&upload("edge.whl", 200))
        .await
        .expect("ledger_begin");
    store.ledger_begin(&upload("new.whl", 300)).await.expect("ledger_begin");
    record(store, &upload("done.whl", 10), true).await;
    record(store, &upload("failed.whl", 20), false).await;

    let stale = store.stale_pending(200).await.expect("stale_pending");
    let ids: Vec<i64> = stale.iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![oldest, later]);
    assert!(stale
        .iter()
        .all(|r| r.state == LedgerState::Pending && r.finished_at.is_none()));
    assert_eq!(stale[0].entry, upload("a.whl", 100));

    store
        .ledger_finish(oldest, false, "reconciled", 500, None)
        .await
        .expect("finish");
    let ids: Vec<i64> = store
        .stale_pending(200)
        .await
        .expect("stale_pending")
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, vec![later]);
    assert!(store.stale_pending(100).await.expect("stale_pending").is_empty());
}

async fn inconsistent_or_oversized_entries_are_refused(store: &dyn StateStore) {
    let mut no_kind = upload("a.whl", 100);
    no_kind.provenance = Some(b"doc".to_vec());
    let err = store.ledger_begin(&no_kind).await.expect_err("provenance without kind");
    assert!(matches!(err, StateError::Query(_)), "{err:?}");
    let mut no_document = upload("a.whl", 100);
    no_document.provenance_kind = Some("pep740".to_owned());
    let err = store
        .ledger_begin(&no_document)
        .await
        .expect_err("kind without provenance");
    assert!(matches!(err, StateError::Query(_)), "{err:?}");
    let mut huge = upload("a.whl", 100);
    huge.size = u64::MAX;
    let err = store.ledger_begin(&huge).await.expect_err("size beyond i64");
    assert!(matches!(err, StateError::Query(_)), "{err:?}");
    assert!(store
        .ledger_entries("pypi", "sample-project")
        .await
        .expect("entries")
        .is_empty());
}

async fn removing_a_requests_tombstones_leaves_the_others(store: &dyn StateStore) {
    let mut version = tombstone(TombstoneKind::Version("1.0".into()), 100);
    let mut name = tombstone(TombstoneKind::Project, 100);
    version.request_id = "refused-by-the-backend".into();
    name.request_id = "refused-by-the-backend".into();
    let kept = tombstone(TombstoneKind::Version("0.9".into()), 90);
    for t in [&kept, &version, &name] {
        store.add_tombstone(t).await.expect("tombstone");
    }
    assert_eq!(
        store.remove_tombstones("refused-by-the-backend").await.expect("remove"),
        2
    );
    assert_eq!(
        store.remove_tombstones("refused-by-the-backend").await.expect("again"),
        0
    );
    assert_eq!(store.tombstones("pypi", "sample-project").await.expect("list"), [kept]);
}

async fn tombstones_round_trip_per_project_in_order(store: &dyn StateStore) {
    let kinds = [
        TombstoneKind::Version("1.0".into()),
        TombstoneKind::File {
            version: "1.1".into(),
            filename: "sample_project-1.1.tar.gz".into(),
        },
        TombstoneKind::Project,
    ];
    for (i, kind) in kinds.iter().enumerate() {
        store
            .add_tombstone(&tombstone(kind.clone(), 100 + i as i64))
            .await
            .expect("tombstone");
    }
    let found = store.tombstones("pypi", "sample-project").await.expect("tombstones");
    assert_eq!(found.iter().map(|t| t.kind.clone()).collect::<Vec<_>>(), kinds);
    assert!(store
        .tombstones("npm", "sample-project")
        .await
        .expect("other registry")
        .is_empty());
}

async fn downloads_add_up_per_day_and_version_and_old_days_drop_out(store: &dyn StateStore) {
    let key = |version: &str, day: i64| DownloadKey {
        registry: "npm".into(),
        project: "left-pad".into(),
        version: version.into(),
        day,
    };
    store
        .add_downloads(&[(key("1.0.0", 10), 5), (key("1.0.0", 11), 7), (key("2.0.0", 11), 1)])
        .await
        .expect("add");
    store.add_downloads(&[(key("1.0.0", 11), 3)]).await.expect("add again");
    let since = |version, day| store.downloads_since("npm", "left-pad", version, day);
    assert_eq!(since(Some("1.0.0"), 10).await.expect("sum"), 15);
    assert_eq!(since(Some("1.0.0"), 11).await.expect("sum"), 10);
    assert_eq!(since(None, 11).await.expect("sum"), 11);
    assert_eq!(since(Some("3.0.0"), 0).await.expect("sum"), 0);
}

async fn dependents_count_committed_other_projects_that_are_not_deleted(store: &dyn StateStore) {
    let dependent = |project: &str, version: &str| {
        let mut entry = upload(&format!("{project}-{version}.tar.gz"), 100);
        entry.project = project.to_owned();
        entry.version = version.to_owned();
        entry
    };
    let app = dependent("app", "1.0");
    let tool = dependent("tool", "1.0");
    let pending = dependent("pending", "1.0");
    let itself = dependent("sample-project", "2.0");
    for (entry, commit) in [(&app, true), (&tool, true), (&pending, false), (&itself, true)] {
        let id = store.ledger_begin(entry).await.expect("begin");
        store
            .record_dependencies(id, &["sample-project".to_owned(), "other".to_owned()])
            .await
            .expect("dependencies");
        if commit {
            store.ledger_finish(id, true, "200", 101, None).await.expect("finish");
        }
    }
    assert_eq!(store.dependents("pypi", "sample-project").await.expect("count"), 2);
    let mut gone = tombstone(TombstoneKind::Version("1.0".into()), 200);
    gone.project = "tool".into();
    store.add_tombstone(&gone).await.expect("tombstone");
    assert_eq!(store.dependents("pypi", "sample-project").await.expect("count"), 1);
    assert_eq!(store.dependents("npm", "sample-project").await.expect("count"), 0);
}

async fn published_at_is_the_earliest_committed_upload(store: &dyn StateStore) {
    assert_eq!(
        store.published_at("pypi", "sample-project", None).await.expect("none"),
        None
    );
    for (file, at, commit) in [("a.tar.gz", 300, true), ("b.whl", 200, true), ("c.whl", 100, false)] {
        let id = store.ledger_begin(&upload(file, at)).await.expect("begin");
        store.ledger_finish(id, commit, "", at + 1, None).await.expect("finish");
    }
    assert_eq!(
        store
            .published_at("pypi", "sample-project", Some("1.0.0"))
            .await
            .expect("at"),
        Some(200)
    );
    assert_eq!(
        store
            .published_at("pypi", "sample-project", Some("9"))
            .await
            .expect("at"),
        None
    );
}

/// An upload's audit record for request `request_id` of `sample-project`.
fn upload_audit(request_id: &str, at: i64) -> AuditRecord {
    AuditRecord {
        at,
        request_id: request_id.into(),
        registry: "pypi".into(),
        project: "sample-project".into(),
        actor: "token:t1".into(),
        action: "upload".into(),
        target: "sample_project-1.0.0.tar.gz".into(),
        outcome: "allow".into(),
        rule: "default".into(),
        rules_revision: "0123456789abcdef".into(),
        code: String::new(),
        reason: String::new(),
        line: format!("{{\"request_id\":\"{request_id}\"}}"),
    }
}

async fn an_uploads_audit_record_is_appended_with_its_ledger_finish(store: &dyn StateStore) {
    let audited = || async move {
        store
            .audit_of_project("pypi", "sample-project", 10)
            .await
            .expect("audit")
            .into_iter()
            .map(|r| (r.request_id, r.line))
            .collect::<Vec<_>>()
    };
    let id = store.ledger_begin(&upload("a.tar.gz", 100)).await.expect("begin");
    store
        .ledger_finish(id, true, "200 OK", 101, Some(&upload_audit("r1", 101)))
        .await
        .expect("finish");
    assert_eq!(
        audited().await,
        [("r1".to_owned(), "{\"request_id\":\"r1\"}".to_owned())]
    );
    // Through the feed's commit too.
    let fed = store.ledger_begin(&upload("b.tar.gz", 110)).await.expect("begin");
    store
        .ledger_commit_fed(fed, "200 OK", 111, false, Some(&upload_audit("r2", 111)))
        .await
        .expect("commit");
    // A row already finished keeps its outcome; the request's record is still appended.
    store
        .ledger_finish(id, false, "late", 120, Some(&upload_audit("r3", 120)))
        .await
        .expect("late finish");
    store
        .ledger_commit_fed(fed, "again", 121, false, Some(&upload_audit("r4", 121)))
        .await
        .expect("again");
    // An id that names no row appends nothing.
    assert!(store
        .ledger_finish(id + 1_000, true, "x", 130, Some(&upload_audit("r5", 130)))
        .await
        .is_err());
    assert!(store
        .ledger_commit_fed(id + 1_000, "x", 131, false, Some(&upload_audit("r6", 131)))
        .await
        .is_err());
    let requests: Vec<_> = audited().await.into_iter().map(|(request, _)| request).collect();
    assert_eq!(requests, ["r4", "r3", "r2", "r1"]);
    let states: Vec<_> = store
        .ledger_entries("pypi", "sample-project")
        .await
        .expect("entries")
        .into_iter()
        .map(|r| (r.state, r.detail))
        .collect();
    assert_eq!(
        states,
        [
            (LedgerState::Committed, "200 OK".to_owned()),
            (LedgerState::Committed, "200 OK".to_owned())
        ]
    );
}

async fn audit_records_come_back_newest_first_per_project(store: &dyn StateStore) {
    for (i, project) in ["a", "b", "a"].iter().enumerate() {
        let record = AuditRecord {
            at: i as i64,
            request_id: format!("r{i}"),
            registry: "npm".into(),
            project: (*project).into(),
            actor: "legacy-credential".into(),
            action: "delete_version".into(),
            target: format!("{project}@1.0.{i}"),
            outcome: "allow".into(),
            rule: "deletion.default".into(),
            rules_revision: "0123456789abcdef".into(),
            code: String::new(),
            reason: String::new(),
            line: format!("{{\"i\":{i}}}"),
        };
        store.append_audit(&record).await.expect("append");
    }
    let found = store.audit_of_project("npm", "a", 10).await.expect("audit");
    assert_eq!(
        found.iter().map(|r| r.request_id.as_str()).collect::<Vec<_>>(),
        ["r2", "r0"]
    );
    assert_eq!(store.audit_of_project("npm", "a", 1).await.expect("audit").len(), 1);
}
