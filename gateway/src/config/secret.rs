//! Secrets read from files: kept out of `Debug` output, logs and error messages.

use std::fmt;
use std::path::Path;

/// A secret value (a password, a token, key material). Its `Debug` and `Display` print a
/// placeholder, so a secret cannot leak through a logged configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(bytes)
    }

    /// Reads a secret file; for text secrets the trailing line break is removed.
    pub fn read(path: &Path, text: bool) -> std::io::Result<Self> {
        let mut bytes = std::fs::read(path)?;
        if text {
            while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                bytes.pop();
            }
        }
        Ok(Secret(bytes))
    }

    /// The secret bytes. Call only where the secret is used.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The secret as UTF-8, when it is.
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_value() {
        let s = Secret::new(b"hunter2".to_vec());
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn text_secrets_lose_their_trailing_line_break() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\r\n").expect("write");
        assert_eq!(Secret::read(&path, true).expect("read").expose(), b"s3cret");
        assert_eq!(Secret::read(&path, false).expect("read").expose(), b"s3cret\r\n");
    }
}
