//! Offline Sigstore verification for Portcullis.
//!
//! Steps run in the order the Sigstore client spec, sigstore-go and sigstore-python use, and
//! every failure names its [`error::Step`].

pub mod error;
pub mod keys;
pub mod trust_root;

pub use error::{Step, VerifyError};
pub use trust_root::TrustedRoot;
pub mod bundle;
pub mod cert;
pub mod content;
mod der_walk;
pub mod sct;
pub mod timestamp;
pub mod tlog;
pub mod verify;
mod x509;

pub use bundle::Bundle;
pub use content::Artifact;
pub use verify::{verify, Policy, SignerFacts};
pub mod pep740;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
