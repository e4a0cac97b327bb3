//! Matching signers to publishers: GitHub (current and pre-2023 certificates), GitLab,
//! Google, Buildkite, CircleCI and generic issuers.

use super::*;
use crate::publishers::signer_fixtures::{self, GH};

fn signer_check(publisher: &str, signer: &SignerIdentity) -> Result<(), String> {
    let rules = signer_fixtures::rules("", "").expect("compiles");
    let publisher = rules
        .policy("pypi")
        .publishers
        .iter()
        .find(|p| p.id.as_str() == publisher)
        .expect("publisher");
    let issuer = rules.issuers.get(&publisher.issuer).expect("issuer");
    publisher.check_signer(issuer, signer)
}

fn github_signer_with(change: impl FnOnce(&mut SignerIdentity)) -> SignerIdentity {
    let mut signer = signer_fixtures::github_signer();
    change(&mut signer);
    signer
}

#[test]
fn the_real_github_fixture_signer_matches_its_publisher() {
    assert_eq!(
        signer_check("pypi-attestations", &signer_fixtures::github_signer()),
        Ok(())
    );
    // Repository names compare case-insensitively, in the source and the workflow URIs.
    let shouting = github_signer_with(|s| {
        s.source_repository_uri = Some("https://github.com/TrailOfBits/PyPI-Attestations".into());
        s.build_config_uri = Some(
            "https://github.com/TrailOfBits/PyPI-Attestations/.github/workflows/release.yml@refs/heads/main".into(),
        );
    });
    assert_eq!(signer_check("pypi-attestations", &shouting), Ok(()));
}

#[test]
fn github_signers_that_must_not_match_say_what_differed() {
    type Change = Box<dyn FnOnce(&mut SignerIdentity)>;
    let other_workflow = "https://github.com/trailofbits/pypi-attestations/.github/workflows/evil.yml@refs/heads/main";
    let cases: Vec<(Change, &str)> = vec![
        (
            Box::new(|s| s.issuer = Some("https://gitlab.com".into())),
            "issued for tokens of \"https://gitlab.com\"",
        ),
        (Box::new(|s| s.issuer = None), "does not name its OIDC issuer"),
        (
            Box::new(|s| s.source_repository_uri = Some("https://github.com/evil/pypi-attestations".into())),
            "the source repository is \"https://github.com/evil/pypi-attestations\"",
        ),
        (
            Box::new(|s| s.source_repository_owner_identifier = Some("9999".into())),
            "owner id is \"9999\", not 2314423",
        ),
        (
            Box::new(|s| s.source_repository_owner_identifier = None),
            "the certificate does not carry the owner id",
        ),
        (
            Box::new(move |s| s.build_config_uri = Some(other_workflow.into())),
            "the calling workflow is",
        ),
        (
            Box::new(|s| {
                s.build_config_uri =
                    Some("https://github.com/trailofbits/pypi-attestations/.github/workflows/Release.yml@v1".into())
            }),
            "not release.yml of trailofbits/pypi-attestations",
        ),
        (
            Box::new(|s| {
                s.build_config_uri =
                    Some("https://github.com/trailofbits/pypi-attestations/.github/workflows/release.yml@".into())
            }),
            "the calling workflow is",
        ),
        (
            Box::new(|s| s.build_signer_uri = Some("https://github.com/evil/ci/.github/workflows/x.yml@main".into())),
            "a reusable workflow this publisher does not name",
        ),
        (
            Box::new(|s| s.runner_environment = Some("self-hosted".into())),
            "self-hosted runners are not allowed",
        ),
        (
            Box::new(|s| s.runner_environment = None),
            "(runner environment not stated)",
        ),
        (
            Box::new(|s| s.build_trigger = Some("pull_request_target".into())),
            "'pull_request_target'",
        ),
        (
            Box::new(|s| s.build_trigger = Some("pull_request".into())),
            "run by \"pull_request\"",
        ),
        (Box::new(|s| s.build_trigger = None), "does not carry the build trigger"),
    ];
    for (change, expected) in cases {
        let reason = signer_check("pypi-attestations", &github_signer_with(change)).expect_err(expected);
        assert!(reason.contains(expected), "expected {expected:?} in {reason:?}");
    }
}

