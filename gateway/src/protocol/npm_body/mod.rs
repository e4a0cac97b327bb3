//! Streaming inspection of an npm publish document (`PUT /<pkg>` with a JSON body).
//!
//! `npm publish` sends one JSON object (libnpmpublish): `_id`, `name`, `dist-tags`, `versions`
//! (one manifest), `access` and `_attachments`, whose `<name>-<version>.tgz` member carries the
//! package tarball as base64 in `data` — hundreds of MiB for big packages — and, with
//! `--provenance`, a `<name>-<version>.sigstore` member whose `data` is the Sigstore bundle as a
//! JSON string. `npm deprecate` PUTs the whole packument back, without attachments.
//!
//! [`PublishInspector`] is a push (incremental) JSON scanner: it is fed the body chunk by chunk,
//! decodes and hashes the tarball on the fly (SHA-512 and SHA-1, never accumulating it), keeps
//! only the small values the checks need, and at the end checks the document against the
//! package named by the path ([`PublishInspector::finish`]). Memory stays bounded by
//! [`Limits`] whatever the tarball size. Duplicate keys are refused anywhere in the document:
//! backends keep the last duplicate, so the gateway and the backend could read different values.
//!
//! With `strip_provenance`, the `.sigstore` member is removed from the forwarded bytes (some
//! backends refuse publishes that carry it) while the JSON stays valid.

use std::collections::HashSet;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

use crate::error::Refusal;

/// Longest attachment name accepted, in bytes (an npm name is at most 214 bytes, a version
/// at most 256). It also bounds what is held back while stripping provenance.
pub const MAX_ATTACHMENT_NAME_BYTES: usize = 512;

/// Most dependency names kept per version (for counting dependents).
pub const MAX_DEPENDENCIES: usize = 1_000;

/// Longest key kept for paths in error messages, in characters.
const MAX_LABEL_CHARS: usize = 64;

/// Most characters accepted in an attachment's `length` (a `u64` has at most 20 digits).
const MAX_LENGTH_CHARS: usize = 20;

/// Base64 characters decoded at once (a multiple of 4); the output block lives on the stack.
const B64_BLOCK: usize = 16 * 1024;

/// Bounds on what a publish document may contain; they bound the inspector's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest string (key or value, decoded bytes) other than the tarball data; READMEs can
    /// be big. Default 4 MiB.
    pub max_string_bytes: usize,
    /// Longest provenance bundle (the decoded `.sigstore` `data` string). Default 1 MiB.
    pub max_provenance_bytes: usize,
    /// Deepest nesting of objects and arrays (the document itself is depth 1). Default 64.
    pub max_depth: usize,
    /// Most keys in one object. Default 10 000.
    pub max_object_keys: usize,
    /// Total of the small values kept for the facts and the checks (names, version keys,
    /// dist-tags, integrity strings, deprecation messages, repository URLs). Default 16 MiB.
    pub max_metadata_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_string_bytes: 4 << 20,
            max_provenance_bytes: 1 << 20,
            max_depth: 64,
            max_object_keys: 10_000,
            max_metadata_bytes: 16 << 20,
        }
    }
}

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
    /// The names in the version's `dependencies` (at most [`MAX_DEPENDENCIES`]), when the
    /// document has exactly one version.
    pub dependencies: Vec<String>,
}

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
fn short(text: &str) -> String {
    if text.chars().count() <= 120 {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(120).collect();
    cut.push('…');
    cut
}

/// What an object is, as far as the checks care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
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
enum Slot {
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
    fn expected(&self) -> &'static str {
        match self {
            Slot::Root | Slot::DistTags | Slot::Versions | Slot::Version(_) | Slot::Dist(_) => "an object",
            Slot::Attachments | Slot::Attachment(_) => "an object",
            Slot::Length(_) => "a non-negative integer",
            _ => "a string",
        }
    }

    /// The context of an object in this slot, or `None` when an object is the wrong type.
    fn object_ctx(&self) -> Option<Ctx> {
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
    fn takes_anything(&self) -> bool {
        matches!(
            self,
            Slot::Other | Slot::Repository(_) | Slot::RepositoryUrl(_) | Slot::Dependencies(_)
        )
    }
}

/// An open object or array.
#[derive(Debug)]
struct Frame {
    is_object: bool,
    ctx: Ctx,
    /// Truncated SHA-256 of every key seen (collisions can only refuse, never miss a duplicate).
    keys: HashSet<[u8; 16]>,
    /// Members (or elements) started so far.
    count: usize,
    /// The current member's key, shortened, for messages.
    label: String,
    /// What the current member's value is for.
    slot: Slot,
}

impl Frame {
    fn new(is_object: bool, ctx: Ctx) -> Self {
        Frame {
            is_object,
            ctx,
            keys: HashSet::new(),
            count: 0,
            label: String::new(),
            slot: Slot::Other,
        }
    }
}

/// JSON number grammar states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpDigits,
}

