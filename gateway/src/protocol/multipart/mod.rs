//! A strict, streaming reader of `multipart/form-data` bodies: it accepts only the one
//! canonical encoding that every common parser reads the same way, and refuses the rest.
//!
//! Why not a library: multer, the `multipart` crates and the Python readers behind PyPI
//! backends (the standard library's `cgi` and `email`, `multipart`, webob, werkzeug) are all
//! lenient by design, and each is lenient differently (LF-only line ends, a preamble holding a
//! whole part, transport padding, a boundary found without a line break in front, header
//! folding, `filename*`). A gateway that decides on one lenient reading while the backend
//! commits another is no control at all (`docs/one-reading.md`). None of them offers a mode
//! that accepts only the intersection, so this reader is that intersection, written down:
//!
//! ```text
//! body      = "--" B CRLF part *( CRLF "--" B CRLF part ) CRLF "--" B "--" [ CRLF ]
//! part      = 1*header CRLF data           ; header block: see [`part_head`]
//! ```
//!
//! and, beyond the grammar, the string `"--" B` appears nowhere but at those delimiters: not in
//! a part's data, not in its headers, not after a lone CR or LF. Then every reader, however it
//! looks for delimiters, finds the same ones. Nothing may precede the first delimiter or follow
//! the closing one (but its CRLF).
//!
//! The reader hashes nothing and copies no data: it hands each part's head and then slices of
//! its data to a [`PartSink`], keeping back at most `len("--" B) + 1` bytes between chunks.

pub mod content_type;
pub mod part_head;
#[cfg(test)]
pub(crate) mod test_form;
#[cfg(test)]
mod tests;

use memchr::memmem::Finder;

pub use self::content_type::FormContentType;
pub use self::part_head::PartHead;

/// Most bytes of one part's header block (the `multipart` package silently drops a part with a
/// header line over 4 224 bytes).
pub const MAX_PART_HEAD_BYTES: usize = 4 << 10;

/// Most parts in one form.
pub const MAX_PARTS: usize = 4_096;

/// Why a body is not a form this reader accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    /// The body is not in the canonical encoding: another reader could read it differently.
    #[error("{0}")]
    Ambiguous(String),
    /// The body ends before the form does.
    #[error("{0}")]
    Truncated(String),
}

fn ambiguous(message: impl Into<String>) -> MultipartError {
    MultipartError::Ambiguous(message.into())
}

/// Receives a form as the reader finds it: a part's head, its data in slices, its end.
pub trait PartSink {
    /// What the sink refuses with; the reader's own refusals convert into it.
    type Error: From<MultipartError>;
    /// A part begins.
    fn start_part(&mut self, head: PartHead) -> Result<(), Self::Error>;
    /// The next bytes of the current part's data (never empty).
    fn data(&mut self, bytes: &[u8]) -> Result<(), Self::Error>;
    /// The current part is complete.
    fn end_part(&mut self) -> Result<(), Self::Error>;
}

/// Where the reader is in the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting the first delimiter line at the very start of the body.
    Start,
    /// Reading a part's header block.
    Head,
    /// Reading a part's data, looking for the next delimiter.
    Data,
    /// After a delimiter: CRLF (another part) or `--` (the end).
    AfterDelimiter,
    /// After the closing delimiter: at most one CRLF, then nothing.
    Closed,
    /// Refused; nothing more is read.
    Failed,
}

/// The streaming reader; see the module documentation.
pub struct StrictMultipart {
    /// `"--" B`.
    dash_boundary: Box<[u8]>,
    finder: Finder<'static>,
    state: State,
    /// Bytes read but not yet resolved: the start of the body, a header block, the last bytes
    /// of data that could begin a delimiter, the two bytes after a delimiter.
    carry: Vec<u8>,
    parts: usize,
}

