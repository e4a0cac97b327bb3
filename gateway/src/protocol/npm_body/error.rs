//! Why a publish document is refused: [`PublishError`], its stable codes, and the [`Refusal`]
//! each one becomes.

use crate::error::Refusal;

/// Why a publish document is refused. Each variant has a stable [`code`](PublishError::code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The body is empty.
    #[error("the publish body is empty; send the package document as JSON")]
    Empty,
    /// The body is not well-formed JSON.
    #[error("the publish body is not valid JSON at byte {offset}: {reason}")]
    Syntax {
        /// Byte offset in the body.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// The body ended before the JSON document did.
    #[error("the publish body ended before its JSON document was complete; send the whole document")]
    Truncated,
    /// The document is not a JSON object.
    #[error("the publish body must be a JSON object (the package document npm sends)")]
    NotAnObject,
    /// A string is not valid Unicode.
    #[error("the string at {path} is not valid Unicode ({reason}); send UTF-8 JSON without lone surrogate escapes")]
    InvalidUnicode {
        /// Where in the document.
        path: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A key appears twice in one object.
    #[error("the key {key:?} appears more than once in {path}; send each key once")]
    DuplicateKey {
        /// The object.
        path: String,
        /// The repeated key (shortened).
        key: String,
    },
    /// Objects and arrays nest too deep.
    #[error("the JSON nesting at {path} is deeper than {limit} levels")]
    TooDeep {
        /// Where in the document.
        path: String,
        /// The limit.
        limit: usize,
    },
    /// An object has too many keys.
    #[error("the object {path} has more than {limit} keys")]
    TooManyKeys {
        /// The object.
        path: String,
        /// The limit.
        limit: usize,
    },
    /// A string other than the tarball data is too long.
    #[error("the string at {path} is longer than {limit} bytes")]
    StringTooLong {
        /// Where in the document.
        path: String,
        /// The limit.
        limit: usize,
    },
    /// The values kept for the checks add up to too much.
    #[error("the package document's metadata is larger than {limit} bytes; publish fewer or smaller versions")]
    MetadataTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The provenance bundle is too large.
    #[error("the provenance bundle is larger than {limit} bytes")]
    ProvenanceTooLarge {
        /// The limit.
        limit: usize,
    },
    /// A value has the wrong JSON type.
    #[error("{path} must be {expected}")]
    WrongType {
        /// Where in the document.
        path: String,
        /// The type expected.
        expected: &'static str,
    },
    /// The document has no top-level `name`.
    #[error("the package document has no \"name\"; it must be {expected:?}")]
    NameMissing {
        /// The package of the path.
        expected: String,
    },
    /// The top-level `name` is not the package of the path.
    #[error("the package document is for {found:?} but was sent to the URL of {expected:?}; publish each package to its own URL")]
    NameMismatch {
        /// The document's name (shortened).
        found: String,
        /// The package of the path.
        expected: String,
    },
    /// The top-level `_id` is not the package of the path.
    #[error("the package document's \"_id\" is {found:?} but the package is {expected:?}")]
    IdMismatch {
        /// The document's `_id` (shortened).
        found: String,
        /// The package of the path.
        expected: String,
    },
    /// An attachment that is neither a `.tgz` nor a `.sigstore`.
    #[error("the attachment {name:?} is not accepted: only the package tarball (<name>-<version>.tgz) and its provenance (<name>-<version>.sigstore) may be attached")]
    UnexpectedAttachment {
        /// The attachment's name (shortened).
        name: String,
    },
    /// More than one `.tgz` attachment.
    #[error("the package document carries more than one .tgz attachment; publish one tarball at a time")]
    MultipleTarballs,
    /// More than one `.sigstore` attachment.
    #[error("the package document carries more than one .sigstore attachment; attach one provenance bundle")]
    MultipleProvenance,
    /// An attachment is not named after the package and the version published.
    #[error("the attachment {found:?} must be named {expected:?} (package name, version, extension)")]
    AttachmentName {
        /// The attachment's name (shortened).
        found: String,
        /// The name expected.
        expected: String,
    },
    /// A `.sigstore` attachment without a tarball.
    #[error("the package document carries provenance ({name:?}) but no .tgz tarball")]
    ProvenanceWithoutTarball {
        /// The `.sigstore` attachment's name (shortened).
        name: String,
    },
    /// An attachment without `data`.
    #[error("the attachment {name:?} has no \"data\"")]
    AttachmentDataMissing {
        /// The attachment's name (shortened).
        name: String,
    },
    /// A publish with other than exactly one version.
    #[error("a publish must carry exactly one version in \"versions\", this one carries {found}")]
    VersionCount {
        /// How many versions the document carries.
        found: usize,
    },
    /// The published manifest's `name` or `version` contradicts the document.
    #[error("versions[{version:?}].{field} is {found:?} but must be {expected:?}")]
    VersionField {
        /// The version key (shortened).
        version: String,
        /// `name` or `version`.
        field: &'static str,
        /// The manifest's value (shortened).
        found: String,
        /// The value expected.
        expected: String,
    },
    /// The tarball data is not canonical base64.
    #[error("the tarball data is not valid base64 (standard alphabet with padding): {reason}")]
    BadBase64 {
        /// What is wrong.
        reason: String,
    },
    /// An attachment's `length` is not a non-negative integer.
    #[error("the attachment {name:?} has a \"length\" that is not a non-negative integer")]
    BadLength {
        /// The attachment's name (shortened).
        name: String,
    },
    /// The tarball's `length` differs from its decoded size.
    #[error("the tarball attachment declares length {declared} but its data decodes to {actual} bytes")]
    LengthMismatch {
        /// The attachment's `length`.
        declared: u64,
        /// The decoded size.
        actual: u64,
    },
    /// The published version has no sha512 integrity.
    #[error(
        "versions[{version:?}].dist.integrity has no sha512 hash; send the tarball's sha512 integrity as npm does"
    )]
    IntegrityMissing {
        /// The version key (shortened).
        version: String,
    },
    /// The sha512 integrity does not match the tarball.
    #[error("versions[{version:?}].dist.integrity does not match the attached tarball, whose integrity is {actual}")]
    IntegrityMismatch {
        /// The version key (shortened).
        version: String,
        /// The tarball's `sha512-<base64>`.
        actual: String,
    },
    /// The shasum does not match the tarball.
    #[error("versions[{version:?}].dist.shasum is {found:?} but the attached tarball's SHA-1 is {actual}")]
    ShasumMismatch {
        /// The version key (shortened).
        version: String,
        /// The shasum sent (shortened).
        found: String,
        /// The tarball's SHA-1, hex.
        actual: String,
    },
}