impl Num {
    fn next(self, b: u8) -> Option<Num> {
        use Num::*;
        match (self, b) {
            (Minus, b'0') => Some(Zero),
            (Minus | Int, b'1'..=b'9') | (Int, b'0') => Some(Int),
            (Zero | Int, b'.') => Some(Dot),
            (Zero | Int | Frac, b'e' | b'E') => Some(Exp),
            (Dot | Frac, b'0'..=b'9') => Some(Frac),
            (Exp, b'+' | b'-') => Some(ExpSign),
            (Exp | ExpSign | ExpDigits, b'0'..=b'9') => Some(ExpDigits),
            _ => None,
        }
    }

    fn complete(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::ExpDigits)
    }
}

/// Where the tokenizer is.
#[derive(Debug, Clone, Copy)]
enum Lex {
    /// A value must come (after ':' or ',' in an array, or the document).
    Value,
    /// Right after '[': a value or ']'.
    ValueOrEnd,
    /// Right after '{': a key or '}'.
    KeyOrEnd,
    /// After ',' in an object: a key.
    Key,
    /// After a key: ':'.
    Colon,
    /// After a value in a container: ',' or its closer.
    CommaOrEnd,
    /// Inside a string.
    Str,
    /// Inside a number.
    Num(Num),
    /// Inside `true`, `false` or `null`, at this position of the word.
    Lit(&'static [u8], usize),
    /// After the document.
    Done,
}

/// Escape decoding inside a string.
#[derive(Debug, Clone, Copy)]
enum Esc {
    None,
    Backslash,
    Hex {
        n: u8,
        acc: u32,
    },
    /// After a high surrogate escape: `\` of the low one must come.
    LowBackslash,
    /// After a high surrogate escape and `\`: `u` must come.
    LowU,
}

/// Where a decoded string goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sink {
    /// Validated and counted, not kept.
    Skip,
    /// Kept in the capture buffer.
    Capture(CapKind),
    /// Base64-decoded and hashed.
    Tarball,
}

/// What a captured string is, for its limit and its error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CapKind {
    Key,
    AttachmentKey,
    Value,
    Provenance,
}

/// The string being scanned.
#[derive(Debug, Clone, Copy)]
struct StrState {
    esc: Esc,
    /// A high surrogate waiting for its low half (0: none).
    high: u32,
    utf8: [u8; 4],
    have: u8,
    need: u8,
    sink: Sink,
    limit: usize,
    skipped: usize,
    is_key: bool,
}

impl StrState {
    fn new(sink: Sink, limit: usize, is_key: bool) -> Self {
        StrState {
            esc: Esc::None,
            high: 0,
            utf8: [0; 4],
            have: 0,
            need: 0,
            sink,
            limit,
            skipped: 0,
            is_key,
        }
    }
}

/// What happens to the bytes being scanned, when stripping provenance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Pass,
    Hold,
    Drop,
}

/// The forwarded bytes.
#[derive(Debug)]
struct Forward {
    strip: bool,
    mode: Mode,
    /// Start in the current chunk of the bytes not yet given to `out`/`held`.
    mark: usize,
    out: Vec<u8>,
    /// An `_attachments` member key, held until it is known.
    held: Vec<u8>,
    /// A ',' before the held member was withheld.
    pending_comma: bool,
    /// `_attachments` members forwarded so far.
    emitted: usize,
    /// The `.sigstore` member's value is being dropped.
    dropping_member: bool,
    stripped: bool,
}

impl Forward {
    fn flush(&mut self, chunk: &[u8], upto: usize) {
        if !self.strip {
            return;
        }
        let run = &chunk[self.mark..upto];
        match self.mode {
            Mode::Pass => self.out.extend_from_slice(run),
            Mode::Hold => self.held.extend_from_slice(run),
            Mode::Drop => {}
        }
        self.mark = upto;
    }

    fn switch(&mut self, chunk: &[u8], at: usize, mode: Mode) {
        if !self.strip {
            return;
        }
        self.flush(chunk, at);
        self.mode = mode;
    }

