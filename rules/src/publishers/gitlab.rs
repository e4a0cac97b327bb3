//! GitLab CI/CD publishers: what one requires, and whether a token's claims meet it (the
//! project, the CI configuration file, environment, ref and runner). Signing certificates are
//! matched in `signer`.

use globset::GlobMatcher;

use super::{need_claim, Claims, Issuer};

/// A GitLab CI/CD publisher's constraints (gitlab.com or self-managed).
#[derive(Debug, Clone)]
pub(super) struct GitlabConstraints {
    /// `namespace/project`.
    pub(super) project_path: String,
    /// The top-level CI file path (`.gitlab-ci.yml`).
    pub(super) ci_config_path: String,
    /// The deployment environment.
    pub(super) environment: Option<String>,
    /// A glob over the git ref.
    pub(super) git_ref: Option<GlobMatcher>,
    /// Whether self-hosted runners are accepted.
    pub(super) allow_self_hosted: bool,
}

impl GitlabConstraints {
    /// How specific the publisher is: an environment counts more than a ref.
    pub(super) fn specificity(&self) -> u32 {
        1 + 4 * u32::from(self.environment.is_some()) + 2 * u32::from(self.git_ref.is_some())
    }

    /// Checks the claims of a token from the GitLab instance `issuer`; `Err` says what
    /// differed.
    pub(super) fn check_claims(&self, issuer: &Issuer, claims: &dyn Claims) -> Result<(), String> {
        let need = |name: &str| need_claim(claims, name);
        let GitlabConstraints {
            project_path,
            ci_config_path,
            environment,
            git_ref,
            allow_self_hosted,
        } = self;
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
}
