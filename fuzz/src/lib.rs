//! Helpers shared by the fuzz targets: where the shared fixtures are, and how a fuzz input is
//! cut into the chunks a streaming parser is fed.

use std::path::PathBuf;

/// The shared fixtures folder: `$PORTCULLIS_FIXTURES`, else `../tests/fixtures` from this
/// crate (the layout the project's own tests use).
pub fn fixtures() -> PathBuf {
    match std::env::var_os("PORTCULLIS_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures"),
    }
}

/// Reads a fixture file (relative to [`fixtures`]); a missing fixture is a setup error, so it
/// aborts the run with a clear message rather than fuzzing against nothing.
pub fn fixture(relative: &str) -> Vec<u8> {
    let path = fixtures().join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fuzz setup: cannot read fixture {}: {e}", path.display()))
}

/// Whether `PORTCULLIS_FUZZ_DEBUG` is set: targets then print each input's outcome to stderr
/// (to check that the seeds reach the paths they are meant to, e.g. a verified attestation).
pub fn debug() -> bool {
    static DEBUG: std::sync::LazyLock<bool> =
        std::sync::LazyLock::new(|| std::env::var_os("PORTCULLIS_FUZZ_DEBUG").is_some());
    *DEBUG
}

/// Splits `data` into chunks whose sizes come from `seed` (a small xorshift generator): mostly
/// tiny chunks (1 to 16 bytes, where boundary and escape handling across chunk edges lives),
/// sometimes bigger ones (up to 4 KiB). The same `seed` and `data` always give the same cut.
pub fn chunks(data: &[u8], seed: u32) -> Vec<&[u8]> {
    let mut state = seed | 1;
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let size = match state % 8 {
            0 => 1,
            1..=5 => 1 + (state >> 8) as usize % 16,
            6 => 1 + (state >> 8) as usize % 512,
            _ => 1 + (state >> 8) as usize % 4096,
        };
        let (head, tail) = rest.split_at(size.min(rest.len()));
        out.push(head);
        rest = tail;
    }
    out
}

/// Splits an input into its first `N` bytes (control bytes: flags, seeds, selectors) and the
/// rest; short inputs get zeros.
pub fn control<const N: usize>(data: &[u8]) -> ([u8; N], &[u8]) {
    let mut head = [0u8; N];
    let n = data.len().min(N);
    head[..n].copy_from_slice(&data[..n]);
    (head, &data[n..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_input_in_order() {
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        for seed in [0, 1, 7, 0xdead_beef] {
            let cut = chunks(&data, seed);
            assert!(cut.iter().all(|c| !c.is_empty()));
            assert_eq!(cut.concat(), data);
        }
    }
}
