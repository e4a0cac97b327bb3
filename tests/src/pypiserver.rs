//! A real pypiserver with htpasswd auth for uploads, on a loopback port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::Managed;
use crate::tools::tools;

/// The upload user and password configured in pypiserver.
pub const USER: &str = "alice";
/// The upload password.
pub const PASSWORD: &str = "s3cret-backend";

/// A running pypiserver.
pub struct Pypiserver {
    /// Where it stores packages (flat: `<dir>/<filename>`).
    pub packages: PathBuf,
    addr: SocketAddr,
    process: Managed,
    server: String,
}

impl Pypiserver {
    /// Starts pypiserver under `work` (packages in `work/packages`) on its default server
    /// (waitress, which drops a request whose body ends early).
    pub fn start(work: &Path) -> Pypiserver {
        Self::start_on(work, "auto")
    }

    /// Starts pypiserver on the `wsgiref` server, what a plain `pip install pypiserver` runs
    /// without waitress: it answers and *stores* a Content-Length upload cut short by a FIN.
    pub fn start_wsgiref(work: &Path) -> Pypiserver {
        Self::start_on(work, "wsgiref")
    }

    fn start_on(work: &Path, server: &str) -> Pypiserver {
        let tools = tools();
        let packages = work.join("packages");
        std::fs::create_dir_all(&packages).expect("packages dir");
        let htpasswd = work.join("htpasswd");
        let status = Command::new(tools.python())
            .arg("-c")
            .arg(format!(
                "from passlib.apache import HtpasswdFile as H; h=H({:?}, new=True, default_scheme='apr_md5_crypt'); h.set_password({USER:?}, {PASSWORD:?}); h.save()",
                htpasswd.display().to_string()
            ))
            .status()
            .expect("write htpasswd");
        assert!(status.success(), "writing htpasswd failed");
        for _attempt in 0..3 {
            let port = crate::free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
            let mut cmd = Command::new(tools.pypi_server());
            cmd.args(["run", "-p", &port.to_string(), "-i", "127.0.0.1", "--server", server])
                .args(["-a", "update", "--disable-fallback", "-P"])
                .arg(&htpasswd)
                .arg(&packages);
            let mut process = Managed::spawn("pypiserver", cmd, &work.join("pypiserver.log"));
            let up = crate::wait_until(Duration::from_secs(20), || {
                process.try_exit().is_none()
                    && std::net::TcpStream::connect(addr).is_ok()
                    && crate::http::get(addr, "/health").status == 200
            });
            if up {
                return Pypiserver {
                    packages,
                    addr,
                    process,
                    server: server.to_owned(),
                };
            }
        }
        panic!(
            "pypiserver did not start; see {}",
            work.join("pypiserver.log").display()
        );
    }

    /// Kills the server (SIGKILL, as a crash or an OOM kill would) and waits for it to exit.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts the server again after [`Pypiserver::kill`], on the same port, package folder
    /// and htpasswd file; waits (up to 20 s) until `/health` answers.
    pub fn start_again(&mut self) {
        let work = self.packages.parent().expect("work folder").to_path_buf();
        let port = self.addr.port().to_string();
        let addr = self.addr;
        // The port may stay taken for a moment after the kill: a few bounded attempts.
        for _attempt in 0..5 {
            let mut cmd = Command::new(tools().pypi_server());
            cmd.args(["run", "-p", &port, "-i", "127.0.0.1", "--server", &self.server])
                .args(["-a", "update", "--disable-fallback", "-P"])
                .arg(work.join("htpasswd"))
                .arg(&self.packages);
            self.process = Managed::spawn("pypiserver", cmd, &work.join("pypiserver.log"));
            let process = &mut self.process;
            let up = crate::wait_until(Duration::from_secs(20), || {
                process.try_exit().is_none()
                    && std::net::TcpStream::connect(addr).is_ok()
                    && crate::http::get(addr, "/health").status == 200
            });
            if up {
                return;
            }
            self.process.kill();
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!(
            "pypiserver did not start again on {addr}; see {}",
            work.join("pypiserver.log").display()
        );
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Files stored.
    pub fn stored(&self) -> Vec<String> {
        crate::list_files(&self.packages)
    }

    /// Its log.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Asserts that pypiserver stores exactly `files` (by name), each byte for byte.
    pub fn assert_holds_exactly<P: AsRef<Path>>(&self, files: &[P]) {
        let name = |f: &Path| f.file_name().expect("a file name").to_string_lossy().into_owned();
        let mut expected: Vec<String> = files.iter().map(|f| name(f.as_ref())).collect();
        expected.sort();
        assert_eq!(self.stored(), expected, "what pypiserver stores");
        for file in files {
            let file = file.as_ref();
            let sent = std::fs::read(file).expect("distribution");
            let stored = std::fs::read(self.packages.join(name(file))).expect("stored file");
            assert_eq!(
                crate::sha256_hex(&stored),
                crate::sha256_hex(&sent),
                "{} changed on the way",
                name(file)
            );
        }
    }
}

/// `twine upload` of `files` to `url` with pypiserver's test credentials.
pub fn twine_upload(url: &str, files: &[&Path]) -> std::process::Output {
    Command::new(tools().twine())
        .args([
            "upload",
            "--disable-progress-bar",
            "--non-interactive",
            "--repository-url",
            url,
            "-u",
        ])
        .arg(USER)
        .arg("-p")
        .arg(PASSWORD)
        .args(files)
        .env("COLUMNS", "1000")
        .env("NO_COLOR", "1")
        .output()
        .expect("run twine")
}

/// A PyPI upload form for `<name>-<version>.tar.gz` (content `sdist <version>`) posted to
/// `addr` with pypiserver's test credentials.
pub fn upload_sdist(addr: SocketAddr, name: &str, version: &str) -> crate::http::Response {
    let filename = format!("{name}-{version}.tar.gz");
    let form = crate::http::Form::pypi_upload(name, version, &filename, format!("sdist {version}").as_bytes());
    let auth = crate::http::basic_auth(USER, PASSWORD);
    crate::http::request(
        addr,
        "POST",
        "/",
        &[("content-type", &form.content_type()), ("authorization", &auth)],
        &form.body,
    )
}

/// pypiserver's `remove_pkg` form for `name` (as its file names spell it) `version`, posted to
/// `addr` with the test credentials.
pub fn remove_version(addr: SocketAddr, name: &str, version: &str) -> crate::http::Response {
    let form = crate::http::Form::pypi_remove(name, version);
    let auth = crate::http::basic_auth(USER, PASSWORD);
    crate::http::request(
        addr,
        "POST",
        "/",
        &[("content-type", &form.content_type()), ("authorization", &auth)],
        &form.body,
    )
}