    /// The held `_attachments` member key ends before `end`: drop the member or release it.
    fn resolve_member(&mut self, chunk: &[u8], end: usize, drop: bool) {
        if !self.strip {
            return;
        }
        if drop {
            self.switch(chunk, end, Mode::Drop);
            self.held.clear();
            self.dropping_member = true;
            self.stripped = true;
        } else {
            self.switch(chunk, end, Mode::Pass);
            if self.pending_comma && self.emitted > 0 {
                self.out.push(b',');
            }
            self.out.append(&mut self.held);
            self.emitted += 1;
        }
        self.pending_comma = false;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AttachmentKind {
    Tarball,
    Provenance,
}

#[derive(Debug)]
struct AttachmentEntry {
    name: String,
    kind: AttachmentKind,
    has_data: bool,
    length: Option<u64>,
}

#[derive(Debug, Default)]
struct VersionEntry {
    version: String,
    name: Option<String>,
    version_field: Option<String>,
    integrity: Option<String>,
    shasum: Option<String>,
    repository: Option<String>,
    deprecated: Option<String>,
    dependencies: Vec<String>,
}

/// Streaming base64 state: at most 3 characters wait for their group between chunks.
#[derive(Debug, Default)]
struct B64 {
    pend: [u8; 4],
    npend: usize,
    /// A padded group was decoded: nothing may follow.
    done: bool,
}

struct TarHash {
    sha256: Sha256,
    sha512: Sha512,
    sha1: Sha1,
    bytes: u64,
}

/// An incremental scanner of an npm publish document, fed the body chunk by chunk.
///
/// [`feed`](Self::feed) returns the bytes to forward for each chunk; an error means the body
/// must not reach the backend (abort the upstream request). [`finish`](Self::finish) runs the
/// checks that need the whole document and returns the [`PublishFacts`].
///
/// With `strip_provenance`, the forwarded body is shorter than the body received: the caller
/// must forward it chunked (drop `Content-Length`). Whitespace between a ',' and the next
/// member key inside `_attachments` is then not forwarded either; everything else streams
/// through unchanged.
pub struct PublishInspector {
    package: String,
    limits: Limits,
    allow_foreign_attachments: bool,
    lex: Lex,
    stack: Vec<Frame>,
    s: StrState,
    value_slot: Slot,
    cap: Vec<u8>,
    num: Vec<u8>,
    b64: B64,
    tar: Option<TarHash>,
    fwd: Forward,
    /// Offset of the current chunk in the body.
    offset: u64,
    failed: Option<PublishError>,
    metadata_bytes: usize,
    name: Option<String>,
    dist_tags: Vec<(String, String)>,
    versions: Vec<VersionEntry>,
    attachments: Vec<AttachmentEntry>,
    provenance: Option<Vec<u8>>,
}

impl PublishInspector {
    /// Starts inspecting a publish to `package` (the decoded name from the path, e.g.
    /// `@scope/name`); `strip_provenance` removes the `.sigstore` attachment from the
    /// forwarded bytes.
    pub fn new(package: &str, limits: Limits, strip_provenance: bool) -> Self {
        PublishInspector {
            package: package.to_owned(),
            limits,
            allow_foreign_attachments: false,
            lex: Lex::Value,
            stack: Vec::new(),
            s: StrState::new(Sink::Skip, 0, false),
            value_slot: Slot::Other,
            cap: Vec::new(),
            num: Vec::new(),
            b64: B64::default(),
            tar: None,
            fwd: Forward {
                strip: strip_provenance,
                mode: Mode::Pass,
                mark: 0,
                out: Vec::new(),
                held: Vec::new(),
                pending_comma: false,
                emitted: 0,
                dropping_member: false,
                stripped: false,
            },
            offset: 0,
            failed: None,
            metadata_bytes: 0,
            name: None,
            dist_tags: Vec::new(),
            versions: Vec::new(),
            attachments: Vec::new(),
            provenance: None,
        }
    }

    /// Feeds the next chunk; returns the bytes to forward upstream for it (identical to the
    /// input unless stripping provenance). Fails as soon as the document is known to be bad;
    /// after a failure every call fails the same way.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Bytes, PublishError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        if let Err(error) = self.scan(chunk) {
            self.fwd.out = Vec::new();
            self.fwd.held = Vec::new();
            self.cap = Vec::new();
            self.failed = Some(error.clone());
            return Err(error);
        }
        self.offset += chunk.len() as u64;
        if !self.fwd.strip {
            return Ok(Bytes::copy_from_slice(chunk));
        }
        self.fwd.flush(chunk, chunk.len());
        self.fwd.mark = 0;
        Ok(Bytes::from(std::mem::take(&mut self.fwd.out)))
    }

