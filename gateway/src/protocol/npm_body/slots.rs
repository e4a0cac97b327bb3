//! Which members of a publish document are tracked: the context of each object (the document,
//! `dist-tags`, `versions` and a version's `dist`, `repository` and `dependencies`,
//! `_attachments` and an attachment), the slot each member's value fills, the JSON type the slot
//! needs, and where a string in it goes. Everything else is scanned, checked and skipped.

use super::error::short;
use super::facts::{AttachmentEntry, AttachmentKind, VersionEntry};
use super::scanner::{CapKind, Sink};
use super::tarball::TarHash;
use super::{PublishError, PublishInspector, MAX_DEPENDENCIES};

/// What an object is, as far as the checks care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ctx {
    Root,
    DistTags,
    Versions,
    Version(usize),
    Dist(usize),
    Repository(usize),
    Dependencies(usize),
    Attachments,
    Attachment(usize),
    Other,
}

/// What the value of the current member (or the next value) is for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) enum Slot {
    #[default]
    Other,
    Root,
    Name,
    Id,
    DistTags,
    DistTag(String),
    Versions,
    Version(usize),
    VersionName(usize),
    VersionVersion(usize),
    Deprecated(usize),
    Dist(usize),
    Integrity(usize),
    Shasum(usize),
    Repository(usize),
    RepositoryUrl(usize),
    Dependencies(usize),
    Attachments,
    Attachment(usize),
    Data(usize),
    Length(usize),
}

impl Slot {
    /// The JSON type the checks need, for messages.
    pub(super) fn expected(&self) -> &'static str {
        match self {
            Slot::Root | Slot::DistTags | Slot::Versions | Slot::Version(_) | Slot::Dist(_) => "an object",
            Slot::Attachments | Slot::Attachment(_) => "an object",
            Slot::Length(_) => "a non-negative integer",
            _ => "a string",
        }
    }

    /// The context of an object in this slot, or `None` when an object is the wrong type.
    pub(super) fn object_ctx(&self) -> Option<Ctx> {
        Some(match self {
            Slot::Root => Ctx::Root,
            Slot::DistTags => Ctx::DistTags,
            Slot::Versions => Ctx::Versions,
            Slot::Version(v) => Ctx::Version(*v),
            Slot::Dist(v) => Ctx::Dist(*v),
            Slot::Repository(v) => Ctx::Repository(*v),
            Slot::Dependencies(v) => Ctx::Dependencies(*v),
            Slot::Attachments => Ctx::Attachments,
            Slot::Attachment(a) => Ctx::Attachment(*a),
            Slot::Other | Slot::RepositoryUrl(_) => Ctx::Other,
            _ => return None,
        })
    }

    /// Whether a value that is not a string or an object is acceptable (and ignored) here.
    pub(super) fn takes_anything(&self) -> bool {
        matches!(
            self,
            Slot::Other | Slot::Repository(_) | Slot::RepositoryUrl(_) | Slot::Dependencies(_)
        )
    }
}

impl PublishInspector {
    /// Where the decoded bytes of a string value in `slot` go; the tarball's `data` starts its
    /// hash. Refuses a string where the checks need another type.
    pub(super) fn string_sink(&mut self, slot: &Slot) -> Result<Sink, PublishError> {
        Ok(match slot {
            Slot::Other | Slot::Dependencies(_) => Sink::Skip,
            Slot::Data(a) => {
                let Some(entry) = self.attachments.get_mut(*a) else {
                    return Err(self.wrong_type(slot));
                };
                entry.has_data = true;
                if entry.kind == AttachmentKind::Tarball {
                    self.tar = Some(TarHash::new());
                    Sink::Tarball
                } else {
                    Sink::Capture(CapKind::Provenance)
                }
            }
            Slot::Name
            | Slot::Id
            | Slot::DistTag(_)
            | Slot::VersionName(_)
            | Slot::VersionVersion(_)
            | Slot::Deprecated(_)
            | Slot::Integrity(_)
            | Slot::Shasum(_)
            | Slot::Repository(_)
            | Slot::RepositoryUrl(_) => Sink::Capture(CapKind::Value),
            _ => return Err(self.wrong_type(slot)),
        })
    }

    pub(super) fn wrong_type(&self, slot: &Slot) -> PublishError {
        PublishError::WrongType {
            path: self.value_path(),
            expected: slot.expected(),
        }
    }

    fn charge(&mut self, bytes: usize) -> Result<(), PublishError> {
        self.metadata_bytes += bytes;
        if self.metadata_bytes > self.limits.max_metadata_bytes {
            return Err(PublishError::MetadataTooLarge {
                limit: self.limits.max_metadata_bytes,
            });
        }
        Ok(())
    }

