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

mod signer;

use std::collections::BTreeMap;

use globset::{Glob, GlobMatcher};
use serde::Deserialize;

use crate::decide::RuleId;
use crate::name::{ProjectName, Protocol};

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

#[derive(Debug, Clone)]
enum Constraints {
    Github {
        repository: String,
        owner_id: String,
        workflow: String,
        reusable: Option<String>,
        environment: Option<String>,
        git_ref: Option<GlobMatcher>,
        allow_self_hosted: bool,
        allowed_events: Option<Vec<String>>,
    },
    Gitlab {
        project_path: String,
        ci_config_path: String,
        environment: Option<String>,
        git_ref: Option<GlobMatcher>,
        allow_self_hosted: bool,
    },
    Google {
        email: String,
        subject: Option<String>,
    },
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

/// Events that let code from outside the repository run with its credentials: refused unless a
/// publisher allows them explicitly (`pull_request_target` can never be allowed).
const UNTRUSTED_EVENTS: &[&str] = &[
    "pull_request",
    "workflow_run",
    "issue_comment",
    "pull_request_review_comment",
    "discussion_comment",
];

impl Publisher {
    /// How specific the publisher is: more constraints rank first when several match.
    pub fn specificity(&self) -> u32 {
        match &self.constraints {
            Constraints::Github {
                environment,
                git_ref,
                reusable,
                ..
            } => {
                1 + 4 * u32::from(environment.is_some())
                    + 2 * u32::from(git_ref.is_some())
                    + u32::from(reusable.is_some())
            }
            Constraints::Gitlab {
                environment, git_ref, ..
            } => 1 + 4 * u32::from(environment.is_some()) + 2 * u32::from(git_ref.is_some()),
            Constraints::Google { subject, .. } => 1 + u32::from(subject.is_some()),
            Constraints::Exact(claims) => claims.len() as u32,
        }
    }

    /// Whether the publisher may upload to `project`.
    pub fn covers(&self, project: &ProjectName) -> bool {
        self.projects.contains(project)
    }

