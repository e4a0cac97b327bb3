//! The digests an upload form claims for its file (`md5_digest`, `sha256_digest`,
//! `blake2_256_digest`), and the hashing that checks them, as Warehouse does: every claimed
//! digest must match the bytes, whatever order the fields arrive in.
//!
//! SHA-256 is always computed (provenance and the ledger need it). MD5 and BLAKE2b-256 are
//! computed only when claimed before the file — or, when the file comes before any digest
//! field, in case one is claimed after it. A digest claimed after the file that was not
//! computed is refused as unverifiable, never accepted unchecked; no client sends some digests
//! before the file and others after.

use blake2::Blake2b;
use sha2::{Digest as _, Sha256};

use crate::error::Refusal;

type Blake2b256 = Blake2b<blake2::digest::consts::U32>;

/// One digest a form can claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Md5,
    Sha256,
    Blake2b256,
}

impl Kind {
    fn field(self) -> &'static str {
        match self {
            Kind::Md5 => "md5_digest",
            Kind::Sha256 => "sha256_digest",
            Kind::Blake2b256 => "blake2_256_digest",
        }
    }

    fn algorithm(self) -> &'static str {
        match self {
            Kind::Md5 => "MD5",
            Kind::Sha256 => "SHA-256",
            Kind::Blake2b256 => "BLAKE2b-256",
        }
    }

    fn len(self) -> usize {
        match self {
            Kind::Md5 => 16,
            Kind::Sha256 | Kind::Blake2b256 => 32,
        }
    }

    fn from_field(field: &str) -> Option<Kind> {
        [Kind::Md5, Kind::Sha256, Kind::Blake2b256]
            .into_iter()
            .find(|k| k.field() == field)
    }
}

/// The digests a form claimed, decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimedDigests {
    md5: Option<Vec<u8>>,
    sha256: Option<Vec<u8>>,
    blake2_256: Option<Vec<u8>>,
}

impl ClaimedDigests {
    /// Whether `field` is one of the digest fields.
    pub fn is_digest_field(field: &str) -> bool {
        Kind::from_field(field).is_some()
    }

    /// Whether any digest was claimed so far.
    pub fn any(&self) -> bool {
        self.md5.is_some() || self.sha256.is_some() || self.blake2_256.is_some()
    }

    /// Records the claim of a digest field: hex of the algorithm's length, any case.
    pub fn claim(&mut self, field: &str, value: &str) -> Result<(), Refusal> {
        let kind = Kind::from_field(field).ok_or(Refusal::Internal)?;
        let bytes = hex::decode(value)
            .ok()
            .filter(|b| b.len() == kind.len())
            .ok_or_else(|| {
                Refusal::MalformedUpload(format!(
                    "{} must be the {} of the file in hex ({} digits)",
                    kind.field(),
                    kind.algorithm(),
                    2 * kind.len()
                ))
            })?;
        *self.slot(kind) = Some(bytes);
        Ok(())
    }

    fn slot(&mut self, kind: Kind) -> &mut Option<Vec<u8>> {
        match kind {
            Kind::Md5 => &mut self.md5,
            Kind::Sha256 => &mut self.sha256,
            Kind::Blake2b256 => &mut self.blake2_256,
        }
    }

    /// Every claimed digest against what was computed: a false one is `digest_mismatch`, one
    /// that was not computed (claimed only after the file) is refused too.
    pub fn check(&self, file: &FileDigests) -> Result<(), Refusal> {
        let pairs = [
            (Kind::Md5, &self.md5, file.md5.as_ref().map(|d| &d[..])),
            (Kind::Sha256, &self.sha256, Some(&file.sha256[..])),
            (
                Kind::Blake2b256,
                &self.blake2_256,
                file.blake2_256.as_ref().map(|d| &d[..]),
            ),
        ];
        for (kind, claimed, computed) in pairs {
            let Some(claimed) = claimed else { continue };
            let Some(computed) = computed else {
                return Err(Refusal::MalformedUpload(format!(
                    "{} came after the file, with other digests before it; send every digest field before the content part",
                    kind.field()
                )));
            };
            if claimed.as_slice() != computed {
                return Err(Refusal::DigestMismatch(format!(
                    "the {} sent does not match the {} of the uploaded file",
                    kind.field(),
                    kind.algorithm()
                )));
            }
        }
        Ok(())
    }
}

/// Hashes an uploaded file as it streams: SHA-256 always, the others when they may be claimed.
pub struct FileHasher {
    sha256: Sha256,
    md5: Option<md5::Md5>,
    blake2_256: Option<Blake2b256>,
}

impl FileHasher {
    /// A hasher for a file read after `claimed`: MD5 and BLAKE2b-256 when claimed, or when no
    /// digest at all was claimed yet (they may come after the file).
    pub fn for_claims(claimed: &ClaimedDigests) -> Self {
        let speculative = !claimed.any();
        FileHasher {
            sha256: Sha256::new(),
            md5: (speculative || claimed.md5.is_some()).then(<md5::Md5 as md5::Digest>::new),
            blake2_256: (speculative || claimed.blake2_256.is_some()).then(Blake2b256::new),
        }
    }

    /// Hashes the next bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        if let Some(md5) = self.md5.as_mut() {
            md5::Digest::update(md5, bytes);
        }
        if let Some(blake2) = self.blake2_256.as_mut() {
            blake2.update(bytes);
        }
    }

    /// The digests of everything hashed.
    pub fn finish(self) -> FileDigests {
        FileDigests {
            sha256: self.sha256.finalize().into(),
            md5: self.md5.map(|m| md5::Digest::finalize(m).into()),
            blake2_256: self.blake2_256.map(|b| b.finalize().into()),
        }
    }
}

/// The digests computed over an uploaded file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigests {
    /// SHA-256, always.
    pub sha256: [u8; 32],
    /// MD5, when it was computed.
    pub md5: Option<[u8; 16]>,
    /// BLAKE2b-256, when it was computed.
    pub blake2_256: Option<[u8; 32]>,
}
