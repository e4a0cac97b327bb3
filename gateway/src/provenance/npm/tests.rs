//! npm provenance: purls, repository URLs, and the early-2023 provenance end to end.

use super::*;

#[test]
fn purls_encode_the_scope() {
    assert_eq!(purl("sigstore", "2.3.1"), "pkg:npm/sigstore@2.3.1");
    assert_eq!(purl("@acme/widget", "1.0.0"), "pkg:npm/%40acme/widget@1.0.0");
}

#[test]
fn repository_urls_compare_as_npm_writes_them() {
    let source = "https://github.com/sigstore/sigstore-js";
    for declared in [
        "git+https://github.com/sigstore/sigstore-js.git",
        "https://github.com/sigstore/sigstore-js/",
        "https://github.com/Sigstore/Sigstore-JS",
    ] {
        assert_eq!(
            normalize_repository(declared),
            normalize_repository(source),
            "{declared}"
        );
    }
    assert_ne!(
        normalize_repository("https://github.com/someone/fork"),
        normalize_repository(source)
    );
}

fn fixture(case: &str, file: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures")
            .join(case)
            .join(file),
    )
    .expect("fixture")
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

const LEGACY: &str = "npm-provenance/slsa-v0.2-sigstore-1.0.0";
const SIGSTORE_JS: &str = "https://github.com/sigstore/sigstore-js";

/// `check` on the early-2023 `sigstore@1.0.0` publish, whose certificate carries only the
/// deprecated GitHub Workflow extensions, with `repository_url` as its package.json says.
async fn check_legacy(repository_url: &str) -> Checked {
    use sha2::{Digest, Sha256, Sha512};
    let tarball = fixture(LEGACY, "artifact");
    let bundle = fixture(LEGACY, "bundle.sigstore.json");
    let root = Arc::new(
        TrustedRoot::from_json(&fixture("trusted-roots", "public-good-production.trusted_root.json"))
            .expect("trusted root"),
    );
    let cache = VerificationCache::new(
        super::super::cache::CacheSettings::default(),
        Arc::new(crate::metrics::Metrics::new()),
    );
    check(
        &cache,
        &root,
        &bundle,
        "sigstore",
        "1.0.0",
        Sha256::digest(&tarball).into(),
        Sha512::digest(&tarball).into(),
        Some(repository_url),
        now(),
    )
    .await
}

#[tokio::test]
async fn early_2023_provenance_takes_its_repository_from_the_deprecated_extensions() {
    let Checked::Verified(facts) = check_legacy("git+https://github.com/sigstore/sigstore-js.git").await else {
        panic!("the early-2023 provenance must verify");
    };
    let [fact] = facts.as_slice() else {
        panic!("one attestation: {facts:?}");
    };
    assert_eq!(fact.predicate_type, "https://slsa.dev/provenance/v0.2");
    let signer = &fact.signer;
    assert!(signer.predates_ci_extensions);
    assert_eq!(signer.source_repository_uri.as_deref(), Some(SIGSTORE_JS));
    assert_eq!(signer.build_trigger.as_deref(), Some("release"));
    assert_eq!(signer.source_repository_ref.as_deref(), Some("refs/tags/v1.0.0"));

    // As the npm registry does, a package.json naming another repository is refused.
    let Checked::Invalid(reason) = check_legacy("git+https://github.com/someone/fork.git").await else {
        panic!("another repository must be refused");
    };
    assert!(
        reason.contains("Failed to validate repository information")
            && reason.contains("expected to match \"https://github.com/sigstore/sigstore-js\""),
        "{reason}"
    );
}

#[tokio::test]
async fn early_2023_provenance_is_matched_to_its_publisher_and_the_ledger_pin() {
    use portcullis_rules::provenance::{
        Evidence, ProjectHistory, ProvenanceFacts, ProvenanceOutcome, ProvenanceRefusal,
    };
    let Checked::Verified(facts) = check_legacy("git+https://github.com/sigstore/sigstore-js.git").await else {
        panic!("the early-2023 provenance must verify");
    };
    let rules = portcullis_rules::compile(
        &[portcullis_rules::RuleSource {
            name: "r.toml".into(),
            text: r#"
[issuers.github]
url = "https://token.actions.githubusercontent.com"
kind = "github"

[registries.npm]
audience = "npm:registry.example.org"
provenance = "required"

[[registries.npm.publishers]]
id = "sigstore-js"
issuer = "github"
projects = ["sigstore"]
repository = "sigstore/sigstore-js"
repository_owner_id = "71096353"
workflow = "publish.yml"
"#
            .into(),
        }],
        &[portcullis_rules::KnownRegistry {
            name: "npm".into(),
            protocol: portcullis_rules::Protocol::Npm,
        }],
    )
    .expect("rules compile");
    let project = portcullis_rules::ProjectName::parse(portcullis_rules::Protocol::Npm, "sigstore").expect("name");
    let decide = |history: &ProjectHistory| {
        rules
            .decide_provenance(&ProvenanceFacts {
                registry: "npm",
                project: &project,
                uploader: None,
                evidence: Evidence::Verified(&facts),
                history,
            })
            .outcome
    };
    // Matched to the publisher from the deprecated extensions, with or without a pin.
    assert_eq!(decide(&ProjectHistory::default()), ProvenanceOutcome::Accepted);
    let pinned = ProjectHistory {
        uploads_with_provenance: 3,
        source_repositories: vec![SIGSTORE_JS.into()],
    };
    assert_eq!(decide(&pinned), ProvenanceOutcome::Accepted);
    // A ledger pinned to another repository refuses it.
    let elsewhere = ProjectHistory {
        uploads_with_provenance: 3,
        source_repositories: vec!["https://github.com/someone/fork".into()],
    };
    match decide(&elsewhere) {
        ProvenanceOutcome::Refused { code, message } => {
            assert_eq!(code, ProvenanceRefusal::Repository);
            assert!(message.contains(SIGSTORE_JS), "{message}");
        }
        other => panic!("expected a repository refusal, got {other:?}"),
    }
}