    /// Checks the claims of a token from `issuer` against this publisher.
    pub fn check(&self, issuer: &Issuer, claims: &dyn Claims) -> Result<(), String> {
        let need = |name: &str| {
            claims
                .string(name)
                .ok_or_else(|| format!("the token has no {name:?} claim"))
        };
        match &self.constraints {
            Constraints::Github {
                repository,
                owner_id,
                workflow,
                reusable,
                environment,
                git_ref,
                allow_self_hosted,
                allowed_events,
            } => {
                let event = need("event_name")?;
                if event == "pull_request_target" {
                    return Err("publishing from a workflow run by 'pull_request_target' is not allowed".into());
                }
                let allowed = match allowed_events {
                    Some(list) => list.iter().any(|e| e == event),
                    None => !UNTRUSTED_EVENTS.contains(&event),
                };
                if !allowed {
                    return Err(format!("publishing from a workflow run by {event:?} is not allowed"));
                }
                if !need("repository")?.eq_ignore_ascii_case(repository) {
                    return Err(format!("the repository is not {repository}"));
                }
                if need("repository_owner_id")? != owner_id {
                    return Err("the repository owner id differs (the owner account was replaced?)".into());
                }
                let caller = workflow_path(need("workflow_ref")?);
                let expected_caller = format!("{repository}/.github/workflows/{workflow}");
                if !same_workflow(caller, &expected_caller) {
                    return Err(format!("the calling workflow is not {workflow}"));
                }
                let called = need("job_workflow_ref")?;
                match reusable {
                    Some(expected) if expected.contains('@') => {
                        if called != expected {
                            return Err(format!("the reusable workflow is not {expected}"));
                        }
                    }
                    Some(expected) => {
                        if !same_workflow(workflow_path(called), expected) {
                            return Err(format!("the reusable workflow is not {expected}"));
                        }
                    }
                    None => {
                        if !same_workflow(workflow_path(called), &expected_caller) {
                            return Err("the job runs a reusable workflow this publisher does not name".into());
                        }
                    }
                }
                if let Some(env) = environment {
                    if !claims
                        .string("environment")
                        .is_some_and(|e| e.eq_ignore_ascii_case(env))
                    {
                        return Err(format!("the environment is not {env:?}"));
                    }
                }
                if let Some(glob) = git_ref {
                    if !glob.is_match(need("ref")?) {
                        return Err(format!("the ref does not match {}", glob.glob()));
                    }
                }
                if !allow_self_hosted && claims.string("runner_environment") != Some("github-hosted") {
                    return Err("self-hosted runners are not allowed for this publisher".into());
                }
                Ok(())
            }
            Constraints::Gitlab {
                project_path,
                ci_config_path,
                environment,
                git_ref,
                allow_self_hosted,
            } => {
                if !need("project_path")?.eq_ignore_ascii_case(project_path) {
                    return Err(format!("the project is not {project_path}"));
                }
                // host/namespace/project//path/to/.gitlab-ci.yml@refs/heads/main
                let uri = need("ci_config_ref_uri")?;
                let host = issuer.url.split_once("://").map_or(issuer.url.as_str(), |(_, h)| h);
                let matches = uri.split_once("//").is_some_and(|(project, rest)| {
                    project.eq_ignore_ascii_case(&format!("{host}/{project_path}"))
                        && rest
                            .split_once('@')
                            .is_some_and(|(path, r#ref)| path == ci_config_path && !r#ref.is_empty())
                });
                if !matches {
                    return Err(format!(
                        "the CI configuration is not {ci_config_path} of {project_path}"
                    ));
                }
                if let Some(env) = environment {
                    if claims.string("environment") != Some(env.as_str()) {
                        return Err(format!("the environment is not {env:?}"));
                    }
                }
                if let Some(glob) = git_ref {
                    if !glob.is_match(need("ref_path")?) {
                        return Err(format!("the ref does not match {}", glob.glob()));
                    }
                }
                if !allow_self_hosted && claims.string("runner_environment") != Some("gitlab-hosted") {
                    return Err("self-hosted runners are not allowed for this publisher".into());
                }
                Ok(())
            }
            Constraints::Google { email, subject } => {
                if need("email")? != email {
                    return Err(format!("the service account is not {email}"));
                }
                if claims.boolean("email_verified") != Some(true) {
                    return Err("the email is not verified".into());
                }
                if let Some(sub) = subject {
                    if need("sub")? != sub {
                        return Err("the subject differs".into());
                    }
                }
                Ok(())
            }
            Constraints::Exact(expected) => {
                for (name, value) in expected {
                    if claims.string(name) != Some(value.as_str()) {
                        return Err(format!("the claim {name:?} is not {value:?}"));
                    }
                }
                Ok(())
            }
        }
    }
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

/// `owner/repo/.github/workflows/file.yml@ref` → the part before `@`.
fn workflow_path(reference: &str) -> &str {
    reference.split_once('@').map_or(reference, |(path, _)| path)
}

/// Workflow paths compare with the repository part case-insensitive and the file exact.
fn same_workflow(actual: &str, expected: &str) -> bool {
    match (
        actual.rsplit_once("/.github/workflows/"),
        expected.rsplit_once("/.github/workflows/"),
    ) {
        (Some((repo_a, file_a)), Some((repo_e, file_e))) => repo_a.eq_ignore_ascii_case(repo_e) && file_a == file_e,
        _ => false,
    }
}

/// Compiles one issuer; `Err` is (field, reason).
pub(crate) fn compile_issuer(name: &str, raw: RawIssuer) -> Result<Issuer, (String, String)> {
    let field = |f: &str| format!("issuers.{name}.{f}");
    if !raw.url.starts_with("https://") || raw.url.len() < 9 || raw.url.ends_with('/') {
        return Err((
            field("url"),
            "must be the issuer's exact https:// URL without a trailing slash".into(),
        ));
    }
    if let Some(audience) = &raw.audience {
        check_audience(audience).map_err(|reason| (field("audience"), reason))?;
    }
    if let Some(url) = &raw.jwks_url {
        if !url.starts_with("https://") || url.len() < 9 {
            return Err((field("jwks_url"), "must be an https:// URL".into()));
        }
    }
    let algorithms = if raw.algorithms.is_empty() {
        match raw.kind {
            IssuerKind::Github | IssuerKind::Gitlab | IssuerKind::Google => vec!["RS256".to_owned()],
            _ => return Err((field("algorithms"), "name the algorithms this issuer signs with".into())),
        }
    } else {
        raw.algorithms
    };
    const ALLOWED: &[&str] = &["RS256", "RS384", "RS512", "ES256", "ES384", "EdDSA"];
    if let Some(bad) = algorithms.iter().find(|a| !ALLOWED.contains(&a.as_str())) {
        return Err((
            field("algorithms"),
            format!("{bad:?} is not allowed (use {})", ALLOWED.join(", ")),
        ));
    }
    Ok(Issuer {
        name: name.to_owned(),
        url: raw.url,
        kind: raw.kind,
        audience: raw.audience,
        jwks_url: raw.jwks_url,
        algorithms,
        enabled: raw.enabled.unwrap_or(true),
    })
}

/// An audience is this deployment's own: not empty, not `sigstore` (a token minted for
/// Sigstore must never be exchangeable here), no whitespace.
pub(crate) fn check_audience(audience: &str) -> Result<(), String> {
    if audience.is_empty() || audience.eq_ignore_ascii_case("sigstore") || audience.contains(char::is_whitespace) {
        return Err("must be this deployment's own audience (not empty, no spaces, never \"sigstore\")".into());
    }
    Ok(())
}

/// Compiles one publisher of a registry; `Err` is (field suffix, reason).
pub(crate) fn compile_publisher(
    protocol: Protocol,
    issuers: &BTreeMap<String, Issuer>,
    raw: RawPublisher,
) -> Result<Publisher, (String, String)> {
    let issuer = issuers.get(&raw.issuer).ok_or_else(|| {
        (
            "issuer".to_owned(),
            format!("no issuer named {:?} under [issuers]", raw.issuer),
        )
    })?;
    if raw.projects.is_empty() {
        return Err(("projects".into(), "name at least one project".into()));
    }
    let projects = raw
        .projects
        .iter()
        .map(|p| ProjectName::parse(protocol, p).map_err(|e| ("projects".to_owned(), e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let glob = |value: &Option<String>| -> Result<Option<GlobMatcher>, (String, String)> {
        value
            .as_deref()
            .map(|g| {
                Glob::new(g)
                    .map(|g| g.compile_matcher())
                    .map_err(|e| ("ref".to_owned(), e.kind().to_string()))
            })
            .transpose()
    };
    let kind = issuer.kind;
    let required = |value: Option<String>, name: &str| -> Result<String, (String, String)> {
        value
            .filter(|v| !v.is_empty())
            .ok_or_else(|| (name.to_owned(), format!("is required for {kind:?} publishers")))
    };
    // Fields that belong to other kinds of provider are refused, naming the first one present.
    let present: [(&str, bool, &[IssuerKind]); 13] = {
        use IssuerKind::*;
        [
            ("repository", raw.repository.is_some(), &[Github]),
            ("repository_owner_id", raw.repository_owner_id.is_some(), &[Github]),
            ("workflow", raw.workflow.is_some(), &[Github]),
            ("reusable_workflow", raw.reusable_workflow.is_some(), &[Github]),
            ("allowed_events", raw.allowed_events.is_some(), &[Github]),
            ("environment", raw.environment.is_some(), &[Github, Gitlab]),
            ("ref", raw.git_ref.is_some(), &[Github, Gitlab]),
            ("allow_self_hosted", raw.allow_self_hosted, &[Github, Gitlab]),
            ("project_path", raw.project_path.is_some(), &[Gitlab]),
            ("ci_config_path", raw.ci_config_path.is_some(), &[Gitlab]),
            ("email", raw.email.is_some(), &[Google]),
            ("subject", raw.subject.is_some(), &[Google]),
            ("claims", !raw.claims.is_empty(), &[Buildkite, Circleci, Generic]),
        ]
    };
    if let Some((name, _, _)) = present.iter().find(|(_, set, kinds)| *set && !kinds.contains(&kind)) {
        return Err(((*name).to_owned(), format!("does not apply to {kind:?} publishers")));
    }
    let constraints = match kind {
        IssuerKind::Github => {
            let repository = required(raw.repository, "repository")?;
            if repository.split('/').count() != 2 {
                return Err(("repository".into(), "must be owner/name".into()));
            }
            let owner_id = required(raw.repository_owner_id, "repository_owner_id")?;
            if !owner_id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(("repository_owner_id".into(), "must be the owner's numeric id".into()));
            }
            let workflow = required(raw.workflow, "workflow")?;
            if workflow.contains('/') || !(workflow.ends_with(".yml") || workflow.ends_with(".yaml")) {
                return Err((
                    "workflow".into(),
                    "must be a workflow file name such as release.yml".into(),
                ));
            }
            if let Some(r) = &raw.reusable_workflow {
                if !r.contains("/.github/workflows/") {
                    return Err((
                        "reusable_workflow".into(),
                        "must be owner/repo/.github/workflows/file.yml[@ref]".into(),
                    ));
                }
            }
            if raw
                .allowed_events
                .as_ref()
                .is_some_and(|e| e.iter().any(|e| e == "pull_request_target"))
            {
                return Err((
                    "allowed_events".into(),
                    "pull_request_target can never be allowed".into(),
                ));
            }
            Constraints::Github {
                repository,
                owner_id,
                workflow,
                reusable: raw.reusable_workflow,
                environment: raw.environment,
                git_ref: glob(&raw.git_ref)?,
                allow_self_hosted: raw.allow_self_hosted,
                allowed_events: raw.allowed_events,
            }
        }
        IssuerKind::Gitlab => Constraints::Gitlab {
            project_path: required(raw.project_path, "project_path")?,
            ci_config_path: required(raw.ci_config_path, "ci_config_path")?,
            environment: raw.environment,
            git_ref: glob(&raw.git_ref)?,
            allow_self_hosted: raw.allow_self_hosted,
        },
        IssuerKind::Google => Constraints::Google {
            email: required(raw.email, "email")?,
            subject: raw.subject,
        },
        IssuerKind::Buildkite | IssuerKind::Circleci | IssuerKind::Generic => {
            if raw.claims.is_empty() {
                return Err(("claims".into(), "name the exact claims this publisher requires".into()));
            }
            Constraints::Exact(raw.claims.into_iter().collect())
        }
    };
    Ok(Publisher {
        id: RuleId::new(&raw.id),
        issuer: raw.issuer,
        projects,
        pending: raw.pending,
        constraints,
    })
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

/// Realistic signers (the PEP 740 fixtures' GitHub and GitLab certificates) and publishers
/// for them, shared by the signer and provenance tests.
#[cfg(test)]
pub(crate) mod signer_fixtures {
    use super::SignerIdentity;
    use crate::compile::{compile, CompiledRules, KnownRegistry, RuleSource};
    use crate::name::Protocol;

    /// GitHub's issuer.
    pub(crate) const GH: &str = "https://token.actions.githubusercontent.com";
    /// The caller workflow of the real PyPI fixture.
    pub(crate) const GH_WORKFLOW: &str =
        "https://github.com/trailofbits/pypi-attestations/.github/workflows/release.yml@refs/tags/v0.0.19";
    /// The CI configuration of the real GitLab fixture.
    pub(crate) const GL_CONFIG: &str =
        "https://gitlab.com/facutuesca/gitlab-oidc-project//.gitlab-ci.yml@refs/heads/main";

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
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::compile::{compile, CompiledRules, KnownRegistry, RuleSource};

    struct Map(BTreeMap<String, String>);

    impl Claims for Map {
        fn string(&self, name: &str) -> Option<&str> {
            self.0.get(name).map(String::as_str)
        }
        fn boolean(&self, name: &str) -> Option<bool> {
            self.0.get(name).and_then(|v| v.parse().ok())
        }
    }

    const ISSUERS: &str = r#"
[issuers.github]
url = "https://token.actions.githubusercontent.com"
kind = "github"
audience = "upload.example.org"
[issuers.gitlab-internal]
url = "https://gitlab.internal.example"
kind = "gitlab"
audience = "upload.example.org"
[issuers.google]
url = "https://accounts.google.com"
kind = "google"
audience = "upload.example.org"
[issuers.buildkite]
url = "https://agent.buildkite.com"
kind = "buildkite"
audience = "upload.example.org"
algorithms = ["RS256"]
"#;

    const PUBLISHERS: &str = r#"
[[registries.pypi.publishers]]
id = "widgets"
issuer = "github"
projects = ["Acme.Widgets", "acme-tools"]
repository = "acme/widgets"
repository_owner_id = "1234"
workflow = "release.yml"

[[registries.pypi.publishers]]
id = "widgets-prod"
issuer = "github"
projects = ["acme-widgets"]
repository = "acme/widgets"
repository_owner_id = "1234"
workflow = "release.yml"
environment = "pypi"

[[registries.pypi.publishers]]
id = "shared-ci"
issuer = "github"
projects = ["acme-shared"]
repository = "acme/shared"
repository_owner_id = "1234"
workflow = "release.yml"
reusable_workflow = "acme/ci/.github/workflows/publish.yml"
allow_self_hosted = true

[[registries.pypi.publishers]]
id = "gitlab"
issuer = "gitlab-internal"
projects = ["internal-lib"]
project_path = "platform/lib"
ci_config_path = ".gitlab-ci.yml"
environment = "Release"

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
"#;

    fn rules(extra: &str) -> Result<CompiledRules, crate::RulesError> {
        let known = [KnownRegistry {
            name: "pypi".into(),
            protocol: Protocol::Pypi,
        }];
        compile(
            &[RuleSource {
                name: "r.toml".into(),
                text: format!("{ISSUERS}{extra}"),
            }],
            &known,
        )
    }

    fn github_claims() -> BTreeMap<String, String> {
        [
            ("repository", "Acme/Widgets"),
            ("repository_owner_id", "1234"),
            (
                "workflow_ref",
                "acme/widgets/.github/workflows/release.yml@refs/tags/v1.0",
            ),
            (
                "job_workflow_ref",
                "acme/widgets/.github/workflows/release.yml@refs/tags/v1.0",
            ),
            ("event_name", "push"),
            ("runner_environment", "github-hosted"),
            ("ref", "refs/tags/v1.0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    fn matched(
        rules: &CompiledRules,
        issuer: &str,
        claims: BTreeMap<String, String>,
    ) -> Result<Vec<String>, Vec<Mismatch>> {
        let issuer = rules.issuer_by_url(issuer).expect("issuer");
        rules
            .match_publishers("pypi", issuer, &Map(claims))
            .map(|ps| ps.iter().map(|p| p.id.to_string()).collect())
    }

    const GH: &str = "https://token.actions.githubusercontent.com";

    #[test]
    fn github_publishers_match_and_the_most_specific_comes_first() {
        let rules = rules(PUBLISHERS).expect("compiles");
        assert_eq!(matched(&rules, GH, github_claims()).expect("match"), vec!["widgets"]);
        let mut with_env = github_claims();
        with_env.insert("environment".into(), "PyPI".into());
        assert_eq!(
            matched(&rules, GH, with_env).expect("match"),
            vec!["widgets-prod", "widgets"]
        );
        let publisher = rules.policy("pypi").publishers.first().expect("publisher");
        assert!(publisher.covers(&ProjectName::parse(Protocol::Pypi, "acme_widgets").expect("name")));
    }

    #[test]
    fn github_claims_that_must_not_match() {
        let rules = rules(PUBLISHERS).expect("compiles");
        let cases: Vec<(&str, &str, &str)> = vec![
            ("repository", "acme/other", "repository is not"),
            ("repository_owner_id", "9999", "owner id differs"),
            (
                "workflow_ref",
                "acme/widgets/.github/workflows/evil.yml@refs/heads/main",
                "calling workflow",
            ),
            (
                "job_workflow_ref",
                "evil/ci/.github/workflows/publish.yml@main",
                "reusable workflow",
            ),
            ("event_name", "pull_request_target", "pull_request_target"),
            ("event_name", "pull_request", "\"pull_request\""),
            ("runner_environment", "self-hosted", "self-hosted"),
        ];
        for (claim, value, reason) in cases {
            let mut claims = github_claims();
            claims.insert(claim.into(), value.into());
            let mismatches = matched(&rules, GH, claims).expect_err(claim);
            let widgets = mismatches
                .iter()
                .find(|m| m.publisher == "widgets")
                .expect("widgets was a candidate");
            assert!(widgets.reason.contains(reason), "{claim}={value}: {}", widgets.reason);
        }
        let mut missing = github_claims();
        missing.remove("repository_owner_id");
        assert!(matched(&rules, GH, missing).is_err());
    }

    #[test]
    fn reusable_workflows_are_matched_only_when_named() {
        let rules = rules(PUBLISHERS).expect("compiles");
        let mut claims = github_claims();
        claims.insert("repository".into(), "acme/shared".into());
        claims.insert(
            "workflow_ref".into(),
            "acme/shared/.github/workflows/release.yml@refs/heads/main".into(),
        );
        claims.insert(
            "job_workflow_ref".into(),
            "acme/ci/.github/workflows/publish.yml@refs/heads/main".into(),
        );
        claims.insert("runner_environment".into(), "self-hosted".into());
        assert_eq!(matched(&rules, GH, claims.clone()).expect("match"), vec!["shared-ci"]);
        claims.insert(
            "job_workflow_ref".into(),
            "acme/ci/.github/workflows/other.yml@refs/heads/main".into(),
        );
        assert!(matched(&rules, GH, claims).is_err());
    }

    #[test]
    fn gitlab_google_and_exact_claim_publishers() {
        let rules = rules(PUBLISHERS).expect("compiles");
        let gitlab = |env: &str, uri: &str| -> BTreeMap<String, String> {
            [
                ("project_path", "Platform/Lib"),
                ("ci_config_ref_uri", uri),
                ("environment", env),
                ("runner_environment", "gitlab-hosted"),
                ("ref_path", "refs/heads/main"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
        };
        let good_uri = "gitlab.internal.example/platform/lib//.gitlab-ci.yml@refs/heads/main";
        let gl = "https://gitlab.internal.example";
        assert_eq!(
            matched(&rules, gl, gitlab("Release", good_uri)).expect("match"),
            vec!["gitlab"]
        );
        assert!(
            matched(&rules, gl, gitlab("release", good_uri)).is_err(),
            "GitLab environments are case-sensitive"
        );
        assert!(matched(
            &rules,
            gl,
            gitlab("Release", "gitlab.com/platform/lib//.gitlab-ci.yml@refs/heads/main")
        )
        .is_err());
        assert!(matched(
            &rules,
            gl,
            gitlab("Release", "gitlab.internal.example/platform/lib//other.yml@x")
        )
        .is_err());

        let google = |verified: &str| -> BTreeMap<String, String> {
            [
                ("email", "builder@proj.iam.gserviceaccount.com"),
                ("email_verified", verified),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
        };
        assert!(matched(&rules, "https://accounts.google.com", google("true")).is_ok());
        assert!(matched(&rules, "https://accounts.google.com", google("false")).is_err());

        let bk: BTreeMap<String, String> = [("organization_slug", "acme"), ("pipeline_slug", "release")]
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        assert!(matched(&rules, "https://agent.buildkite.com", bk.clone()).is_ok());
        let mut other = bk;
        other.insert("pipeline_slug".into(), "nightly".into());
        assert!(matched(&rules, "https://agent.buildkite.com", other).is_err());
    }

    #[test]
    fn invalid_issuers_and_publishers_name_their_field() {
        let cases = [
            ("[issuers.x]\nurl = \"http://insecure.example\"\nkind = \"generic\"\naudience = \"a\"\nalgorithms = [\"RS256\"]\n", "issuers.x.url"),
            ("[issuers.x]\nurl = \"https://x.example\"\nkind = \"generic\"\naudience = \"sigstore\"\nalgorithms = [\"RS256\"]\n", "issuers.x.audience"),
            ("[issuers.x]\nurl = \"https://x.example\"\nkind = \"generic\"\naudience = \"a\"\nalgorithms = [\"HS256\"]\n", "issuers.x.algorithms"),
            ("[issuers.x]\nurl = \"https://x.example\"\nkind = \"generic\"\naudience = \"a\"\n", "issuers.x.algorithms"),
            ("[[registries.pypi.publishers]]\nid = \"p\"\nissuer = \"nope\"\nprojects = [\"a\"]\n", "registries.pypi.publishers[0].issuer"),
            ("[[registries.pypi.publishers]]\nid = \"p\"\nissuer = \"github\"\nprojects = [\"a\"]\nrepository = \"a/b\"\nrepository_owner_id = \"1\"\nworkflow = \"r.yml\"\nproject_path = \"x/y\"\n", "registries.pypi.publishers[0].project_path"),
            ("[[registries.pypi.publishers]]\nid = \"p\"\nissuer = \"github\"\nprojects = [\"a\"]\nrepository = \"a/b\"\nrepository_owner_id = \"one\"\nworkflow = \"r.yml\"\n", "registries.pypi.publishers[0].repository_owner_id"),
            ("[[registries.pypi.publishers]]\nid = \"p\"\nissuer = \"github\"\nprojects = [\"a\"]\nrepository = \"a/b\"\nrepository_owner_id = \"1\"\nworkflow = \"r.yml\"\nallowed_events = [\"pull_request_target\"]\n", "registries.pypi.publishers[0].allowed_events"),
            ("[[registries.pypi.publishers]]\nid = \"p\"\nissuer = \"google\"\nprojects = [\"-bad-\"]\nemail = \"e@x\"\n", "registries.pypi.publishers[0].projects"),
        ];
        for (text, field) in cases {
            let err = rules(text).expect_err(field);
            assert_eq!(err.field, field, "{err}");
        }
    }

    #[test]
    fn audiences_come_from_the_issuer_or_the_registry_and_are_checked() {
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
        let compile_text = |text: &str| {
            compile(
                &[RuleSource {
                    name: "r.toml".into(),
                    text: text.to_owned(),
                }],
                &known,
            )
        };
        let issuer = "[issuers.gh]\nurl = \"https://token.actions.githubusercontent.com\"\nkind = \"github\"\n";
        let publisher = |registry: &str| {
            format!(
                "[[registries.{registry}.publishers]]\nid = \"p\"\nissuer = \"gh\"\nprojects = [\"a\"]\nrepository = \"a/b\"\nrepository_owner_id = \"1\"\nworkflow = \"r.yml\"\n"
            )
        };
        // A publisher without any audience to check is refused.
        let err = compile_text(&format!("{issuer}{}", publisher("pypi"))).expect_err("no audience");
        assert_eq!(err.field, "registries.pypi.audience", "{err}");
        // The registry's audience applies, the issuer's overrides it.
        let rules = compile_text(&format!(
            "{issuer}[registries.pypi]\naudience = \"upload.example.org\"\n{}",
            publisher("pypi")
        ))
        .expect("compiles");
        let gh = rules
            .issuer_by_url("https://token.actions.githubusercontent.com")
            .expect("issuer");
        assert_eq!(rules.audience("pypi", gh), Some("upload.example.org"));
        assert_eq!(rules.registry_audience("pypi"), Some("upload.example.org"));
        assert!(rules.has_publishers("pypi"));
        let rules = compile_text(&format!(
            "{issuer}audience = \"mine\"\n[registries.pypi]\naudience = \"upload.example.org\"\n{}",
            publisher("pypi")
        ))
        .expect("compiles");
        let gh = rules
            .issuer_by_url("https://token.actions.githubusercontent.com")
            .expect("issuer");
        assert_eq!(rules.audience("pypi", gh), Some("mine"));
        // npm audiences are what the npm CLI asks for: npm:<host>, no port.
        for bad in [
            "npm.example.org",
            "npm:npm.example.org:8443",
            "npm:",
            "sigstore",
            "npm:NPM.example",
        ] {
            let err = compile_text(&format!("{issuer}[registries.npm]\naudience = \"{bad}\"\n")).expect_err(bad);
            assert_eq!(err.field, "registries.npm.audience", "{bad}: {err}");
        }
        assert!(compile_text(&format!(
            "{issuer}[registries.npm]\naudience = \"npm:npm.example.org\"\n"
        ))
        .is_ok());
    }

    #[test]
    fn a_disabled_issuer_is_reported_as_such() {
        let rules = rules("").expect("compiles");
        assert!(rules.issuer_by_url(GH).is_some_and(|i| i.enabled));
        let off = crate::compile::compile(
            &[RuleSource {
                name: "r.toml".into(),
                text: "[issuers.gh]\nurl = \"https://token.actions.githubusercontent.com\"\nkind = \"github\"\naudience = \"a\"\nenabled = false\n".into(),
            }],
            &[],
        )
        .expect("compiles");
        assert!(off.issuer_by_url(GH).is_some_and(|i| !i.enabled));
        assert!(off.issuer_by_url("https://unknown.example").is_none());
    }
}
