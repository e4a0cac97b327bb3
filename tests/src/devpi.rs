//! A real devpi-server (6.20.3, from `tests/tools/install.sh`) on a loopback port: a server
//! folder made with `devpi-init --no-root-pypi` (no mirror of pypi.org, so nothing ever reaches
//! the network; the server also runs `--offline-mode`), a user [`USER`] and a private, volatile
//! index [`INDEX`] without bases, created directly against devpi's JSON API. What devpi stores is
//! read back through that API (the index's own view of a project) and from its files folder.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::Managed;
use crate::tools::tools;

/// The devpi user that owns the index and uploads.
pub const USER: &str = "alice";
/// Its password (HTTP basic authentication, as twine sends it).
pub const PASSWORD: &str = "s3cret-devpi";
/// The password `devpi-init` gives devpi's `root` user.
pub const ROOT_PASSWORD: &str = "s3cret-devpi-root";
/// The index the tests upload to: `/<user>/<index>`.
pub const INDEX: &str = "/alice/dev";

/// A running devpi-server.
pub struct Devpi {
    /// Its server folder (`--serverdir`).
    pub serverdir: PathBuf,
    addr: SocketAddr,
    process: Managed,
}

impl Devpi {
    /// Initialises a server folder under `work`, starts devpi-server on a free loopback port
    /// (waits up to 60 s for `/+api`), and creates [`USER`] and the index [`INDEX`]
    /// (`bases` empty, volatile).
    pub fn start(work: &Path) -> Devpi {
        std::fs::create_dir_all(work).expect("devpi work dir");
        let serverdir = work.join("server");
        let mut init = Command::new(tools().devpi_init());
        init.arg("--serverdir")
            .arg(&serverdir)
            .args(["--no-root-pypi", "--root-passwd", ROOT_PASSWORD]);
        let mut initialising = Managed::spawn("devpi-init", init, &work.join("devpi-init.log"));
        let status = initialising.wait_exit(Duration::from_secs(60));
        assert!(
            status.is_some_and(|s| s.success()),
            "devpi-init failed ({status:?}): {}",
            initialising.log()
        );
        for _attempt in 0..3 {
            let port = crate::free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
            let mut cmd = Command::new(tools().devpi_server());
            cmd.arg("--serverdir")
                .arg(&serverdir)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--offline-mode", "--threads", "8"]);
            let mut process = Managed::spawn("devpi-server", cmd, &work.join("devpi-server.log"));
            let up = crate::wait_until(Duration::from_secs(60), || {
                process.try_exit().is_none()
                    && std::net::TcpStream::connect(addr).is_ok()
                    && crate::http::request(addr, "GET", "/+api", &[("accept", "application/json")], b"").status == 200
            });
            if up {
                let devpi = Devpi {
                    serverdir,
                    addr,
                    process,
                };
                devpi.create_user_and_index();
                return devpi;
            }
            process.kill();
        }
        panic!(
            "devpi-server did not start; see {}",
            work.join("devpi-server.log").display()
        );
    }

    /// `PUT /<user>` (anyone may create a user on a default devpi), then `PUT /<user>/<index>`
    /// as that user.
    fn create_user_and_index(&self) {
        let user = serde_json::json!({"password": PASSWORD, "email": "alice@example.org"}).to_string();
        let r = self.json_request("PUT", &format!("/{USER}"), None, user.as_bytes());
        assert_eq!(r.status, 201, "creating the devpi user: {}", r.text());
        let index = serde_json::json!({"type": "stage", "bases": [], "volatile": true}).to_string();
        let auth = self.auth();
        let r = self.json_request("PUT", INDEX, Some(&auth), index.as_bytes());
        assert_eq!(r.status, 200, "creating the devpi index: {}", r.text());
        let config = self.index_config();
        assert_eq!(
            config["bases"],
            serde_json::json!([]),
            "the index has no bases: {config}"
        );
    }

    fn json_request(&self, method: &str, path: &str, auth: Option<&str>, body: &[u8]) -> crate::http::Response {
        let mut headers = vec![("accept", "application/json"), ("content-type", "application/json")];
        if let Some(auth) = auth {
            headers.push(("authorization", auth));
        }
        crate::http::request(self.addr, method, path, &headers, body)
    }

