//! PEP 740 attestations on PyPI uploads: the `attestations` form field is parsed, each
//! attestation is verified against the uploaded file's digest (cached), and Warehouse's
//! structural rules are applied; what comes out is the verified signer facts the rules decide
//! on ([`portcullis_rules::provenance`]).
//!
//! Warehouse's rules (`warehouse/attestations/services.py`, pypi-attestations): the field is a
//! JSON list; an empty list is refused; at most 2 attestations; at most one per predicate
//! type; each statement has exactly one subject, whose name is the uploaded file name and
//! whose SHA-256 is the uploaded file's.

use std::sync::Arc;

use portcullis_rules::provenance::AttestationFacts;
use portcullis_verify::{Artifact, Policy, TrustedRoot};
use serde_json::value::RawValue;

use super::cache::VerificationCache;
use super::signer::signer_identity;

/// Most attestations accepted per file (as PyPI).
pub const MAX_ATTESTATIONS: usize = 2;

/// What an upload's attestations amount to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// The upload carries no `attestations` field.
    None,
    /// Every attestation verified; their facts.
    Verified(Vec<AttestationFacts>),
    /// The attestations are malformed or do not verify, and why.
    Invalid(String),
    /// Provenance was sent, and no Sigstore trusted root may be used now to verify it.
    Unverifiable(crate::sigstore::TrustUnavailable),
}

/// Checks the raw `attestations` field of an upload of `filename` with digest `sha256`.
pub async fn check(
    cache: &VerificationCache,
    root: &Arc<TrustedRoot>,
    field: &[u8],
    filename: &str,
    sha256: [u8; 32],
    now: i64,
) -> Checked {
    // Each attestation is kept as the bytes sent (no tree built, nothing re-serialised): the
    // verifier reads exactly those bytes, the cache is keyed by them, and they are what the
    // ledger stores and serves back.
    let list: Vec<&RawValue> = match serde_json::from_slice(field) {
        Ok(list) => list,
        Err(_) if serde_json::from_slice::<&RawValue>(field).is_ok() => {
            return Checked::Invalid("Malformed attestations: the field must be a JSON list".into())
        }
        Err(e) => return Checked::Invalid(format!("Malformed attestations: {e}")),
    };
    if list.is_empty() {
        return Checked::Invalid("an empty attestation set is not permitted".into());
    }
    if list.len() > MAX_ATTESTATIONS {
        return Checked::Invalid(format!(
            "a maximum of {MAX_ATTESTATIONS} attestations per file are supported"
        ));
    }
    let digest_hex = hex::encode(sha256);
    let mut facts = Vec::with_capacity(list.len());
    for (index, attestation) in list.iter().enumerate() {
        let outcome = cache
            .verify_pep740(
                Arc::from(attestation.get().as_bytes()),
                Artifact::from_sha256(sha256),
                root.clone(),
                Policy::AnyIdentity,
                now,
            )
            .await;
        let signer = match outcome.as_ref() {
            Ok(signer) => signer,
            Err(e) => {
                return Checked::Invalid(format!(
                    "Could not verify the uploaded artifact using the included attestation: {e}"
                ))
            }
        };
        let [(name, digests)] = signer.subjects.as_slice() else {
            return Checked::Invalid(format!(
                "attestation {index} has {} subjects; exactly one is required",
                signer.subjects.len()
            ));
        };
        if name != filename {
            return Checked::Invalid(format!(
                "the attestation's subject is {:?}, not the uploaded file {filename:?}",
                name.chars().take(200).collect::<String>()
            ));
        }
        if !digests
            .iter()
            .any(|(alg, value)| alg == "sha256" && *value == digest_hex)
        {
            return Checked::Invalid("the attestation's subject digest is not the uploaded file's SHA-256".into());
        }
        let Some(predicate_type) = signer.predicate_type.clone() else {
            return Checked::Invalid("the attestation is not an in-toto statement".into());
        };
        if facts
            .iter()
            .any(|f: &AttestationFacts| f.predicate_type == predicate_type)
        {
            return Checked::Invalid(format!(
                "multiple attestations for the same file with the same predicate type ({predicate_type}) are not supported"
            ));
        }
        facts.push(AttestationFacts {
            predicate_type,
            signer: signer_identity(&signer.identity),
        });
    }
    Checked::Verified(facts)
}

#[cfg(test)]
#[path = "pep740_tests.rs"]
mod tests;
