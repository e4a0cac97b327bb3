//! The tarball: its base64 `data` is decoded as it streams past, in blocks, and the bytes are
//! hashed (SHA-256, SHA-512, SHA-1) and counted, never kept. Only canonical standard base64 with
//! padding is accepted, with the same reason for a refusal wherever the chunks were cut.
//!
//! The base64 crate decodes each block; its only streaming decoder is a pull adapter over a
//! reader (`base64::read::DecoderReader`), while these characters are pushed a chunk at a time,
//! so the up to 3 characters of a group cut by a chunk boundary are carried over here.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

use super::{PublishError, PublishInspector};

/// Base64 characters decoded at once (a multiple of 4); the output block lives on the stack.
const B64_BLOCK: usize = 16 * 1024;

/// Streaming base64 state: at most 3 characters wait for their group between chunks.
#[derive(Debug, Default)]
pub(super) struct B64 {
    pend: [u8; 4],
    pub(super) npend: usize,
    /// A padded group was decoded: nothing may follow.
    done: bool,
}

/// The running hashes and size of the decoded tarball.
pub(super) struct TarHash {
    pub(super) sha256: Sha256,
    pub(super) sha512: Sha512,
    pub(super) sha1: Sha1,
    pub(super) bytes: u64,
}

impl TarHash {
    /// Nothing hashed yet.
    pub(super) fn new() -> Self {
        TarHash {
            sha256: Sha256::new(),
            sha512: Sha512::new(),
            sha1: Sha1::new(),
            bytes: 0,
        }
    }
}

impl PublishInspector {
    /// Decodes the next characters of the tarball's `data` and hashes the bytes; up to 3
    /// characters of an incomplete group wait for the next chunk.
    pub(super) fn b64_feed(&mut self, mut chars: &[u8]) -> Result<(), PublishError> {
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
}
