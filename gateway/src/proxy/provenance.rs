//! Verify (cached) and decide: the provenance an upload carries, checked before its held-back
//! tail is released.

use portcullis_rules::provenance::{Evidence, ProjectHistory, ProvenanceFacts, ProvenanceMode, ProvenanceOutcome};

use super::ctx::{Auth, RequestCtx};
use super::Gateway;
use crate::clock::unix_now;
use crate::config::Registry;
use crate::error::Refusal;
use crate::protocol::pypi::UploadFacts;
use crate::provenance::pep740::{self, Checked};
use crate::sigstore::TrustUnavailable;

/// What the provenance check found, for the decision log and the ledger.
#[derive(Debug, Clone, Default)]
pub(super) struct ProvenanceRecord {
    /// One line for the decision log.
    pub summary: String,
    /// The verified signer's identity (first SAN), when attestations verified.
    pub signer: Option<String>,
    /// The verified signer's source repository.
    pub source_repository: Option<String>,
    /// The attestations field as uploaded, when every attestation verified.
    pub attestations: Option<Vec<u8>>,
}

impl Gateway {
    /// Verifies a PyPI upload's attestations and applies the provenance rules; returns what
    /// was found for the decision log and the ledger, or the refusal.
    pub(super) async fn check_pypi_provenance(
        &self,
        ctx: &mut RequestCtx,
        registry: &Registry,
        upload: &UploadFacts,
    ) -> Result<ProvenanceRecord, Refusal> {
        // The root is taken only for an upload that carries attestations.
        let checked = match upload.attestations.as_deref().map(|field| (field, self.trusted_root())) {
            None => Checked::None,
            Some((_, Err(unavailable))) => Checked::Unverifiable(unavailable),
            Some((field, Ok(root))) => {
                pep740::check(
                    &self.provenance.cache,
                    &root,
                    field,
                    &upload.filename,
                    upload.content_sha256,
                    unix_now(),
                )
                .await
            }
        };
        let subject = Subject {
            project: &upload.project,
            file: &upload.filename,
            sha256: upload.content_sha256,
            document: upload.attestations.as_deref(),
        };
        self.apply_provenance_rules(ctx, registry, &subject, checked).await
    }

    /// Applies the provenance rules to what verification found (`checked`) for `subject`.
    pub(super) async fn apply_provenance_rules(
        &self,
        ctx: &mut RequestCtx,
        registry: &Registry,
        subject: &Subject<'_>,
        checked: Checked,
    ) -> Result<ProvenanceRecord, Refusal> {
        let rules = ctx.rules.clone().ok_or(Refusal::Internal)?;
        let why_unverifiable = match &checked {
            Checked::Unverifiable(unavailable) => unavailable.to_string(),
            _ => String::new(),
        };
        let evidence = match &checked {
            Checked::None => Evidence::None,
            Checked::Verified(facts) => Evidence::Verified(facts),
            Checked::Invalid(reason) => Evidence::Invalid(reason),
            Checked::Unverifiable(unavailable) => Evidence::Unverifiable {
                expired: matches!(unavailable, TrustUnavailable::Expired { .. }),
                why: &why_unverifiable,
            },
        };
        let uploader = match &ctx.auth {
            Auth::UploadToken(token) => token
                .scope_for_project(&registry.name, subject.project.as_str())
                .map(|s| s.publisher.as_str()),
            _ => None,
        };
        // What earlier committed uploads carried: no downgrade, no silent change of source
        // repository. Fail closed when the ledger cannot answer.
        let earlier = self
            .state()
            .project_provenance(&registry.name, subject.project.as_str())
            .await
            .map_err(|e| {
                tracing::warn!(request_id = %ctx.id, error = %e, "the ledger could not tell the project's history");
                Refusal::StateUnavailable
            })?;
        let history = ProjectHistory {
            uploads_with_provenance: earlier.uploads_with_provenance,
            source_repositories: earlier.source_repositories,
        };
        ctx.provenance_steps = steps(&checked, subject, &history);
        let decision = rules.rules.decide_provenance(&ProvenanceFacts {
            registry: &registry.name,
            project: subject.project,
            uploader,
            evidence,
            history: &history,
        });
        let predicates = match &checked {
            Checked::Verified(facts) => facts
                .iter()
                .map(|f| f.predicate_type.as_str())
                .collect::<Vec<_>>()
                .join(","),
            _ => String::new(),
        };
        ctx.provenance_steps.push(format!(
            "rule {} (mode {}{}): {}",
            decision.rule.as_str(),
            decision.mode.as_str(),
            if decision.shadow { ", shadow" } else { "" },
            decision.outcome
        ));
        let (outcome, refusal, would) = match &decision.outcome {
            ProvenanceOutcome::Accepted => ("accepted", None, None),
            ProvenanceOutcome::NotPresent => ("not_present", None, None),
            ProvenanceOutcome::Refused { code, message } => (
                code.code(),
                Some(Refusal::Provenance {
                    code: *code,
                    message: match registry.protocol {
                        // Warehouse's words, which twine users know.
                        portcullis_rules::Protocol::Pypi => {
                            format!("Invalid attestations supplied during upload: {message}")
                        }
                        portcullis_rules::Protocol::Npm => {
                            format!("Error verifying the publish's provenance: {message}")
                        }
                    },
                }),
                None,
            ),
            ProvenanceOutcome::Recorded { would_refuse } => (
                if decision.mode == ProvenanceMode::Audit {
                    "audit"
                } else {
                    "shadow"
                },
                None,
                would_refuse
                    .as_ref()
                    .map(|(code, message)| format!("{}: {message}", code.code())),
            ),
        };
        self.metrics
            .provenance
            .with_label_values(&[&registry.name, decision.mode.as_str(), outcome])
            .inc();
        if let Some(would) = &would {
            tracing::warn!(
                target: "portcullis::provenance",
                request_id = %ctx.id,
                registry = registry.name.as_str(),
                project = subject.project.as_str(),
                rule = decision.rule.as_str(),
                shadow = decision.shadow,
                would_refuse = would.as_str(),
                "provenance would have refused this upload"
            );
        }
        if let Some(refusal) = refusal {
            return Err(refusal);
        }
        let summary = format!(
            "provenance={outcome} mode={} rule={} signer_publisher={} predicates={predicates}{}",
            decision.mode.as_str(),
            decision.rule.as_str(),
            decision.signer_publisher.as_deref().unwrap_or(""),
            would.map(|w| format!(" would_refuse={w:?}")).unwrap_or_default()
        );
        let (signer, source_repository, attestations) = match &checked {
            Checked::Verified(facts) => (
                facts.first().and_then(|f| f.signer.sans.first().cloned()),
                facts.first().and_then(|f| f.signer.source_repository_uri.clone()),
                subject.document.map(<[u8]>::to_vec),
            ),
            _ => (None, None, None),
        };
        Ok(ProvenanceRecord {
            summary,
            signer,
            source_repository,
            attestations,
        })
    }
}

