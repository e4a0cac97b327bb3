//! The PostgreSQL state store against a real PostgreSQL server (a throwaway cluster per
//! test): the store contract both stores share (`portcullis::state::contract`, each case on a
//! fresh database), two stores (two replicas) sharing one
//! database, migrations applied once, and a store that starts while the database is down and
//! recovers by itself.

use std::sync::Arc;
use std::time::Duration;

use portcullis::state::{
    AuditRecord, DownloadKey, LedgerEntry, LedgerState, PostgresSettings, PostgresStore, StateError, StateStore,
    Tombstone, TombstoneKind,
};
use portcullis_e2e::postgres::Postgres;

fn settings(url: &str) -> PostgresSettings {
    PostgresSettings {
        url: url.to_owned(),
        pool_size: 4,
        acquire_timeout: Duration::from_secs(2),
        statement_timeout: Duration::from_secs(5),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn upload(project: &str, version: &str, filename: &str, created_at: i64) -> LedgerEntry {
    LedgerEntry {
        registry: "pypi".to_owned(),
        project: project.to_owned(),
        version: version.to_owned(),
        filename: filename.to_owned(),
        sha256: "ab".repeat(32),
        size: 123,
        credential: "legacy".to_owned(),
        publisher: None,
        signer: None,
        source_repository: None,
        provenance_kind: None,
        provenance: None,
        request_id: format!("req-{filename}"),
        created_at,
    }
}

#[test]
fn the_store_contract_holds() {
    let pg = Postgres::start();
    let rt = runtime();
    for (index, (name, case)) in portcullis::state::contract::CASES.iter().enumerate() {
        eprintln!("store contract: {name}");
        let url = pg.create_database(&format!("contract_{index}"));
        rt.block_on(async {
            let store = PostgresStore::open(&settings(&url))
                .await
                .unwrap_or_else(|e| panic!("open a store for {name}: {e}"));
            case(&store).await;
        });
    }
}

#[test]
fn two_stores_on_one_database_share_every_record() {
    let pg = Postgres::start();
    let url = pg.create_database("shared");
    let rt = runtime();
    rt.block_on(async {
        // Two replicas opening together: the migrations are applied once.
        let settings = settings(&url);
        let (a, b) = tokio::join!(PostgresStore::open(&settings), PostgresStore::open(&settings));
        let (a, b) = (a.expect("store a"), b.expect("store b"));

        // jti: first claim wins wherever it is made; a live record cannot be reclaimed, an
        // expired one can.
        assert!(a.claim_jti_at("iss", "j1", 2_000, 1_000).await.expect("claim"));
        assert!(!b.claim_jti_at("iss", "j1", 2_000, 1_000).await.expect("replay"));
        assert!(b
            .claim_jti_at("other-iss", "j1", 2_000, 1_000)
            .await
            .expect("other issuer"));
        assert!(b
            .claim_jti_at("iss", "j1", 4_000, 3_000)
            .await
            .expect("expired record reclaimed"));

        // Concurrent claims of one jti across both stores: exactly one winner.
        let mut tasks = Vec::new();
        for i in 0..16 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                store.claim_jti_at("iss", "race", 2_000, 1_000).await.expect("claim")
            }));
        }
        let mut winners = 0;
        for t in tasks {
            winners += usize::from(t.await.expect("join"));
        }
        assert_eq!(winners, 1);

        // Revocations: never shortened, purged after expiry.
        a.revoke_token("tok", 500, "leaked").await.expect("revoke");
        b.revoke_token("tok", 100, "again").await.expect("revoke again");
        assert!(b.is_revoked("tok", 500).await.expect("check"));
        assert!(!a.is_revoked("tok", 501).await.expect("check"));
        let purged = a.purge_expired(10_000).await.expect("purge");
        assert_eq!(
            purged, 4,
            "three jti records (iss/j1, other-iss/j1, iss/race) and one revocation"
        );

        // Ledger: pending → committed once; a late failure does not flip it.
        let id = a
            .ledger_begin(&upload("demo", "1.0", "demo-1.0.tar.gz", 100))
            .await
            .expect("begin");
        assert_eq!(b.published_at("pypi", "demo", None).await.expect("published_at"), None);
        b.ledger_finish(id, true, "200", 101, None).await.expect("finish");
        a.ledger_finish(id, false, "late", 102, None)
            .await
            .expect("second finish is a no-op");
        let rows = b.ledger_entries("pypi", "demo").await.expect("entries");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].state, LedgerState::Committed);
        assert_eq!(rows[0].detail, "200");
        assert_eq!(rows[0].finished_at, Some(101));
        assert!(matches!(
            a.ledger_finish(id + 1000, true, "x", 1, None).await,
            Err(StateError::Query(_))
        ));
        assert_eq!(
            b.published_at("pypi", "demo", Some("1.0")).await.expect("at"),
            Some(100)
        );
        assert_eq!(b.published_at("pypi", "demo", Some("2.0")).await.expect("at"), None);

        // Stale pending rows.
        let pending = a
            .ledger_begin(&upload("demo", "1.1", "demo-1.1.tar.gz", 50))
            .await
            .expect("begin");
        let stale = b.stale_pending(60).await.expect("stale");
        assert_eq!(stale.iter().map(|r| r.id).collect::<Vec<_>>(), vec![pending]);

        // Provenance: only committed, newest first; summary in order of first appearance.
        let mut with = upload("demo", "1.2", "demo-1.2.tar.gz", 200);
        with.provenance_kind = Some("pep740".to_owned());
        with.provenance = Some(b"\x00doc\xff".to_vec());
        with.source_repository = Some("https://github.com/o/z".to_owned());
        let p1 = a.ledger_begin(&with).await.expect("begin");
        assert_eq!(
            b.provenance_of("pypi", "demo", "1.2", "demo-1.2.tar.gz")
                .await
                .expect("of"),
            None
        );
        a.ledger_finish(p1, true, "200", 201, None).await.expect("finish");
        let mut later = with.clone();
        later.filename = "demo-1.2-py3-none-any.whl".to_owned();
        later.source_repository = Some("https://github.com/o/a".to_owned());
        later.created_at = 300;
        let p2 = b.ledger_begin(&later).await.expect("begin");
        b.ledger_finish(p2, true, "200", 301, None).await.expect("finish");
        let stored = b
            .provenance_of("pypi", "demo", "1.2", "demo-1.2.tar.gz")
            .await
            .expect("of")
            .expect("stored");
        assert_eq!(stored.provenance, b"\x00doc\xff");
        assert_eq!(stored.kind, "pep740");
        let summary = a.project_provenance("pypi", "demo").await.expect("summary");
        assert_eq!(summary.uploads_with_provenance, 2);
        assert_eq!(
            summary.source_repositories,
            vec!["https://github.com/o/z".to_owned(), "https://github.com/o/a".to_owned()]
        );
        let mut broken = upload("demo", "9", "x", 1);
        broken.provenance = Some(vec![1]);
        assert!(matches!(a.ledger_begin(&broken).await, Err(StateError::Query(_))));

        // Dependents: committed uploads of other projects, not deleted.
        let dep = a
            .ledger_begin(&upload("app", "1.0", "app-1.0.tar.gz", 10))
            .await
            .expect("begin");
        a.record_dependencies(dep, &["demo".to_owned(), "demo".to_owned(), "other".to_owned()])
            .await
            .expect("deps");
        assert_eq!(
            b.dependents("pypi", "demo").await.expect("dependents"),
            0,
            "still pending"
        );
        a.ledger_finish(dep, true, "200", 11, None).await.expect("finish");
        assert_eq!(b.dependents("pypi", "demo").await.expect("dependents"), 1);

        // Tombstones made through one store are seen through the other, in order.
        let tomb = |kind, at| Tombstone {
            registry: "pypi".to_owned(),
            project: "app".to_owned(),
            kind,
            deleted_at: at,
            request_id: "r".to_owned(),
            actor: "admin".to_owned(),
            reason: String::new(),
        };
        a.add_tombstone(&tomb(TombstoneKind::Version("1.0".to_owned()), 20))
            .await
            .expect("tomb");
        a.add_tombstone(&tomb(
            TombstoneKind::File {
                version: "0.9".to_owned(),
                filename: "app-0.9.tar.gz".to_owned(),
            },
            21,
        ))
        .await
        .expect("tomb");
        b.add_tombstone(&tomb(TombstoneKind::Project, 22)).await.expect("tomb");
        let kinds: Vec<TombstoneKind> = b
            .tombstones("pypi", "app")
            .await
            .expect("list")
            .into_iter()
            .map(|t| t.kind)
            .collect();
        assert_eq!(kinds.len(), 3);
        assert_eq!(kinds[0], TombstoneKind::Version("1.0".to_owned()));
        assert_eq!(kinds[2], TombstoneKind::Project);
        // A deletion the backend refused: its tombstones go again, the others stay.
        let mut refused = tomb(TombstoneKind::Version("2.0".to_owned()), 23);
        refused.request_id = "refused".to_owned();
        a.add_tombstone(&refused).await.expect("tomb");
        assert_eq!(b.remove_tombstones("refused").await.expect("remove"), 1);
        assert_eq!(b.tombstones("pypi", "app").await.expect("list").len(), 3);
        assert_eq!(
            a.dependents("pypi", "demo").await.expect("dependents"),
            0,
            "dependent deleted"
        );

        // Downloads add up across stores, per version and day.
        let key = |version: &str, day| DownloadKey {
            registry: "pypi".to_owned(),
            project: "demo".to_owned(),
            version: version.to_owned(),
            day,
        };
        a.add_downloads(&[(key("1.0", 10), 3), (key("1.1", 10), 1)])
            .await
            .expect("add");
        b.add_downloads(&[(key("1.0", 10), 4), (key("1.0", 9), 100)])
            .await
            .expect("add");
        assert_eq!(
            a.downloads_since("pypi", "demo", Some("1.0"), 10).await.expect("sum"),
            7
        );
        assert_eq!(b.downloads_since("pypi", "demo", None, 10).await.expect("sum"), 8);
        assert_eq!(b.downloads_since("pypi", "demo", None, 0).await.expect("sum"), 108);
        assert_eq!(b.downloads_since("pypi", "nothing", None, 0).await.expect("sum"), 0);

        // Audit: newest first, limited.
        for (i, store) in [&a, &b, &a].into_iter().enumerate() {
            let record = AuditRecord {
                at: i64::try_from(i).expect("small"),
                request_id: format!("r{i}"),
                registry: "pypi".to_owned(),
                project: "demo".to_owned(),
                action: "upload".to_owned(),
                line: "{}".to_owned(),
                ..AuditRecord::default()
            };
            store.append_audit(&record).await.expect("audit");
        }
        let audit = b.audit_of_project("pypi", "demo", 2).await.expect("audit");
        assert_eq!(
            audit.iter().map(|r| r.request_id.as_str()).collect::<Vec<_>>(),
            ["r2", "r1"]
        );

        // Usable as the gateway uses it.
        let dynamic: Arc<dyn StateStore> = Arc::new(a.clone());
        dynamic.maintain().await.expect("maintain");
    });
    let applied = pg.query("shared", "SELECT string_agg(version::text, ',') FROM _sqlx_migrations");
    assert_eq!(applied, "1,2,3,4");
}

