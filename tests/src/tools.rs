//! The real clients and backends, installed once per machine by `tests/tools/install.sh`
//! into a folder the tests own (`$PORTCULLIS_TOOLS`, default `~/.cache/portcullis/tools`).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Paths of the installed tools.
#[derive(Debug, Clone)]
pub struct Tools {
    /// The tools folder.
    pub dir: PathBuf,
}

impl Tools {
    /// The venv's Python.
    pub fn python(&self) -> PathBuf {
        self.dir.join("venv/bin/python")
    }
    /// `pypi-server`.
    pub fn pypi_server(&self) -> PathBuf {
        self.dir.join("venv/bin/pypi-server")
    }
    /// `twine`.
    pub fn twine(&self) -> PathBuf {
        self.dir.join("venv/bin/twine")
    }
    /// `uv` (Astral's installer and publisher, from its PyPI wheel).
    pub fn uv(&self) -> PathBuf {
        self.dir.join("venv/bin/uv")
    }
    /// `pdm` (its `publish` writes its own multipart form).
    pub fn pdm(&self) -> PathBuf {
        self.dir.join("venv/bin/pdm")
    }
    /// `poetry`.
    pub fn poetry(&self) -> PathBuf {
        self.dir.join("venv/bin/poetry")
    }
    /// `hatch`.
    pub fn hatch(&self) -> PathBuf {
        self.dir.join("venv/bin/hatch")
    }
    /// `flit`.
    pub fn flit(&self) -> PathBuf {
        self.dir.join("venv/bin/flit")
    }
    /// `devpi-server` (in its own venv).
    pub fn devpi_server(&self) -> PathBuf {
        self.dir.join("devpi-venv/bin/devpi-server")
    }
    /// `devpi-init`, which creates a devpi server folder.
    pub fn devpi_init(&self) -> PathBuf {
        self.dir.join("devpi-venv/bin/devpi-init")
    }
    /// yarn 1 (`yarn publish`): the `yarn` package's own launcher, not `.bin/yarn`, which
    /// `@yarnpkg/cli-dist` (also a `yarn` bin) takes over in the shared `node_modules`.
    pub fn yarn1(&self) -> PathBuf {
        self.dir.join("node/node_modules/yarn/bin/yarn")
    }
    /// yarn berry's single-file CLI (`node <this> npm publish`), from `@yarnpkg/cli-dist`.
    pub fn yarn_berry_js(&self) -> PathBuf {
        self.dir.join("node/node_modules/@yarnpkg/cli-dist/bin/yarn.js")
    }
    /// `pnpm`.
    pub fn pnpm(&self) -> PathBuf {
        self.dir.join("node/node_modules/.bin/pnpm")
    }
    /// `verdaccio`.
    pub fn verdaccio(&self) -> PathBuf {
        self.dir.join("node/node_modules/.bin/verdaccio")
    }
}

/// Installs (once per test process; the script itself is idempotent and locked) and returns the tools.
pub fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let dir = tools_dir();
        let script = crate::repo_root().join("tests/tools/install.sh");
        let output = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .output()
            .expect("run tests/tools/install.sh");
        assert!(
            output.status.success(),
            "tests/tools/install.sh failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Tools { dir }
    })
}

/// The checkers of `deploy/` (kubectl with kustomize, kubernetes-validate, hadolint), installed
/// once per test process by `tests/tools/install.sh --deploy`; returns their `bin` folder.
pub fn deploy_tools() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| install_section("--deploy", "deploy-venv/bin"))
}

/// The Python dependencies of the RSTUF API and worker (`tests/src/rstuf.rs`), installed once
/// per test process by `tests/tools/install.sh --rstuf`; returns their venv's `bin` folder.
pub fn rstuf_tools() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| install_section("--rstuf", "rstuf-venv/bin"))
}

/// Runs `install.sh <flag>` (idempotent and locked) and returns `bin` under the tools folder.
fn install_section(flag: &str, bin: &str) -> PathBuf {
    let dir = tools_dir();
    let output = Command::new("bash")
        .arg(crate::repo_root().join("tests/tools/install.sh"))
        .arg(flag)
        .arg(&dir)
        .output()
        .unwrap_or_else(|e| panic!("run tests/tools/install.sh {flag}: {e}"));
    assert!(
        output.status.success(),
        "tests/tools/install.sh {flag} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    dir.join(bin)
}

/// `$PORTCULLIS_TOOLS`, default `~/.cache/portcullis/tools`.
fn tools_dir() -> PathBuf {
    std::env::var_os("PORTCULLIS_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache/portcullis/tools")
        })
}

/// Writes test distributions with `tests/tools/make_dists.py`; returns (wheel, sdist).
pub fn make_dists(out: &std::path::Path, name: &str, version: &str, pad_bytes: Option<u64>) -> (PathBuf, PathBuf) {
    let mut cmd = Command::new("python3");
    cmd.arg(crate::repo_root().join("tests/tools/make_dists.py"))
        .arg(out)
        .arg(name)
        .arg(version);
    if let Some(size) = pad_bytes {
        cmd.arg("--size").arg(size.to_string());
    }
    let output = cmd.output().expect("run make_dists.py");
    assert!(
        output.status.success(),
        "make_dists.py: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let mut paths = text.lines().map(PathBuf::from);
    let wheel = paths.next().expect("wheel path");
    let sdist = paths.next().expect("sdist path");
    (wheel, sdist)
}
