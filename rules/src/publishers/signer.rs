//! Matching an attestation's signer, the identity of its verified Fulcio certificate, to a
//! trusted publisher: which certificate facts stand for which publisher constraint, per
//! provider (Fulcio's `config/identity/config.yaml` and `docs/oid-info.md`).
//!
//! | provider | matched from the certificate |
//! |---|---|
//! | GitHub | issuer (.8); source repository (.12) and owner id (.17); caller workflow (.18); signing workflow (.9); trigger (.20); runner environment (.11) |
//! | GitHub before 2023 | issuer (.1); repository (.5, on the SAN's server); trigger (.2); signing workflow = caller = the SAN; no owner id nor runner environment |
//! | GitLab | issuer; source repository (.12); CI configuration (.18); runner environment (.11) |
//! | Google | issuer; the service account e-mail SAN |
//! | Buildkite | issuer; SAN `https://buildkite.com/{organization_slug}/{pipeline_slug}`; `build_source` (.20), `build_commit` (.13), `runner_environment` (.11) when the publisher names them |
//! | CircleCI | issuer (`https://oidc.circleci.com/org/{org id}`: the organization); SAN `https://circleci.com/api/v2/projects/{project-id}/pipeline-definitions/{pipeline-definition-id}`; `vcs-origin` (.12), `vcs-ref` (.14) when named; never an SSH rerun (.11 `ssh-rerun`) |
//! | generic | nothing: how Fulcio maps an unknown issuer's claims is not known, so such a publisher vouches for no attestation |

use super::github::{GithubConstraints, UNTRUSTED_EVENTS};
use super::gitlab::GitlabConstraints;
use super::google::GoogleConstraints;
use super::{foreign, Constraints, Issuer, IssuerKind, Publisher, SignerIdentity};

/// Where Fulcio places Buildkite pipelines: the SAN is `{this}/{org}/{pipeline}`.
const BUILDKITE_SERVER: &str = "https://buildkite.com";

/// Where Fulcio places CircleCI pipeline definitions: the SAN is
/// `{this}/projects/{project-id}/pipeline-definitions/{pipeline-definition-id}`.
const CIRCLECI_API: &str = "https://circleci.com/api/v2";

/// Buildkite token claims with a certificate counterpart other than the SAN.
const BUILDKITE_CLAIMS: &[(&str, Fact, &str)] = &[
    ("build_source", Fact::BuildTrigger, "build trigger"),
    ("build_commit", Fact::SourceDigest, "source repository digest"),
    ("runner_environment", Fact::RunnerEnvironment, "runner environment"),
];

/// CircleCI token claims with a certificate counterpart other than the SAN.
const CIRCLECI_CLAIMS: &[(&str, Fact, &str)] = &[
    (
        "oidc.circleci.com/vcs-origin",
        Fact::SourceRepository,
        "source repository",
    ),
    ("oidc.circleci.com/vcs-ref", Fact::SourceRef, "source repository ref"),
];

const CIRCLECI_PROJECT: &str = "oidc.circleci.com/project-id";
const CIRCLECI_DEFINITION: &str = "oidc.circleci.com/pipeline-definition-id";

/// A certificate fact an exact claim is compared with.
#[derive(Debug, Clone, Copy)]
enum Fact {
    BuildTrigger,
    SourceDigest,
    SourceRepository,
    SourceRef,
    RunnerEnvironment,
}

impl Fact {
    fn of(self, signer: &SignerIdentity) -> Option<&str> {
        match self {
            Fact::BuildTrigger => signer.build_trigger.as_deref(),
            Fact::SourceDigest => signer.source_repository_digest.as_deref(),
            Fact::SourceRepository => signer.source_repository_uri.as_deref(),
            Fact::SourceRef => signer.source_repository_ref.as_deref(),
            Fact::RunnerEnvironment => signer.runner_environment.as_deref(),
        }
    }
}