#[test]
fn foreign_text_in_signer_messages_is_clipped() {
    let long = format!("https://github.com/{}\n", "x".repeat(5000));
    let reason = signer_check(
        "pypi-attestations",
        &github_signer_with(|s| s.source_repository_uri = Some(long)),
    )
    .expect_err("differs");
    assert!(reason.chars().count() < 300, "{} chars", reason.chars().count());
    assert!(!reason.contains('\n'));
}

#[test]
fn github_servers_derive_from_the_issuer() {
    assert_eq!(github_server(GH), "https://github.com");
    assert_eq!(
        github_server("https://token.actions.githubusercontent.com/acme"),
        "https://github.com"
    );
    assert_eq!(
        github_server("https://ghe.example.com/_services/token"),
        "https://ghe.example.com"
    );
    let ghes = SignerIdentity {
        issuer: Some("https://ghe.example.com/_services/token".into()),
        sans: vec!["https://ghe.example.com/platform/enterprise/.github/workflows/publish.yaml@refs/heads/main".into()],
        build_signer_uri: Some(
            "https://ghe.example.com/platform/enterprise/.github/workflows/publish.yaml@refs/heads/main".into(),
        ),
        runner_environment: Some("self-hosted".into()),
        source_repository_uri: Some("https://ghe.example.com/platform/enterprise".into()),
        source_repository_owner_identifier: Some("42".into()),
        build_config_uri: Some(
            "https://ghe.example.com/platform/enterprise/.github/workflows/publish.yaml@refs/heads/main".into(),
        ),
        build_trigger: Some("workflow_dispatch".into()),
        ..SignerIdentity::default()
    };
    assert_eq!(
        signer_check("ghes", &ghes),
        Ok(()),
        "self-hosted is allowed for this publisher"
    );
    let mut on_github = ghes;
    on_github.source_repository_uri = Some("https://github.com/platform/enterprise".into());
    let reason = signer_check("ghes", &on_github).expect_err("wrong server");
    assert!(
        reason.contains("not https://ghe.example.com/platform/enterprise"),
        "{reason}"
    );
}

#[test]
fn reusable_workflow_signers_match_by_path_or_exact_ref() {
    let signer = |called: &str| SignerIdentity {
        issuer: Some(GH.into()),
        sans: vec![called.into()],
        build_signer_uri: Some(called.into()),
        runner_environment: Some("github-hosted".into()),
        source_repository_uri: Some("https://github.com/acme/shared".into()),
        source_repository_owner_identifier: Some("1234".into()),
        build_config_uri: Some("https://github.com/acme/shared/.github/workflows/release.yml@refs/tags/v1".into()),
        build_trigger: Some("release".into()),
        ..SignerIdentity::default()
    };
    let v2 = "https://github.com/acme/ci/.github/workflows/publish.yml@refs/tags/v2";
    assert_eq!(signer_check("shared-ci", &signer(v2)), Ok(()));
    assert_eq!(
        signer_check(
            "shared-ci",
            &signer("https://github.com/ACME/CI/.github/workflows/publish.yml@main")
        ),
        Ok(())
    );
    let reason = signer_check(
        "shared-ci",
        &signer("https://github.com/acme/ci/.github/workflows/other.yml@main"),
    )
    .expect_err("other file");
    assert!(
        reason.contains("not the reusable workflow acme/ci/.github/workflows/publish.yml"),
        "{reason}"
    );
    assert!(
        signer_check(
            "shared-ci",
            &signer("https://ghe.example.com/acme/ci/.github/workflows/publish.yml@main")
        )
        .is_err(),
        "another server"
    );
    // Without a reusable workflow named, the signing workflow must be the caller itself.
    assert!(signer_check(
        "pypi-attestations",
        &github_signer_with(|s| s.build_signer_uri = Some(v2.into()))
    )
    .is_err());
    // A pinned ref compares exactly.
    assert_eq!(signer_check("shared-ci-pinned", &signer(v2)), Ok(()));
    let reason = signer_check(
        "shared-ci-pinned",
        &signer("https://github.com/acme/ci/.github/workflows/publish.yml@refs/tags/v3"),
    )
    .expect_err("other ref");
    assert!(reason.contains("@refs/tags/v2"), "{reason}");
}

