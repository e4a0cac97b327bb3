//! The provenance decision: which rule applies to an upload, what its attestations' predicate
//! types, build triggers and signers say against it, the project's history (no downgrade, no
//! change of source repository), then audit mode and shadow.

use super::compile::ProvenanceRule;
use super::{
    AttestationFacts, Evidence, ProvenanceDecision, ProvenanceFacts, ProvenanceMode, ProvenanceOutcome,
    ProvenanceRefusal, SignerIdentity, NEVER_TRIGGER,
};
use crate::compile::CompiledRules;
use crate::publishers::{foreign, Publisher};

/// How many non-matching publishers a signer refusal lists.
const MAX_LISTED_PUBLISHERS: usize = 5;

/// The result of checking the evidence against a rule, before the mode and shadow apply.
enum Finding {
    Absent,
    Passed { publisher: String },
    Failed(ProvenanceRefusal, String),
}

/// A source repository that differs from every one the project's earlier provenance named,
/// unless the rule allows a change.
fn repository_change(rule: &ProvenanceRule, facts: &ProvenanceFacts<'_>) -> Option<(ProvenanceRefusal, String)> {
    let known = &facts.history.source_repositories;
    if rule.allow_repository_change || known.is_empty() {
        return None;
    }
    let Evidence::Verified(attestations) = facts.evidence else {
        return None;
    };
    attestations
        .iter()
        .filter_map(|a| a.signer.source_repository_uri.as_deref())
        .find(|repo| !known.iter().any(|k| k.eq_ignore_ascii_case(repo)))
        .map(|repo| {
            (
                ProvenanceRefusal::Repository,
                format!(
                    "the provenance names source repository {:?}, but project {} was published from {} before ({}); an operator must allow the change (allow_repository_change)",
                    foreign(repo),
                    facts.project,
                    known.iter().map(|k| format!("{:?}", foreign(k))).collect::<Vec<_>>().join(", "),
                    rule.id
                ),
            )
        })
}

/// Who signed, for messages: the first SAN, else the source repository.
fn describe_signer(signer: &SignerIdentity) -> String {
    match signer.sans.first().or(signer.source_repository_uri.as_ref()) {
        Some(identity) => format!("{:?}", foreign(identity)),
        None => "an identity the certificate does not name".to_owned(),
    }
}

impl CompiledRules {
    /// Decides an upload's provenance. The first provenance rule whose names match the project
    /// decides, else the registry's defaults. No attestations: refused when required, else not
    /// present. Attestations that did not verify are refused in every enforcing mode. Verified
    /// ones must all have an accepted predicate type, an accepted build trigger, and a signer
    /// that is the uploading trusted publisher (when a publisher's token authenticated the
    /// upload) or else one trusted publisher of the project matching every attestation. Audit
    /// mode and shadow turn refusals into [`ProvenanceOutcome::Recorded`].
    pub fn decide_provenance(&self, facts: &ProvenanceFacts<'_>) -> ProvenanceDecision {
        let rule = self.policy(facts.registry).provenance.rule_for(facts.project);
        let mut signer_publisher = None;
        let failure = match self.examine(rule, facts) {
            Finding::Absent if rule.mode == ProvenanceMode::Required => Some((
                ProvenanceRefusal::Missing,
                format!(
                    "provenance is required for project {} ({}); upload with attestations, e.g. twine upload --attestations / npm publish --provenance",
                    facts.project, rule.id
                ),
            )),
            Finding::Absent if facts.history.uploads_with_provenance > 0 && !rule.allow_downgrade => Some((
                ProvenanceRefusal::Downgrade,
                format!(
                    "project {} has published {} upload(s) with provenance, so uploads without it are refused ({}); upload with attestations",
                    facts.project, facts.history.uploads_with_provenance, rule.id
                ),
            )),
            Finding::Absent => {
                return ProvenanceDecision {
                    rule: rule.id.clone(),
                    mode: rule.mode,
                    outcome: ProvenanceOutcome::NotPresent,
                    signer_publisher: None,
                    shadow: rule.shadow,
                }
            }
            Finding::Passed { publisher } => {
                signer_publisher = Some(publisher);
                repository_change(rule, facts)
            }
            Finding::Failed(code, message) => Some((code, message)),
        };
        let outcome = match failure {
            None if rule.mode == ProvenanceMode::Audit => ProvenanceOutcome::Recorded { would_refuse: None },
            None => ProvenanceOutcome::Accepted,
            Some(refusal) if rule.mode == ProvenanceMode::Audit || rule.shadow => ProvenanceOutcome::Recorded {
                would_refuse: Some(refusal),
            },
            Some((code, message)) => ProvenanceOutcome::Refused { code, message },
        };
        ProvenanceDecision {
            rule: rule.id.clone(),
            mode: rule.mode,
            outcome,
            signer_publisher,
            shadow: rule.shadow,
        }
    }

