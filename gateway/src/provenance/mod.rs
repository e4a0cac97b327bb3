//! Provenance on the upload path: Sigstore verification (the `portcullis-verify` crate),
//! cached so that retries and multi-artifact releases verify once.

pub mod cache;
pub mod npm;
pub mod pep740;
pub mod signer;

use std::sync::Arc;

use portcullis_verify::TrustedRoot;

/// What the upload path needs to verify provenance: the trusted root and the cache.
pub struct ProvenanceVerifier {
    /// The verification cache.
    pub cache: cache::VerificationCache,
    /// The Sigstore trusted root, when configured.
    pub root: Option<Arc<TrustedRoot>>,
}
