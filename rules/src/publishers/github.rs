//! GitHub Actions publishers: what one requires, and whether a token's claims meet it (the
//! trigger event, repository and owner id, caller and called workflows, environment, ref and
//! runner). Signing certificates are matched in `signer`.

use globset::GlobMatcher;

use super::{need_claim, Claims};

/// Events that let code from outside the repository run with its credentials: refused unless a
/// publisher allows them explicitly (`pull_request_target` can never be allowed).
pub(super) const UNTRUSTED_EVENTS: &[&str] = &[
    "pull_request",
    "workflow_run",
    "issue_comment",
    "pull_request_review_comment",
    "discussion_comment",
];

/// A GitHub Actions publisher's constraints (github.com or GitHub Enterprise Server).
#[derive(Debug, Clone)]
pub(super) struct GithubConstraints {
    /// `owner/name`.
    pub(super) repository: String,
    /// The owner's immutable numeric id.
    pub(super) owner_id: String,
    /// The caller workflow file name (checked against `workflow_ref`).
    pub(super) workflow: String,
    /// The called (reusable) workflow, `owner/repo/.github/workflows/file.yml[@ref]`.
    pub(super) reusable: Option<String>,
    /// The deployment environment.
    pub(super) environment: Option<String>,
    /// A glob over the git ref.
    pub(super) git_ref: Option<GlobMatcher>,
    /// Whether self-hosted runners are accepted.
    pub(super) allow_self_hosted: bool,
    /// Events allowed beyond the trusted default set.
    pub(super) allowed_events: Option<Vec<String>>,
}

impl GithubConstraints {
    /// How specific the publisher is: an environment counts most, then a ref, then a
    /// reusable workflow.
    pub(super) fn specificity(&self) -> u32 {
        1 + 4 * u32::from(self.environment.is_some())
            + 2 * u32::from(self.git_ref.is_some())
            + u32::from(self.reusable.is_some())
    }

    /// Checks the claims of a GitHub Actions token; `Err` says what differed.
    pub(super) fn check_claims(&self, claims: &dyn Claims) -> Result<(), String> {
        let need = |name: &str| need_claim(claims, name);
        let GithubConstraints {
            repository,
            owner_id,
            workflow,
            reusable,
            environment,
            git_ref,
            allow_self_hosted,
            allowed_events,
        } = self;
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
