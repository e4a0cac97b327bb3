//! Provenance stripping: with `strip_provenance`, the `<name>-<version>.sigstore` member of
//! `_attachments` is cut out of the forwarded bytes (some backends refuse publishes that carry
//! it) while the JSON stays valid. The scanner marks the byte positions; this decides what each
//! run of bytes becomes: forwarded, held (an `_attachments` member key and the ',' before it,
//! until the key tells whether the member is the provenance) or dropped (that member).

/// What happens to the bytes being scanned, when stripping provenance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Pass,
    Hold,
    Drop,
}

/// The forwarded bytes.
#[derive(Debug)]
pub(super) struct Forward {
    pub(super) strip: bool,
    mode: Mode,
    /// Start in the current chunk of the bytes not yet given to `out`/`held`.
    pub(super) mark: usize,
    pub(super) out: Vec<u8>,
    /// An `_attachments` member key, held until it is known.
    pub(super) held: Vec<u8>,
    /// A ',' before the held member was withheld.
    pub(super) pending_comma: bool,
    /// `_attachments` members forwarded so far.
    emitted: usize,
    /// The `.sigstore` member's value is being dropped.
    pub(super) dropping_member: bool,
    pub(super) stripped: bool,
}

impl Forward {
    /// Nothing forwarded yet; `strip` says whether provenance is stripped at all (without it,
    /// the body is forwarded as received and nothing here runs).
    pub(super) fn new(strip: bool) -> Self {
        Forward {
            strip,
            mode: Mode::Pass,
            mark: 0,
            out: Vec::new(),
            held: Vec::new(),
            pending_comma: false,
            emitted: 0,
            dropping_member: false,
            stripped: false,
        }
    }

    /// Gives the bytes of `chunk` from the mark up to `upto` to where the mode sends them.
    pub(super) fn flush(&mut self, chunk: &[u8], upto: usize) {
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

    /// Flushes up to `at`, then sends what follows by `mode`.
    pub(super) fn switch(&mut self, chunk: &[u8], at: usize, mode: Mode) {
        if !self.strip {
            return;
        }
        self.flush(chunk, at);
        self.mode = mode;
    }

    /// The held `_attachments` member key ends before `end`: drop the member or release it.
    pub(super) fn resolve_member(&mut self, chunk: &[u8], end: usize, drop: bool) {
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
