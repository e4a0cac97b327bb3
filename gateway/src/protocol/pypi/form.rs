//! The PyPI upload form, read as it streams: what it asks for, the file's digests, and the
//! field rules that keep the gateway's reading the backend's (single-valued fields once, no
//! field names differing only by case, files only where the API has files).

use portcullis_rules::{ProjectName, Protocol};

use super::digests::{ClaimedDigests, FileDigests, FileHasher};
use super::filename::check_filename;
use super::requirement_name;
use crate::error::Refusal;
use crate::protocol::multipart::{FormContentType, PartHead, PartSink, StrictMultipart};

/// Largest non-file form field accepted (metadata, descriptions, attestations), and largest
/// signature file.
pub const MAX_FIELD_BYTES: u64 = 4 << 20;

/// Most `requires_dist` entries kept per upload (for counting dependents).
const MAX_REQUIREMENTS: usize = 1_000;

/// Fields that are single-valued in the upload API: a repeated one is refused, since readers
/// differ on which copy counts (pypiserver takes the first, others the last).
const SINGLE_FIELDS: &[&str] = &[
    ":action",
    "name",
    "version",
    "content",
    "gpg_signature",
    "filetype",
    "pyversion",
    "metadata_version",
    "protocol_version",
    "md5_digest",
    "sha256_digest",
    "blake2_256_digest",
    "attestations",
];

/// Fields whose values the gateway reads (the others are only size-checked).
const READ_FIELDS: &[&str] = &[
    ":action",
    "name",
    "version",
    "md5_digest",
    "sha256_digest",
    "blake2_256_digest",
    "attestations",
    "requires_dist",
];

/// What a PyPI form asks for, once the whole body has been read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormAction {
    /// `:action=file_upload`: a distribution file.
    FileUpload(UploadFacts),
    /// `:action=remove_pkg`: remove a release (pypiserver).
    RemovePackage {
        /// The project.
        project: ProjectName,
        /// The version to remove.
        version: String,
    },
}

impl FormAction {
    /// The project the form targets.
    pub fn project(&self) -> &ProjectName {
        match self {
            FormAction::FileUpload(u) => &u.project,
            FormAction::RemovePackage { project, .. } => project,
        }
    }
}

/// Facts about an uploaded distribution file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadFacts {
    /// Normalised project name.
    pub project: ProjectName,
    /// Version as sent.
    pub version: String,
    /// File name of the `content` part.
    pub filename: String,
    /// Size of the file.
    pub content_bytes: u64,
    /// SHA-256 of the file, computed by the gateway.
    pub content_sha256: [u8; 32],
    /// The raw `attestations` field (a JSON list of PEP 740 attestation objects), when sent.
    pub attestations: Option<Vec<u8>>,
    /// The normalised names of the projects the file requires (`requires_dist` fields).
    pub requires_dist: Vec<String>,
}

/// Reads a PyPI upload form as the proxy streams it to the backend.
pub struct FormInspector {
    content_type: FormContentType,
    reader: StrictMultipart,
    fields: FormFields,
}

impl FormInspector {
    /// Starts reading a body sent with `content_type`, the request's only `Content-Type`.
    pub fn start(content_type: Option<&str>) -> Result<Self, Refusal> {
        let content_type = content_type
            .ok_or_else(|| Refusal::UnclassifiedWrite("PyPI uploads must be multipart/form-data POSTs".into()))?;
        let content_type = FormContentType::parse(content_type).map_err(|e| {
            if content_type
                .split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("multipart/form-data"))
            {
                Refusal::from(e)
            } else {
                Refusal::UnclassifiedWrite("PyPI uploads must be multipart/form-data POSTs".into())
            }
        })?;
        Ok(FormInspector {
            reader: StrictMultipart::new(&content_type),
            content_type,
            fields: FormFields::default(),
        })
    }

    /// The `Content-Type` the backend is sent: the boundary the gateway reads with, spelled
    /// one way.
    pub fn canonical_content_type(&self) -> String {
        self.content_type.canonical()
    }

    /// Reads the next body chunk. Fails as soon as the form is known to be refused.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), Refusal> {
        self.reader.feed(chunk, &mut self.fields)
    }

    /// Ends the body and returns what the form asks for.
    pub fn finish(self) -> Result<FormAction, Refusal> {
        self.reader.finish()?;
        self.fields.into_action()
    }
}