/// The provenance summary (one row per project, one per source repository, kept by a trigger
/// as ledger rows commit) equals what the ledger's committed rows say, computed from them.
fn assert_summary_matches_ledger(pg: &Postgres, database: &str) {
    let from_ledger = pg.query(
        database,
        "SELECT string_agg(registry || '/' || project || '=' || uploads, ' ' ORDER BY registry, project) FROM ( \
             SELECT registry, project, COUNT(*) AS uploads FROM ledger \
              WHERE state = 'committed' AND provenance IS NOT NULL GROUP BY registry, project) counted",
    );
    let summary = pg.query(
        database,
        "SELECT string_agg(registry || '/' || project || '=' || uploads, ' ' ORDER BY registry, project) \
           FROM provenance_uploads",
    );
    assert_eq!(summary, from_ledger);
    let firsts_from_ledger = pg.query(
        database,
        "SELECT string_agg(source_repository || '@' || id, ' ' ORDER BY source_repository) FROM ( \
             SELECT DISTINCT ON (source_repository) source_repository, id FROM ledger \
              WHERE state = 'committed' AND source_repository IS NOT NULL \
              ORDER BY source_repository, created_at, id) firsts",
    );
    let firsts = pg.query(
        database,
        "SELECT string_agg(source_repository || '@' || first_ledger_id, ' ' ORDER BY source_repository) \
           FROM provenance_sources",
    );
    assert_eq!(firsts, firsts_from_ledger);
}

