//! Validation of issuers and publishers as written ([`super::raw`]) into compiled ones: URLs,
//! audiences and algorithms of issuers; projects, and the fields each kind of provider
//! requires (and refuses), of publishers.

use std::collections::BTreeMap;

use globset::{Glob, GlobMatcher};

use super::github::GithubConstraints;
use super::gitlab::GitlabConstraints;
use super::google::GoogleConstraints;
use super::raw::{RawIssuer, RawPublisher};
use super::{Constraints, Issuer, IssuerKind, Publisher};
use crate::decide::RuleId;
use crate::name::{ProjectName, Protocol};

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
            Constraints::Github(GithubConstraints {
                repository,
                owner_id,
                workflow,
                reusable: raw.reusable_workflow,
                environment: raw.environment,
                git_ref: glob(&raw.git_ref)?,
                allow_self_hosted: raw.allow_self_hosted,
                allowed_events: raw.allowed_events,
            })
        }
        IssuerKind::Gitlab => Constraints::Gitlab(GitlabConstraints {
            project_path: required(raw.project_path, "project_path")?,
            ci_config_path: required(raw.ci_config_path, "ci_config_path")?,
            environment: raw.environment,
            git_ref: glob(&raw.git_ref)?,
            allow_self_hosted: raw.allow_self_hosted,
        }),
        IssuerKind::Google => Constraints::Google(GoogleConstraints {
            email: required(raw.email, "email")?,
            subject: raw.subject,
        }),
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
