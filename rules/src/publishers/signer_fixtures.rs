//! Realistic signers (the PEP 740 fixtures' GitHub and GitLab certificates) and publishers
//! for them, shared by the signer and provenance tests.

use super::SignerIdentity;
use crate::compile::{compile, CompiledRules, KnownRegistry, RuleSource};
use crate::name::Protocol;

/// GitHub's issuer.
pub(crate) const GH: &str = "https://token.actions.githubusercontent.com";
/// The caller workflow of the real PyPI fixture.
pub(crate) const GH_WORKFLOW: &str =
    "https://github.com/trailofbits/pypi-attestations/.github/workflows/release.yml@refs/tags/v0.0.19";
/// The CI configuration of the real GitLab fixture.
pub(crate) const GL_CONFIG: &str = "https://gitlab.com/facutuesca/gitlab-oidc-project//.gitlab-ci.yml@refs/heads/main";

/// The signer of the real PyPI fixture's GitHub attestation.
pub(crate) fn github_signer() -> SignerIdentity {
    SignerIdentity {
        issuer: Some(GH.into()),
        sans: vec![GH_WORKFLOW.into()],
        build_signer_uri: Some(GH_WORKFLOW.into()),
        runner_environment: Some("github-hosted".into()),
        source_repository_uri: Some("https://github.com/trailofbits/pypi-attestations".into()),
        source_repository_owner_identifier: Some("2314423".into()),
        build_config_uri: Some(GH_WORKFLOW.into()),
        build_trigger: Some("push".into()),
        ..SignerIdentity::default()
    }
}

/// The signer of the real GitLab fixture.
pub(crate) fn gitlab_signer() -> SignerIdentity {
    SignerIdentity {
        issuer: Some("https://gitlab.com".into()),
        sans: vec![GL_CONFIG.into()],
        build_signer_uri: Some(GL_CONFIG.into()),
        runner_environment: Some("gitlab-hosted".into()),
        source_repository_uri: Some("https://gitlab.com/facutuesca/gitlab-oidc-project".into()),
        source_repository_owner_identifier: Some("74367405".into()),
        build_config_uri: Some(GL_CONFIG.into()),
        build_trigger: Some("push".into()),
        ..SignerIdentity::default()
    }
}

/// A Google service account signer.
pub(crate) fn google_signer(email: &str) -> SignerIdentity {
    SignerIdentity {
        issuer: Some("https://accounts.google.com".into()),
        sans: vec![email.into()],
        ..SignerIdentity::default()
    }
}

const ISSUERS: &str = r#"
[issuers.github]
url = "https://token.actions.githubusercontent.com"
kind = "github"
[issuers.ghes]
url = "https://ghe.example.com/_services/token"
kind = "github"
[issuers.gitlab]
url = "https://gitlab.com"
kind = "gitlab"
[issuers.google]
url = "https://accounts.google.com"
kind = "google"
[issuers.buildkite]
url = "https://agent.buildkite.com"
kind = "buildkite"
algorithms = ["RS256"]
[issuers.circleci]
url = "https://oidc.circleci.com/org/6f0c3a0e-5d2b-4f4e-9c1a-2b7d0e9a8c11"
kind = "circleci"
algorithms = ["RS256"]
[issuers.corp]
url = "https://sso.corp.example"
kind = "generic"
algorithms = ["RS256"]
"#;

const PUBLISHERS: &str = r#"
[[registries.pypi.publishers]]
id = "pypi-attestations"
issuer = "github"
projects = ["pypi-attestations"]
repository = "trailofbits/pypi-attestations"
repository_owner_id = "2314423"
workflow = "release.yml"

[[registries.pypi.publishers]]
id = "gitlab-oidc"
issuer = "gitlab"
projects = ["gitlab-oidc-project", "pypi-attestations"]
project_path = "facutuesca/gitlab-oidc-project"
ci_config_path = ".gitlab-ci.yml"

[[registries.pypi.publishers]]
id = "shared-ci"
issuer = "github"
projects = ["acme-shared"]
repository = "acme/shared"
repository_owner_id = "1234"
workflow = "release.yml"
reusable_workflow = "acme/ci/.github/workflows/publish.yml"

[[registries.pypi.publishers]]
id = "shared-ci-pinned"
issuer = "github"
projects = ["acme-shared"]
repository = "acme/shared"
repository_owner_id = "1234"
workflow = "release.yml"
reusable_workflow = "acme/ci/.github/workflows/publish.yml@refs/tags/v2"

[[registries.pypi.publishers]]
id = "ghes"
issuer = "ghes"
projects = ["acme-enterprise"]
repository = "platform/enterprise"
repository_owner_id = "42"
workflow = "publish.yaml"
allow_self_hosted = true

[[registries.pypi.publishers]]
id = "gcb"
issuer = "google"
projects = ["gcb-thing"]
email = "builder@proj.iam.gserviceaccount.com"

[[registries.pypi.publishers]]
id = "bk"
issuer = "buildkite"
projects = ["bk-thing"]
claims = { organization_slug = "acme", pipeline_slug = "release" }

[[registries.pypi.publishers]]
id = "bk-hosted-webhook"
issuer = "buildkite"
projects = ["bk-thing"]
claims = { organization_slug = "acme", pipeline_slug = "release", build_source = "webhook", runner_environment = "buildkite-hosted", build_branch = "main" }

[[registries.pypi.publishers]]
id = "bk-org-only"
issuer = "buildkite"
projects = ["bk-thing"]
claims = { organization_slug = "acme" }

[[registries.pypi.publishers]]
id = "cci"
issuer = "circleci"
projects = ["cci-thing"]
claims = { "oidc.circleci.com/project-id" = "0e3f6a52-9b1d-4c4f-8f0e-5a6b7c8d9e01" }

[[registries.pypi.publishers]]
id = "cci-pinned"
issuer = "circleci"
projects = ["cci-thing"]
claims = { "oidc.circleci.com/project-id" = "0e3f6a52-9b1d-4c4f-8f0e-5a6b7c8d9e01", "oidc.circleci.com/pipeline-definition-id" = "b7c1d2e3-0000-4000-8000-00000000aaaa", "oidc.circleci.com/vcs-origin" = "github.com/acme/thing", "oidc.circleci.com/vcs-ref" = "refs/heads/main" }

[[registries.pypi.publishers]]
id = "corp"
issuer = "corp"
projects = ["corp-thing"]
claims = { sub = "release-bot" }
"#;

/// Issuers and publishers for the signers above, with `registry_keys` added to
/// `[registries.pypi]` and `extra` appended (a registry `npm` of protocol npm is known too).
pub(crate) fn rules(registry_keys: &str, extra: &str) -> Result<CompiledRules, crate::RulesError> {
    let known = [
        KnownRegistry {
            name: "pypi".into(),
            protocol: Protocol::Pypi,
        },
        KnownRegistry {
            name: "npm".into(),
            protocol: Protocol::Npm,
        },
    ];
    compile(
        &[RuleSource {
            name: "r.toml".into(),
            text: format!(
                "{ISSUERS}\n[registries.pypi]\naudience = \"upload.example.org\"\n{registry_keys}\n{PUBLISHERS}\n{extra}"
            ),
        }],
        &known,
    )
}
