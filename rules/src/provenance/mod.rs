//! Provenance policy for uploads: PEP 740 attestations on PyPI, Sigstore provenance on npm.
//!
//! The gateway verifies the Sigstore bundles (signatures, certificates, transparency log) and
//! hands this module what the verified certificates and statements say ([`ProvenanceFacts`]);
//! this module decides whether the upload's provenance is acceptable: whether any is required,
//! which in-toto predicate types count, which build triggers are trusted and whether the signer
//! is a trusted publisher of the project ([`CompiledRules::decide_provenance`]).
//!
//! ```toml
//! [registries.pypi]
//! provenance = "optional"             # required | optional | audit (default optional)
//! provenance_shadow = false           # record refusals instead of enforcing them
//! # provenance_predicates = ["https://docs.pypi.org/attestations/publish/v1"]   # else per protocol
//!
//! [[registries.pypi.provenance_rules]]
//! id = "acme-provenance"              # unique among the registry's rules and publishers
//! names = ["acme-*"]                  # globs over normalised names, first match decides
//! mode = "required"
//! # shadow = true                     # overrides provenance_shadow for these projects
//! # predicates = ["https://slsa.dev/provenance/v1"]                        # overrides the registry's
//! build_triggers = ["push", "release"]  # unset: any trigger but pull_request_target (never allowed)
//! ```
//!
//! Modes: `required` refuses uploads without attestations; `optional` lets them through; both
//! refuse attestations that are present but invalid, of a predicate type not accepted, from a
//! build trigger not accepted or from a signer that is not a trusted publisher of the project.
//! `audit` never refuses and reports what it would have refused; shadow does the same for the
//! refusals of `required` and `optional`.
//!
//! [`CompiledRules::decide_provenance`]: crate::CompiledRules::decide_provenance

mod compile;
mod decide;
mod raw;

#[cfg(test)]
mod tests;

pub(crate) use self::compile::{compile_provenance, ProvenancePolicy};
pub(crate) use self::raw::RawProvenanceSettings;
pub use self::raw::{RawProvenanceMode, RawProvenanceRule};
pub use crate::publishers::SignerIdentity;

use std::fmt;

use crate::decide::RuleId;
use crate::name::ProjectName;

/// In-toto predicate types accepted on PyPI registries when the rules name none: PEP 740's
/// publish attestation and SLSA provenance v1.
pub const PYPI_DEFAULT_PREDICATES: &[&str] = &[
    "https://docs.pypi.org/attestations/publish/v1",
    "https://slsa.dev/provenance/v1",
];

/// In-toto predicate types accepted on npm registries when the rules name none: SLSA
/// provenance v0.2 and v1 and npm's publish attestation.
pub const NPM_DEFAULT_PREDICATES: &[&str] = &[
    "https://slsa.dev/provenance/v0.2",
    "https://slsa.dev/provenance/v1",
    "https://github.com/npm/attestation/tree/main/specs/publish/v0.1",
];

/// The build trigger no rule can accept: it runs a base repository's workflow, with its
/// secrets and identity, on behalf of a pull request from anyone.
const NEVER_TRIGGER: &str = "pull_request_target";

/// Whether and how a project's uploads need provenance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProvenanceMode {
    /// Uploads without attestations are refused; present attestations must pass.
    Required,
    /// Uploads without attestations pass; present attestations must pass.
    Optional,
    /// Attestations are checked but nothing is refused: failures are recorded.
    Audit,
}

impl ProvenanceMode {
    /// Stable lower-case name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ProvenanceMode::Required => "required",
            ProvenanceMode::Optional => "optional",
            ProvenanceMode::Audit => "audit",
        }
    }
}

impl fmt::Display for ProvenanceMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the gateway established about one attestation whose Sigstore verification succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationFacts {
    /// The in-toto statement's `predicateType`.
    pub predicate_type: String,
    /// The identity of the signing certificate.
    pub signer: SignerIdentity,
}

/// The provenance an upload carried, as the gateway's verification left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence<'a> {
    /// The upload carried no attestations.
    None,
    /// Every attestation verified; their facts. An empty list counts as [`Evidence::None`].
    Verified(&'a [AttestationFacts]),
    /// Attestations were present but did not verify; why, from the gateway.
    Invalid(&'a str),
    /// Attestations were present but the gateway has no Sigstore trusted root it may use now
    /// (none loaded yet, or the TUF metadata vouching for the last good one has expired): they
    /// can be neither verified nor refused as invalid.
    Unverifiable {
        /// The last good root's metadata expired (rather than: none was ever loaded).
        expired: bool,
        /// Why, from the gateway.
        why: &'a str,
    },
}

/// Facts about one upload's provenance.
#[derive(Debug, Clone, Copy)]
pub struct ProvenanceFacts<'a> {
    /// The registry's configured name.
    pub registry: &'a str,
    /// The project uploaded to, normalised.
    pub project: &'a ProjectName,
    /// The id of the trusted publisher whose token authenticated the upload, if one did.
    pub uploader: Option<&'a str>,
    /// The attestations.
    pub evidence: Evidence<'a>,
    /// What earlier committed uploads of the project carried (from the ledger).
    pub history: &'a ProjectHistory,
}