    /// At the end of the body: the final bytes to forward (empty for a complete document) and
    /// the facts, after all checks.
    pub fn finish(mut self) -> Result<(Bytes, PublishFacts), PublishError> {
        if let Some(error) = self.failed.take() {
            return Err(error);
        }
        match self.lex {
            Lex::Done => {}
            Lex::Value if self.stack.is_empty() => return Err(PublishError::Empty),
            _ => return Err(PublishError::Truncated),
        }
        let tail = Bytes::from(std::mem::take(&mut self.fwd.out));
        Ok((tail, self.into_facts()?))
    }

    /// Bytes held in the inspector's buffers and kept values (approximate; the tarball is
    /// never among them). Bounded by the [`Limits`].
    pub fn buffered_bytes(&self) -> usize {
        let frames: usize = self
            .stack
            .iter()
            .map(|f| f.keys.capacity() * 16 + f.label.capacity())
            .sum();
        self.cap.capacity()
            + self.num.capacity()
            + self.fwd.out.capacity()
            + self.fwd.held.capacity()
            + self.b64.npend
            + self.metadata_bytes
            + self.provenance.as_ref().map_or(0, Vec::capacity)
            + frames
    }

    fn scan(&mut self, chunk: &[u8]) -> Result<(), PublishError> {
        let mut i = 0;
        while i < chunk.len() {
            i = match self.lex {
                Lex::Str => self.string_bytes(chunk, i)?,
                Lex::Num(state) => self.number_byte(chunk, i, state)?,
                Lex::Lit(word, pos) => self.literal_byte(chunk, i, word, pos)?,
                _ => self.structural(chunk, i)?,
            };
        }
        Ok(())
    }

    fn syntax(&self, i: usize, reason: &'static str) -> PublishError {
        PublishError::Syntax {
            offset: self.offset + i as u64,
            reason,
        }
    }

