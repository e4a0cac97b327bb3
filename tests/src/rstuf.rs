//! The real Repository Service for TUF on loopback: its API (FastAPI under uvicorn) and worker
//! (two Celery workers) run from their MIT source snapshots in `$PORTCULLIS_RSTUF_SOURCES`
//! (no registry this machine reaches publishes them; CI names them, `scripts/test` leaves these
//! tests out when the variable is unset), copied into the test's folder, with their Python dependencies
//! from `tests/tools/rstuf-requirements.txt` (installed once by `install.sh --rstuf`), Redis as
//! broker and result store, a throwaway PostgreSQL cluster, and the metadata written to a local
//! folder that a static HTTP server publishes. `tests/tools/RSTUF.md` says how each piece runs.
//!
//! The repository is bootstrapped with root metadata made by python-tuf
//! (`tests/tools/rstuf_bootstrap.py`): one offline root key, one online key, 4 hashed bins.
//! python-tuf's ngclient (`tests/tools/tuf_client.py`) verifies downloads against what it
//! publishes.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::postgres::Postgres;
use crate::tools::tools;

/// A running RSTUF; every process is killed (by process group) when dropped.
pub struct Rstuf {
    dir: PathBuf,
    api_port: u16,
    metadata_port: u16,
    redis_port: u16,
    database: String,
    processes: Vec<(String, Child)>,
    _postgres: Postgres,
}

/// The RSTUF venv's `bin` folder.
fn venv_bin() -> &'static PathBuf {
    crate::tools::rstuf_tools()
}

/// Where the RSTUF source snapshots are: `$PORTCULLIS_RSTUF_SOURCES`, a folder holding
/// `rstuf-api/` and `rstuf-worker/`.
fn sources() -> PathBuf {
    let dir = std::env::var_os("PORTCULLIS_RSTUF_SOURCES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "the TUF-feed tests run RSTUF from its source snapshots, which no registry this machine \
             reaches publishes: set PORTCULLIS_RSTUF_SOURCES to the folder holding rstuf-api/ and \
             rstuf-worker/ (tests/tools/RSTUF.md)"
            )
        });
    assert!(
        dir.join("rstuf-api").is_dir() && dir.join("rstuf-worker").is_dir(),
        "PORTCULLIS_RSTUF_SOURCES={} holds no rstuf-api/ and rstuf-worker/",
        dir.display()
    );
    dir
}

/// The worker's Redis-port shim (`tests/tools/RSTUF.md`, "Errors" #3): the worker's target lock
/// ignores `RSTUF_REDIS_SERVER_PORT` and would go to 6379.
const REDIS_PORT_SHIM: &str = r#"import os
try:
    import redis
    from urllib.parse import urlparse
    _orig = redis.Redis.from_url.__func__
    def _from_url(cls, url, **kw):
        port = os.environ.get("RSTUF_REDIS_SERVER_PORT")
        if port and "port" not in kw and urlparse(url).port is None:
            kw["port"] = int(port)
        return _orig(cls, url, **kw)
    redis.Redis.from_url = classmethod(_from_url)
except Exception:
    pass
"#;

