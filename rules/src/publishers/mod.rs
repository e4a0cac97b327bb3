//! Trusted publishing policy: OIDC issuers and the trusted publishers that may upload to
//! projects, and the pure decision of which publishers a verified token's claims match.
//!
//! ```toml
//! [issuers.github]
//! url = "https://token.actions.githubusercontent.com"
//! kind = "github"                    # github | gitlab | google | buildkite | circleci | generic
//! # audience = "upload.example.org"  # overrides the registry's audience (never "sigstore")
//! # jwks_url = "https://…/jwks"      # pin the key set instead of OIDC discovery
//! algorithms = ["RS256"]             # defaults per kind
//! enabled = true                     # kill switch, hot-reloaded
//!
//! [registries.pypi]
//! audience = "upload.example.org"    # what `/_/oidc/audience` answers; npm: "npm:<host>"
//!
//! [[registries.pypi.publishers]]
//! id = "acme-release"
//! issuer = "github"
//! projects = ["acme-widgets", "acme-tools"]
//! repository = "acme/widgets"
//! repository_owner_id = "1234567"
//! workflow = "release.yml"                         # the caller, checked against workflow_ref
//! # reusable_workflow = "acme/ci/.github/workflows/publish.yml"   # the called one (job_workflow_ref)
//! # environment = "pypi"
//! # ref = "refs/tags/v*"
//! # allow_self_hosted = false
//! # pending = true                                  # may create the project on first upload
//! ```

mod compile;
mod exact_claims;
mod github;
mod gitlab;
mod google;
mod raw;
mod signer;
#[cfg(test)]
pub(crate) mod signer_fixtures;
#[cfg(test)]
mod tests;

pub(crate) use self::compile::{check_audience, compile_issuer, compile_publisher};
pub use self::raw::{RawIssuer, RawPublisher};

use serde::Deserialize;

use self::github::GithubConstraints;
use self::gitlab::GitlabConstraints;
use self::google::GoogleConstraints;
use crate::decide::RuleId;
use crate::name::ProjectName;

/// The kind of CI provider an issuer is, which decides the claims a publisher checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IssuerKind {
    /// GitHub Actions (github.com or GitHub Enterprise Server).
    Github,
    /// GitLab CI/CD (gitlab.com or self-managed).
    Gitlab,
    /// Google Cloud service accounts.
    Google,
    /// Buildkite pipelines (checked by exact claims).
    Buildkite,
    /// CircleCI projects (checked by exact claims).
    Circleci,
    /// Any other OIDC issuer (checked by exact claims).
    Generic,
}

impl IssuerKind {
    /// The kind's name as written in rules files.
    pub fn as_str(self) -> &'static str {
        match self {
            IssuerKind::Github => "github",
            IssuerKind::Gitlab => "gitlab",
            IssuerKind::Google => "google",
            IssuerKind::Buildkite => "buildkite",
            IssuerKind::Circleci => "circleci",
            IssuerKind::Generic => "generic",
        }
    }
}

/// A compiled issuer.
#[derive(Debug, Clone)]
pub struct Issuer {
    /// Its name in the rules.
    pub name: String,
    /// The exact `iss`.
    pub url: String,
    /// Provider kind.
    pub kind: IssuerKind,
    /// Required audience, overriding the registry's.
    pub audience: Option<String>,
    /// Pinned JWKS URL (no discovery).
    pub jwks_url: Option<String>,
    /// Allowed algorithms.
    pub algorithms: Vec<String>,
    /// Whether exchanges with this issuer are on.
    pub enabled: bool,
}

/// What a publisher requires of a token (and of a signing certificate), per kind of provider.
#[derive(Debug, Clone)]
enum Constraints {
    /// GitHub Actions.
    Github(GithubConstraints),
    /// GitLab CI/CD.
    Gitlab(GitlabConstraints),
    /// Google Cloud service accounts.
    Google(GoogleConstraints),
    /// Exact claim values: Buildkite, CircleCI and generic issuers.
    Exact(Vec<(String, String)>),
}

/// A compiled trusted publisher.
#[derive(Debug, Clone)]
pub struct Publisher {
    /// Its id.
    pub id: RuleId,
    /// The issuer's name.
    pub issuer: String,
    /// The projects it may upload to.
    pub projects: Vec<ProjectName>,
    /// Whether it may create a project on first upload.
    pub pending: bool,
    constraints: Constraints,
}

/// Read access to a verified token's claims.
pub trait Claims {
    /// A string claim.
    fn string(&self, name: &str) -> Option<&str>;
    /// A boolean claim.
    fn boolean(&self, name: &str) -> Option<bool>;
}

