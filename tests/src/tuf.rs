//! A real TUF repository made by python-tuf (`tests/tools/tuf_repo.py`), laid out as Sigstore's
//! (target `trusted_root.json`), on a loopback port; its control endpoints rotate keys, publish
//! targets and stage the attacks the gateway's TUF client must refuse.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::tools::tools;

/// A running python-tuf repository; killed when dropped (it also exits when its stdin closes).
pub struct TufRepo {
    addr: SocketAddr,
    child: Child,
}

impl TufRepo {
    /// Starts a repository whose first `trusted_root.json` is `trusted_root`; its stderr goes to
    /// `log`.
    pub fn start(trusted_root: &[u8], work: &Path) -> TufRepo {
        std::fs::create_dir_all(work).expect("work dir");
        let first = work.join("first.trusted_root.json");
        std::fs::write(&first, trusted_root).expect("trusted root");
        let log = std::fs::File::create(work.join("tuf_repo.log")).expect("log");
        let mut child = Command::new(tools().python())
            .arg(crate::repo_root().join("tests/tools/tuf_repo.py"))
            .arg("--trusted-root")
            .arg(&first)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start tuf_repo.py");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout).read_line(&mut line).expect("the port line");
        let port = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|v| v["port"].as_u64())
            .unwrap_or_else(|| panic!("tuf_repo.py did not print its port: {line:?}"));
        let addr = format!("127.0.0.1:{port}").parse().expect("addr");
        TufRepo { addr, child }
    }

    /// `http://127.0.0.1:<port>`, the repository's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bytes of root version `version` as served (the trust anchor for version 1).
    pub fn root(&self, version: u64) -> Vec<u8> {
        let response = crate::http::get(self.addr, &format!("/{version}.root.json"));
        assert_eq!(response.status, 200, "{version}.root.json");
        response.body
    }

    fn control(&self, command: &str, body: Value) -> Value {
        let response = crate::http::request(
            self.addr,
            "POST",
            &format!("/_control/{command}"),
            &[("content-type", "application/json")],
            body.to_string().as_bytes(),
        );
        assert_eq!(response.status, 200, "{command}: {}", response.text());
        response.json()
    }

    /// Publishes a new `trusted_root.json` (targets, snapshot and timestamp move on).
    pub fn publish(&self, trusted_root: &[u8]) -> Value {
        let encoded = base64::engine::general_purpose::STANDARD.encode(trusted_root);
        self.control("publish", json!({"trusted_root_b64": encoded}))
    }

    /// Replaces the root and timestamp keys: a new root signed by the old and new root keys.
    pub fn rotate_root(&self) -> Value {
        self.control("rotate-root", json!({}))
    }

    /// A new timestamp expiring `expires_in_seconds` from now (negative: already expired).
    pub fn timestamp(&self, expires_in_seconds: i64) -> Value {
        self.control("timestamp", json!({"expires_in_seconds": expires_in_seconds}))
    }

    /// Serves an older timestamp version as the current one (a rollback attack).
    pub fn serve_timestamp(&self, version: u64) -> Value {
        self.control("serve-timestamp", json!({"version": version}))
    }

    /// Gives the timestamp role `keys` keys with threshold `keys` (a new root), then a new
    /// timestamp signed by only `sign_with` of them.
    pub fn timestamp_threshold(&self, keys: u32, sign_with: u32) -> Value {
        self.control("timestamp-threshold", json!({"keys": keys, "sign_with": sign_with}))
    }

    /// A new snapshot and a timestamp pinning it, but the older snapshot `version` served
    /// under the new one's name (a mix-and-match attack).
    pub fn mix_snapshot(&self, version: u64) -> Value {
        self.control("mix-snapshot", json!({"version": version}))
    }

    /// Serves the current target with one byte changed (a hash mismatch).
    pub fn corrupt_target(&self) -> Value {
        self.control("corrupt-target", json!({}))
    }

    /// Makes every metadata and target request fail with 503 (`true`) or serve again.
    pub fn down(&self, on: bool) -> Value {
        self.control("down", json!({"on": on}))
    }

    /// The repository's state: role versions, the timestamp's expiry, the target's digest.
    pub fn state(&self) -> Value {
        crate::http::get(self.addr, "/_control/state").json()
    }

    /// The metadata and target paths fetched since the last call.
    pub fn requests(&self) -> Vec<String> {
        crate::http::get(self.addr, "/_control/requests").json()["requests"]
            .as_array()
            .map(|list| list.iter().filter_map(|p| p.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }
}

impl Drop for TufRepo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