    /// The `Authorization` header value of [`USER`].
    pub fn auth(&self) -> String {
        crate::http::basic_auth(USER, PASSWORD)
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `GET /<user>/<index>` as JSON: the index's configuration, with its projects.
    pub fn index_config(&self) -> serde_json::Value {
        let r = self.json_request("GET", INDEX, None, b"");
        assert_eq!(r.status, 200, "reading the devpi index: {}", r.text());
        r.json()["result"].clone()
    }

    /// The projects the index holds (normalised names, sorted).
    pub fn projects(&self) -> Vec<String> {
        let mut names: Vec<String> = self.index_config()["projects"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The index's own view of `project` (`GET /<user>/<index>/<project>?ignore_bases` as
    /// JSON): version → version data; empty when devpi does not have the project.
    pub fn project(&self, project: &str) -> serde_json::Map<String, serde_json::Value> {
        let r = self.json_request("GET", &format!("{INDEX}/{project}?ignore_bases"), None, b"");
        match r.status {
            200 => r.json()["result"].as_object().cloned().unwrap_or_default(),
            404 => serde_json::Map::new(),
            other => panic!("reading {project} from devpi: {other} {}", r.text()),
        }
    }

    /// The versions of `project` devpi holds on the index (sorted).
    pub fn versions(&self, project: &str) -> Vec<String> {
        let mut versions: Vec<String> = self.project(project).keys().cloned().collect();
        versions.sort();
        versions
    }

    /// The release files of `project` on the index: (file name, path of its `+f/` link on
    /// devpi), sorted by name.
    pub fn files(&self, project: &str) -> Vec<(String, String)> {
        let mut files = Vec::new();
        for data in self.project(project).values() {
            for link in data["+links"].as_array().into_iter().flatten() {
                let Some(href) = link["href"].as_str() else {
                    continue;
                };
                let path = href
                    .find("://")
                    .and_then(|i| href[i + 3..].find('/').map(|j| href[i + 3 + j..].to_owned()))
                    .unwrap_or_else(|| href.to_owned());
                let name = path.rsplit('/').next().unwrap_or_default().to_owned();
                files.push((name, path));
            }
        }
        files.sort();
        files
    }

    /// The bytes of a stored file, read from devpi directly (`path` as [`Devpi::files`] gives).
    pub fn file_bytes(&self, path: &str) -> Vec<u8> {
        let r = crate::http::get(self.addr, path);
        assert_eq!(r.status, 200, "reading {path} from devpi: {}", r.text());
        r.body
    }

    /// Every file in devpi's files folder (`<serverdir>/+files`), relative to it, sorted.
    pub fn stored(&self) -> Vec<String> {
        crate::list_tree(&self.serverdir.join("+files"))
    }

    /// Asserts that the index holds exactly `files` (by name, across all its projects), each
    /// byte for byte both as devpi serves it (its `+f/` link) and as it lies in devpi's files
    /// folder, and that the files folder holds nothing else.
    pub fn assert_holds_exactly<P: AsRef<Path>>(&self, files: &[P]) {
        let name = |f: &Path| f.file_name().expect("a file name").to_string_lossy().into_owned();
        let mut expected: Vec<String> = files.iter().map(|f| name(f.as_ref())).collect();
        expected.sort();
        let mut held: Vec<(String, String)> = self.projects().iter().flat_map(|p| self.files(p)).collect();
        held.sort();
        let held_names: Vec<&str> = held.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(held_names, expected, "what the devpi index lists");
        let stored = self.stored();
        assert_eq!(stored.len(), files.len(), "devpi's files folder: {stored:?}");
        for file in files {
            let file = file.as_ref();
            let file_name = name(file);
            let sent = crate::sha256_hex(&std::fs::read(file).expect("distribution"));
            let (_, link) = held.iter().find(|(n, _)| *n == file_name).expect("listed");
            assert_eq!(
                crate::sha256_hex(&self.file_bytes(link)),
                sent,
                "{file_name} as devpi serves it"
            );
            let on_disk = stored
                .iter()
                .find(|s| s.rsplit('/').next() == Some(file_name.as_str()))
                .unwrap_or_else(|| panic!("{file_name} is not in devpi's files folder: {stored:?}"));
            let bytes = std::fs::read(self.serverdir.join("+files").join(on_disk)).expect("stored file");
            assert_eq!(crate::sha256_hex(&bytes), sent, "{file_name} as devpi stored it");
        }
    }

    /// Its log.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// `twine upload` of `files` to `url` (an index URL such as `http://<gateway>/alice/dev/`) as
/// devpi's [`USER`].
pub fn twine_upload(url: &str, files: &[&Path]) -> std::process::Output {
    Command::new(tools().twine())
        .args([
            "upload",
            "--disable-progress-bar",
            "--non-interactive",
            "--repository-url",
            url,
            "-u",
            USER,
            "-p",
            PASSWORD,
        ])
        .args(files)
        .env("COLUMNS", "1000")
        .env("NO_COLOR", "1")
        .output()
        .expect("run twine")
}
