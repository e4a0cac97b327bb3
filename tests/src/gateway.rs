//! The real `portcullis` binary, started with a generated config in front of given backends.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::Managed;

/// The `portcullis` binary: `$PORTCULLIS_BIN`, else the one cargo built beside this test.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PORTCULLIS_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/portcullis
    let candidate = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("portcullis"))
        .expect("target folder");
    assert!(
        candidate.exists(),
        "{} is missing: build it first (cargo build -p portcullis --bin portcullis) or set PORTCULLIS_BIN",
        candidate.display()
    );
    candidate
}

/// A gateway with one npm registry named `npm` in front of a fresh recording backend.
pub fn npm_over_sink(rules: &str) -> (crate::sink::Sink, tempfile::TempDir, Gateway) {
    let sink = crate::sink::Sink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = Gateway::builder()
        .registry(RegistrySpec::new("npm", "npm", sink.addr()))
        .rules(rules)
        .start(dir.path());
    (sink, dir, gateway)
}

/// Runs `portcullis check-config FILE`; returns the exit code, stdout and stderr.
pub fn check_config(file: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(binary())
        .arg("check-config")
        .arg(file)
        .output()
        .expect("run check-config");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `portcullis check-config` on `file` with extra environment variables; exit code,
/// stdout and stderr.
pub fn check_config_with_env(file: &Path, env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = Command::new(binary())
        .arg("check-config")
        .arg(file)
        .envs(env.iter().copied())
        .output()
        .expect("run check-config");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One registry in a generated config.
#[derive(Debug, Clone)]
pub struct RegistrySpec {
    /// Name.
    pub name: String,
    /// `pypi` or `npm`.
    pub protocol: String,
    /// Backend address.
    pub upstream: SocketAddr,
    /// Extra TOML lines for the `[[registry]]` table (e.g. `path_prefix = "/pypi"`).
    pub extra: String,
    /// Extra TOML lines for its `[registry.upstream]` table.
    pub upstream_extra: String,
}

impl RegistrySpec {
    /// A registry with defaults.
    pub fn new(name: &str, protocol: &str, upstream: SocketAddr) -> RegistrySpec {
        RegistrySpec {
            name: name.into(),
            protocol: protocol.into(),
            upstream,
            extra: String::new(),
            upstream_extra: String::new(),
        }
    }
}

/// A running gateway.
pub struct Gateway {
    /// Its work folder (config, rules, log).
    pub dir: PathBuf,
    addr: SocketAddr,
    admin: SocketAddr,
    process: Managed,
}

/// Builder for a gateway.
pub struct GatewayBuilder {
    registries: Vec<RegistrySpec>,
    rules: String,
    extra_config: String,
    admin_config: String,
    wait_ready: bool,
    tls: Option<(PathBuf, PathBuf)>,
    threads: usize,
}

/// The admin token [`admin_token_config`] configures.
pub const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789";

/// The `[admin]` lines enabling the admin writes with [`ADMIN_TOKEN`] (the token file is
/// written into `dir`).
pub fn admin_token_config(dir: &Path) -> String {
    std::fs::create_dir_all(dir).expect("dir");
    let admin_token = dir.join("admin-token");
    std::fs::write(&admin_token, format!("{ADMIN_TOKEN}\n")).expect("admin token");
    format!("token_file = {:?}\n", admin_token.display().to_string())
}

impl Gateway {
    /// Moves the gateway's clock to `offset_seconds` after the system clock (the gateway must
    /// run with `[testing] adjustable_clock = true` and [`admin_token_config`]).
    pub fn set_clock_offset(&self, offset_seconds: i64) {
        let body = serde_json::json!({"offset_seconds": offset_seconds}).to_string();
        let response = crate::http::request(
            self.admin,
            "POST",
            "/testing/clock",
            &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
            body.as_bytes(),
        );
        assert_eq!(response.status, 200, "moving the clock: {}", response.text());
    }

    /// The audit records of a project, newest first, once at least `count` are there (records
    /// are written when a request ends, just after the client has its answer).
    pub fn audit(&self, registry: &str, project: &str, count: usize) -> Vec<serde_json::Value> {
        let mut records = Vec::new();
        crate::wait_until(Duration::from_secs(5), || {
            records = self.audit_now(registry, project);
            records.len() >= count
        });
        records
    }

    fn audit_now(&self, registry: &str, project: &str) -> Vec<serde_json::Value> {
        let response = crate::http::request(
            self.admin,
            "GET",
            &format!(
                "/audit?registry={registry}&project={}",
                project.replace('@', "%40").replace('/', "%2F")
            ),
            &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
            b"",
        );
        assert_eq!(response.status, 200, "audit: {}", response.text());
        response.json()["records"].as_array().cloned().unwrap_or_default()
    }

    /// Starts building a gateway.
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder {
            registries: Vec::new(),
            rules: String::new(),
            extra_config: String::new(),
            admin_config: String::new(),
            wait_ready: true,
            tls: None,
            threads: 2,
        }
    }

    /// The public address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin address.
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    /// `http://<addr>` .
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The rules file.
    pub fn rules_path(&self) -> PathBuf {
        self.dir.join("rules.toml")
    }

    /// Replaces the rules file (atomically, by rename, as editors and ConfigMaps do).
    pub fn write_rules(&self, text: &str) {
        let tmp = self.dir.join(".rules.toml.tmp");
        std::fs::write(&tmp, text).expect("write rules");
        std::fs::rename(&tmp, self.rules_path()).expect("rename rules");
    }

    /// The current rules revision according to `/rules`.
    pub fn revision(&self) -> String {
        let r = crate::http::get(self.admin, "/rules");
        r.json()["revision"].as_str().unwrap_or_default().to_owned()
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> String {
        crate::http::get(self.admin, "/metrics").text()
    }

    /// The value of one metric sample (exact label set as rendered), 0 when absent.
    pub fn metric(&self, sample: &str) -> f64 {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(sample).and_then(|rest| rest.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    /// Waits (up to 5 s: the log line is written just after the response) until at least `n`
    /// decision lines are logged, and returns them all.
    pub fn decisions(&self, n: usize) -> Vec<serde_json::Value> {
        let mut found = Vec::new();
        crate::wait_until(Duration::from_secs(5), || {
            found = self
                .log_events()
                .into_iter()
                .filter(|e| e["message"] == "decision")
                .collect();
            found.len() >= n
        });
        found
    }

    /// Waits (up to 5 s: metrics are recorded just after the response) until a sample reaches
    /// `at_least`, and returns its value.
    pub fn metric_reaching(&self, sample: &str, at_least: f64) -> f64 {
        let mut value = 0.0;
        crate::wait_until(Duration::from_secs(5), || {
            value = self.metric(sample);
            value >= at_least
        });
        value
    }

    /// The gateway's log (JSON lines).
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Log lines parsed as JSON.
    pub fn log_events(&self) -> Vec<serde_json::Value> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Starts a second process on the same configuration with `--upgrade`: it takes over the
    /// listeners once this one gets `SIGQUIT` (pingora's graceful upgrade).
    pub fn spawn_upgrade(&self) -> Managed {
        let mut cmd = Command::new(binary());
        cmd.arg("run")
            .arg("--config")
            .arg(self.dir.join("portcullis.toml"))
            .arg("--upgrade");
        Managed::spawn("portcullis (upgrade)", cmd, &self.dir.join("portcullis-upgraded.log"))
    }

    /// Sends `SIGHUP` (reload the rules).
    pub fn signal_hup(&self) {
        self.process.signal("HUP");
    }

    /// The process.
    pub fn process(&mut self) -> &mut Managed {
        &mut self.process
    }
}

impl GatewayBuilder {
    /// Adds a registry.
    pub fn registry(mut self, spec: RegistrySpec) -> Self {
        self.registries.push(spec);
        self
    }

    /// Sets the rules text.
    pub fn rules(mut self, text: &str) -> Self {
        self.rules = text.to_owned();
        self
    }

    /// Appends raw TOML to the config (e.g. `[server]` settings).
    pub fn config(mut self, text: &str) -> Self {
        self.extra_config.push_str(text);
        self
    }

    /// Appends raw TOML lines to the `[admin]` table (e.g. `token_file = "..."`).
    pub fn admin_config(mut self, text: &str) -> Self {
        self.admin_config.push_str(text);
        self
    }

    /// Serve the public listener with TLS from these PEM files.
    pub fn tls(mut self, certificate: &Path, key: &Path) -> Self {
        self.tls = Some((certificate.to_path_buf(), key.to_path_buf()));
        self
    }

    /// Proxy worker threads (default 2).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Do not wait for `/readyz` (for tests with a dead backend).
    pub fn without_waiting_for_ready(mut self) -> Self {
        self.wait_ready = false;
        self
    }

    /// Writes the files into `dir` and starts the gateway.
    pub fn start(self, dir: &Path) -> Gateway {
        std::fs::create_dir_all(dir).expect("gateway dir");
        std::fs::write(dir.join("rules.toml"), &self.rules).expect("rules");
        for _attempt in 0..3 {
            let addr: SocketAddr = format!("127.0.0.1:{}", crate::free_port()).parse().expect("addr");
            let admin: SocketAddr = format!("127.0.0.1:{}", crate::free_port()).parse().expect("addr");
            let mut config = format!(
                "[server]\nthreads = {threads}\ngrace_period = \"5s\"\nshutdown_timeout = \"5s\"\npid_file = \"{dir}/portcullis.pid\"\nupgrade_socket = \"{dir}/upgrade.sock\"\n\
                 [[listener]]\naddress = \"{addr}\"\n{tls}\n[admin]\naddress = \"{admin}\"\n{admin_extra}\n\
                 [rules]\nfiles = [\"rules.toml\"]\ndebounce = \"100ms\"\n[logging]\nformat = \"json\"\nlevel = \"info\"\n{extra}\n",
                dir = dir.display(),
                threads = self.threads,
                extra = self.extra_config,
                admin_extra = self.admin_config,
                tls = match &self.tls {
                    Some((cert, key)) => format!("tls = {{ certificate = {:?}, key = {:?} }}", cert.display().to_string(), key.display().to_string()),
                    None => String::new(),
                },
            );
            for r in &self.registries {
                config.push_str(&format!(
                    "[[registry]]\nname = \"{}\"\nprotocol = \"{}\"\n{}\n[registry.upstream]\naddress = \"{}\"\nhealth_check_interval = \"500ms\"\n{}\n",
                    r.name, r.protocol, r.extra, r.upstream, r.upstream_extra
                ));
            }
            let config_path = dir.join("portcullis.toml");
            std::fs::write(&config_path, config).expect("config");
            let mut cmd = Command::new(binary());
            cmd.arg("run").arg("--config").arg(&config_path);
            let mut process = Managed::spawn("portcullis", cmd, &dir.join("portcullis.log"));
            let wait_ready = self.wait_ready;
            let up = crate::wait_until(Duration::from_secs(20), || {
                process.try_exit().is_none()
                    && std::net::TcpStream::connect(admin).is_ok()
                    && (!wait_ready || crate::http::get(admin, "/readyz").status == 200)
                    && std::net::TcpStream::connect(addr).is_ok()
            });
            if up {
                return Gateway {
                    dir: dir.to_path_buf(),
                    addr,
                    admin,
                    process,
                };
            }
            eprintln!("gateway start attempt failed:\n{}", process.log());
        }
        panic!("portcullis did not start; see {}", dir.join("portcullis.log").display());
    }
}

/// Makes an upload-token signing key with `portcullis keygen` in `dir` and returns the
/// `[upload_tokens]` configuration that uses it (key id `k1`).
pub fn upload_token_config(dir: &Path) -> String {
    std::fs::create_dir_all(dir).expect("key dir");
    let key = dir.join("k1.pem");
    if !key.exists() {
        let out = Command::new(binary())
            .arg("keygen")
            .arg(&key)
            .output()
            .expect("run portcullis keygen");
        assert!(out.status.success(), "keygen: {}", String::from_utf8_lossy(&out.stderr));
    }
    format!(
        "[upload_tokens]\nsigning_key = \"k1\"\nkeys = [{{ id = \"k1\", private_key_file = {:?} }}]\n",
        key.display().to_string()
    )
}

/// `[upload_tokens]` (a fresh key in `key_dir`) and `[trusted_publishing]` trusting the issuers'
/// CA file `ca_file`; further `[trusted_publishing]` lines may follow.
pub fn trusted_publishing_config(key_dir: &Path, ca_file: &Path) -> String {
    format!(
        "{}[trusted_publishing]\nca_file = {:?}\n",
        upload_token_config(key_dir),
        ca_file.display().to_string()
    )
}