impl Gateway {
    /// Verifies an npm publish's provenance attachment and applies the provenance rules.
    pub(super) async fn check_npm_provenance(
        &self,
        ctx: &mut RequestCtx,
        registry: &Registry,
        project: &portcullis_rules::ProjectName,
        facts: &crate::protocol::npm_body::PublishFacts,
        tarball: &crate::protocol::npm_body::TarballFacts,
    ) -> Result<ProvenanceRecord, Refusal> {
        let checked = match facts.provenance.as_deref().map(|bundle| (bundle, self.trusted_root())) {
            None => Checked::None,
            Some((_, Err(unavailable))) => Checked::Unverifiable(unavailable),
            Some((bundle, Ok(root))) => {
                crate::provenance::npm::check(
                    &self.provenance.cache,
                    &root,
                    bundle,
                    &facts.name,
                    &tarball.version,
                    tarball.sha256,
                    tarball.sha512,
                    facts.repository_url.as_deref(),
                    unix_now(),
                )
                .await
            }
        };
        let subject = Subject {
            project,
            file: &tarball.attachment,
            sha256: tarball.sha256,
            document: facts.provenance.as_deref(),
        };
        self.apply_provenance_rules(ctx, registry, &subject, checked).await
    }
}

impl Gateway {
    /// The Sigstore trusted root to verify with now, taken once: a verification keeps it to
    /// the end whatever a refresh swaps in meanwhile.
    fn trusted_root(&self) -> Result<std::sync::Arc<portcullis_verify::TrustedRoot>, TrustUnavailable> {
        self.provenance.trust.current(unix_now())
    }
}

/// What an upload's provenance is about.
pub(super) struct Subject<'a> {
    /// The project.
    pub project: &'a portcullis_rules::ProjectName,
    /// The file (PyPI) or tarball attachment (npm).
    pub file: &'a str,
    /// Its SHA-256.
    pub sha256: [u8; 32],
    /// The provenance document as uploaded (attestations field, or the npm bundle).
    pub document: Option<&'a [u8]>,
}

/// The verification steps behind a provenance decision, for the explanation.
fn steps(checked: &Checked, upload: &Subject<'_>, history: &ProjectHistory) -> Vec<String> {
    let mut steps = vec![format!(
        "ledger: {} earlier upload(s) of the project with provenance, source repositories {:?}",
        history.uploads_with_provenance, history.source_repositories
    )];
    match checked {
        Checked::None => steps.push("the upload carries no attestations".to_owned()),
        Checked::Invalid(reason) => steps.push(format!("attestations refused by verification: {reason}")),
        Checked::Unverifiable(unavailable) => steps.push(format!(
            "attestations present but not verified: {unavailable} (GET /trust on the admin listener)"
        )),
        Checked::Verified(facts) => {
            for (index, fact) in facts.iter().enumerate() {
                let signer = &fact.signer;
                steps.push(format!(
                    "attestation {index}: Sigstore verification passed (certificate chain at signing time, SCT, \
                     transparency log entry and inclusion proof, DSSE signature); statement {} with one subject \
                     {:?} sha256 {}; signer {:?} from {:?}, source repository {:?}, build config {:?}, trigger {:?}",
                    fact.predicate_type,
                    upload.file,
                    hex::encode(upload.sha256),
                    signer.sans.first(),
                    signer.issuer,
                    signer.source_repository_uri,
                    signer.build_config_uri,
                    signer.build_trigger,
                ));
            }
        }
    }
    steps
}
