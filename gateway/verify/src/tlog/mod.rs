//! Transparency log entries: Rekor v1 (signed entry timestamp, inclusion proof, checkpoint)
//! and Rekor v2 (checkpoint with cosignatures, inclusion proof), and entry bodies.

pub mod checkpoint;
pub mod merkle;
