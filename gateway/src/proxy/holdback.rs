//! Hold-back: forward every body chunk as it arrives except the most recent one, which waits
//! until the decision. A refused request therefore never gives the backend its final bytes,
//! and the upstream connection is reset (see [`super::upstream`]) so nothing is committed.
//!
//! Emptying a chunk must never be expressed as `None`: for pingora `None` ends the upstream
//! body, which with chunked encoding would let a backend commit a truncated file. Callers
//! forward `Some(empty)` (pingora skips empty writes) while holding.

use bytes::Bytes;

/// The held-back tail of a request body.
#[derive(Debug, Default)]
pub struct HoldBack {
    held: Option<Bytes>,
}

impl HoldBack {
    /// Takes the newest chunk and returns what may be forwarded now (the previous chunk).
    pub fn push(&mut self, chunk: Bytes) -> Bytes {
        if chunk.is_empty() {
            return Bytes::new();
        }
        self.held.replace(chunk).unwrap_or_default()
    }

    /// Bytes currently held back.
    pub fn held_len(&self) -> usize {
        self.held.as_ref().map_or(0, Bytes::len)
    }

    /// Releases the held tail after an allowing decision.
    pub fn release(&mut self) -> Bytes {
        self.held.take().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_all_but_the_newest_chunk_and_releases_it_last() {
        let mut hb = HoldBack::default();
        assert!(hb.push(Bytes::from_static(b"a")).is_empty());
        assert_eq!(hb.push(Bytes::from_static(b"bc")), Bytes::from_static(b"a"));
        assert!(hb.push(Bytes::new()).is_empty(), "empty chunks change nothing");
        assert_eq!(hb.held_len(), 2);
        assert_eq!(hb.push(Bytes::from_static(b"d")), Bytes::from_static(b"bc"));
        assert_eq!(hb.release(), Bytes::from_static(b"d"));
        assert!(hb.release().is_empty());
    }
}