#[test]
fn gitlab_signers_match_the_project_and_ci_file() {
    let gitlab = signer_fixtures::gitlab_signer();
    assert_eq!(signer_check("gitlab-oidc", &gitlab), Ok(()));
    let mut shouting = gitlab.clone();
    shouting.source_repository_uri = Some("https://gitlab.com/FacuTuesca/GitLab-OIDC-Project".into());
    shouting.build_config_uri =
        Some("https://gitlab.com/FacuTuesca/GitLab-OIDC-Project//.gitlab-ci.yml@refs/tags/v1".into());
    assert_eq!(signer_check("gitlab-oidc", &shouting), Ok(()));
    let mut other_project = gitlab.clone();
    other_project.source_repository_uri = Some("https://gitlab.com/facutuesca/other".into());
    let reason = signer_check("gitlab-oidc", &other_project).expect_err("other project");
    assert!(
        reason.contains("not https://gitlab.com/facutuesca/gitlab-oidc-project"),
        "{reason}"
    );
    let mut other_file = gitlab.clone();
    other_file.build_config_uri =
        Some("https://gitlab.com/facutuesca/gitlab-oidc-project//ci/release.yml@refs/heads/main".into());
    let reason = signer_check("gitlab-oidc", &other_file).expect_err("other file");
    assert!(
        reason.contains("not .gitlab-ci.yml of facutuesca/gitlab-oidc-project"),
        "{reason}"
    );
    let mut self_hosted = gitlab;
    self_hosted.runner_environment = Some("self-hosted".into());
    assert!(signer_check("gitlab-oidc", &self_hosted)
        .expect_err("self-hosted")
        .contains("self-hosted runners"));
}

#[test]
fn google_signers_match_by_email() {
    assert_eq!(
        signer_check(
            "gcb",
            &signer_fixtures::google_signer("builder@proj.iam.gserviceaccount.com")
        ),
        Ok(())
    );
    let reason = signer_check(
        "gcb",
        &signer_fixtures::google_signer("Builder@proj.iam.gserviceaccount.com"),
    )
    .expect_err("emails compare exactly");
    assert!(reason.contains("not builder@proj.iam.gserviceaccount.com"), "{reason}");
}

#[test]
fn a_signer_is_checked_against_the_publishers_own_issuer() {
    let rules = signer_fixtures::rules("", "").expect("compiles");
    let publisher = rules.policy("pypi").publishers.first().expect("publisher");
    let gitlab = rules.issuer_by_url("https://gitlab.com").expect("issuer");
    let reason = publisher
        .check_signer(gitlab, &signer_fixtures::gitlab_signer())
        .expect_err("wrong issuer");
    assert!(reason.contains("trusts issuer \"github\""), "{reason}");
}

/// The signer of the early-2023 npm fixture `slsa-v0.2-sigstore-1.0.0`, as the verifier reads
/// its certificate (deprecated GitHub Workflow extensions only).
fn legacy_github_signer() -> SignerIdentity {
    let san = "https://github.com/sigstore/sigstore-js/.github/workflows/publish.yml@refs/tags/v1.0.0";
    SignerIdentity {
        issuer: Some(GH.into()),
        sans: vec![san.into()],
        build_signer_uri: Some(san.into()),
        source_repository_uri: Some("https://github.com/sigstore/sigstore-js".into()),
        source_repository_digest: Some("06528997c3c8ab9f864fad9a3658446aca7fd86d".into()),
        source_repository_ref: Some("refs/tags/v1.0.0".into()),
        build_trigger: Some("release".into()),
        predates_ci_extensions: true,
        ..SignerIdentity::default()
    }
}

