//! The real Sigstore fixtures the unit tests read (`tests/fixtures`, see its MANIFEST.md).

use std::path::{Path, PathBuf};

/// The fixtures directory.
pub(crate) fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// The bytes of the fixture at `path` (relative to [`dir`]).
pub(crate) fn read(path: &str) -> Vec<u8> {
    let file = dir().join(path);
    std::fs::read(&file).unwrap_or_else(|e| panic!("fixture {}: {e}", file.display()))
}