impl Rstuf {
    /// Starts RSTUF in `work` and bootstraps its repository.
    pub fn start(work: &Path) -> Rstuf {
        let bin = venv_bin().clone();
        std::fs::create_dir_all(work).expect("work dir");
        let dir = work.canonicalize().expect("absolute work dir");
        for part in ["rstuf-api", "rstuf-worker"] {
            let status = Command::new("cp")
                .arg("-r")
                .arg(sources().join(part))
                .arg(dir.join(part))
                .status()
                .expect("cp");
            assert!(status.success(), "copying {part} from {}", sources().display());
        }
        for sub in ["storage", "keys", "data", "shim"] {
            std::fs::create_dir_all(dir.join(sub)).expect("dir");
        }
        std::fs::write(dir.join("shim/sitecustomize.py"), REDIS_PORT_SHIM).expect("shim");
        let postgres = Postgres::start();
        let database = postgres
            .create_database("rstuf")
            .replacen("postgres://", "postgresql://", 1);
        let mut rstuf = Rstuf {
            api_port: crate::free_port(),
            metadata_port: crate::free_port(),
            redis_port: crate::free_port(),
            database,
            processes: Vec::new(),
            _postgres: postgres,
            dir,
        };
        let mut redis = Command::new("redis-server");
        redis
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--port"])
            .arg(rstuf.redis_port.to_string());
        rstuf.spawn("redis", redis);
        assert!(
            crate::wait_until(Duration::from_secs(10), || std::net::TcpStream::connect((
                "127.0.0.1",
                rstuf.redis_port
            ))
            .is_ok()),
            "redis did not start"
        );
        let python = tools().python();
        let keys = Command::new(&python)
            .arg(crate::repo_root().join("tests/tools/rstuf_bootstrap.py"))
            .arg("keys")
            .arg(rstuf.dir.join("keys"))
            .output()
            .expect("rstuf_bootstrap.py keys");
        assert!(keys.status.success(), "keys: {}", String::from_utf8_lossy(&keys.stderr));
        let migrate = rstuf
            .python_command(&bin.join("alembic"), "rstuf-worker")
            .args(["upgrade", "head"])
            .output()
            .expect("alembic");
        assert!(
            migrate.status.success(),
            "alembic upgrade head: {}",
            String::from_utf8_lossy(&migrate.stderr)
        );
        for (name, queue) in [("worker", "metadata_repository"), ("jobs", "rstuf_internals")] {
            let mut worker = rstuf.python_command(&bin.join("celery"), "rstuf-worker");
            worker
                .args(["-A", "app", "worker", "--pool=solo", "-l", "info", "-Q", queue, "-n"])
                .arg(format!("{name}@portcullis-tests"));
            rstuf.spawn(name, worker);
        }
        rstuf.start_api();
        let mut metadata = Command::new(&python);
        metadata
            .args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
            .arg(rstuf.dir.join("storage"))
            .arg(rstuf.metadata_port.to_string());
        rstuf.spawn("metadata", metadata);
        let bootstrap = Command::new(&python)
            .arg(crate::repo_root().join("tests/tools/rstuf_bootstrap.py"))
            .arg("bootstrap")
            .arg(rstuf.dir.join("keys"))
            .arg(rstuf.api_url())
            .output()
            .expect("rstuf_bootstrap.py bootstrap");
        assert!(
            bootstrap.status.success(),
            "bootstrap: {}\n{}",
            String::from_utf8_lossy(&bootstrap.stderr),
            rstuf.logs()
        );
        rstuf
    }

