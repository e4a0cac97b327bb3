//! What a publish document asks for: the [`PublishFacts`] and [`TarballFacts`] the inspector
//! returns, the entries it keeps while scanning (one per version and per attachment), and the
//! checks that need the whole document: the package name, exactly one version for a publish,
//! the attachment names, and the tarball's size, `dist.integrity` and `dist.shasum` against
//! the bytes the gateway hashed.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha2::Digest as _;

use super::error::short;
use super::{PublishError, PublishInspector};

/// What kind of write the document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishKind {
    /// A new version with its `.tgz` attachment.
    Publish,
    /// No attachments (absent or empty `_attachments`): a whole-packument PUT such as
    /// `npm deprecate` or `npm dist-tag` on old registries.
    MetadataOnly,
}

/// Facts about the attached tarball, computed by the gateway from the decoded bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarballFacts {
    /// The attachment's name (`<name>-<version>.tgz`).
    pub attachment: String,
    /// The version published.
    pub version: String,
    /// Size of the decoded tarball.
    pub bytes: u64,
    /// SHA-256 of the decoded tarball (the ledger's digest, and a subject digest some
    /// statements use).
    pub sha256: [u8; 32],
    /// SHA-512 of the decoded tarball.
    pub sha512: [u8; 64],
    /// SHA-1 of the decoded tarball.
    pub sha1: [u8; 20],
    /// The attachment's `length`, when sent (checked equal to `bytes`).
    pub declared_length: Option<u64>,
}

/// What an npm publish document asks for, once the whole body passed the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishFacts {
    /// The top-level `name` (equal to the package of the path).
    pub name: String,
    /// The keys of `versions`, in document order.
    pub versions: Vec<String>,
    /// The `dist-tags` members (tag, version), in document order.
    pub dist_tags: Vec<(String, String)>,
    /// Publish or metadata-only.
    pub kind: PublishKind,
    /// The tarball, for a [`PublishKind::Publish`].
    pub tarball: Option<TarballFacts>,
    /// The `<name>-<version>.sigstore` attachment's `data`, decoded from its JSON string: the
    /// Sigstore bundle JSON.
    pub provenance: Option<Vec<u8>>,
    /// Whether the `.sigstore` member was removed from the forwarded bytes.
    pub provenance_stripped: bool,
    /// `repository.url` (or `repository` when it is a string) of the version, when the
    /// document has exactly one version.
    pub repository_url: Option<String>,
    /// `(version, message)` for every version carrying a `deprecated` string (an empty message
    /// is npm's way to lift a deprecation).
    pub deprecated: Vec<(String, String)>,
    /// The names in the version's `dependencies` (at most
    /// [`MAX_DEPENDENCIES`](super::MAX_DEPENDENCIES)), when the document has exactly one version.
    pub dependencies: Vec<String>,
}

/// What an accepted attachment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AttachmentKind {
    /// `<name>-<version>.tgz`: the package tarball.
    Tarball,
    /// `<name>-<version>.sigstore`: the provenance bundle.
    Provenance,
}

/// A member of `_attachments`, as far as it was read.
#[derive(Debug)]
pub(super) struct AttachmentEntry {
    pub(super) name: String,
    pub(super) kind: AttachmentKind,
    pub(super) has_data: bool,
    pub(super) length: Option<u64>,
}

/// A member of `versions`: its key and the values of its manifest the checks read.
#[derive(Debug, Default)]
pub(super) struct VersionEntry {
    pub(super) version: String,
    pub(super) name: Option<String>,
    pub(super) version_field: Option<String>,
    pub(super) integrity: Option<String>,
    pub(super) shasum: Option<String>,
    pub(super) repository: Option<String>,
    pub(super) deprecated: Option<String>,
    pub(super) dependencies: Vec<String>,
}

