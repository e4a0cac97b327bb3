//! The targets the load goes to, started on loopback and pinned to one core (or, with more
//! than one thread each, on every core): the bench's own sink (the direct backend), nginx in
//! front of it, bare pingora, and `portcullis` in front of it in pass-through and full-policy
//! modes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_e2e::gateway::{Gateway, RegistrySpec};

use crate::procfs;

/// The core targets and their backends run on; the load generator runs on the other.
pub const TARGET_CPU: usize = 0;
/// The core the load generator runs on.
pub const LOAD_CPU: usize = 1;

/// How the targets run: one thread (nginx: one worker) each, pinned with the backend to
/// [`TARGET_CPU`] while the load generator has [`LOAD_CPU`]; or `threads` each (nginx:
/// `threads` workers), all of them and the load generator sharing every core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Proxy threads (nginx workers) per target.
    pub threads: usize,
}

impl Placement {
    /// One pinned thread per target.
    pub const PINNED: Placement = Placement { threads: 1 };

    /// Whether targets and the load generator are pinned to their cores.
    pub fn pinned(self) -> bool {
        self.threads == 1
    }
}

/// Pins every thread of `pid` to `cpu` (`taskset`), so later threads inherit it.
pub fn pin(pid: u32, cpu: usize) {
    let _ = Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .stdout(Stdio::null())
        .status();
}

/// A free loopback address.
fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], portcullis_e2e::free_port()))
}

/// Starts `program args…` (on the target core when pinned) and waits until it listens on
/// `listen`.
fn spawn_listening(
    name: &str,
    program: &Path,
    args: &[&std::ffi::OsStr],
    listen: SocketAddr,
    placement: Placement,
) -> Result<Process, String> {
    let mut command = if placement.pinned() {
        let mut taskset = Command::new("taskset");
        taskset.arg("-c").arg(TARGET_CPU.to_string()).arg(program);
        taskset
    } else {
        Command::new(program)
    };
    let child = command
        .args(args)
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start {name}: {e}"))?;
    let process = Process(child);
    if !wait_for(listen) {
        return Err(format!("{name} did not start"));
    }
    Ok(process)
}

fn wait_for(addr: SocketAddr) -> bool {
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        if std::net::TcpStream::connect(addr).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A child process killed when dropped.
pub struct Process(Child);

impl Process {
    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // The whole tree: killing nginx's master alone would orphan its worker.
        let descendants: Vec<u32> = procfs::tree(self.0.id()).into_iter().skip(1).collect();
        let _ = self.0.kill();
        let _ = self.0.wait();
        for pid in descendants {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
    }
}

/// The sink (`bench sink ADDR`, the `bench` executable beside this one) on the target core.
pub fn start_sink(placement: Placement) -> Result<(Process, SocketAddr), String> {
    let addr = loopback();
    let exe = std::env::current_exe()
        .map_err(|e| format!("current exe: {e}"))?
        .with_file_name("bench");
    let listen = addr.to_string();
    let process = spawn_listening("the sink", &exe, &["sink".as_ref(), listen.as_ref()], addr, placement)?;
    Ok((process, addr))
}

/// The bare pingora proxy (`pingora_baseline`, beside this executable).
pub fn start_pingora_baseline(backend: SocketAddr, placement: Placement) -> Result<(Process, SocketAddr), String> {
    let addr = loopback();
    let exe = std::env::current_exe()
        .map_err(|e| format!("current exe: {e}"))?
        .with_file_name("pingora_baseline");
    let (listen, upstream, threads) = (addr.to_string(), backend.to_string(), placement.threads.to_string());
    let args = [listen.as_ref(), upstream.as_ref(), threads.as_ref()];
    let process = spawn_listening("pingora_baseline", &exe, &args, addr, placement)?;
    Ok((process, addr))
}

/// nginx as an operator configures it in front of an upload backend: as many workers as the
/// gateway has threads, request and response buffering off, HTTP/1.1 keep-alive to the
/// backend, no body size limit, no access log.
pub fn nginx_config(dir: &Path, listen: SocketAddr, backend: SocketAddr, workers: usize) -> String {
    let d = dir.display();
    format!(
        "worker_processes {workers};\ndaemon off;\nmaster_process on;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\nevents {{ worker_connections 32768; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
           client_max_body_size 0;\n  keepalive_requests 10000000;\n  keepalive_timeout 300s;\n\
           upstream backend {{ server {backend}; keepalive 1024; }}\n\
           server {{\n    listen {listen} backlog=16384;\n    location / {{\n      proxy_pass http://backend;\n\
               proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_set_header Host $host;\n\
               proxy_request_buffering off;\n      proxy_buffering off;\n    }}\n  }}\n}}\n"
    )
}