/// Who signed an attestation: the identity facts of its verified Fulcio certificate (subject
/// alternative names and the `1.3.6.1.4.1.57264.1.*` extensions), as the gateway read them.
/// For a certificate that predates Fulcio's 2023 CI extensions the CI fields were read from the
/// deprecated GitHub Workflow extensions (`.2` to `.6`) and the workflow SAN instead, and
/// [`SignerIdentity::predates_ci_extensions`] is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignerIdentity {
    /// The OIDC issuer of the token Fulcio certified (extension .8, or the deprecated .1).
    pub issuer: Option<String>,
    /// Subject alternative names (URIs, emails), in order.
    pub sans: Vec<String>,
    /// Build Signer URI (.9): for GitHub the workflow that ran the job (`job_workflow_ref`).
    pub build_signer_uri: Option<String>,
    /// Runner Environment (.11): `github-hosted`, `gitlab-hosted` or `self-hosted`.
    pub runner_environment: Option<String>,
    /// Source Repository URI (.12), e.g. `https://github.com/owner/repo`.
    pub source_repository_uri: Option<String>,
    /// Source Repository Digest (.13): the commit built.
    pub source_repository_digest: Option<String>,
    /// Source Repository Ref (.14): the ref built.
    pub source_repository_ref: Option<String>,
    /// Source Repository Owner Identifier (.17): the owner's immutable numeric id.
    pub source_repository_owner_identifier: Option<String>,
    /// Build Config URI (.18): for GitHub the caller workflow (`workflow_ref`), for GitLab
    /// the CI configuration (`ci_config_ref_uri`).
    pub build_config_uri: Option<String>,
    /// Build Trigger (.20): the event that started the build (`push`, `release`, ...).
    pub build_trigger: Option<String>,
    /// The certificate predates Fulcio's 2023 CI extensions (GitHub only): the caller
    /// workflow, the owner id and the runner environment are not known.
    pub predates_ci_extensions: bool,
}

/// Why a publisher did not match, for the refusal message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The publisher.
    pub publisher: String,
    /// Why.
    pub reason: String,
}

impl Publisher {
    /// How specific the publisher is: more constraints rank first when several match.
    pub fn specificity(&self) -> u32 {
        match &self.constraints {
            Constraints::Github(github) => github.specificity(),
            Constraints::Gitlab(gitlab) => gitlab.specificity(),
            Constraints::Google(google) => google.specificity(),
            Constraints::Exact(claims) => claims.len() as u32,
        }
    }

    /// Whether the publisher may upload to `project`.
    pub fn covers(&self, project: &ProjectName) -> bool {
        self.projects.contains(project)
    }

    /// Checks the claims of a token from `issuer` against this publisher.
    pub fn check(&self, issuer: &Issuer, claims: &dyn Claims) -> Result<(), String> {
        match &self.constraints {
            Constraints::Github(github) => github.check_claims(claims),
            Constraints::Gitlab(gitlab) => gitlab.check_claims(issuer, claims),
            Constraints::Google(google) => google.check_claims(claims),
            Constraints::Exact(expected) => exact_claims::check_claims(expected, claims),
        }
    }
}

/// The value of a string claim the check needs, or why it cannot be made.
fn need_claim<'c>(claims: &'c dyn Claims, name: &str) -> Result<&'c str, String> {
    claims
        .string(name)
        .ok_or_else(|| format!("the token has no {name:?} claim"))
}

/// Text from outside (certificates, the network) as it may appear in a message: at most 200
/// characters, control characters replaced.
pub(crate) fn foreign(text: &str) -> String {
    const MAX: usize = 200;
    let mut out: String = text
        .chars()
        .take(MAX)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if text.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

impl crate::compile::CompiledRules {
    /// The audience a CI token from `issuer` must carry to be exchanged for `registry`: the
    /// issuer's own when set, else the registry's.
    pub fn audience<'a>(&'a self, registry: &str, issuer: &'a Issuer) -> Option<&'a str> {
        issuer
            .audience
            .as_deref()
            .or_else(|| self.policy(registry).audience.as_deref())
    }

    /// The registry's audience, as `/_/oidc/audience` announces it.
    pub fn registry_audience(&self, registry: &str) -> Option<&str> {
        self.policy(registry).audience.as_deref()
    }

    /// Whether `registry` has any trusted publisher.
    pub fn has_publishers(&self, registry: &str) -> bool {
        !self.policy(registry).publishers.is_empty()
    }

    /// The issuer whose exact URL is `iss`, if the rules trust it.
    pub fn issuer_by_url(&self, iss: &str) -> Option<&Issuer> {
        self.issuers.values().find(|i| i.url == iss)
    }

    /// Every issuer, by name.
    pub fn issuers(&self) -> impl Iterator<Item = &Issuer> {
        self.issuers.values()
    }

    /// The publishers of `registry` for `issuer` whose constraints the claims satisfy, most
    /// specific first; or, when none does, why each candidate did not match.
    pub fn match_publishers(
        &self,
        registry: &str,
        issuer: &Issuer,
        claims: &dyn Claims,
    ) -> Result<Vec<&Publisher>, Vec<Mismatch>> {
        let mut matched = Vec::new();
        let mut mismatches = Vec::new();
        for publisher in self
            .policy(registry)
            .publishers
            .iter()
            .filter(|p| p.issuer == issuer.name)
        {
            match publisher.check(issuer, claims) {
                Ok(()) => matched.push(publisher),
                Err(reason) => mismatches.push(Mismatch {
                    publisher: publisher.id.to_string(),
                    reason,
                }),
            }
        }
        if matched.is_empty() {
            return Err(mismatches);
        }
        matched.sort_by_key(|p| std::cmp::Reverse(p.specificity()));
        Ok(matched)
    }
}