/// What the ledger says about a project's earlier committed uploads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectHistory {
    /// How many earlier uploads carried verified provenance.
    pub uploads_with_provenance: u64,
    /// The source repositories their provenance named, oldest first.
    pub source_repositories: Vec<String>,
}

/// Why provenance was (or would have been) refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProvenanceRefusal {
    /// Provenance is required and the upload carried none.
    Missing,
    /// Attestations were present but did not verify.
    Invalid,
    /// An attestation's predicate type is not accepted.
    Predicate,
    /// An attestation's signer is not a trusted publisher of the project (or not the one that
    /// authenticated the upload).
    Signer,
    /// An attestation was signed in a build whose trigger is not accepted.
    Trigger,
    /// The project published with provenance before and this upload carries none.
    Downgrade,
    /// The provenance names another source repository than the project's earlier uploads.
    Repository,
    /// Attestations were present and no Sigstore trusted root is available to verify them.
    TrustUnavailable,
    /// Attestations were present and the TUF metadata of the last good trusted root expired.
    TrustExpired,
}

impl ProvenanceRefusal {
    /// The stable code the gateway reports.
    pub fn code(&self) -> &'static str {
        match self {
            ProvenanceRefusal::Missing => "provenance_missing",
            ProvenanceRefusal::Invalid => "provenance_invalid",
            ProvenanceRefusal::Predicate => "provenance_predicate",
            ProvenanceRefusal::Signer => "provenance_signer",
            ProvenanceRefusal::Trigger => "provenance_trigger",
            ProvenanceRefusal::Downgrade => "provenance_downgrade",
            ProvenanceRefusal::Repository => "provenance_repository",
            ProvenanceRefusal::TrustUnavailable => "provenance_trust_unavailable",
            ProvenanceRefusal::TrustExpired => "provenance_trust_expired",
        }
    }

    /// Whether the refusal is about the gateway's state rather than the upload, so that the
    /// same upload may pass later (the gateway answers 503).
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            ProvenanceRefusal::TrustUnavailable | ProvenanceRefusal::TrustExpired
        )
    }
}

impl fmt::Display for ProvenanceRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// What the provenance policy decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProvenanceOutcome {
    /// Verified provenance that passed every check.
    Accepted,
    /// No provenance, and none is required.
    NotPresent,
    /// The upload is refused.
    Refused {
        /// Why, as a stable kind.
        code: ProvenanceRefusal,
        /// A message a publisher can act on.
        message: String,
    },
    /// Audit mode or shadow: nothing is refused; the refusal that enforcement would have made,
    /// if any.
    Recorded {
        /// The refusal enforcement would have made.
        would_refuse: Option<(ProvenanceRefusal, String)>,
    },
}

/// For explanations: `accepted`, `not present`, `refused, <code>: <message>`, `recorded, would
/// refuse <code>: <message>` or `recorded, would pass`.
impl fmt::Display for ProvenanceOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProvenanceOutcome::Accepted => f.write_str("accepted"),
            ProvenanceOutcome::NotPresent => f.write_str("not present"),
            ProvenanceOutcome::Refused { code, message } => write!(f, "refused, {code}: {message}"),
            ProvenanceOutcome::Recorded {
                would_refuse: Some((code, message)),
            } => write!(f, "recorded, would refuse {code}: {message}"),
            ProvenanceOutcome::Recorded { would_refuse: None } => f.write_str("recorded, would pass"),
        }
    }
}

/// A provenance decision with the rule that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenanceDecision {
    /// The provenance rule that decided (`default` for the registry's defaults).
    pub rule: RuleId,
    /// That rule's mode.
    pub mode: ProvenanceMode,
    /// What was decided.
    pub outcome: ProvenanceOutcome,
    /// The trusted publisher the attestations' signer matched, when it did.
    pub signer_publisher: Option<String>,
    /// Whether the rule is in shadow mode (refusals become [`ProvenanceOutcome::Recorded`]).
    pub shadow: bool,
}

impl ProvenanceDecision {
    /// Whether the upload is refused.
    pub fn is_refused(&self) -> bool {
        matches!(self.outcome, ProvenanceOutcome::Refused { .. })
    }

    /// The refusal made, or the one audit or shadow mode would have made.
    pub fn refusal(&self) -> Option<(ProvenanceRefusal, &str)> {
        match &self.outcome {
            ProvenanceOutcome::Refused { code, message } => Some((*code, message)),
            ProvenanceOutcome::Recorded {
                would_refuse: Some((code, message)),
            } => Some((*code, message)),
            _ => None,
        }
    }
}