/// The part being read.
#[derive(Default)]
enum Part {
    #[default]
    None,
    /// The distribution file.
    Content {
        filename: String,
        hasher: Box<FileHasher>,
        bytes: u64,
    },
    /// A detached signature file (pypiserver stores it beside the distribution).
    Signature { filename: String, bytes: u64 },
    /// A field the gateway reads.
    Read { name: String, value: Vec<u8> },
    /// A field the gateway only size- and UTF-8-checks.
    Skipped { name: String, bytes: u64, text: Utf8Stream },
}

/// The fields read so far.
#[derive(Default)]
struct FormFields {
    part: Part,
    seen: Vec<&'static str>,
    action: Option<String>,
    name: Option<String>,
    version: Option<String>,
    claimed: ClaimedDigests,
    content: Option<(String, u64, FileDigests)>,
    signature: Option<String>,
    attestations: Option<Vec<u8>>,
    requires_dist: Vec<String>,
}

fn too_large(name: &str) -> Refusal {
    Refusal::MalformedUpload(format!(
        "the form field {name:?} is larger than {MAX_FIELD_BYTES} bytes"
    ))
}

/// Text fields must be UTF-8: readers decode other bytes each their own way (replacement
/// characters, Latin-1, dropping the part).
fn not_utf8(name: &str) -> Refusal {
    Refusal::AmbiguousBody(format!(
        "the form field {name:?} is not UTF-8; send text fields as UTF-8 (readers decode other bytes differently)"
    ))
}

/// Checks that text arriving in slices is UTF-8, carrying a character cut between slices.
#[derive(Default)]
struct Utf8Stream {
    /// The start of a character whose other bytes are still to come.
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Whether `data`, after what came before, is still valid UTF-8.
    fn push(&mut self, mut data: &[u8]) -> bool {
        if let Some(&lead) = self.pending.first() {
            let width = lead.leading_ones() as usize;
            let take = width.saturating_sub(self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() < width {
                // Still incomplete: valid only while every byte so far can continue it, so
                // that where the body was cut never changes when a bad byte is found (found
                // by the multipart fuzz target).
                return matches!(std::str::from_utf8(&self.pending), Err(e) if e.error_len().is_none());
            }
            if std::str::from_utf8(&self.pending).is_err() {
                return false;
            }
            self.pending.clear();
        }
        match std::str::from_utf8(data) {
            Ok(_) => true,
            Err(e) if e.error_len().is_none() => {
                self.pending = data[e.valid_up_to()..].to_vec();
                true
            }
            Err(_) => false,
        }
    }

    /// Whether the text ended on a whole character.
    fn is_complete(&self) -> bool {
        self.pending.is_empty()
    }
}

impl PartSink for FormFields {
    type Error = Refusal;

    fn start_part(&mut self, head: PartHead) -> Result<(), Refusal> {
        let PartHead { name, filename, .. } = head;
        self.check_name(&name)?;
        self.part = match (name.as_str(), filename) {
            ("content", Some(filename)) => Part::Content {
                filename,
                hasher: Box::new(FileHasher::for_claims(&self.claimed)),
                bytes: 0,
            },
            ("gpg_signature", Some(filename)) => Part::Signature { filename, bytes: 0 },
            ("content" | "gpg_signature", None) => {
                return Err(Refusal::MalformedUpload(format!("the {name} part has no filename")))
            }
            (_, Some(_)) => {
                return Err(Refusal::AmbiguousBody(format!(
                    "the form field {name:?} is sent as a file; only content and gpg_signature are files \
                     (readers keep files apart from fields, so the backend would not read it as a field)"
                )))
            }
            (_, None) if READ_FIELDS.contains(&name.as_str()) => Part::Read {
                name,
                value: Vec::new(),
            },
            (_, None) => Part::Skipped {
                name,
                bytes: 0,
                text: Utf8Stream::default(),
            },
        };
        Ok(())
    }

    fn data(&mut self, data: &[u8]) -> Result<(), Refusal> {
        let len = data.len() as u64;
        match &mut self.part {
            Part::None => return Err(Refusal::Internal),
            Part::Content { hasher, bytes, .. } => {
                hasher.update(data);
                *bytes += len;
            }
            Part::Signature { bytes, .. } => {
                *bytes += len;
                if *bytes > MAX_FIELD_BYTES {
                    return Err(too_large("gpg_signature"));
                }
            }
            Part::Read { name, value } => {
                if value.len() as u64 + len > MAX_FIELD_BYTES {
                    return Err(too_large(name));
                }
                value.extend_from_slice(data);
            }
            Part::Skipped { name, bytes, text } => {
                *bytes += len;
                if *bytes > MAX_FIELD_BYTES {
                    return Err(too_large(name));
                }
                if !text.push(data) {
                    return Err(not_utf8(name));
                }
            }
        }
        Ok(())
    }

