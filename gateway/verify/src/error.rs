//! Verification errors name the step that failed, as sigstore-go and sigstore-python do, so
//! an operator reading "why was this refused?" knows where to look.

use std::fmt;

/// The verification steps, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Reading the bundle JSON and its media type.
    Bundle,
    /// Reading the trusted root.
    TrustedRoot,
    /// The signing certificate's path to a trusted Fulcio CA, at signing time.
    CertificateChain,
    /// The embedded signed certificate timestamp.
    Sct,
    /// A transparency log entry: body, signed entry timestamp, log key.
    Tlog,
    /// The inclusion proof and its checkpoint.
    InclusionProof,
    /// RFC 3161 signed timestamps.
    Timestamp,
    /// The artifact signature (message signature or DSSE envelope).
    Signature,
    /// The in-toto statement's subject against the artifact.
    Subject,
    /// The signer's identity against the policy.
    Identity,
}

impl Step {
    /// Stable name used in messages and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Bundle => "bundle",
            Step::TrustedRoot => "trusted-root",
            Step::CertificateChain => "certificate-chain",
            Step::Sct => "sct",
            Step::Tlog => "tlog",
            Step::InclusionProof => "inclusion-proof",
            Step::Timestamp => "timestamp",
            Step::Signature => "signature",
            Step::Subject => "subject",
            Step::Identity => "identity",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed verification: which step, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{step}: {reason}")]
pub struct VerifyError {
    /// The step that failed.
    pub step: Step,
    /// What failed, for a human.
    pub reason: String,
}

impl VerifyError {
    /// An error at `step`.
    pub fn new(step: Step, reason: impl Into<String>) -> Self {
        VerifyError {
            step,
            reason: reason.into(),
        }
    }
}

/// Shorthand for results of a verification step.
pub type Result<T> = std::result::Result<T, VerifyError>;

/// Builds a closure mapping any displayable error to a [`VerifyError`] at `step` with context.
pub fn at<E: fmt::Display>(step: Step, context: &'static str) -> impl Fn(E) -> VerifyError {
    move |e| VerifyError::new(step, format!("{context}: {e}"))
}
