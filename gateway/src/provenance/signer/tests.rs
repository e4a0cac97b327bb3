//! Certificates carrying Fulcio's extensions for Buildkite, CircleCI and GitHub (current and
//! pre-2023) are read by the verifier and matched to trusted publishers by the rules, as on
//! the upload path.

use portcullis_rules::provenance::{
    AttestationFacts, Evidence, ProjectHistory, ProvenanceFacts, ProvenanceOutcome, ProvenanceRefusal,
};
use portcullis_rules::{compile, CompiledRules, KnownRegistry, ProjectName, RuleSource};
use portcullis_verify::testing::FulcioCert;

use super::*;

const CCI_ISSUER: &str = "https://oidc.circleci.com/org/6f0c3a0e-5d2b-4f4e-9c1a-2b7d0e9a8c11";
const CCI_PROJECT: &str = "0e3f6a52-9b1d-4c4f-8f0e-5a6b7c8d9e01";

const RULES: &str = r#"
[issuers.buildkite]
url = "https://agent.buildkite.com"
kind = "buildkite"
algorithms = ["RS256"]
[issuers.circleci]
url = "https://oidc.circleci.com/org/6f0c3a0e-5d2b-4f4e-9c1a-2b7d0e9a8c11"
kind = "circleci"
algorithms = ["RS256"]
[issuers.github]
url = "https://token.actions.githubusercontent.com"
kind = "github"

[registries.pypi]
audience = "upload.example.org"
provenance = "required"

[[registries.pypi.publishers]]
id = "bk"
issuer = "buildkite"
projects = ["bk-thing"]
claims = { organization_slug = "acme", pipeline_slug = "release", build_source = "webhook" }

[[registries.pypi.publishers]]
id = "cci"
issuer = "circleci"
projects = ["cci-thing"]
claims = { "oidc.circleci.com/project-id" = "0e3f6a52-9b1d-4c4f-8f0e-5a6b7c8d9e01", "oidc.circleci.com/vcs-origin" = "github.com/acme/thing" }

[[registries.pypi.publishers]]
id = "sigstore-js"
issuer = "github"
projects = ["sigstore"]
repository = "sigstore/sigstore-js"
repository_owner_id = "71096353"
workflow = "publish.yml"
"#;

fn rules() -> CompiledRules {
    compile(
        &[RuleSource {
            name: "r.toml".into(),
            text: RULES.into(),
        }],
        &[KnownRegistry {
            name: "pypi".into(),
            protocol: portcullis_rules::name::Protocol::Pypi,
        }],
    )
    .expect("rules compile")
}

/// The provenance decision for an upload to `project` whose attestation `cert` signed.
fn decide(project: &str, cert: &FulcioCert) -> ProvenanceOutcome {
    let identity = cert.identity().expect("the verifier reads the certificate");
    let facts = [AttestationFacts {
        predicate_type: "https://docs.pypi.org/attestations/publish/v1".into(),
        signer: signer_identity(&identity),
    }];
    let project = ProjectName::parse(portcullis_rules::name::Protocol::Pypi, project).expect("name");
    rules()
        .decide_provenance(&ProvenanceFacts {
            registry: "pypi",
            project: &project,
            uploader: None,
            evidence: Evidence::Verified(&facts),
            history: &ProjectHistory::default(),
        })
        .outcome
}

fn refusal(outcome: ProvenanceOutcome) -> String {
    match outcome {
        ProvenanceOutcome::Refused {
            code: ProvenanceRefusal::Signer,
            message,
        } => message,
        other => panic!("expected a signer refusal, got {other:?}"),
    }
}

/// A Buildkite job's certificate as Fulcio issues it (`buildkite-job` in Fulcio's
/// `config/identity/config.yaml`).
fn buildkite(pipeline: &str, build_source: &str) -> FulcioCert {
    FulcioCert::new()
        .uri(&format!("https://buildkite.com/acme/{pipeline}"))
        .ext(8, "https://agent.buildkite.com")
        .ext(11, "self-hosted")
        .ext(13, "3b4f1a2c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a")
        .ext(20, build_source)
        .ext(
            21,
            &format!("https://buildkite.com/acme/{pipeline}/builds/42#0190e1c2-0000-4000-8000-000000000001"),
        )
}