const SIGSTORE_JS_PUBLISHERS: &str = r#"
[[registries.pypi.publishers]]
id = "sigstore-js"
issuer = "github"
projects = ["sigstore"]
repository = "sigstore/sigstore-js"
repository_owner_id = "71096353"
workflow = "publish.yml"

[[registries.pypi.publishers]]
id = "sigstore-js-release"
issuer = "github"
projects = ["sigstore"]
repository = "sigstore/sigstore-js"
repository_owner_id = "71096353"
workflow = "release.yml"

[[registries.pypi.publishers]]
id = "sigstore-js-reusable"
issuer = "github"
projects = ["sigstore"]
repository = "sigstore/sigstore-js"
repository_owner_id = "71096353"
workflow = "release.yml"
reusable_workflow = "sigstore/sigstore-js/.github/workflows/publish.yml"
"#;

/// Checks `signer` against one of [`SIGSTORE_JS_PUBLISHERS`].
fn sigstore_js_check(publisher: &str, signer: &SignerIdentity) -> Result<(), String> {
    let rules = signer_fixtures::rules("", SIGSTORE_JS_PUBLISHERS).expect("compiles");
    let publisher = rules
        .policy("pypi")
        .publishers
        .iter()
        .find(|p| p.id.as_str() == publisher)
        .expect("publisher");
    let issuer = rules.issuers.get(&publisher.issuer).expect("issuer");
    publisher.check_signer(issuer, signer)
}

#[test]
fn a_certificate_from_before_the_2023_extensions_matches_by_its_deprecated_ones() {
    let legacy = legacy_github_signer();
    assert_eq!(sigstore_js_check("sigstore-js", &legacy), Ok(()));
    // The SAN is the only workflow it names: it is the caller as well.
    let reason = sigstore_js_check("sigstore-js-release", &legacy).expect_err("other workflow");
    assert!(
        reason.contains("the calling workflow is") && reason.contains("not release.yml of sigstore/sigstore-js"),
        "{reason}"
    );
    // A publisher naming a reusable workflow needs the caller, which it does not name.
    let reason = sigstore_js_check("sigstore-js-reusable", &legacy).expect_err("no caller");
    assert!(
        reason.contains("predates Fulcio's 2023 extensions and does not name the calling workflow"),
        "{reason}"
    );
}

#[test]
fn only_a_certificate_that_predates_the_extensions_may_lack_the_owner_and_runner() {
    // The same facts without the flag are a current certificate missing extensions: refused.
    let mut current = legacy_github_signer();
    current.predates_ci_extensions = false;
    current.build_config_uri = current.build_signer_uri.clone();
    let reason = sigstore_js_check("sigstore-js", &current).expect_err("no owner id");
    assert_eq!(reason, "the certificate does not carry the owner id");
    current.source_repository_owner_identifier = Some("71096353".into());
    let reason = sigstore_js_check("sigstore-js", &current).expect_err("no runner");
    assert!(reason.contains("(runner environment not stated)"), "{reason}");
    // A legacy certificate is still held to what it does state.
    let mut target = legacy_github_signer();
    target.build_trigger = Some("pull_request_target".into());
    assert!(sigstore_js_check("sigstore-js", &target).is_err());
    let mut fork = legacy_github_signer();
    fork.source_repository_uri = Some("https://github.com/someone/sigstore-js".into());
    let reason = sigstore_js_check("sigstore-js", &fork).expect_err("fork");
    assert!(
        reason.contains("not https://github.com/sigstore/sigstore-js"),
        "{reason}"
    );
    let mut self_hosted = legacy_github_signer();
    self_hosted.runner_environment = Some("self-hosted".into());
    let reason = sigstore_js_check("sigstore-js", &self_hosted).expect_err("stated self-hosted");
    assert!(reason.contains("self-hosted runners are not allowed"), "{reason}");
}