    /// Starts (again) the API; waits until it answers.
    pub fn start_api(&mut self) {
        let bin = venv_bin().clone();
        let mut api = self.python_command(&bin.join("uvicorn"), "rstuf-api");
        api.args(["app:rstuf_app", "--host", "127.0.0.1", "--port"])
            .arg(self.api_port.to_string());
        self.spawn("api", api);
        let url = "/api/v1/bootstrap/";
        let port = self.api_port;
        assert!(
            crate::wait_until(Duration::from_secs(60), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                    && crate::http::get(format!("127.0.0.1:{port}").parse().expect("addr"), url).status == 200
            }),
            "the RSTUF API did not start:\n{}",
            self.logs()
        );
    }

    /// Kills the API (SIGKILL to its process group), as an outage.
    pub fn stop_api(&mut self) {
        if let Some(i) = self.processes.iter().position(|(n, _)| n == "api") {
            let (_, mut child) = self.processes.remove(i);
            kill_group(&mut child);
        }
    }

    /// `http://127.0.0.1:<port>`, the API's base URL.
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    /// `http://127.0.0.1:<port>/`, where the published metadata is served.
    pub fn metadata_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.metadata_port)
    }

    /// The trusted root a client starts from (root metadata version 1).
    pub fn root_file(&self) -> PathBuf {
        self.dir.join("keys/1.root.json")
    }

    /// Every target of the newest version of each hashed bin, as published: path → target info.
    pub fn targets(&self) -> serde_json::Map<String, Value> {
        let storage = self.dir.join("storage");
        let mut newest: std::collections::BTreeMap<String, (u64, PathBuf)> = Default::default();
        for entry in std::fs::read_dir(&storage).expect("storage").flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((version, role)) = name.strip_suffix(".json").and_then(|n| n.split_once('.')) else {
                continue;
            };
            let (Ok(version), true) = (version.parse::<u64>(), role.starts_with("bins-")) else {
                continue;
            };
            if newest.get(role).is_none_or(|(v, _)| *v < version) {
                newest.insert(role.to_owned(), (version, entry.path()));
            }
        }
        let mut targets = serde_json::Map::new();
        for (_, path) in newest.values() {
            let bin: Value = serde_json::from_slice(&std::fs::read(path).expect("bin")).expect("bin json");
            if let Some(t) = bin["signed"]["targets"].as_object() {
                targets.extend(t.clone());
            }
        }
        targets
    }

    /// python-tuf's ngclient's verdict on each of `targets`, downloaded from `targets_url`.
    pub fn verify(&self, targets_url: &str, targets: &[&str]) -> Value {
        let work = self.dir.join(format!("client-{}", crate::free_port()));
        let output = Command::new(tools().python())
            .arg(crate::repo_root().join("tests/tools/tuf_client.py"))
            .arg(self.root_file())
            .arg(self.metadata_url())
            .arg(targets_url)
            .arg(&work)
            .args(targets)
            .output()
            .expect("tuf_client.py");
        assert!(
            output.status.success(),
            "tuf_client.py failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("tuf_client.py's verdicts")
    }

    /// The logs of every process, for failure messages.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for (name, _) in &self.processes {
            let text = std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
            let tail: String = text
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            all.push_str(&format!("--- {name} ---\n{tail}\n"));
        }
        all
    }

    fn python_command(&self, program: &Path, cwd: &str) -> Command {
        let mut command = Command::new(program);
        command
            .current_dir(self.dir.join(cwd))
            .env("PATH", format!("{}:/usr/bin:/bin", venv_bin().display()))
            .env("PYTHONPATH", self.dir.join("shim"))
            .env("PYTHONWARNINGS", "ignore")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env(
                "RSTUF_BROKER_SERVER",
                format!("redis://127.0.0.1:{}/2", self.redis_port),
            )
            .env("RSTUF_REDIS_SERVER", "redis://127.0.0.1")
            .env("RSTUF_REDIS_SERVER_PORT", self.redis_port.to_string())
            .env("RSTUF_REDIS_SERVER_DB_RESULT", "0")
            .env("RSTUF_REDIS_SERVER_DB_REPO_SETTINGS", "1")
            .env("RSTUF_DB_SERVER", &self.database)
            .env("RSTUF_STORAGE_BACKEND", "LocalStorage")
            .env("RSTUF_LOCAL_STORAGE_BACKEND_PATH", self.dir.join("storage"))
            .env("RSTUF_ONLINE_KEY_DIR", self.dir.join("keys"))
            .env("RSTUF_WORKER_ID", "portcullis-tests")
            .env("DATA_DIR", self.dir.join("data"));
        command
    }

    fn spawn(&mut self, name: &str, mut command: Command) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.log")))
            .expect("log");
        let err = log.try_clone().expect("log");
        command.stdin(Stdio::null()).stdout(log).stderr(err).process_group(0);
        let child = command.spawn().unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        self.processes.push((name.to_owned(), child));
    }
}

/// SIGKILL to the child's whole process group, then reaps it.
fn kill_group(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Rstuf {
    fn drop(&mut self) {
        for (_, child) in self.processes.iter_mut().rev() {
            kill_group(child);
        }
    }
}
