//! The CI variant of the soak run (`scripts/soak` runs the long one): 40 s of mixed traffic
//! through the real gateway in front of a real pypiserver — reads, uploads with upload tokens
//! and basic auth, OIDC exchanges, intended refusals, removals allowed and refused — with the
//! rules rewritten every second and the backend killed and restarted once in the middle. Every
//! answer must be the one expected for its kind (outage refusals only while the backend was
//! down), and ledger, backend disk and client record must reconcile exactly. Memory and speed
//! are reported, not asserted; only a gross fd leak fails.

use std::time::Duration;

use portcullis_e2e::soak::{run, SoakConfig};

#[test]
fn forty_seconds_of_mixed_traffic_reconcile_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = SoakConfig::for_duration(Duration::from_secs(40));
    config.sample_every = Duration::from_secs(5);
    config.pause = Duration::from_millis(10);
    config.outage = Duration::from_secs(3);
    let report = run(&config, dir.path());
    let json = serde_json::to_string_pretty(&report.to_json()).expect("json");
    eprintln!("{}", report.to_markdown());

    assert_eq!(
        report.total_errors(),
        0,
        "unexpected answers: {:#?}",
        report.error_samples
    );
    assert!(
        report.reconciliation.exact(),
        "reconciliation: {:#?}",
        report.reconciliation.problems
    );
    // The run did what it says: traffic of every kind, the outage and the reloads happened.
    for (kind, counts) in &report.kinds {
        assert!(counts.expected > 0, "{kind} never got its expected answer: {json}");
    }
    assert_eq!(report.kinds.len(), 12, "every kind of request ran: {json}");
    assert!(report.reconciliation.client_accepted > 50, "{json}");
    assert!(report.reconciliation.client_deleted > 5, "{json}");
    let (start, end) = (
        report.outage_start.expect("the backend was killed"),
        report.outage_end.expect("the backend came back"),
    );
    assert!(end > start, "{json}");
    assert!(
        report.kinds.values().map(|k| k.outage).sum::<u64>() > 0,
        "requests met the outage: {json}"
    );
    assert!(report.rule_rewrites >= 30, "{json}");
    assert_eq!(
        report.rule_revisions_seen, report.rule_rewrites,
        "every rewrite became the revision in force: {json}"
    );
    assert_eq!(
        report.reloads_metric.get("ok").copied().unwrap_or_default() as u64,
        report.rule_rewrites,
        "one applied reload per rewrite: {json}"
    );
    assert_eq!(report.reloads_metric.get("error").copied().unwrap_or_default(), 0.0);
    // No gross fd leak: the last sample has less than twice the first's descriptors (+16).
    let first = report.samples.first().expect("samples").fds;
    let last = report.samples.last().expect("samples").fds;
    assert!(last < 2 * first + 16, "fds went from {first} to {last}: {json}");
}