/// A CircleCI job's certificate as Fulcio issues it (`circleci-job`).
fn circleci(project: &str, ssh_rerun: bool) -> FulcioCert {
    let signer = format!(
        "https://circleci.com/api/v2/projects/{project}/pipeline-definitions/b7c1d2e3-0000-4000-8000-00000000aaaa"
    );
    FulcioCert::new()
        .uri(&signer)
        .ext(8, CCI_ISSUER)
        .ext(9, &signer)
        .ext(11, if ssh_rerun { "ssh-rerun" } else { "\"\"" })
        .ext(12, "github.com/acme/thing")
        .ext(14, "refs/heads/main")
        .ext(
            18,
            "https://circleci.com/api/v2/pipeline/5d1e2f3a-0000-4000-8000-000000000001/config",
        )
        .ext(
            21,
            "https://app.circleci.com//workflow/9a8b7c6d-0000-4000-8000-000000000002/job/1f2e3d4c-0000-4000-8000-000000000003",
        )
}

#[test]
fn a_buildkite_certificate_matches_its_pipeline_publisher() {
    assert_eq!(
        decide("bk-thing", &buildkite("release", "webhook")),
        ProvenanceOutcome::Accepted
    );
    let message = refusal(decide("bk-thing", &buildkite("nightly", "webhook")));
    assert!(
        message.contains(
            "bk: the certificate is for \"https://buildkite.com/acme/nightly\", not the pipeline https://buildkite.com/acme/release"
        ),
        "{message}"
    );
    let message = refusal(decide("bk-thing", &buildkite("release", "api")));
    assert!(
        message.contains("the certificate's build trigger is \"api\", not the publisher's build_source \"webhook\""),
        "{message}"
    );
}

#[test]
fn a_circleci_certificate_matches_its_project_publisher() {
    assert_eq!(
        decide("cci-thing", &circleci(CCI_PROJECT, false)),
        ProvenanceOutcome::Accepted
    );
    let message = refusal(decide(
        "cci-thing",
        &circleci("11111111-2222-4333-8444-555555555555", false),
    ));
    assert!(
        message.contains(&format!("not a pipeline definition of project {CCI_PROJECT}")),
        "{message}"
    );
    let message = refusal(decide("cci-thing", &circleci(CCI_PROJECT, true)));
    assert!(message.contains("SSH rerun"), "{message}");
    // Another organization's issuer.
    let other_org = FulcioCert::new()
        .uri(&format!(
            "https://circleci.com/api/v2/projects/{CCI_PROJECT}/pipeline-definitions/b7c1d2e3-0000-4000-8000-00000000aaaa"
        ))
        .ext(8, "https://oidc.circleci.com/org/00000000-0000-4000-8000-000000000000")
        .ext(12, "github.com/acme/thing");
    let message = refusal(decide("cci-thing", &other_org));
    assert!(message.contains("issued for tokens of"), "{message}");
}

#[test]
fn a_certificate_with_only_the_deprecated_github_extensions_matches_from_them() {
    let legacy = FulcioCert::new()
        .uri("https://github.com/sigstore/sigstore-js/.github/workflows/publish.yml@refs/tags/v1.0.0")
        .ext(1, "https://token.actions.githubusercontent.com")
        .ext(2, "release")
        .ext(3, "06528997c3c8ab9f864fad9a3658446aca7fd86d")
        .ext(4, "publish")
        .ext(5, "sigstore/sigstore-js")
        .ext(6, "refs/tags/v1.0.0");
    assert_eq!(decide("sigstore", &legacy), ProvenanceOutcome::Accepted);
    let fork = FulcioCert::new()
        .uri("https://github.com/someone/sigstore-js/.github/workflows/publish.yml@refs/tags/v1.0.0")
        .ext(1, "https://token.actions.githubusercontent.com")
        .ext(2, "release")
        .ext(5, "someone/sigstore-js");
    let message = refusal(decide("sigstore", &fork));
    assert!(
        message.contains("the source repository is \"https://github.com/someone/sigstore-js\""),
        "{message}"
    );
}