impl PublishInspector {
    /// The checks that need the whole document (names, the one version, attachments, the
    /// tarball against `dist`), then the facts.
    pub(super) fn into_facts(self) -> Result<PublishFacts, PublishError> {
        let name = self.name.ok_or_else(|| PublishError::NameMissing {
            expected: self.package.clone(),
        })?;
        let tarball_entry = self.attachments.iter().find(|a| a.kind == AttachmentKind::Tarball);
        let provenance_entry = self.attachments.iter().find(|a| a.kind == AttachmentKind::Provenance);
        let (kind, tarball) = if self.attachments.is_empty() {
            (PublishKind::MetadataOnly, None)
        } else {
            let Some(tgz) = tarball_entry else {
                return Err(PublishError::ProvenanceWithoutTarball {
                    name: provenance_entry.map(|a| short(&a.name)).unwrap_or_default(),
                });
            };
            let [entry] = self.versions.as_slice() else {
                return Err(PublishError::VersionCount {
                    found: self.versions.len(),
                });
            };
            let version = &entry.version;
            let expected = format!("{}-{version}.tgz", self.package);
            if tgz.name != expected {
                return Err(PublishError::AttachmentName {
                    found: short(&tgz.name),
                    expected,
                });
            }
            if let Some(sig) = provenance_entry {
                let expected = format!("{}-{version}.sigstore", self.package);
                if sig.name != expected {
                    return Err(PublishError::AttachmentName {
                        found: short(&sig.name),
                        expected,
                    });
                }
            }
            if let Some(missing) = self.attachments.iter().find(|a| !a.has_data) {
                return Err(PublishError::AttachmentDataMissing {
                    name: short(&missing.name),
                });
            }
            for (field, found, expected) in [
                ("name", &entry.name, &self.package),
                ("version", &entry.version_field, version),
            ] {
                if let Some(found) = found.as_ref().filter(|f| f != &expected) {
                    return Err(PublishError::VersionField {
                        version: short(version),
                        field,
                        found: short(found),
                        expected: expected.clone(),
                    });
                }
            }
            let hash = self
                .tar
                .ok_or_else(|| PublishError::AttachmentDataMissing { name: short(&tgz.name) })?;
            let sha256: [u8; 32] = hash.sha256.finalize().into();
            let sha512: [u8; 64] = hash.sha512.finalize().into();
            let sha1: [u8; 20] = hash.sha1.finalize().into();
            if let Some(declared) = tgz.length.filter(|declared| *declared != hash.bytes) {
                return Err(PublishError::LengthMismatch {
                    declared,
                    actual: hash.bytes,
                });
            }
            check_integrity(version, entry.integrity.as_deref(), &sha512)?;
            if let Some(found) = entry.shasum.as_deref() {
                let actual = hex::encode(sha1);
                if !found.eq_ignore_ascii_case(&actual) {
                    return Err(PublishError::ShasumMismatch {
                        version: short(version),
                        found: short(found),
                        actual,
                    });
                }
            }
            let facts = TarballFacts {
                attachment: tgz.name.clone(),
                version: version.clone(),
                bytes: hash.bytes,
                sha256,
                sha512,
                sha1,
                declared_length: tgz.length,
            };
            (PublishKind::Publish, Some(facts))
        };
        let (repository_url, dependencies) = match self.versions.as_slice() {
            [only] => (only.repository.clone(), only.dependencies.clone()),
            _ => (None, Vec::new()),
        };
        let deprecated = self
            .versions
            .iter()
            .filter_map(|v| v.deprecated.clone().map(|message| (v.version.clone(), message)))
            .collect();
        Ok(PublishFacts {
            name,
            versions: self.versions.into_iter().map(|v| v.version).collect(),
            dist_tags: self.dist_tags,
            kind,
            tarball,
            provenance: self.provenance,
            provenance_stripped: self.fwd.stripped,
            repository_url,
            deprecated,
            dependencies,
        })
    }
}

/// Checks `dist.integrity` (space-separated SRI hashes): it must list a `sha512-` hash and
/// every `sha512-` hash it lists must be the tarball's; other algorithms are ignored.
fn check_integrity(version: &str, integrity: Option<&str>, sha512: &[u8; 64]) -> Result<(), PublishError> {
    let mut found = false;
    for item in integrity.unwrap_or("").split_ascii_whitespace() {
        let Some(value) = item.strip_prefix("sha512-") else {
            continue;
        };
        found = true;
        // SRI allows `?options` after the digest.
        let digest = value.split_once('?').map_or(value, |(digest, _)| digest);
        if STANDARD.decode(digest).ok().as_deref() != Some(sha512.as_slice()) {
            return Err(PublishError::IntegrityMismatch {
                version: short(version),
                actual: format!("sha512-{}", STANDARD.encode(sha512)),
            });
        }
    }
    if !found {
        return Err(PublishError::IntegrityMissing {
            version: short(version),
        });
    }
    Ok(())
}