impl Publisher {
    /// Checks the identity of an attestation's signing certificate (Fulcio extensions) against
    /// this publisher, `issuer` being the publisher's issuer; `Err` says what differed.
    ///
    /// This is the certificate counterpart of [`Publisher::check`], limited to what a
    /// certificate carries (the module documentation lists it per provider): a GitHub or
    /// GitLab publisher's `environment` and `ref`, and the claims of a Buildkite or CircleCI
    /// publisher that have no certificate counterpart, cannot be checked from one and are
    /// ignored here (the token exchange that authenticated an upload checks them). GitHub
    /// signers are placed on `https://github.com` for the issuer
    /// `https://token.actions.githubusercontent.com` (and its per-enterprise
    /// `https://token.actions.githubusercontent.com/<slug>` forms), else on the scheme and host
    /// of the issuer URL (GitHub Enterprise Server: `https://HOST/_services/token`). GitLab
    /// signers are placed on the issuer URL. Publishers of `generic` issuers never match.
    pub fn check_signer(&self, issuer: &Issuer, signer: &SignerIdentity) -> Result<(), String> {
        if issuer.name != self.issuer {
            return Err(format!(
                "publisher {} trusts issuer {:?}, not {:?}",
                self.id, self.issuer, issuer.name
            ));
        }
        if issuer.kind == IssuerKind::Generic {
            return Err(format!(
                "attestations cannot be matched to publishers of the generic issuer {}: how Fulcio certifies its tokens is not known",
                issuer.name
            ));
        }
        match signer.issuer.as_deref() {
            None => return Err("the certificate does not name its OIDC issuer".into()),
            Some(actual) if actual != issuer.url => {
                return Err(format!(
                    "the certificate was issued for tokens of {:?}, not {}",
                    foreign(actual),
                    issuer.url
                ))
            }
            Some(_) => {}
        }
        match &self.constraints {
            Constraints::Github(_) => self.check_github_signer(issuer, signer),
            Constraints::Gitlab(GitlabConstraints {
                project_path,
                ci_config_path,
                allow_self_hosted,
                ..
            }) => {
                let expected_repo = format!("{}/{project_path}", issuer.url);
                let source_repo = need(&signer.source_repository_uri, "source repository")?;
                if !source_repo.eq_ignore_ascii_case(&expected_repo) {
                    return Err(format!(
                        "the source repository is {:?}, not {expected_repo}",
                        foreign(source_repo)
                    ));
                }
                let config = need(&signer.build_config_uri, "build config URI")?;
                if !is_file_at_ref(config, &format!("{expected_repo}//"), ci_config_path) {
                    return Err(format!(
                        "the CI configuration is {:?}, not {ci_config_path} of {project_path}",
                        foreign(config)
                    ));
                }
                if !allow_self_hosted && signer.runner_environment.as_deref() != Some("gitlab-hosted") {
                    return Err(format!(
                        "self-hosted runners are not allowed for this publisher (runner environment {})",
                        describe_runner(&signer.runner_environment)
                    ));
                }
                Ok(())
            }
            Constraints::Google(GoogleConstraints { email, .. }) => {
                if !signer.sans.iter().any(|san| san == email) {
                    return Err(match signer.sans.first() {
                        Some(san) => format!("the certificate is for {:?}, not {email}", foreign(san)),
                        None => format!("the certificate is not for {email}"),
                    });
                }
                Ok(())
            }
            Constraints::Exact(claims) => match issuer.kind {
                IssuerKind::Buildkite => self.check_buildkite_signer(claims, signer),
                IssuerKind::Circleci => self.check_circleci_signer(claims, signer),
                other => Err(format!(
                    "attestations from {} publishers cannot be matched to a signer",
                    other.as_str()
                )),
            },
        }
    }

