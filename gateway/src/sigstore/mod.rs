//! The Sigstore trusted root the provenance verifier runs against, and how it is kept current.
//!
//! By default it comes over TUF from Sigstore's public-good repository (an operator may name
//! the staging instance, a mirror, or another repository with its own anchor): [`tuf`] runs
//! the TUF client (`sigstore-tuf`), [`refresh`] does so at start-up from the cache alone, then
//! on schedule and on an admin request, and [`trust`] holds the root in force, swapped whole.
//! Air-gapped sites name a `trusted_root.json` file instead (`trust = "file"`).

pub mod anchors;
pub mod refresh;
pub mod trust;
pub mod tuf;

pub use refresh::TrustRefresher;
pub use trust::{TrustHandle, TrustSource, TrustUnavailable};
