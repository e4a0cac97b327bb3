//! A real Verdaccio (htpasswd users, JWT tokens, no uplinks) on a loopback port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::Managed;
use crate::tools::tools;

/// The publishing user.
pub const USER: &str = "npmuser";
/// Its password.
pub const PASSWORD: &str = "s3cret-npm";

/// A running Verdaccio.
pub struct Verdaccio {
    /// Its storage folder (`<storage>/<name>/<name>-<v>.tgz`, scoped under `@scope/`).
    pub storage: PathBuf,
    addr: SocketAddr,
    process: Managed,
}

fn sha1_base64(text: &str) -> String {
    // Verdaccio accepts `{SHA}` htpasswd entries: base64(sha1(password)). SHA-1 here is the
    // backend's own legacy format for a test user, nothing the gateway relies on.
    let output = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import hashlib,base64;print(base64.b64encode(hashlib.sha1({text:?}.encode()).digest()).decode())"
        ))
        .output()
        .expect("python3");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

impl Verdaccio {
    /// Starts Verdaccio under `work`.
    pub fn start(work: &Path) -> Verdaccio {
        let tools = tools();
        let storage = work.join("storage");
        std::fs::create_dir_all(&storage).expect("storage dir");
        let htpasswd = work.join("htpasswd");
        std::fs::write(&htpasswd, format!("{USER}:{{SHA}}{}\n", sha1_base64(PASSWORD))).expect("htpasswd");
        let template =
            std::fs::read_to_string(crate::repo_root().join("tests/tools/verdaccio.yaml")).expect("template");
        let config = work.join("verdaccio.yaml");
        std::fs::write(
            &config,
            template
                .replace("@STORAGE@", &storage.display().to_string())
                .replace("@HTPASSWD@", &htpasswd.display().to_string()),
        )
        .expect("config");
        for _attempt in 0..3 {
            let port = crate::free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
            let mut cmd = Command::new(tools.verdaccio());
            cmd.arg("--config").arg(&config).arg("--listen").arg(addr.to_string());
            let mut process = Managed::spawn("verdaccio", cmd, &work.join("verdaccio.log"));
            let up = crate::wait_until(Duration::from_secs(30), || {
                process.try_exit().is_none()
                    && std::net::TcpStream::connect(addr).is_ok()
                    && crate::http::get(addr, "/-/ping").status == 200
            });
            if up {
                return Verdaccio { storage, addr, process };
            }
        }
        panic!("verdaccio did not start; see {}", work.join("verdaccio.log").display());
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A JWT for the test user, asked of Verdaccio itself (at `via`, the gateway or Verdaccio).
    pub fn token(&self, via: SocketAddr) -> String {
        let body = serde_json::json!({"name": USER, "password": PASSWORD}).to_string();
        let auth = crate::http::basic_auth(USER, PASSWORD);
        let response = crate::http::request(
            via,
            "PUT",
            &format!("/-/user/org.couchdb.user:{USER}"),
            &[("Content-Type", "application/json"), ("Authorization", &auth)],
            body.as_bytes(),
        );
        assert_eq!(response.status, 201, "token request: {}", response.text());
        response.json()["token"].as_str().expect("token").to_owned()
    }

    /// The packument Verdaccio itself serves for `name` (`GET /<name>`, scoped names as
    /// `@scope%2fname`), or `None` when it answers 404.
    pub fn packument(&self, name: &str) -> Option<serde_json::Value> {
        let response = crate::http::get(self.addr, &format!("/{}", name.replace('/', "%2f")));
        if response.status == 404 {
            return None;
        }
        assert_eq!(response.status, 200, "packument of {name}: {}", response.text());
        Some(response.json())
    }

    /// The tarball stored for `name@version`, if any.
    pub fn stored_tarball(&self, name: &str, version: &str) -> Option<Vec<u8>> {
        let base = name.rsplit('/').next().unwrap_or(name);
        std::fs::read(self.storage.join(name).join(format!("{base}-{version}.tgz"))).ok()
    }

    /// Asserts that Verdaccio stored `expected` byte for byte as the tarball of
    /// `name@version` and that its packument's `dist.integrity` and `dist.shasum` for that
    /// version are `expected`'s; returns the packument.
    pub fn assert_stored(&self, name: &str, version: &str, expected: &[u8]) -> serde_json::Value {
        let stored = self
            .stored_tarball(name, version)
            .unwrap_or_else(|| panic!("no tarball for {name}@{version}; stored {:?}", self.stored()));
        let (integrity, shasum) = crate::npm::dist_digests(expected);
        assert!(
            stored == expected,
            "{name}@{version}: stored tarball differs from what the client packed ({} bytes stored, {} packed)",
            stored.len(),
            expected.len()
        );
        let packument = self
            .packument(name)
            .unwrap_or_else(|| panic!("Verdaccio has no packument for {name}"));
        let dist = &packument["versions"][version]["dist"];
        assert_eq!(dist["integrity"], integrity.as_str(), "{name}@{version}: {dist}");
        assert_eq!(dist["shasum"], shasum.as_str(), "{name}@{version}: {dist}");
        packument
    }

    /// Every stored file, relative to the storage folder.
    pub fn stored(&self) -> Vec<String> {
        crate::list_tree(&self.storage)
    }

    /// Its log.
    pub fn log(&self) -> String {
        self.process.log()
    }
}
