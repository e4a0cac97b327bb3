//! The quick start's demo (`scripts/demo`) keeps working: it runs end to end against the real
//! backends and clients, every expectation it checks holds (it exits non-zero otherwise), and
//! it prints the summary table with each decision the README promises.

use std::process::Command;

#[test]
fn the_demo_runs_and_shows_each_decision() {
    let out = Command::new(env!("CARGO_BIN_EXE_demo")).output().expect("run the demo");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the demo failed:\n{printed}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = printed.split("\nSummary\n").nth(1).expect("a summary table");
    for (registry, tried, decision, why) in [
        (
            "pypi",
            "exchange a CI job's OIDC token",
            "minted 200",
            "pypi/tob-release",
        ),
        ("pypi", "sdist with 1 byte changed", "refused 400", "provenance_invalid"),
        (
            "pypi",
            "real sdist + real PEP 740 attestation",
            "accepted 200",
            "publisher tob-release",
        ),
        (
            "pypi",
            "upload without attestation",
            "refused 400",
            "provenance_missing",
        ),
        ("npm", "exchange a CI job's OIDC token", "minted 201", "npm/sigstore-js"),
        (
            "npm",
            "sigstore@2.3.1 + real SLSA provenance",
            "accepted 201",
            "publisher sigstore-js",
        ),
        ("npm", "npm publish from CI (OIDC)", "accepted 201", "publisher widgets"),
        ("npm", "unpublish demo-widget@1.0.0", "allowed 201", "< window 72h"),
        ("npm", "re-publish the deleted", "refused 409", "version_deleted"),
        (
            "npm",
            "unpublish demo-widget@1.1.0 after 73h",
            "refused 403",
            "number of dependents 1 > 0",
        ),
    ] {
        let row = summary
            .lines()
            .find(|l| l.trim_start().starts_with(registry) && l.contains(tried))
            .unwrap_or_else(|| panic!("no {registry} row for {tried:?} in\n{summary}"));
        assert!(row.contains(decision) && row.contains(why), "{tried}: {row}");
    }
    assert!(printed.contains("/decisions/"), "the demo shows explain by request id");
    assert!(
        printed.lines().count() < 120,
        "the demo stays a few screens long ({} lines)",
        printed.lines().count()
    );
}
