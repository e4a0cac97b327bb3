//! Provenance on the upload path: Sigstore verification (the `portcullis-verify` crate),
//! cached so that retries and multi-artifact releases verify once.

pub mod cache;
pub mod npm;
pub mod pep740;
pub mod signer;

use std::sync::Arc;

/// What the upload path needs to verify provenance: the trusted root in force and the cache.
pub struct ProvenanceVerifier {
    /// The verification cache.
    pub cache: cache::VerificationCache,
    /// The Sigstore trusted root in force (from a file or kept current over TUF).
    pub trust: Arc<crate::sigstore::TrustHandle>,
}
