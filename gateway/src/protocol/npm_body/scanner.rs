//! The incremental JSON scanner of a publish document: it is fed the body chunk by chunk and
//! checks the grammar (RFC 8259) byte by byte — strings with their escapes, surrogate pairs and
//! UTF-8, numbers, literals — with the path of the value being read for messages, duplicate
//! keys, the nesting depth and the length of every string. Each member key goes to the slots
//! (`slots.rs`) to learn what its value is for; each string's decoded bytes go to its sink:
//! counted and dropped, kept (a value the checks need), or the tarball decoder (`tarball.rs`).
//! It also marks where `_attachments` members start and end for provenance stripping
//! (`strip.rs`).
//!
//! Why no JSON library: the gateway must stream a publish of up to hundreds of MiB, decode and
//! hash the base64 tarball as it passes, and cut the `.sigstore` member out of the forwarded
//! bytes by its byte span, chunk by chunk as the proxy hands them over, without ever holding the
//! tarball. serde_json parses a whole value (from a slice, or pulling from a blocking reader),
//! holds every string whole and gives no byte positions of values. actson is push-based like
//! this scanner but collects each string whole before reporting it (the tarball included) and
//! counts the bytes it consumed rather than marking where a member starts in the chunk being
//! forwarded. struson pulls from a reader, while the proxy pushes chunks and needs each chunk's
//! forwarded bytes back at once, and its data positions may run ahead of what it has parsed, as
//! it buffers input.

use std::collections::HashSet;

use sha2::{Digest, Sha256};

use super::error::short;
use super::facts::AttachmentKind;
use super::slots::{Ctx, Slot};
use super::strip::Mode;
use super::{PublishError, PublishInspector, MAX_ATTACHMENT_NAME_BYTES};

/// Longest key kept for paths in error messages, in characters.
const MAX_LABEL_CHARS: usize = 64;

/// Most characters accepted in an attachment's `length` (a `u64` has at most 20 digits).
const MAX_LENGTH_CHARS: usize = 20;

/// An open object or array.
#[derive(Debug)]
pub(super) struct Frame {
    is_object: bool,
    ctx: Ctx,
    /// Truncated SHA-256 of every key seen (collisions can only refuse, never miss a duplicate).
    pub(super) keys: HashSet<[u8; 16]>,
    /// Members (or elements) started so far.
    count: usize,
    /// The current member's key, shortened, for messages.
    pub(super) label: String,
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
pub(super) enum Num {
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
pub(super) enum Lex {
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
pub(super) enum Sink {
    /// Validated and counted, not kept.
    Skip,
    /// Kept in the capture buffer.
    Capture(CapKind),
    /// Base64-decoded and hashed.
    Tarball,
}

/// What a captured string is, for its limit and its error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CapKind {
    Key,
    AttachmentKey,
    Value,
    Provenance,
}

/// The string being scanned.
#[derive(Debug, Clone, Copy)]
pub(super) struct StrState {
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
    pub(super) fn new(sink: Sink, limit: usize, is_key: bool) -> Self {
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

impl PublishInspector {
    pub(super) fn scan(&mut self, chunk: &[u8]) -> Result<(), PublishError> {
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
    pub(super) fn value_path(&self) -> String {
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
                let sink = self.string_sink(&slot)?;
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
}
