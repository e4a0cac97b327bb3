//! Issuers and trusted publishers as written in a rules file (`[issuers.<name>]`,
//! `[[registries.<name>.publishers]]`), deserialized but not yet validated.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::IssuerKind;

/// An issuer as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIssuer {
    /// The exact `iss` value.
    pub url: String,
    /// The provider kind.
    pub kind: IssuerKind,
    /// The audience tokens from this issuer must carry, overriding the registry's (a single
    /// value; for providers whose audience cannot be chosen freely).
    pub audience: Option<String>,
    /// The issuer's JWKS URL, pinned instead of OIDC discovery.
    pub jwks_url: Option<String>,
    /// Allowed signature algorithms; defaults to RS256 for GitHub, GitLab and Google.
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// Kill switch (default true).
    pub enabled: Option<bool>,
}

/// A trusted publisher as written. Which fields apply depends on the issuer's kind; fields of
/// another kind are refused at validation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPublisher {
    /// Stable id, unique within the registry.
    pub id: String,
    /// The name of an issuer under `[issuers]`.
    pub issuer: String,
    /// The projects this publisher may upload to.
    pub projects: Vec<String>,
    /// Whether it may create a project that does not exist yet (pending publisher).
    #[serde(default)]
    pub pending: bool,
    /// GitHub: `owner/name`.
    pub repository: Option<String>,
    /// GitHub: the owner's immutable numeric id.
    pub repository_owner_id: Option<String>,
    /// GitHub: the caller workflow file name (checked against `workflow_ref`).
    pub workflow: Option<String>,
    /// GitHub: the called (reusable) workflow, `owner/repo/.github/workflows/file.yml[@ref]`.
    pub reusable_workflow: Option<String>,
    /// GitHub or GitLab: the deployment environment.
    pub environment: Option<String>,
    /// GitHub or GitLab: a glob over the git ref (`refs/tags/v*`).
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
    /// GitHub or GitLab: accept self-hosted runners (default false).
    #[serde(default)]
    pub allow_self_hosted: bool,
    /// GitHub: events allowed beyond the trusted default set (`pull_request_target` never).
    pub allowed_events: Option<Vec<String>>,
    /// GitLab: `namespace/project`.
    pub project_path: Option<String>,
    /// GitLab: the top-level CI file path (`.gitlab-ci.yml`).
    pub ci_config_path: Option<String>,
    /// Google: the service account email.
    pub email: Option<String>,
    /// Google: the subject, optional.
    pub subject: Option<String>,
    /// Buildkite, CircleCI, generic: exact claim values.
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
}