    /// Checks the evidence against `rule`: predicate types, then build triggers, then signers.
    fn examine(&self, rule: &ProvenanceRule, facts: &ProvenanceFacts<'_>) -> Finding {
        let attestations = match facts.evidence {
            Evidence::None => return Finding::Absent,
            Evidence::Verified([]) => return Finding::Absent,
            Evidence::Verified(list) => list,
            Evidence::Invalid(why) => {
                return Finding::Failed(
                    ProvenanceRefusal::Invalid,
                    format!("the attestations could not be verified: {}", foreign(why)),
                )
            }
            Evidence::Unverifiable { expired, why } => {
                return Finding::Failed(
                    if expired {
                        ProvenanceRefusal::TrustExpired
                    } else {
                        ProvenanceRefusal::TrustUnavailable
                    },
                    format!(
                        "this gateway cannot verify provenance now, try again later: {}",
                        foreign(why)
                    ),
                )
            }
        };
        let project = facts.project;
        for attestation in attestations {
            if !rule.predicates.contains(&attestation.predicate_type) {
                return Finding::Failed(
                    ProvenanceRefusal::Predicate,
                    format!(
                        "attestations of predicate type {:?} are not accepted for project {project} ({}); accepted: {}",
                        foreign(&attestation.predicate_type),
                        rule.id,
                        rule.predicates.join(", ")
                    ),
                );
            }
        }
        for attestation in attestations {
            let trigger = attestation.signer.build_trigger.as_deref();
            if trigger == Some(NEVER_TRIGGER) {
                return Finding::Failed(
                    ProvenanceRefusal::Trigger,
                    "the attestation was signed in a build triggered by pull_request_target, which is never accepted"
                        .to_owned(),
                );
            }
            if let Some(allowed) = &rule.build_triggers {
                let reason = match trigger {
                    None => "the attestation's certificate does not carry a build trigger".to_owned(),
                    Some(t) if !allowed.iter().any(|a| a == t) => {
                        format!("the attestation was signed in a build triggered by {:?}", foreign(t))
                    }
                    Some(_) => continue,
                };
                return Finding::Failed(
                    ProvenanceRefusal::Trigger,
                    format!(
                        "{reason}; {} accepts only builds triggered by {} for project {project}",
                        rule.id,
                        allowed.join(", ")
                    ),
                );
            }
        }
        self.examine_signers(facts, attestations)
    }

    fn examine_signers(&self, facts: &ProvenanceFacts<'_>, attestations: &[AttestationFacts]) -> Finding {
        let policy = self.policy(facts.registry);
        let project = facts.project;
        let first_signer = attestations.first().map(|a| &a.signer);
        let signer_failure = |message: String| Finding::Failed(ProvenanceRefusal::Signer, message);
        if let Some(id) = facts.uploader {
            let Some(publisher) = policy.publishers.iter().find(|p| p.id.as_str() == id) else {
                return signer_failure(format!(
                    "the upload was authenticated by trusted publisher {:?}, which this registry does not have",
                    foreign(id)
                ));
            };
            if !publisher.covers(project) {
                return signer_failure(format!(
                    "the upload was authenticated by trusted publisher {id}, which does not cover project {project}"
                ));
            }
            return match self.signers_match(publisher, attestations) {
                Ok(()) => Finding::Passed {
                    publisher: publisher.id.to_string(),
                },
                Err((signer, reason)) => signer_failure(format!(
                    "the attestation was signed by {} but the upload was authenticated by trusted publisher {id}: {reason}",
                    describe_signer(signer)
                )),
            };
        }
        let mut candidates = policy.publishers.iter().filter(|p| p.covers(project)).peekable();
        if candidates.peek().is_none() {
            return signer_failure(format!(
                "the attestation was signed by {}, but no trusted publisher is configured for project {project}, so no signer can be trusted",
                first_signer.map_or_else(|| "nobody".to_owned(), describe_signer)
            ));
        }
        let mut reasons = Vec::new();
        for publisher in candidates {
            match self.signers_match(publisher, attestations) {
                Ok(()) => {
                    return Finding::Passed {
                        publisher: publisher.id.to_string(),
                    }
                }
                Err((_, reason)) => reasons.push(format!("{}: {reason}", publisher.id)),
            }
        }
        let more = reasons.len().saturating_sub(MAX_LISTED_PUBLISHERS);
        reasons.truncate(MAX_LISTED_PUBLISHERS);
        let mut listed = reasons.join("; ");
        if more > 0 {
            listed.push_str(&format!("; and {more} more"));
        }
        signer_failure(format!(
            "the attestation was signed by {}, which is not a trusted publisher of project {project} ({listed})",
            first_signer.map_or_else(|| "nobody".to_owned(), describe_signer)
        ))
    }

    /// Whether every attestation's signer matches `publisher`; else the first that does not
    /// and why.
    fn signers_match<'a>(
        &self,
        publisher: &Publisher,
        attestations: &'a [AttestationFacts],
    ) -> Result<(), (&'a SignerIdentity, String)> {
        for attestation in attestations {
            let signer = &attestation.signer;
            let Some(issuer) = self.issuers.get(&publisher.issuer) else {
                return Err((signer, format!("its issuer {:?} is not configured", publisher.issuer)));
            };
            if !issuer.enabled {
                return Err((signer, format!("its issuer {:?} is disabled", issuer.name)));
            }
            publisher
                .check_signer(issuer, signer)
                .map_err(|reason| (signer, reason))?;
        }
        Ok(())
    }
}