impl PublishError {
    /// A stable, bounded snake_case code for logs, metrics and responses.
    pub fn code(&self) -> &'static str {
        match self {
            PublishError::Empty => "npm_body_empty",
            PublishError::Syntax { .. } => "npm_body_syntax",
            PublishError::Truncated => "npm_body_truncated",
            PublishError::NotAnObject => "npm_body_not_object",
            PublishError::InvalidUnicode { .. } => "npm_body_invalid_unicode",
            PublishError::DuplicateKey { .. } => "npm_body_duplicate_key",
            PublishError::TooDeep { .. } => "npm_body_too_deep",
            PublishError::TooManyKeys { .. } => "npm_body_too_many_keys",
            PublishError::StringTooLong { .. } => "npm_body_string_too_long",
            PublishError::MetadataTooLarge { .. } => "npm_body_metadata_too_large",
            PublishError::ProvenanceTooLarge { .. } => "npm_provenance_too_large",
            PublishError::WrongType { .. } => "npm_body_wrong_type",
            PublishError::NameMissing { .. } => "npm_name_missing",
            PublishError::NameMismatch { .. } => "npm_name_mismatch",
            PublishError::IdMismatch { .. } => "npm_id_mismatch",
            PublishError::UnexpectedAttachment { .. } => "npm_unexpected_attachment",
            PublishError::MultipleTarballs => "npm_multiple_tarballs",
            PublishError::MultipleProvenance => "npm_multiple_provenance",
            PublishError::AttachmentName { .. } => "npm_attachment_name",
            PublishError::ProvenanceWithoutTarball { .. } => "npm_provenance_without_tarball",
            PublishError::AttachmentDataMissing { .. } => "npm_attachment_data_missing",
            PublishError::VersionCount { .. } => "npm_version_count",
            PublishError::VersionField { .. } => "npm_version_field",
            PublishError::BadBase64 { .. } => "npm_tarball_bad_base64",
            PublishError::BadLength { .. } => "npm_attachment_bad_length",
            PublishError::LengthMismatch { .. } => "npm_tarball_length_mismatch",
            PublishError::IntegrityMissing { .. } => "npm_integrity_missing",
            PublishError::IntegrityMismatch { .. } => "npm_integrity_mismatch",
            PublishError::ShasumMismatch { .. } => "npm_shasum_mismatch",
        }
    }
}

impl From<PublishError> for Refusal {
    fn from(error: PublishError) -> Self {
        let message = error.to_string();
        match error {
            PublishError::LengthMismatch { .. }
            | PublishError::IntegrityMismatch { .. }
            | PublishError::ShasumMismatch { .. } => Refusal::DigestMismatch(message),
            PublishError::StringTooLong { .. }
            | PublishError::MetadataTooLarge { .. }
            | PublishError::ProvenanceTooLarge { .. } => Refusal::TooLarge { message },
            PublishError::DuplicateKey { .. } => Refusal::AmbiguousBody(message),
            _ => Refusal::MalformedUpload(message),
        }
    }
}

/// Cuts user-controlled text for messages.
pub(super) fn short(text: &str) -> String {
    if text.chars().count() <= 120 {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(120).collect();
    cut.push('…');
    cut
}