#[test]
fn replicas_committing_one_project_at_once_keep_its_provenance_summary_exact() {
    let pg = Postgres::start();
    let url = pg.create_database("summary");
    let rt = runtime();
    let uploads = 48;
    rt.block_on(async {
        let settings = settings(&url);
        let (a, b) = (
            PostgresStore::open(&settings).await.expect("store a"),
            PostgresStore::open(&settings).await.expect("store b"),
        );
        // Every upload begins first; then both replicas commit them all at once, out of the
        // order they began in. Every third carries no provenance, every fifth fails.
        let mut ids = Vec::new();
        for i in 0..uploads {
            let mut entry = upload("busy", "1.0", &format!("busy-{i}.whl"), 1_000 + i);
            if i % 3 != 0 {
                entry.provenance_kind = Some("pep740".to_owned());
                entry.provenance = Some(format!("doc {i}").into_bytes());
                entry.source_repository = Some(format!("https://github.com/o/r{}", i % 4));
            }
            ids.push((i, a.ledger_begin(&entry).await.expect("begin")));
        }
        ids.reverse();
        let tasks = ids.into_iter().map(|(i, id)| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { store.ledger_finish(id, i % 5 != 0, "200", 2_000, None).await })
        });
        for task in tasks.collect::<Vec<_>>() {
            task.await.expect("join").expect("finish");
        }
        let expected = (0..uploads).filter(|i| i % 3 != 0 && i % 5 != 0).count();
        let summary = b.project_provenance("pypi", "busy").await.expect("summary");
        assert_eq!(summary.uploads_with_provenance, u64::try_from(expected).expect("small"));
        // Each repository in the order of its first committed upload (r1 at 1 001, r2 at
        // 1 002; r0 and r3 first commit at 1 004 and 1 007: 1 000 has no provenance, 1 003
        // none either, 1 005 failed).
        assert_eq!(
            summary.source_repositories,
            ["r1", "r2", "r0", "r3"].map(|r| format!("https://github.com/o/{r}"))
        );
    });
    assert_summary_matches_ledger(&pg, "summary");

    // The migration's backfill (what an existing database gets) makes the same summary from
    // the ledger.
    let migration = include_str!("../../gateway/migrations/postgres/0003_provenance_summary.sql");
    let backfill: Vec<&str> = migration
        .split(";\n")
        .map(str::trim)
        .filter(|statement| statement.starts_with("INSERT INTO provenance_"))
        .collect();
    assert_eq!(backfill.len(), 2, "the migration's two backfill statements");
    pg.query("summary", "TRUNCATE provenance_uploads, provenance_sources");
    for statement in backfill {
        pg.query("summary", statement);
    }
    assert_summary_matches_ledger(&pg, "summary");
    assert_eq!(
        pg.query(
            "summary",
            "SELECT uploads FROM provenance_uploads WHERE project = 'busy'"
        ),
        (0..uploads).filter(|i| i % 3 != 0 && i % 5 != 0).count().to_string()
    );
}