    fn check_github_signer(&self, issuer: &Issuer, signer: &SignerIdentity) -> Result<(), String> {
        let Constraints::Github(GithubConstraints {
            repository,
            owner_id,
            workflow,
            reusable,
            allow_self_hosted,
            allowed_events,
            ..
        }) = &self.constraints
        else {
            return Err("not a GitHub publisher".into());
        };
        // Certificates from before Fulcio's 2023 CI extensions name neither the owner's id,
        // nor the runner environment, nor the caller workflow. No certificate without them
        // can be issued any more (Fulcio writes the CI extensions for every GitHub token), so
        // a re-registered owner cannot get one: the repository name is what they state.
        let legacy = signer.predates_ci_extensions;
        let server = github_server(&issuer.url);
        let trigger = need(&signer.build_trigger, "build trigger")?;
        if trigger == "pull_request_target" {
            return Err("attestations from a workflow run by 'pull_request_target' are not allowed".into());
        }
        let allowed = match allowed_events {
            Some(list) => list.iter().any(|e| e == trigger),
            None => !UNTRUSTED_EVENTS.contains(&trigger),
        };
        if !allowed {
            return Err(format!(
                "attestations from a workflow run by {:?} are not allowed",
                foreign(trigger)
            ));
        }
        let expected_repo = format!("{server}/{repository}");
        let source_repo = need(&signer.source_repository_uri, "source repository")?;
        if !source_repo.eq_ignore_ascii_case(&expected_repo) {
            return Err(format!(
                "the source repository is {:?}, not {expected_repo}",
                foreign(source_repo)
            ));
        }
        match (&signer.source_repository_owner_identifier, legacy) {
            (None, true) => {}
            (owner, _) => {
                let owner = need(owner, "owner id")?;
                if owner != owner_id {
                    return Err(format!(
                        "the repository owner id is {:?}, not {owner_id} (the owner account was replaced?)",
                        foreign(owner)
                    ));
                }
            }
        }
        let workflows = format!("{expected_repo}/.github/workflows/");
        let called = need(&signer.build_signer_uri, "build signer URI")?;
        let caller = match (&signer.build_config_uri, legacy) {
            (Some(caller), _) => caller.as_str(),
            (None, true) if reusable.is_some() => {
                return Err(format!(
                    "the certificate predates Fulcio's 2023 extensions and does not name the calling workflow, which publisher {} (reusable workflow {}) needs",
                    self.id,
                    reusable.as_deref().unwrap_or_default()
                ))
            }
            // The SAN is the only workflow such a certificate names.
            (None, true) => called,
            (None, false) => return Err("the certificate does not carry the build config URI".into()),
        };
        if !is_file_at_ref(caller, &workflows, workflow) {
            return Err(format!(
                "the calling workflow is {:?}, not {workflow} of {repository}",
                foreign(caller)
            ));
        }
        match reusable {
            Some(expected) if expected.contains('@') => {
                if called != format!("{server}/{expected}") {
                    return Err(format!(
                        "the signing workflow is {:?}, not the reusable workflow {expected}",
                        foreign(called)
                    ));
                }
            }
            Some(expected) => {
                let matches = expected.rsplit_once("/.github/workflows/").is_some_and(|(repo, file)| {
                    is_file_at_ref(called, &format!("{server}/{repo}/.github/workflows/"), file)
                });
                if !matches {
                    return Err(format!(
                        "the signing workflow is {:?}, not the reusable workflow {expected}",
                        foreign(called)
                    ));
                }
            }
            None => {
                if !is_file_at_ref(called, &workflows, workflow) {
                    return Err(format!(
                        "the signing workflow {:?} is a reusable workflow this publisher does not name",
                        foreign(called)
                    ));
                }
            }
        }
        let unstated = legacy && signer.runner_environment.is_none();
        if !allow_self_hosted && !unstated && signer.runner_environment.as_deref() != Some("github-hosted") {
            return Err(format!(
                "self-hosted runners are not allowed for this publisher (runner environment {})",
                describe_runner(&signer.runner_environment)
            ));
        }
        Ok(())
    }

    /// Buildkite: Fulcio's SAN is the pipeline, `https://buildkite.com/{org}/{pipeline}`.
    fn check_buildkite_signer(&self, claims: &[(String, String)], signer: &SignerIdentity) -> Result<(), String> {
        let (Some(org), Some(pipeline)) = (claim(claims, "organization_slug"), claim(claims, "pipeline_slug")) else {
            return Err(format!(
                "publisher {} names no organization_slug and pipeline_slug claims, which match a Buildkite signer's certificate",
                self.id
            ));
        };
        let expected = format!("{BUILDKITE_SERVER}/{org}/{pipeline}");
        if !signer.sans.contains(&expected) {
            return Err(format!(
                "the certificate is for {}, not the pipeline {expected}",
                describe_san(signer)
            ));
        }
        check_claim_facts(claims, BUILDKITE_CLAIMS, signer)
    }

