//! Test harness for Portcullis end-to-end tests: real backends (pypiserver, devpi-server,
//! Verdaccio), the real `portcullis` binary, real clients (twine, pip, npm) and raw-socket HTTP
//! for the cases clients cannot produce. Everything listens on loopback ports picked at run
//! time; every process is killed when its handle drops; every wait is bounded.

pub mod devpi;
pub mod gateway;
pub mod http;
pub mod npm;
pub mod npm_provenance;
pub mod oidc;
pub mod pep740;
pub mod pki;
pub mod postgres;
pub mod process;
pub mod publishers;
pub mod pypiserver;
pub mod rstuf;
pub mod sink;
pub mod soak;
pub mod tools;
pub mod tuf;
pub mod upload_token;
pub mod verdaccio;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The PyPI rules the upload suites share (pypiserver, devpi and every publishing client):
/// uploads up to 1 MiB, and names `internal-*` denied by rule `no-internal` with a message the
/// clients must show.
pub const PYPI_UPLOAD_RULES: &str = r#"
[registries.pypi]
max_upload_bytes = "1 MiB"
[[registries.pypi.projects]]
id = "no-internal"
names = ["internal-*"]
action = "deny"
message = "internal packages go to the private index"
"#;

/// A free loopback port (bound, then released; the race with other tests is tolerable because
/// every server start is checked).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// Polls `probe` every 50 ms until it returns true or `limit` passes.
pub fn wait_until(limit: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if probe() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The repository root (the workspace folder).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The fixtures folder (`tests/fixtures` in the repository; `MANIFEST.md` says what is there).
pub fn fixtures() -> PathBuf {
    repo_root().join("tests/fixtures")
}

/// Lists the file names in `dir` (sorted), empty when it does not exist.
pub fn list_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Lists every file below `dir`, as paths relative to it (sorted).
pub fn list_tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.filter_map(Result::ok) {
                let path = entry.path();
                if path.is_dir() {
                    walk(base, &path, out);
                } else if let Ok(rel) = path.strip_prefix(base) {
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Hex SHA-256 of a byte string.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