    fn structural(&mut self, chunk: &[u8], i: usize) -> Result<usize, PublishError> {
        let b = chunk[i];
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            return Ok(i + 1);
        }
        match self.lex {
            Lex::Value => self.begin_value(i, b),
            Lex::ValueOrEnd if b == b']' => Ok(self.close(chunk, i)),
            Lex::ValueOrEnd => self.begin_value(i, b),
            Lex::KeyOrEnd if b == b'}' => Ok(self.close(chunk, i)),
            Lex::KeyOrEnd | Lex::Key if b == b'"' => self.begin_key(chunk, i),
            Lex::KeyOrEnd | Lex::Key => Err(self.syntax(i, "expected a quoted key")),
            Lex::Colon if b == b':' => {
                self.lex = Lex::Value;
                Ok(i + 1)
            }
            Lex::Colon => Err(self.syntax(i, "expected ':' after a key")),
            Lex::CommaOrEnd => self.comma_or_end(chunk, i, b),
            Lex::Done => Err(self.syntax(i, "unexpected data after the JSON document")),
            Lex::Str | Lex::Num(_) | Lex::Lit(..) => Err(self.syntax(i, "unexpected byte")),
        }
    }

    fn comma_or_end(&mut self, chunk: &[u8], i: usize, b: u8) -> Result<usize, PublishError> {
        let Some(top) = self.stack.last() else {
            return Err(self.syntax(i, "unexpected byte"));
        };
        let (is_object, ctx) = (top.is_object, top.ctx);
        match b {
            b',' => {
                if is_object {
                    if ctx == Ctx::Attachments {
                        // Withheld until the next member's key tells whether it is dropped.
                        self.fwd.switch(chunk, i, Mode::Drop);
                        self.fwd.pending_comma = true;
                    }
                    self.lex = Lex::Key;
                } else {
                    self.lex = Lex::Value;
                }
                Ok(i + 1)
            }
            b'}' if is_object => Ok(self.close(chunk, i)),
            b']' if !is_object => Ok(self.close(chunk, i)),
            _ if is_object => Err(self.syntax(i, "expected ',' or '}' after a value")),
            _ => Err(self.syntax(i, "expected ',' or ']' after a value")),
        }
    }

    /// Closes the container whose closer is at `i`.
    fn close(&mut self, chunk: &[u8], i: usize) -> usize {
        self.stack.pop();
        self.value_done(chunk, i + 1);
        i + 1
    }

    /// A value ended just before `end`.
    fn value_done(&mut self, chunk: &[u8], end: usize) {
        match self.stack.last() {
            None => self.lex = Lex::Done,
            Some(top) => {
                self.lex = Lex::CommaOrEnd;
                if self.fwd.dropping_member && top.ctx == Ctx::Attachments {
                    self.fwd.switch(chunk, end, Mode::Pass);
                    self.fwd.dropping_member = false;
                }
            }
        }
    }

    fn path_of(frames: &[Frame]) -> String {
        let mut path = String::new();
        for frame in frames {
            if frame.is_object {
                let simple = !frame.label.is_empty()
                    && !frame.label.starts_with(|c: char| c.is_ascii_digit())
                    && frame
                        .label
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '$'));
                if simple {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(&frame.label);
                } else {
                    path.push_str(&format!("[{:?}]", frame.label));
                }
            } else {
                path.push_str(&format!("[{}]", frame.count.saturating_sub(1)));
            }
        }
        if path.is_empty() {
            "the document".to_owned()
        } else {
            path
        }
    }

    /// The path of the value being scanned.
    fn value_path(&self) -> String {
        Self::path_of(&self.stack)
    }

    /// The path of the innermost open object.
    fn object_path(&self) -> String {
        Self::path_of(&self.stack[..self.stack.len().saturating_sub(1)])
    }

    fn string_path(&self) -> String {
        if self.s.is_key {
            format!("a key of {}", self.object_path())
        } else {
            self.value_path()
        }
    }

    fn wrong_type(&self, slot: &Slot) -> PublishError {
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

    fn begin_value(&mut self, i: usize, b: u8) -> Result<usize, PublishError> {
        let slot = match self.stack.last_mut() {
            None => Slot::Root,
            Some(frame) if frame.is_object => std::mem::take(&mut frame.slot),
            Some(frame) => {
                frame.count += 1;
                Slot::Other
            }
        };
        if slot == Slot::Root && b != b'{' {
            return Err(PublishError::NotAnObject);
        }
        match b {
            b'{' | b'[' => {
                let is_object = b == b'{';
                let ctx = if is_object {
                    slot.object_ctx()
                } else {
                    slot.takes_anything().then_some(Ctx::Other)
                };
                let Some(ctx) = ctx else {
                    return Err(self.wrong_type(&slot));
                };
                if self.stack.len() >= self.limits.max_depth {
                    return Err(PublishError::TooDeep {
                        path: self.value_path(),
                        limit: self.limits.max_depth,
                    });
                }
                self.stack.push(Frame::new(is_object, ctx));
                self.lex = if is_object { Lex::KeyOrEnd } else { Lex::ValueOrEnd };
            }
            b'"' => {
                let sink = match &slot {
                    Slot::Other | Slot::Dependencies(_) => Sink::Skip,
                    Slot::Data(a) => {
                        let Some(entry) = self.attachments.get_mut(*a) else {
                            return Err(self.wrong_type(&slot));
                        };
                        entry.has_data = true;
                        if entry.kind == AttachmentKind::Tarball {
                            self.tar = Some(TarHash {
                                sha256: Sha256::new(),
                                sha512: Sha512::new(),
                                sha1: Sha1::new(),
                                bytes: 0,
                            });
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
                    _ => return Err(self.wrong_type(&slot)),
                };
                let limit = match sink {
                    Sink::Capture(CapKind::Provenance) => {
                        self.limits.max_provenance_bytes.min(self.limits.max_string_bytes)
                    }
                    _ => self.limits.max_string_bytes,
                };
                self.value_slot = slot;
                self.start_string(sink, limit, false);
            }
            b'-' | b'0'..=b'9' => {
                let is_length = matches!(slot, Slot::Length(_));
                if !is_length && !slot.takes_anything() {
                    return Err(self.wrong_type(&slot));
                }
                self.num.clear();
                if is_length {
                    self.num.push(b);
                }
                self.value_slot = slot;
                self.lex = Lex::Num(match b {
                    b'-' => Num::Minus,
                    b'0' => Num::Zero,
                    _ => Num::Int,
                });
            }
            b't' | b'f' | b'n' => {
                if !slot.takes_anything() {
                    return Err(self.wrong_type(&slot));
                }
                let word: &'static [u8] = match b {
                    b't' => b"true",
                    b'f' => b"false",
                    _ => b"null",
                };
                self.lex = Lex::Lit(word, 1);
            }
            _ => return Err(self.syntax(i, "expected a JSON value")),
        }
        Ok(i + 1)
    }

    fn start_string(&mut self, sink: Sink, limit: usize, is_key: bool) {
        self.s = StrState::new(sink, limit, is_key);
        self.cap.clear();
        self.lex = Lex::Str;
    }

    fn begin_key(&mut self, chunk: &[u8], i: usize) -> Result<usize, PublishError> {
        let Some(top) = self.stack.last() else {
            return Err(self.syntax(i, "unexpected key"));
        };
        if top.keys.len() >= self.limits.max_object_keys {
            return Err(PublishError::TooManyKeys {
                path: self.object_path(),
                limit: self.limits.max_object_keys,
            });
        }
        if top.ctx == Ctx::Attachments {
            self.fwd.switch(chunk, i, Mode::Hold);
            self.start_string(Sink::Capture(CapKind::AttachmentKey), MAX_ATTACHMENT_NAME_BYTES, true);
        } else {
            self.start_string(Sink::Capture(CapKind::Key), self.limits.max_string_bytes, true);
        }
        Ok(i + 1)
    }

    fn take_cap_string(&mut self) -> Result<String, PublishError> {
        String::from_utf8(std::mem::take(&mut self.cap)).map_err(|_| PublishError::InvalidUnicode {
            path: self.string_path(),
            reason: "invalid UTF-8",
        })
    }

    /// A key ended at `i` (its closing quote).
    fn key_done(&mut self, chunk: &[u8], i: usize) -> Result<(), PublishError> {
        let key = self.take_cap_string()?;
        let digest = Sha256::digest(key.as_bytes());
        let mut short_digest = [0u8; 16];
        short_digest.copy_from_slice(&digest[..16]);
        let Some(top) = self.stack.last_mut() else {
            return Err(self.syntax(i, "unexpected key"));
        };
        if !top.keys.insert(short_digest) {
            return Err(PublishError::DuplicateKey {
                path: self.object_path(),
                key: short(&key),
            });
        }
        top.count += 1;
        top.label = key.chars().take(MAX_LABEL_CHARS).collect();
        let ctx = top.ctx;
        let slot = self.slot_for(ctx, key)?;
        if ctx == Ctx::Attachments {
            let drop = matches!(slot, Slot::Attachment(a)
                if self.attachments.get(a).is_some_and(|e| e.kind == AttachmentKind::Provenance));
            self.fwd.resolve_member(chunk, i + 1, drop);
        }
        if let Some(top) = self.stack.last_mut() {
            top.slot = slot;
        }
        self.lex = Lex::Colon;
        Ok(())
    }

    fn slot_for(&mut self, ctx: Ctx, key: String) -> Result<Slot, PublishError> {
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

    fn literal_byte(&mut self, chunk: &[u8], i: usize, word: &'static [u8], pos: usize) -> Result<usize, PublishError> {
        if word.get(pos) != Some(&chunk[i]) {
            return Err(self.syntax(i, "invalid literal (expected true, false or null)"));
        }
        if pos + 1 == word.len() {
            self.value_done(chunk, i + 1);
        } else {
            self.lex = Lex::Lit(word, pos + 1);
        }
        Ok(i + 1)
    }

    fn number_byte(&mut self, chunk: &[u8], i: usize, state: Num) -> Result<usize, PublishError> {
        let b = chunk[i];
        if let Some(next) = state.next(b) {
            if let Slot::Length(a) = self.value_slot {
                if self.num.len() >= MAX_LENGTH_CHARS {
                    return Err(self.bad_length(a));
                }
                self.num.push(b);
            }
            self.lex = Lex::Num(next);
            return Ok(i + 1);
        }
        if !state.complete() {
            return Err(self.syntax(i, "incomplete number"));
        }
        if let Slot::Length(a) = std::mem::take(&mut self.value_slot) {
            let length = std::str::from_utf8(&self.num)
                .ok()
                .filter(|digits| digits.bytes().all(|d| d.is_ascii_digit()))
                .and_then(|digits| digits.parse::<u64>().ok())
                .ok_or_else(|| self.bad_length(a))?;
            if let Some(entry) = self.attachments.get_mut(a) {
                entry.length = Some(length);
            }
        }
        // The delimiter is not part of the number: it is scanned next.
        self.value_done(chunk, i);
        Ok(i)
    }

    fn bad_length(&self, a: usize) -> PublishError {
        PublishError::BadLength {
            name: self.attachments.get(a).map(|e| short(&e.name)).unwrap_or_default(),
        }
    }

    fn invalid_unicode(&self, reason: &'static str) -> PublishError {
        PublishError::InvalidUnicode {
            path: self.string_path(),
            reason,
        }
    }

    /// Scans string bytes from `i`; returns where scanning stopped (after the closing quote,
    /// or the end of the chunk).
    fn string_bytes(&mut self, chunk: &[u8], mut i: usize) -> Result<usize, PublishError> {
        while i < chunk.len() {
            let b = chunk[i];
            if self.s.need > 0 {
                if b & 0xC0 != 0x80 {
                    return Err(self.invalid_unicode("invalid UTF-8"));
                }
                self.s.utf8[usize::from(self.s.have)] = b;
                self.s.have += 1;
                if self.s.have == self.s.need {
                    let n = usize::from(self.s.need);
                    let seq = self.s.utf8;
                    self.s.need = 0;
                    self.s.have = 0;
                    if std::str::from_utf8(&seq[..n]).is_err() {
                        return Err(self.invalid_unicode("invalid UTF-8"));
                    }
                    self.sink(&seq[..n])?;
                }
                i += 1;
                continue;
            }
            match self.s.esc {
                Esc::None => {
                    let rest = &chunk[i..];
                    let run = rest
                        .iter()
                        .position(|&c| c == b'"' || c == b'\\' || !(0x20..0x80).contains(&c))
                        .unwrap_or(rest.len());
                    if run > 0 {
                        self.sink(&rest[..run])?;
                        i += run;
                        continue;
                    }
                    match b {
                        b'"' => {
                            self.string_done(chunk, i)?;
                            return Ok(i + 1);
                        }
                        b'\\' => self.s.esc = Esc::Backslash,
                        0x00..=0x1F => return Err(self.syntax(i, "unescaped control character in a string")),
                        _ => {
                            self.s.need = match b {
                                0xC2..=0xDF => 2,
                                0xE0..=0xEF => 3,
                                0xF0..=0xF4 => 4,
                                _ => return Err(self.invalid_unicode("invalid UTF-8")),
                            };
                            self.s.utf8[0] = b;
                            self.s.have = 1;
                        }
                    }
                }
                Esc::Backslash => {
                    let decoded = match b {
                        b'"' | b'\\' | b'/' => b,
                        b'b' => 0x08,
                        b'f' => 0x0C,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => {
                            self.s.esc = Esc::Hex { n: 0, acc: 0 };
                            i += 1;
                            continue;
                        }
                        _ => return Err(self.syntax(i, "invalid escape in a string")),
                    };
                    self.s.esc = Esc::None;
                    self.sink(&[decoded])?;
                }
                Esc::Hex { n, acc } => {
                    let digit = match b {
                        b'0'..=b'9' => b - b'0',
                        b'a'..=b'f' => b - b'a' + 10,
                        b'A'..=b'F' => b - b'A' + 10,
                        _ => return Err(self.syntax(i, "invalid \\u escape in a string")),
                    };
                    let acc = (acc << 4) | u32::from(digit);
                    if n == 3 {
                        self.unicode_escape(acc)?;
                    } else {
                        self.s.esc = Esc::Hex { n: n + 1, acc };
                    }
                }
                Esc::LowBackslash | Esc::LowU => {
                    let expected = if matches!(self.s.esc, Esc::LowBackslash) {
                        b'\\'
                    } else {
                        b'u'
                    };
                    if b != expected {
                        return Err(self.invalid_unicode("a high surrogate escape without its low half"));
                    }
                    self.s.esc = if expected == b'\\' {
                        Esc::LowU
                    } else {
                        Esc::Hex { n: 0, acc: 0 }
                    };
                }
            }
            i += 1;
        }
        Ok(i)
    }

    fn unicode_escape(&mut self, unit: u32) -> Result<(), PublishError> {
        let code = if self.s.high != 0 {
            let high = std::mem::replace(&mut self.s.high, 0);
            if !(0xDC00..=0xDFFF).contains(&unit) {
                return Err(self.invalid_unicode("a high surrogate escape without its low half"));
            }
            0x10000 + ((high - 0xD800) << 10) + (unit - 0xDC00)
        } else if (0xD800..=0xDBFF).contains(&unit) {
            self.s.high = unit;
            self.s.esc = Esc::LowBackslash;
            return Ok(());
        } else if (0xDC00..=0xDFFF).contains(&unit) {
            return Err(self.invalid_unicode("a lone low surrogate escape"));
        } else {
            unit
        };
        self.s.esc = Esc::None;
        let ch = char::from_u32(code).ok_or_else(|| self.invalid_unicode("not a Unicode scalar value"))?;
        let mut buf = [0u8; 4];
        let encoded = ch.encode_utf8(&mut buf);
        self.sink(encoded.as_bytes())
    }

    fn sink(&mut self, bytes: &[u8]) -> Result<(), PublishError> {
        match self.s.sink {
            Sink::Skip => {
                self.s.skipped += bytes.len();
                if self.s.skipped > self.limits.max_string_bytes {
                    return Err(PublishError::StringTooLong {
                        path: self.string_path(),
                        limit: self.limits.max_string_bytes,
                    });
                }
            }
            Sink::Capture(kind) => {
                if self.cap.len() + bytes.len() > self.s.limit {
                    return Err(match kind {
                        CapKind::Key | CapKind::Value => PublishError::StringTooLong {
                            path: self.string_path(),
                            limit: self.s.limit,
                        },
                        CapKind::AttachmentKey => {
                            // The name's start, whatever the chunking.
                            let mut start = self.cap.clone();
                            start.extend_from_slice(&bytes[..bytes.len().min(MAX_ATTACHMENT_NAME_BYTES)]);
                            PublishError::UnexpectedAttachment {
                                name: short(&String::from_utf8_lossy(&start)),
                            }
                        }
                        CapKind::Provenance => PublishError::ProvenanceTooLarge { limit: self.s.limit },
                    });
                }
                self.cap.extend_from_slice(bytes);
            }
            Sink::Tarball => self.b64_feed(bytes)?,
        }
        Ok(())
    }

    /// A string ended at `i` (its closing quote).
    fn string_done(&mut self, chunk: &[u8], i: usize) -> Result<(), PublishError> {
        if self.s.is_key {
            return self.key_done(chunk, i);
        }
        let slot = std::mem::take(&mut self.value_slot);
        match self.s.sink {
            Sink::Tarball if self.b64.npend != 0 => {
                return Err(PublishError::BadBase64 {
                    reason: "the data ends inside a 4-character group (is the padding missing?)".into(),
                });
            }
            Sink::Tarball | Sink::Skip => {}
            Sink::Capture(CapKind::Provenance) => self.provenance = Some(std::mem::take(&mut self.cap)),
            Sink::Capture(_) => {
                let value = self.take_cap_string()?;
                self.store(slot, value)?;
            }
        }
        self.value_done(chunk, i + 1);
        Ok(())
    }

    fn store(&mut self, slot: Slot, value: String) -> Result<(), PublishError> {
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

    fn b64_feed(&mut self, mut chars: &[u8]) -> Result<(), PublishError> {
        if chars.is_empty() {
            return Ok(());
        }
        let after_padding = || PublishError::BadBase64 {
            reason: "characters follow the padding".into(),
        };
        if self.b64.done {
            return Err(after_padding());
        }
        if self.b64.npend > 0 {
            let take = (4 - self.b64.npend).min(chars.len());
            self.b64.pend[self.b64.npend..self.b64.npend + take].copy_from_slice(&chars[..take]);
            self.b64.npend += take;
            chars = &chars[take..];
            if self.b64.npend < 4 {
                return Ok(());
            }
            self.b64.npend = 0;
            let group = self.b64.pend;
            self.b64_decode(&group)?;
        }
        let full = chars.len() / 4 * 4;
        for block in chars[..full].chunks(B64_BLOCK) {
            if self.b64.done {
                return Err(after_padding());
            }
            self.b64_decode(block)?;
        }
        let rest = &chars[full..];
        if !rest.is_empty() {
            if self.b64.done {
                return Err(after_padding());
            }
            self.b64.pend[..rest.len()].copy_from_slice(rest);
            self.b64.npend = rest.len();
        }
        Ok(())
    }

    /// Decodes whole 4-character groups and hashes the bytes.
    fn b64_decode(&mut self, block: &[u8]) -> Result<(), PublishError> {
        let mut out = [0u8; B64_BLOCK / 4 * 3];
        let n = STANDARD.decode_slice(block, &mut out).map_err(|e| {
            // Reasons that do not depend on where the chunks were cut.
            let reason = match e {
                base64::DecodeSliceError::DecodeError(base64::DecodeError::InvalidByte(_, b'=')) => {
                    "characters follow the padding".to_owned()
                }
                base64::DecodeSliceError::DecodeError(base64::DecodeError::InvalidByte(_, byte)) => {
                    format!("invalid character {:?}", char::from(byte))
                }
                base64::DecodeSliceError::DecodeError(base64::DecodeError::InvalidLastSymbol(..)) => {
                    "the last character before the padding has stray bits (not canonical)".to_owned()
                }
                base64::DecodeSliceError::DecodeError(base64::DecodeError::InvalidPadding) => {
                    "invalid padding".to_owned()
                }
                other => other.to_string(),
            };
            PublishError::BadBase64 { reason }
        })?;
        if let Some(tar) = &mut self.tar {
            tar.sha256.update(&out[..n]);
            tar.sha512.update(&out[..n]);
            tar.sha1.update(&out[..n]);
            tar.bytes += n as u64;
        }
        if block.last() == Some(&b'=') {
            self.b64.done = true;
        }
        Ok(())
    }

    fn into_facts(self) -> Result<PublishFacts, PublishError> {
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

#[cfg(test)]
mod tests;
