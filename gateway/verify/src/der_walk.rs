//! The crate's one DER walker: tag, length, value and the original bytes of each element.
//! Certificates ([`crate::x509`]), the precertificate of SCTs ([`crate::sct`]) and RFC 3161
//! tokens ([`crate::timestamp`]) are all sliced with it; nothing else reads DER by hand.
//!
//! Signatures cover bytes exactly as their signer encoded them. Typed decoders (`der`,
//! `x509-cert`, `cms`) re-sort `SET OF` and drop explicit default values, so re-encoding what
//! they decoded can give other bytes than those signed; whatever a signature covers is
//! therefore sliced from the input with this walker, never re-encoded. What is only read
//! (names for messages, extensions, validity) comes from `x509-cert`. `der`'s own
//! `SliceReader` could slice TLVs too, but its errors name neither the verification step nor
//! the structure, which every refusal here must, so it would need this same wrapper.

use const_oid::ObjectIdentifier;

use crate::error::{Result, Step, VerifyError};

/// Universal tag of an INTEGER.
pub(crate) const INTEGER: u8 = 0x02;
/// Universal tag of a BIT STRING.
pub(crate) const BIT_STRING: u8 = 0x03;
/// Universal tag of an OCTET STRING.
pub(crate) const OCTET_STRING: u8 = 0x04;
/// Universal tag of an OBJECT IDENTIFIER.
pub(crate) const OID: u8 = 0x06;
/// Universal tag of a GeneralizedTime.
pub(crate) const GENERALIZED_TIME: u8 = 0x18;
/// Universal tag of a SEQUENCE (constructed).
pub(crate) const SEQUENCE: u8 = 0x30;
/// Universal tag of a SET (constructed).
pub(crate) const SET: u8 = 0x31;
/// Context-specific constructed tag 0.
pub(crate) const CONTEXT_0: u8 = 0xA0;
/// Context-specific constructed tag 1.
pub(crate) const CONTEXT_1: u8 = 0xA1;
/// Context-specific constructed tag 3.
pub(crate) const CONTEXT_3: u8 = 0xA3;
/// Context-specific primitive tag 0.
pub(crate) const CONTEXT_0_PRIMITIVE: u8 = 0x80;

/// One DER element.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tlv<'a> {
    /// The (single-byte) tag.
    pub(crate) tag: u8,
    /// The content octets.
    pub(crate) value: &'a [u8],
    /// The whole element: tag, length and content, as encoded.
    pub(crate) raw: &'a [u8],
}

impl Tlv<'_> {
    /// Whether the element is the OBJECT IDENTIFIER `oid`.
    pub(crate) fn is_oid(&self, oid: &ObjectIdentifier) -> bool {
        self.tag == OID && self.value == oid.as_bytes()
    }

    /// The dotted form of an OBJECT IDENTIFIER element, for messages.
    pub(crate) fn oid_name(&self) -> String {
        ObjectIdentifier::from_bytes(self.value)
            .map(|oid| oid.to_string())
            .unwrap_or_else(|_| "<malformed OID>".to_owned())
    }
}

/// Reads consecutive DER elements from a byte string; errors name `step` and `what`.
pub(crate) struct Der<'a> {
    rest: &'a [u8],
    step: Step,
    what: &'static str,
}

impl<'a> Der<'a> {
    /// A reader over `data`, the content of a `what`, whose faults are refusals at `step`.
    pub(crate) fn new(data: &'a [u8], step: Step, what: &'static str) -> Self {
        Der { rest: data, step, what }
    }

    /// Whether every element was read.
    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// How many bytes are left to read.
    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// The tag of the next element.
    pub(crate) fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    fn malformed(&self, why: &str) -> VerifyError {
        VerifyError::new(self.step, format!("malformed {}: {why}", self.what))
    }

