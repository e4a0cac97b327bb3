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
//!
//! The work is split by job, one file each: `scanner` (the incremental JSON scanner: grammar,
//! strings and escapes, paths for messages, duplicate keys, nesting), `slots` (which members of
//! the document are tracked, and where their values go), `strip` (cutting the `.sigstore` member
//! out of the forwarded bytes), `tarball` (decoding the base64 tarball as it passes and hashing
//! it), `facts` (the values kept, the checks that need the whole document, and the
//! [`PublishFacts`] they give) and `error` ([`PublishError`] and its codes). This module holds
//! the [`Limits`] and the [`PublishInspector`] that ties them together.

mod error;
mod facts;
mod scanner;
mod slots;
mod strip;
mod tarball;
#[cfg(test)]
mod tests;

use bytes::Bytes;

pub use error::PublishError;
pub use facts::{PublishFacts, PublishKind, TarballFacts};

use facts::{AttachmentEntry, VersionEntry};
use scanner::{Frame, Lex, Sink, StrState};
use slots::Slot;
use strip::Forward;
use tarball::{TarHash, B64};

/// Longest attachment name accepted, in bytes (an npm name is at most 214 bytes, a version
/// at most 256). It also bounds what is held back while stripping provenance.
pub const MAX_ATTACHMENT_NAME_BYTES: usize = 512;

/// Most dependency names kept per version (for counting dependents).
pub const MAX_DEPENDENCIES: usize = 1_000;

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
            fwd: Forward::new(strip_provenance),
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
}