    /// What the value of the member `key` of an object in `ctx` is for; records the versions,
    /// dist-tags, attachments and dependency names it names.
    pub(super) fn slot_for(&mut self, ctx: Ctx, key: String) -> Result<Slot, PublishError> {
        Ok(match ctx {
            Ctx::Root => match key.as_str() {
                "name" => Slot::Name,
                "_id" => Slot::Id,
                "dist-tags" => Slot::DistTags,
                "versions" => Slot::Versions,
                "_attachments" => Slot::Attachments,
                _ => Slot::Other,
            },
            Ctx::DistTags => {
                self.charge(key.len())?;
                Slot::DistTag(key)
            }
            Ctx::Versions => {
                self.charge(key.len())?;
                self.versions.push(VersionEntry {
                    version: key,
                    ..VersionEntry::default()
                });
                Slot::Version(self.versions.len() - 1)
            }
            Ctx::Version(v) => match key.as_str() {
                "name" => Slot::VersionName(v),
                "version" => Slot::VersionVersion(v),
                "deprecated" => Slot::Deprecated(v),
                "dist" => Slot::Dist(v),
                "repository" => Slot::Repository(v),
                "dependencies" => Slot::Dependencies(v),
                _ => Slot::Other,
            },
            Ctx::Dist(v) => match key.as_str() {
                "integrity" => Slot::Integrity(v),
                "shasum" => Slot::Shasum(v),
                _ => Slot::Other,
            },
            Ctx::Repository(v) if key == "url" => Slot::RepositoryUrl(v),
            Ctx::Attachment(a) => match key.as_str() {
                "data" => Slot::Data(a),
                "length" => Slot::Length(a),
                _ => Slot::Other,
            },
            Ctx::Attachments => {
                let kind = if key.ends_with(".tgz") {
                    AttachmentKind::Tarball
                } else if key.ends_with(".sigstore") {
                    AttachmentKind::Provenance
                } else if self.allow_foreign_attachments {
                    return Ok(Slot::Other);
                } else {
                    return Err(PublishError::UnexpectedAttachment { name: short(&key) });
                };
                if self.attachments.iter().any(|a| a.kind == kind) {
                    return Err(match kind {
                        AttachmentKind::Tarball => PublishError::MultipleTarballs,
                        AttachmentKind::Provenance => PublishError::MultipleProvenance,
                    });
                }
                self.charge(key.len())?;
                self.attachments.push(AttachmentEntry {
                    name: key,
                    kind,
                    has_data: false,
                    length: None,
                });
                Slot::Attachment(self.attachments.len() - 1)
            }
            Ctx::Dependencies(v) => {
                let kept = self.versions.get(v).map_or(0, |e| e.dependencies.len());
                if kept < MAX_DEPENDENCIES {
                    self.charge(key.len())?;
                    self.version_mut(v, |e| e.dependencies.push(key));
                }
                Slot::Other
            }
            Ctx::Repository(_) | Ctx::Other => Slot::Other,
        })
    }

    /// Keeps a string value where its slot says, checking `name` and `_id` against the package.
    pub(super) fn store(&mut self, slot: Slot, value: String) -> Result<(), PublishError> {
        self.charge(value.len())?;
        match slot {
            Slot::Name => {
                if value != self.package {
                    return Err(PublishError::NameMismatch {
                        found: short(&value),
                        expected: self.package.clone(),
                    });
                }
                self.name = Some(value);
            }
            Slot::Id if value != self.package => {
                return Err(PublishError::IdMismatch {
                    found: short(&value),
                    expected: self.package.clone(),
                });
            }
            Slot::DistTag(tag) => self.dist_tags.push((tag, value)),
            Slot::VersionName(v) => self.version_mut(v, |e| e.name = Some(value)),
            Slot::VersionVersion(v) => self.version_mut(v, |e| e.version_field = Some(value)),
            Slot::Deprecated(v) => self.version_mut(v, |e| e.deprecated = Some(value)),
            Slot::Integrity(v) => self.version_mut(v, |e| e.integrity = Some(value)),
            Slot::Shasum(v) => self.version_mut(v, |e| e.shasum = Some(value)),
            Slot::Repository(v) | Slot::RepositoryUrl(v) => self.version_mut(v, |e| e.repository = Some(value)),
            _ => {}
        }
        Ok(())
    }

    fn version_mut(&mut self, v: usize, update: impl FnOnce(&mut VersionEntry)) {
        if let Some(entry) = self.versions.get_mut(v) {
            update(entry);
        }
    }
}