/// nginx from the system package.
pub fn start_nginx(dir: &Path, backend: SocketAddr, placement: Placement) -> Result<(Process, SocketAddr), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{e}"))?;
    let listen = loopback();
    let config = dir.join("nginx.conf");
    std::fs::write(&config, nginx_config(dir, listen, backend, placement.threads)).map_err(|e| format!("{e}"))?;
    let nginx = ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or("nginx is not installed (apt-get install nginx-light or nginx)")?;
    let args = ["-c".as_ref(), config.as_os_str(), "-p".as_ref(), dir.as_os_str()];
    let process = spawn_listening("nginx", &nginx, &args, listen, placement).map_err(|e| {
        format!(
            "{e}: {}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        )
    })?;
    Ok((process, listen))
}

/// The rules of the pass-through gateway: the PEP 740 suites' rules with provenance optional
/// for the attested project (the same as no provenance rule): the GitHub issuer and the
/// trusted publisher that signed the bench's attestation. The gateway refuses attestations
/// from a signer that is no trusted publisher of the project (as PyPI does), rules or not, so
/// this is the least an attested upload needs.
pub static PUBLISHER_ONLY_RULES: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| portcullis_e2e::pep740::rules("optional"));

/// The rules of the full-policy gateway: the PEP 740 suites' rules requiring attestations for
/// the attested project (verified against the production trusted root, signed by its trusted
/// publisher), project rules and deletion rules; every upload is checked against them, the
/// tombstones and the ledger, and recorded.
pub static POLICY_RULES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        r#"{}
[registries.pypi.deletion]
window = "72h"

[[registries.pypi.projects]]
id = "no-internal"
names = ["internal-*"]
action = "deny"
"#,
        portcullis_e2e::pep740::rules("required")
    )
});

/// How a gateway target runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatewayMode {
    /// No rules but [`PUBLISHER_ONLY_RULES`]: routing, streaming, the form parser's file
    /// digest, the (cached) verification of the attestations an upload carries, the ledger,
    /// the decision log line.
    PassThrough,
    /// [`POLICY_RULES`], Sigstore verification cached.
    Policy,
    /// [`POLICY_RULES`], verification cache off (`cache_size = 0`).
    PolicyUncached,
}

/// A gateway (release build) in front of `backend`, with the placement's threads.
pub fn start_gateway(
    dir: &Path,
    backend: SocketAddr,
    mode: GatewayMode,
    fixtures: &Path,
    placement: Placement,
) -> Gateway {
    let mut registry = RegistrySpec::new("pypi", "pypi", backend);
    registry.extra = "max_body_bytes = \"1 GiB\"".into();
    // The idle scenario holds 10 000 kept-alive connections, like nginx's `keepalive_timeout
    // 300s` above: more than the default `max_connections`, for longer than `idle_timeout`.
    let mut builder = Gateway::builder()
        .registry(registry)
        .threads(placement.threads)
        .config("[client]\nmax_connections = 20000\nidle_timeout = \"300s\"\n");
    // Every gateway verifies the attestations an upload carries, rules or not (as PyPI
    // does), so every mode reads the production trusted root from the fixtures: a bench runs
    // offline, and the default (kept current over TUF) would need the network.
    let root = fixtures.join("trusted-roots/public-good-production.trusted_root.json");
    builder = builder.config(&format!(
        "[provenance]\ntrusted_root = {:?}\n{}",
        root.display().to_string(),
        if mode == GatewayMode::PolicyUncached {
            "cache_size = 0\n"
        } else {
            ""
        }
    ));
    builder = builder.rules(if mode == GatewayMode::PassThrough {
        &PUBLISHER_ONLY_RULES
    } else {
        &POLICY_RULES
    });
    let mut gateway = builder.start(dir);
    if placement.pinned() {
        pin(gateway.process().pid(), TARGET_CPU);
    }
    gateway
}