    /// The next element, whatever its tag.
    pub(crate) fn any(&mut self) -> Result<Tlv<'a>> {
        let data = self.rest;
        let (&tag, after_tag) = data.split_first().ok_or_else(|| self.malformed("truncated"))?;
        if tag & 0x1f == 0x1f {
            return Err(self.malformed("multi-byte tags are not supported"));
        }
        let (&first, after_len) = after_tag.split_first().ok_or_else(|| self.malformed("truncated"))?;
        let (len, header) = if first < 0x80 {
            (usize::from(first), 2)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 {
                return Err(self.malformed("indefinite length is not DER"));
            }
            if count > 4 {
                return Err(self.malformed("length too large"));
            }
            let bytes = after_len.get(..count).ok_or_else(|| self.malformed("truncated"))?;
            let len = bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            (len, 2 + count)
        };
        let end = header
            .checked_add(len)
            .ok_or_else(|| self.malformed("length too large"))?;
        let raw = data.get(..end).ok_or_else(|| self.malformed("truncated"))?;
        let value = raw.get(header..).ok_or_else(|| self.malformed("truncated"))?;
        self.rest = data.get(end..).unwrap_or_default();
        Ok(Tlv { tag, value, raw })
    }

    /// The next element, which must have `tag`.
    pub(crate) fn take(&mut self, tag: u8) -> Result<Tlv<'a>> {
        match self.peek_tag() {
            Some(found) if found == tag => self.any(),
            Some(found) => Err(self.malformed(&format!("expected tag {tag:#04x}, found {found:#04x}"))),
            None => Err(self.malformed(&format!("expected tag {tag:#04x}, found the end"))),
        }
    }

    /// The next element if it has `tag`.
    pub(crate) fn optional(&mut self, tag: u8) -> Result<Option<Tlv<'a>>> {
        if self.peek_tag() == Some(tag) {
            self.any().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Fails unless every element was read.
    pub(crate) fn finish(&self) -> Result<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.malformed("unexpected trailing data"))
        }
    }
}

/// Parses `data` as exactly one element with `tag`.
pub(crate) fn single<'a>(data: &'a [u8], tag: u8, step: Step, what: &'static str) -> Result<Tlv<'a>> {
    let mut der = Der::new(data, step, what);
    let tlv = der.take(tag)?;
    der.finish()?;
    Ok(tlv)
}

/// Encodes one element with a single-byte `tag` (DER definite length).
pub(crate) fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = Vec::with_capacity(len + 6);
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_keep_their_original_bytes() {
        // SEQUENCE { INTEGER 5, OCTET STRING "ab" } followed by nothing.
        let data = [0x30, 0x07, 0x02, 0x01, 0x05, 0x04, 0x02, b'a', b'b'];
        let seq = single(&data, SEQUENCE, Step::Bundle, "test").expect("sequence");
        assert_eq!(seq.raw, &data[..]);
        let mut inner = Der::new(seq.value, Step::Bundle, "test");
        assert_eq!(inner.take(INTEGER).expect("integer").raw, &[0x02, 0x01, 0x05]);
        assert!(inner.optional(INTEGER).expect("no integer").is_none());
        assert_eq!(inner.take(OCTET_STRING).expect("octets").value, b"ab");
        inner.finish().expect("all read");
    }

    #[test]
    fn malformed_input_names_the_step_and_the_structure() {
        let e = single(&[0x30, 0x05, 0x02], SEQUENCE, Step::CertificateChain, "certificate").expect_err("short");
        assert_eq!(e.step, Step::CertificateChain);
        assert_eq!(e.reason, "malformed certificate: truncated");
        let e = single(&[0x30, 0x80, 0x00, 0x00], SEQUENCE, Step::Timestamp, "token").expect_err("BER");
        assert_eq!(e.reason, "malformed token: indefinite length is not DER");
        let e = single(&[0x30, 0x00, 0x00], SEQUENCE, Step::Timestamp, "token").expect_err("trailing");
        assert_eq!(e.reason, "malformed token: unexpected trailing data");
    }

    #[test]
    fn encoding_round_trips_through_the_walker() {
        for len in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let content = vec![7u8; len];
            let encoded = encode(OCTET_STRING, &content);
            let tlv = single(&encoded, OCTET_STRING, Step::Bundle, "test").expect("decodes");
            assert_eq!(tlv.value.len(), len);
            assert_eq!(tlv.raw, &encoded[..]);
        }
        assert_eq!(encode(SEQUENCE, &[0; 128])[..3], [0x30, 0x81, 0x80]);
    }
}