impl StrictMultipart {
    /// A reader for a form whose `Content-Type` named `boundary`.
    pub fn new(content_type: &FormContentType) -> Self {
        let mut dash_boundary = b"--".to_vec();
        dash_boundary.extend_from_slice(content_type.boundary().as_bytes());
        let finder = Finder::new(&dash_boundary).into_owned();
        StrictMultipart {
            dash_boundary: dash_boundary.into_boxed_slice(),
            finder,
            state: State::Start,
            carry: Vec::new(),
            parts: 0,
        }
    }

    /// Reads the next chunk of the body, passing what it finds to `sink`.
    pub fn feed<S: PartSink>(&mut self, chunk: &[u8], sink: &mut S) -> Result<(), S::Error> {
        if self.state == State::Failed {
            return Err(ambiguous("the form was already refused").into());
        }
        let result = self.read(chunk, sink);
        if result.is_err() {
            self.state = State::Failed;
            self.carry = Vec::new();
        }
        result
    }

    /// Ends the body: the form must be complete.
    pub fn finish(&self) -> Result<(), MultipartError> {
        match self.state {
            State::Closed => Ok(()),
            State::Failed => Err(ambiguous("the form was already refused")),
            State::Start if self.carry.is_empty() => Err(MultipartError::Truncated("the upload form is empty".into())),
            _ => Err(MultipartError::Truncated(
                "the upload form ends before its closing boundary".into(),
            )),
        }
    }

    fn read<S: PartSink>(&mut self, mut input: &[u8], sink: &mut S) -> Result<(), S::Error> {
        while !input.is_empty() {
            input = match self.state {
                State::Start => self.read_start(input)?,
                State::Head => self.read_head(input, sink)?,
                State::Data => self.read_data(input, sink)?,
                State::AfterDelimiter => self.read_after_delimiter(input)?,
                State::Closed => self.read_closed(input)?,
                State::Failed => return Err(ambiguous("the form was already refused").into()),
            };
        }
        Ok(())
    }