    /// CircleCI: the issuer URL names the organization; Fulcio's SAN is the project's pipeline
    /// definition, `https://circleci.com/api/v2/projects/{project-id}/pipeline-definitions/{id}`.
    fn check_circleci_signer(&self, claims: &[(String, String)], signer: &SignerIdentity) -> Result<(), String> {
        let Some(project) = claim(claims, CIRCLECI_PROJECT) else {
            return Err(format!(
                "publisher {} names no {CIRCLECI_PROJECT} claim, which matches a CircleCI signer's certificate",
                self.id
            ));
        };
        let prefix = format!("{CIRCLECI_API}/projects/{project}/pipeline-definitions/");
        let definition = claim(claims, CIRCLECI_DEFINITION);
        let matches = signer.sans.iter().any(|san| {
            san.strip_prefix(&prefix).is_some_and(|id| {
                !id.is_empty() && !id.contains('/') && definition.is_none_or(|expected| id == expected)
            })
        });
        if !matches {
            return Err(format!(
                "the certificate is for {}, not a pipeline definition of project {project}{}",
                describe_san(signer),
                definition.map(|d| format!(" ({d})")).unwrap_or_default()
            ));
        }
        // CircleCI: "Don't trust when runner_environment is 'ssh-rerun'".
        if signer.runner_environment.as_deref() == Some("ssh-rerun") {
            return Err("the attestation was signed in an SSH rerun of the job, which is never trusted".into());
        }
        check_claim_facts(claims, CIRCLECI_CLAIMS, signer)
    }
}

/// The value of an exact claim a publisher names.
fn claim<'a>(claims: &'a [(String, String)], name: &str) -> Option<&'a str> {
    claims.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// Each claim the publisher names that has a certificate counterpart must equal it.
fn check_claim_facts(
    claims: &[(String, String)],
    mapped: &[(&str, Fact, &str)],
    signer: &SignerIdentity,
) -> Result<(), String> {
    for (name, fact, what) in mapped {
        let Some(expected) = claim(claims, name) else {
            continue;
        };
        match fact.of(signer) {
            Some(actual) if actual == expected => {}
            Some(actual) => {
                return Err(format!(
                    "the certificate's {what} is {:?}, not the publisher's {name} {expected:?}",
                    foreign(actual)
                ))
            }
            None => {
                return Err(format!(
                    "the certificate does not carry the {what}, which the publisher's {name} claim needs"
                ))
            }
        }
    }
    Ok(())
}

fn describe_san(signer: &SignerIdentity) -> String {
    signer
        .sans
        .first()
        .map_or_else(|| "no identity".to_owned(), |san| format!("{:?}", foreign(san)))
}

/// The web server of a GitHub issuer: `https://github.com` for GitHub's cloud issuer (with or
/// without an enterprise slug), else the issuer's scheme and host (GitHub Enterprise Server).
fn github_server(issuer_url: &str) -> String {
    let (scheme, rest) = issuer_url.split_once("://").unwrap_or(("https", issuer_url));
    let host = rest.split('/').next().unwrap_or(rest);
    if host.eq_ignore_ascii_case("token.actions.githubusercontent.com") {
        "https://github.com".to_owned()
    } else {
        format!("{scheme}://{host}")
    }
}

/// Whether `uri` is `{dir}{file}@{ref}` with `dir` compared case-insensitively, `file` exactly
/// and a non-empty ref.
fn is_file_at_ref(uri: &str, dir: &str, file: &str) -> bool {
    let rest = match uri.get(..dir.len()) {
        Some(head) if head.eq_ignore_ascii_case(dir) => &uri[dir.len()..],
        _ => return false,
    };
    rest.strip_prefix(file)
        .and_then(|r| r.strip_prefix('@'))
        .is_some_and(|r| !r.is_empty())
}

/// A certificate extension the check needs, or why it cannot be made.
fn need<'a>(value: &'a Option<String>, what: &str) -> Result<&'a str, String> {
    value
        .as_deref()
        .ok_or_else(|| format!("the certificate does not carry the {what}"))
}

fn describe_runner(runner: &Option<String>) -> String {
    match runner {
        Some(r) => format!("{:?}", foreign(r)),
        None => "not stated".to_owned(),
    }
}

#[cfg(test)]
mod tests;