    fn end_part(&mut self) -> Result<(), Refusal> {
        match std::mem::take(&mut self.part) {
            Part::None => return Err(Refusal::Internal),
            Part::Content {
                filename,
                hasher,
                bytes,
            } => self.content = Some((filename, bytes, hasher.finish())),
            Part::Signature { filename, .. } => self.signature = Some(filename),
            Part::Read { name, value } => self.read_field(&name, value)?,
            Part::Skipped { name, text, .. } => {
                if !text.is_complete() {
                    return Err(not_utf8(&name));
                }
            }
        }
        Ok(())
    }
}

impl FormFields {
    /// A single-valued field once; no name that differs from one of the API's only by case.
    fn check_name(&mut self, name: &str) -> Result<(), Refusal> {
        let known = SINGLE_FIELDS
            .iter()
            .chain(READ_FIELDS)
            .find(|k| k.eq_ignore_ascii_case(name));
        if let Some(known) = known {
            if *known != name {
                return Err(Refusal::AmbiguousBody(format!(
                    "the form field {name:?} differs from {known:?} only by case; send {known:?}"
                )));
            }
        }
        if let Some(single) = SINGLE_FIELDS.iter().find(|k| **k == name) {
            if self.seen.contains(single) {
                return Err(Refusal::AmbiguousBody(format!(
                    "the form field {name:?} appears more than once; send it once (readers differ on which copy counts)"
                )));
            }
            self.seen.push(single);
        }
        Ok(())
    }

    fn read_field(&mut self, name: &str, value: Vec<u8>) -> Result<(), Refusal> {
        if std::str::from_utf8(&value).is_err() {
            return Err(not_utf8(name));
        }
        if name == "attestations" {
            self.attestations = Some(value);
            return Ok(());
        }
        let text = String::from_utf8(value).map_err(|_| not_utf8(name))?;
        match name {
            ":action" => self.action = Some(text),
            "name" => self.name = Some(text),
            "version" => self.version = Some(text),
            "requires_dist" => {
                if self.requires_dist.len() < MAX_REQUIREMENTS {
                    self.requires_dist.extend(requirement_name(&text));
                }
            }
            digest => self.claimed.claim(digest, &text)?,
        }
        Ok(())
    }

    fn into_action(self) -> Result<FormAction, Refusal> {
        let action = required(self.action, ":action")?;
        let name = required(self.name, "name")?;
        let project = ProjectName::parse(Protocol::Pypi, &name).map_err(|e| Refusal::MalformedUpload(e.to_string()))?;
        let version = required(self.version, "version")?;
        match action.as_str() {
            "file_upload" => {
                let Some((filename, content_bytes, digests)) = self.content else {
                    return Err(Refusal::MalformedUpload("the upload has no content part".into()));
                };
                if filename.contains(['/', '\\', '\0']) || filename.starts_with('.') {
                    return Err(Refusal::MalformedUpload(format!(
                        "{filename:?} is not a valid distribution filename"
                    )));
                }
                check_filename(&filename, &project, &version)?;
                if let Some(signature) = &self.signature {
                    if *signature != format!("{filename}.asc") {
                        return Err(Refusal::MalformedUpload(format!(
                            "the gpg_signature file {signature:?} is not {filename:?}.asc"
                        )));
                    }
                }
                self.claimed.check(&digests)?;
                Ok(FormAction::FileUpload(UploadFacts {
                    project,
                    version,
                    filename,
                    content_bytes,
                    content_sha256: digests.sha256,
                    attestations: self.attestations,
                    requires_dist: self.requires_dist,
                }))
            }
            "remove_pkg" => Ok(FormAction::RemovePackage { project, version }),
            other => Err(Refusal::UnclassifiedWrite(format!(
                "the form action {:?} is not supported through this gateway",
                other.chars().take(40).collect::<String>()
            ))),
        }
    }
}

/// A field that must be present, non-empty and without surrounding whitespace (which one
/// reader trims and another keeps).
fn required(value: Option<String>, field: &str) -> Result<String, Refusal> {
    let value = value.ok_or_else(|| Refusal::MalformedUpload(format!("the form has no {field} field")))?;
    if value.is_empty() {
        return Err(Refusal::MalformedUpload(format!("the form's {field} field is empty")));
    }
    if value.trim() != value {
        return Err(Refusal::AmbiguousBody(format!(
            "the form's {field} field has spaces around it; send it without (readers differ on trimming)"
        )));
    }
    Ok(value)
}

#[cfg(test)]
#[path = "form_tests.rs"]
mod tests;