#[test]
fn a_store_started_while_the_database_is_down_recovers_by_itself() {
    let mut pg = Postgres::start();
    let url = pg.create_database("late");
    pg.stop();
    let rt = runtime();
    let store = PostgresStore::connect_lazy(&settings(&url)).expect("lazy store");
    rt.block_on(async {
        let err = store.claim_jti("iss", "j", i64::MAX).await.expect_err("database down");
        assert!(matches!(err, StateError::Unavailable(_)), "{err:?}");
        assert!(matches!(store.maintain().await, Err(StateError::Unavailable(_))));
    });
    pg.resume();
    rt.block_on(async {
        store.maintain().await.expect("migrated once the database is back");
        assert!(store.claim_jti("iss", "j", i64::MAX).await.expect("claim"));
        assert!(!store.claim_jti("iss", "j", i64::MAX).await.expect("replay"));
    });
    // And again: the database restarts under a running store.
    pg.stop();
    rt.block_on(async {
        let err = store.is_revoked("t", 0).await.expect_err("database down again");
        assert!(matches!(err, StateError::Unavailable(_)), "{err:?}");
    });
    pg.resume();
    rt.block_on(async {
        assert!(!store
            .claim_jti("iss", "j", i64::MAX)
            .await
            .expect("the record survived the restart"));
    });
}
