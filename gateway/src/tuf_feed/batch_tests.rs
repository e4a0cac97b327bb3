use std::path::Path;

use portcullis_rules::Protocol;

use super::*;
use crate::state::{FeedFile, FeedState};

fn feed(protocol: &str) -> TufFeed {
    let text = format!(
        "[[listener]]\naddress = \"127.0.0.1:8080\"\n[rules]\nfiles = [\"r.toml\"]\n[[registry]]\nname = \"r\"\nprotocol = \"{protocol}\"\n[registry.upstream]\naddress = \"127.0.0.1:1\"\n[registry.tuf]\napi = \"http://127.0.0.1:2\"\n"
    );
    let config = crate::config::parse(Path::new("/etc/p.toml"), &text).expect("config");
    config.registries[0].tuf.clone().expect("feed")
}

fn with_batch(feed: &TufFeed, batch: usize) -> TufFeed {
    TufFeed { batch, ..feed.clone() }
}

fn event(id: i64, action: FeedAction, file: Option<&str>) -> FeedEvent {
    FeedEvent {
        id,
        registry: "r".into(),
        action,
        project: "demo".into(),
        request_id: format!("req-{id}"),
        created_at: 100,
        state: FeedState::Queued,
        task_id: None,
        attempts: 0,
        next_attempt_at: 100,
        last_error: String::new(),
        file: file.map(|f| FeedFile {
            ledger_id: id,
            version: "1.0".into(),
            filename: f.into(),
            sha256: "00".repeat(32),
            size: 1,
            publisher: None,
            signer: None,
            provenance_kind: None,
            upload_request_id: format!("up-{id}"),
        }),
    }
}

fn ids(step: &Step<'_>) -> Vec<i64> {
    match step {
        Step::Add(e) | Step::Delete(e) | Step::Resume { events: e, .. } => e.iter().map(|(e, _)| e.id).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn target_paths_follow_the_templates_and_npm_drops_the_scope_from_the_file() {
    let pypi = feed("pypi");
    assert_eq!(
        target_path(
            &pypi,
            Protocol::Pypi,
            &event(1, FeedAction::Add, Some("demo-1.0.tar.gz"))
        )
        .as_deref(),
        Some("packages/demo-1.0.tar.gz")
    );
    assert_eq!(
        target_path(&pypi, Protocol::Pypi, &event(2, FeedAction::Index, None)).as_deref(),
        Some("simple/demo/index.html")
    );
    let npm = feed("npm");
    let mut scoped = event(3, FeedAction::Add, Some("@acme/demo-1.0.0.tgz"));
    scoped.project = "@acme/demo".into();
    assert_eq!(
        target_path(&npm, Protocol::Npm, &scoped).as_deref(),
        Some("@acme/demo/-/demo-1.0.0.tgz")
    );
    assert_eq!(
        target_path(&npm, Protocol::Npm, &event(4, FeedAction::Index, None)),
        None
    );
}

#[test]
fn a_batch_is_the_due_run_of_one_kind_from_the_head() {
    let f = feed("pypi");
    let open = [
        event(1, FeedAction::Add, Some("a.tar.gz")),
        event(2, FeedAction::Index, None),
        event(3, FeedAction::Add, Some("b.tar.gz")),
        event(4, FeedAction::Index, None),
        event(5, FeedAction::Delete, Some("a.tar.gz")),
        event(6, FeedAction::Delete, Some("b.tar.gz")),
        event(7, FeedAction::Add, Some("c.tar.gz")),
    ];
    let step = next_step(&f, Protocol::Pypi, &open, 100);
    assert!(matches!(step, Step::Add(_)));
    assert_eq!(ids(&step), [1, 2, 3, 4], "index pages of one project ride together");
    let step = next_step(&f, Protocol::Pypi, &open[4..], 100);
    assert!(matches!(step, Step::Delete(_)));
    assert_eq!(ids(&step), [5, 6]);
    assert_eq!(
        ids(&next_step(&with_batch(&f, 3), Protocol::Pypi, &open, 100)),
        [1, 2, 3, 4],
        "the batch size bounds targets, not events"
    );
    assert_eq!(
        ids(&next_step(&with_batch(&f, 2), Protocol::Pypi, &open, 100)),
        [1, 2],
        "a third target waits"
    );
    assert_eq!(next_step(&f, Protocol::Pypi, &[], 100), Step::Idle);
}

#[test]
fn nothing_passes_a_head_that_waits_and_a_repeated_file_ends_the_batch() {
    let f = feed("pypi");
    let mut open = vec![
        event(1, FeedAction::Add, Some("a.tar.gz")),
        event(2, FeedAction::Add, Some("b.tar.gz")),
    ];
    open[0].next_attempt_at = 150;
    assert_eq!(next_step(&f, Protocol::Pypi, &open, 100), Step::Wait { until: 150 });
    assert_eq!(ids(&next_step(&f, Protocol::Pypi, &open, 150)), [1, 2]);
    open[1].next_attempt_at = 200;
    assert_eq!(
        ids(&next_step(&f, Protocol::Pypi, &open, 150)),
        [1],
        "a later due time ends the run"
    );

    let again = [
        event(1, FeedAction::Add, Some("a.tar.gz")),
        event(2, FeedAction::Add, Some("a.tar.gz")),
    ];
    assert_eq!(ids(&next_step(&f, Protocol::Pypi, &again, 100)), [1]);
}

#[test]
fn submitted_events_are_resumed_by_task() {
    let f = feed("pypi");
    let mut open = vec![
        event(1, FeedAction::Add, Some("a.tar.gz")),
        event(2, FeedAction::Index, None),
        event(3, FeedAction::Add, Some("b.tar.gz")),
    ];
    for e in &mut open[..2] {
        e.state = FeedState::Submitted;
        e.task_id = Some("t-1".into());
    }
    let step = next_step(&f, Protocol::Pypi, &open, 100);
    assert!(matches!(&step, Step::Resume { task_id, .. } if task_id == "t-1"));
    assert_eq!(ids(&step), [1, 2]);
}

#[test]
fn backoffs_grow_and_stop_at_their_ceiling() {
    assert_eq!(
        (0..8).map(retry_after_failure).collect::<Vec<_>>(),
        [10, 20, 40, 80, 160, 320, 600, 600]
    );
    assert_eq!(retry_after_outage(0), 1);
    assert_eq!(retry_after_outage(3), 8);
    assert_eq!(retry_after_outage(40), 300);
}