const CCI_ORG: &str = "https://oidc.circleci.com/org/6f0c3a0e-5d2b-4f4e-9c1a-2b7d0e9a8c11";
const CCI_PROJECT: &str = "0e3f6a52-9b1d-4c4f-8f0e-5a6b7c8d9e01";
const CCI_DEFINITION: &str = "b7c1d2e3-0000-4000-8000-00000000aaaa";

/// A CircleCI signer as Fulcio certifies it (`config/identity/config.yaml`, circleci-job).
fn circleci_signer(project: &str, definition: &str) -> SignerIdentity {
    let san = format!("https://circleci.com/api/v2/projects/{project}/pipeline-definitions/{definition}");
    SignerIdentity {
        issuer: Some(CCI_ORG.into()),
        sans: vec![san.clone()],
        build_signer_uri: Some(san),
        build_config_uri: Some(
            "https://circleci.com/api/v2/pipeline/5d1e2f3a-0000-4000-8000-000000000001/config".into(),
        ),
        source_repository_uri: Some("github.com/acme/thing".into()),
        source_repository_ref: Some("refs/heads/main".into()),
        runner_environment: Some("\"\"".into()),
        ..SignerIdentity::default()
    }
}

#[test]
fn circleci_signers_match_by_organization_issuer_and_project() {
    let signer = circleci_signer(CCI_PROJECT, CCI_DEFINITION);
    assert_eq!(signer_check("cci", &signer), Ok(()));
    assert_eq!(signer_check("cci-pinned", &signer), Ok(()));
    // Any pipeline definition of the project, unless the publisher pins one.
    let other_definition = circleci_signer(CCI_PROJECT, "c0ffee00-0000-4000-8000-000000000000");
    assert_eq!(signer_check("cci", &other_definition), Ok(()));
    let reason = signer_check("cci-pinned", &other_definition).expect_err("pinned definition");
    assert!(
        reason.contains(&format!(
            "not a pipeline definition of project {CCI_PROJECT} ({CCI_DEFINITION})"
        )),
        "{reason}"
    );
}

#[test]
fn circleci_signers_that_must_not_match_say_why() {
    type Change = Box<dyn FnOnce(&mut SignerIdentity)>;
    let cases: Vec<(&str, Change, &str)> = vec![
        (
            "cci",
            Box::new(|s| *s = circleci_signer("11111111-2222-4333-8444-555555555555", CCI_DEFINITION)),
            "not a pipeline definition of project 0e3f6a52",
        ),
        (
            "cci",
            Box::new(|s| s.issuer = Some("https://oidc.circleci.com/org/00000000-0000-4000-8000-000000000000".into())),
            "the certificate was issued for tokens of \"https://oidc.circleci.com/org/00000000",
        ),
        (
            "cci",
            Box::new(|s| {
                s.sans = vec![format!(
                    "https://circleci.example/api/v2/projects/{CCI_PROJECT}/pipeline-definitions/{CCI_DEFINITION}"
                )]
            }),
            "the certificate is for \"https://circleci.example/",
        ),
        (
            "cci",
            Box::new(|s| {
                s.sans = vec![format!(
                    "https://circleci.com/api/v2/projects/{CCI_PROJECT}/pipeline-definitions/x/y"
                )]
            }),
            "not a pipeline definition",
        ),
        (
            "cci",
            Box::new(|s| s.runner_environment = Some("ssh-rerun".into())),
            "signed in an SSH rerun of the job, which is never trusted",
        ),
        (
            "cci-pinned",
            Box::new(|s| s.source_repository_uri = Some("github.com/evil/thing".into())),
            "the certificate's source repository is \"github.com/evil/thing\", not the publisher's oidc.circleci.com/vcs-origin \"github.com/acme/thing\"",
        ),
        (
            "cci-pinned",
            Box::new(|s| s.source_repository_ref = Some("refs/heads/feature".into())),
            "source repository ref is \"refs/heads/feature\"",
        ),
        (
            "cci-pinned",
            Box::new(|s| s.source_repository_ref = None),
            "does not carry the source repository ref, which the publisher's oidc.circleci.com/vcs-ref claim needs",
        ),
    ];
    for (publisher, change, expected) in cases {
        let mut signer = circleci_signer(CCI_PROJECT, CCI_DEFINITION);
        change(&mut signer);
        let reason = signer_check(publisher, &signer).expect_err(expected);
        assert!(
            reason.contains(expected),
            "{publisher}: expected {expected:?} in {reason:?}"
        );
    }
}

