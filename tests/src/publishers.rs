//! Running the PyPI clients (pdm, poetry, hatch, flit, uv, pip) hermetically: every client runs
//! with `HOME` and the XDG folders in a folder the test owns (pdm, poetry and hatch keep global
//! configuration there; hatch and flit read `~/.pypirc`; pip reads `~/.config/pip`), the keyring
//! disabled, the variables of the caller's environment that configure the clients removed, and
//! HTTP(S) proxies pointing at a closed loopback port for every host but loopback, so that a
//! request to pypi.org would fail rather than leave the machine. Each run is bounded by
//! [`CLIENT_LIMIT`] and logged.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::process::Managed;

/// A proxy nobody listens on (the discard port): any request a client sends to a host other
/// than loopback fails here instead of reaching the network.
pub const NO_NETWORK_PROXY: &str = "http://127.0.0.1:9";

/// How long one client run may take (they take a few seconds at most).
pub const CLIENT_LIMIT: Duration = Duration::from_secs(120);

/// Prefixes of environment variables that configure the clients (or pip and twine, whose
/// settings some of them read), and the CI variables with which uv would try trusted
/// publishing: removed, so that the caller's settings cannot steer a run.
const CLIENT_VARIABLE_PREFIXES: &[&str] = &[
    "PDM_",
    "POETRY_",
    "HATCH_",
    "FLIT_",
    "TWINE_",
    "PIP_",
    "UV_",
    "PYPI_",
    "VIRTUAL_ENV",
    "PYTHON",
    "GITHUB_",
    "ACTIONS_",
    "GITLAB_",
    "CI_",
];

/// The output of a client run (stdout and stderr, interleaved) and whether it exited 0.
pub struct Run {
    /// Whether it exited 0.
    pub success: bool,
    /// Its stdout and stderr, interleaved.
    pub output: String,
}

/// `program`, to be run in `dir` with `home` (created if absent) as `HOME`, isolated from the
/// user's configuration and from the network as the module says.
pub fn hermetic(program: &Path, dir: &Path, home: &Path) -> Command {
    std::fs::create_dir_all(home).expect("client home");
    let mut cmd = Command::new(program);
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if CLIENT_VARIABLE_PREFIXES.iter().any(|p| text.starts_with(p)) || text.to_ascii_lowercase().contains("proxy") {
            cmd.env_remove(&name);
        }
    }
    cmd.current_dir(dir)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_STATE_HOME", home.join(".local/state"))
        .env("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
        .env("NO_COLOR", "1")
        .env("COLUMNS", "1000");
    for proxy in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        cmd.env(proxy, NO_NETWORK_PROXY);
    }
    cmd.env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost");
    cmd
}

/// Runs `cmd` (at most [`CLIENT_LIMIT`]; panics past it), its output logged to
/// `<log_dir>/<what>.log`.
pub fn run(log_dir: &Path, what: &str, cmd: Command) -> Run {
    let log = log_dir.join(format!("{}.log", what.replace(' ', "-")));
    let mut process = Managed::spawn(what, cmd, &log);
    let status = process.wait_exit(CLIENT_LIMIT);
    let output = process.log();
    let status = status.unwrap_or_else(|| panic!("{what} did not finish within {CLIENT_LIMIT:?}:\n{output}"));
    Run {
        success: status.success(),
        output,
    }
}
