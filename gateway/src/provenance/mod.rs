//! Provenance on the upload path: Sigstore verification (the `portcullis-verify` crate),
//! cached so that retries and multi-artifact releases verify once.

pub mod cache;