/// A Buildkite signer as Fulcio certifies it (buildkite-job).
fn buildkite_signer(org: &str, pipeline: &str) -> SignerIdentity {
    SignerIdentity {
        issuer: Some("https://agent.buildkite.com".into()),
        sans: vec![format!("https://buildkite.com/{org}/{pipeline}")],
        runner_environment: Some("buildkite-hosted".into()),
        source_repository_digest: Some("f00dfeed".into()),
        build_trigger: Some("webhook".into()),
        ..SignerIdentity::default()
    }
}

#[test]
fn buildkite_signers_match_by_organization_and_pipeline() {
    assert_eq!(signer_check("bk", &buildkite_signer("acme", "release")), Ok(()));
    // build_branch has no certificate counterpart and is left to the token exchange.
    assert_eq!(
        signer_check("bk-hosted-webhook", &buildkite_signer("acme", "release")),
        Ok(())
    );
    let reason = signer_check("bk", &buildkite_signer("acme", "nightly")).expect_err("other pipeline");
    assert_eq!(
        reason,
        "the certificate is for \"https://buildkite.com/acme/nightly\", not the pipeline https://buildkite.com/acme/release"
    );
    let reason = signer_check("bk", &buildkite_signer("evil", "release")).expect_err("other organization");
    assert!(
        reason.contains("not the pipeline https://buildkite.com/acme/release"),
        "{reason}"
    );
    let mut prefixed = buildkite_signer("acme", "release");
    prefixed.sans = vec!["https://buildkite.com/acme/release-evil".into()];
    assert!(signer_check("bk", &prefixed).is_err(), "the pipeline compares exactly");
    let reason = signer_check("bk-org-only", &buildkite_signer("acme", "release")).expect_err("no pipeline");
    assert!(
        reason.contains("publisher bk-org-only names no organization_slug and pipeline_slug claims"),
        "{reason}"
    );
}

#[test]
fn buildkite_claims_with_certificate_counterparts_are_checked() {
    let mut api = buildkite_signer("acme", "release");
    api.build_trigger = Some("api".into());
    let reason = signer_check("bk-hosted-webhook", &api).expect_err("other trigger");
    assert_eq!(
        reason,
        "the certificate's build trigger is \"api\", not the publisher's build_source \"webhook\""
    );
    let mut self_hosted = buildkite_signer("acme", "release");
    self_hosted.runner_environment = Some("self-hosted".into());
    let reason = signer_check("bk-hosted-webhook", &self_hosted).expect_err("self-hosted");
    assert!(reason.contains("runner environment is \"self-hosted\""), "{reason}");
    // The plain publisher names neither, so neither is checked.
    assert_eq!(signer_check("bk", &api), Ok(()));
}

#[test]
fn generic_publishers_vouch_for_no_attestation() {
    let signer = SignerIdentity {
        issuer: Some("https://sso.corp.example".into()),
        sans: vec!["release-bot".into()],
        ..SignerIdentity::default()
    };
    let reason = signer_check("corp", &signer).expect_err("generic");
    assert!(
        reason.starts_with("attestations cannot be matched to publishers of the generic issuer corp"),
        "{reason}"
    );
}