    /// Moves up to `want - carry.len()` bytes of `input` into the carry; returns the rest.
    fn take<'a>(&mut self, input: &'a [u8], want: usize) -> &'a [u8] {
        let n = want.saturating_sub(self.carry.len()).min(input.len());
        self.carry.extend_from_slice(&input[..n]);
        &input[n..]
    }

    fn read_start<'a>(&mut self, input: &'a [u8]) -> Result<&'a [u8], MultipartError> {
        let want = self.dash_boundary.len() + 2;
        let rest = self.take(input, want);
        let expected = [&self.dash_boundary[..], b"\r\n"].concat();
        if !expected.starts_with(&self.carry) {
            return Err(ambiguous(
                "the upload form must start with its boundary line: nothing may come before it (no preamble), \
                 and the line must end with CRLF",
            ));
        }
        if self.carry.len() == want {
            self.carry.clear();
            self.state = State::Head;
        }
        Ok(rest)
    }

    fn read_head<'a, S: PartSink>(&mut self, input: &'a [u8], sink: &mut S) -> Result<&'a [u8], S::Error> {
        let searched = self.carry.len().saturating_sub(3);
        let room = MAX_PART_HEAD_BYTES + 4 - self.carry.len();
        let taken = input.len().min(room);
        self.carry.extend_from_slice(&input[..taken]);
        let Some(end) = memchr::memmem::find(&self.carry[searched..], b"\r\n\r\n").map(|i| i + searched) else {
            if self.carry.starts_with(b"\r\n") {
                return Err(ambiguous("a form part has no headers; each part needs a Content-Disposition").into());
            }
            if self.carry.len() > MAX_PART_HEAD_BYTES {
                return Err(ambiguous(format!(
                    "a form part's headers are longer than {MAX_PART_HEAD_BYTES} bytes or do not end with an empty CRLF line"
                ))
                .into());
            }
            return Ok(&input[taken..]);
        };
        if self.carry.starts_with(b"\r\n") {
            return Err(ambiguous("a form part has no headers; each part needs a Content-Disposition").into());
        }
        // The bytes after the blank line belong to the data: hand them back to the input.
        let overshoot = self.carry.len() - (end + 4);
        let block = &self.carry[..end + 2];
        if self.finder.find(block).is_some() {
            return Err(ambiguous("a form part's headers contain the form's boundary").into());
        }
        let head = PartHead::parse(block)?;
        self.parts += 1;
        if self.parts > MAX_PARTS {
            return Err(ambiguous(format!("the upload form has more than {MAX_PARTS} parts")).into());
        }
        sink.start_part(head)?;
        self.carry.clear();
        self.state = State::Data;
        Ok(&input[taken - overshoot..])
    }

    /// Finds the next `"--" B` in `carry ++ input` (`carry` is short and holds no complete one).
    fn next_dash_boundary(&self, input: &[u8]) -> Option<usize> {
        let width = self.dash_boundary.len();
        if !self.carry.is_empty() {
            let spill = input.len().min(width - 1);
            let mut joined = Vec::with_capacity(self.carry.len() + spill);
            joined.extend_from_slice(&self.carry);
            joined.extend_from_slice(&input[..spill]);
            if let Some(i) = self.finder.find(&joined) {
                return Some(i);
            }
        }
        self.finder.find(input).map(|i| i + self.carry.len())
    }

    /// The byte at `index` of `carry ++ input`.
    fn window_byte(&self, input: &[u8], index: usize) -> u8 {
        match index.checked_sub(self.carry.len()) {
            None => self.carry[index],
            Some(i) => input[i],
        }
    }

    /// Hands `carry ++ input` up to `end` to the sink as data.
    fn emit<S: PartSink>(&self, input: &[u8], end: usize, sink: &mut S) -> Result<(), S::Error> {
        let from_carry = end.min(self.carry.len());
        if from_carry > 0 {
            sink.data(&self.carry[..from_carry])?;
        }
        let from_input = end - from_carry;
        if from_input > 0 {
            sink.data(&input[..from_input])?;
        }
        Ok(())
    }

    fn read_data<'a, S: PartSink>(&mut self, input: &'a [u8], sink: &mut S) -> Result<&'a [u8], S::Error> {
        let width = self.dash_boundary.len();
        let window = self.carry.len() + input.len();
        let Some(at) = self.next_dash_boundary(input) else {
            // Keep back what could still begin "CRLF--B"; the rest is data.
            let keep = window.min(width + 1);
            self.emit(input, window - keep, sink)?;
            let kept: Vec<u8> = (window - keep..window).map(|i| self.window_byte(input, i)).collect();
            self.carry = kept;
            return Ok(&[]);
        };
        let after_crlf =
            at >= 2 && self.window_byte(input, at - 2) == b'\r' && self.window_byte(input, at - 1) == b'\n';
        if !after_crlf {
            return Err(ambiguous(
                "a form part contains the form's boundary without a CRLF line break before it; \
                 choose a boundary that does not occur in the data",
            )
            .into());
        }
        self.emit(input, at - 2, sink)?;
        sink.end_part()?;
        let consumed = (at + width).saturating_sub(self.carry.len());
        self.carry.clear();
        self.state = State::AfterDelimiter;
        Ok(&input[consumed..])
    }

    fn read_after_delimiter<'a>(&mut self, input: &'a [u8]) -> Result<&'a [u8], MultipartError> {
        let rest = self.take(input, 2);
        match self.carry.as_slice() {
            b"\r\n" => self.state = State::Head,
            b"--" => self.state = State::Closed,
            b"\r" | b"-" => return Ok(rest),
            _ => {
                return Err(ambiguous(
                    "a boundary line of the upload form has something after the boundary; end it with CRLF (or -- for the last)",
                ))
            }
        }
        self.carry.clear();
        Ok(rest)
    }

    fn read_closed<'a>(&mut self, input: &'a [u8]) -> Result<&'a [u8], MultipartError> {
        self.carry.extend_from_slice(&input[..input.len().min(3)]);
        if !b"\r\n".starts_with(&self.carry) {
            return Err(ambiguous(
                "the upload form has content after its closing boundary (an epilogue); send nothing after it",
            ));
        }
        Ok(&[])
    }
}
