//! The publishing front ends besides twine and uv — pdm, poetry, hatch and flit — run
//! unmodified through the gateway to a real pypiserver, each authenticating with pypiserver's
//! own user and password by its documented flags or environment variables. Each writes its own
//! multipart form (the test's comment says how it differs from the others); for each, the test
//! checks that pypiserver stores exactly the files the client sent, byte for byte, that the
//! gateway logged an allow decision naming each file and the SHA-256 it computed, and that a
//! project a rule denies is refused: the client exits non-zero showing the gateway's reason,
//! and pypiserver stores nothing of it. With poetry and hatch, an upload over the rules' size
//! limit (refused from its `Content-Length`, while the client is still sending) likewise.
//!
//! Hermetic: every client runs with `HOME` and the XDG folders in the test's temporary folder
//! (pdm, poetry and hatch keep global configuration there; hatch and flit read `~/.pypirc`),
//! the keyring disabled, publishing variables of the caller's environment removed, and HTTP(S)
//! proxies pointing at a closed loopback port for every host but loopback, so that a request
//! to pypi.org would fail rather than leave the machine. Nothing is built in an isolated
//! environment (that would fetch build backends from PyPI): pdm, poetry and hatch upload the
//! distributions `tools::make_dists` writes; flit always builds, with flit_core in its own venv.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use portcullis_e2e::gateway::{Gateway, RegistrySpec};
use portcullis_e2e::process::Managed;
use portcullis_e2e::pypiserver::{self, Pypiserver};
use portcullis_e2e::sha256_hex;
use portcullis_e2e::tools::{make_dists, tools};

const RULES: &str = r#"
[registries.pypi]
max_upload_bytes = "1 MiB"
[[registries.pypi.projects]]
id = "no-internal"
names = ["internal-*"]
action = "deny"
message = "internal packages go to the private index"
"#;

/// The project the rules deny.
const DENIED: &str = "internal-tools";

/// What the gateway answers for [`DENIED`]: the reason phrase and the body's `message`.
const DENIED_REASON: &str =
    "writes to project 'internal-tools' are not allowed here: internal packages go to the private index";

/// A proxy nobody listens on (the discard port): any request a client sends to a host other
/// than loopback fails here instead of reaching the network.
const NO_NETWORK_PROXY: &str = "http://127.0.0.1:9";

/// How long one client run may take (they take about a second).
const CLIENT_LIMIT: Duration = Duration::from_secs(120);

/// Prefixes of environment variables that configure the clients (or pip and twine, whose
/// settings some of them read): removed, so that the caller's settings cannot steer a run.
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
];

struct Setup {
    _dir: tempfile::TempDir,
    work: PathBuf,
    backend: Pypiserver,
    gateway: Gateway,
}

/// The output of a client run (stdout and stderr, interleaved) and whether it exited 0.
struct Run {
    success: bool,
    output: String,
}

impl Setup {
    fn start() -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path().to_path_buf();
        let backend = Pypiserver::start(&work.join("pypiserver"));
        let gateway = Gateway::builder()
            .registry(RegistrySpec::new("pypi", "pypi", backend.addr()))
            .rules(RULES)
            .start(&work.join("gateway"));
        Setup {
            _dir: dir,
            work,
            backend,
            gateway,
        }
    }

    /// The upload URL (the gateway's root, where pypiserver takes uploads).
    fn upload_url(&self) -> String {
        format!("{}/", self.gateway.url())
    }

    /// `program` to be run in `dir`, isolated from the user's configuration and the network.
    fn client(&self, program: &Path, dir: &Path) -> Command {
        let home = self.work.join("home");
        std::fs::create_dir_all(&home).expect("home");
        let mut cmd = Command::new(program);
        for (name, _) in std::env::vars_os() {
            let text = name.to_string_lossy();
            if CLIENT_VARIABLE_PREFIXES.iter().any(|p| text.starts_with(p))
                || text.to_ascii_lowercase().contains("proxy")
            {
                cmd.env_remove(&name);
            }
        }
        cmd.current_dir(dir)
            .env("HOME", &home)
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

    /// Runs `cmd` (at most [`CLIENT_LIMIT`]), its output logged under the test folder.
    fn run(&self, what: &str, cmd: Command) -> Run {
        let log = self.work.join(format!("{}.log", what.replace(' ', "-")));
        let mut process = Managed::spawn(what, cmd, &log);
        let status = process.wait_exit(CLIENT_LIMIT);
        let output = process.log();
        let status = status.unwrap_or_else(|| panic!("{what} did not finish within {CLIENT_LIMIT:?}:\n{output}"));
        Run {
            success: status.success(),
            output,
        }
    }

    /// Asserts a successful run, with everything that explains a failure.
    fn assert_success(&self, what: &str, run: &Run) {
        assert!(
            run.success,
            "{what} failed:\n{}\n--- gateway log ---\n{}\n--- pypiserver log ---\n{}",
            run.output,
            self.gateway.log(),
            self.backend.log()
        );
    }
}

/// Writes `dir/pyproject.toml` for `name` `version` (PEP 621 metadata only, as pdm and poetry
/// need to find a project) and the distributions `make_dists` writes into `dir/dist`.
fn project_with_dists(dir: &Path, name: &str, version: &str) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).expect("project dir");
    std::fs::write(
        dir.join("pyproject.toml"),
        format!("[project]\nname = \"{name}\"\nversion = \"{version}\"\ndescription = \"Portcullis test package\"\n"),
    )
    .expect("pyproject.toml");
    make_dists(&dir.join("dist"), name, version, None)
}

/// The files in `dir`, as full paths.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    portcullis_e2e::list_files(dir)
        .into_iter()
        .map(|n| dir.join(n))
        .collect()
}

fn file_name(path: &Path) -> String {
    path.file_name().expect("file name").to_string_lossy().into_owned()
}

/// Asserts that the gateway logged one allow decision per file of `project`, each naming the
/// file and the SHA-256 the gateway computed of the bytes it passed on.
fn assert_recorded(gateway: &Gateway, project: &str, files: &[PathBuf]) {
    let decisions = gateway.decisions(files.len());
    let mine: Vec<&serde_json::Value> = decisions.iter().filter(|d| d["project"] == project).collect();
    assert_eq!(mine.len(), files.len(), "decisions for {project}: {decisions:#?}");
    for file in files {
        let name = file_name(file);
        let digest = sha256_hex(&std::fs::read(file).expect("distribution"));
        let needle = format!("{name} sha256={digest}");
        let decision = mine
            .iter()
            .find(|d| d["detail"].as_str().is_some_and(|t| t.contains(&needle)))
            .unwrap_or_else(|| panic!("no decision names {needle}: {mine:#?}"));
        assert_eq!(decision["outcome"], "allow", "{decision}");
        assert_eq!(decision["action"], "upload", "{decision}");
        assert_eq!(decision["registry"], "pypi", "{decision}");
        assert_eq!(decision["credential"], "legacy", "{decision}");
        assert_eq!(decision["status"], 200, "{decision}");
    }
}

/// Asserts that a run publishing [`DENIED`] was refused: the client exited non-zero showing the
/// gateway's reason, pypiserver still stores exactly `stored` (the earlier, accepted files) and
/// the gateway logged one refusal by the deny rule (clients stop at the first refused file).
fn assert_refused(s: &Setup, what: &str, run: &Run, stored: &[PathBuf]) {
    assert!(
        !run.success,
        "{what} reported success for a denied project:\n{}",
        run.output
    );
    assert!(
        run.output.contains("403"),
        "{what} did not show the status:\n{}",
        run.output
    );
    assert!(
        run.output.contains(DENIED_REASON),
        "{what} did not show the gateway's reason:\n{}",
        run.output
    );
    // A backend that would still be committing has had time to show it.
    std::thread::sleep(Duration::from_millis(300));
    s.backend.assert_holds_exactly(stored);
    let decisions = s.gateway.decisions(stored.len() + 1);
    let refused: Vec<&serde_json::Value> = decisions.iter().filter(|d| d["project"] == DENIED).collect();
    assert_eq!(refused.len(), 1, "decisions for {DENIED}: {decisions:#?}");
    let d = refused[0];
    assert_eq!(d["outcome"], "refuse", "{d}");
    assert_eq!(d["code"], "project_denied", "{d}");
    assert_eq!(d["rule"], "no-internal", "{d}");
    assert_eq!(d["status"], 403, "{d}");
}

/// Asserts that a run publishing files over the rules' 1 MiB limit was refused before its
/// body was read (the gateway answers from `Content-Length`): the client exited non-zero
/// showing the gateway's reason, pypiserver still stores exactly `stored`, and the refusal was
/// counted.
fn assert_too_large(s: &Setup, what: &str, run: &Run, stored: &[PathBuf]) {
    assert!(
        !run.success,
        "{what} reported success for an oversized upload:\n{}",
        run.output
    );
    assert!(
        run.output.contains("413"),
        "{what} did not show the status:\n{}",
        run.output
    );
    assert!(
        run.output.contains("the upload is larger than this registry accepts"),
        "{what} did not show the gateway's reason:\n{}",
        run.output
    );
    std::thread::sleep(Duration::from_millis(300));
    s.backend.assert_holds_exactly(stored);
    assert_eq!(
        s.gateway.metric_reaching(
            "portcullis_refusals_total{code=\"upload_too_large\",registry=\"pypi\"}",
            1.0
        ),
        1.0,
        "one refusal counted: the client stops at its first refused file"
    );
}

/// pdm 2.29.4's `pdm.models.session` subclasses `hishel.SyncSqliteStorage`; pdm requires
/// `hishel[httpx2]>=1.4.0` with no upper bound, and hishel 2.0 renamed that class, so with
/// hishel 2 every pdm command that opens a session (`publish` included) fails on import.
fn pdm_can_open_a_session() -> Result<(), String> {
    let out = Command::new(tools().python())
        .args(["-c", "import pdm.models.session"])
        .output()
        .expect("run the tools' python");
    if out.status.success() {
        return Ok(());
    }
    let hishel = Command::new(tools().python())
        .args(["-c", "import importlib.metadata as m; print(m.version('hishel'))"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    Err(format!(
        "`import pdm.models.session` fails in the tools venv (hishel {hishel}):\n{}\n\
         pdm 2.29.4 needs hishel 1.x (its own `locked` extra pins hishel==1.4.0); \
         tests/tools/install.sh must pin it next to pdm",
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// `pdm publish --no-build -r URL -u USER -P PASSWORD`, run in a project folder: uploads every
/// file in `dist/`, wheels first.
///
/// pdm's form (`pdm/cli/commands/publish/repository.py`, httpx2's multipart encoder fed a
/// dict, its stream wrapped for the progress bar; Content-Length kept): `name`, `version`,
/// `filetype`, `pyversion` first, then every core-metadata field pdm knows *whether or not the
/// file has it*, absent
/// ones as empty values (`home_page`, `author`, `keywords`, `download_url`, `comment`,
/// `license_expression`, ...); the digests in the order sha256, md5, blake2_256; `:action` and
/// `protocol_version` last before `content` (`Content-Type: application/octet-stream`);
/// `metadata_version` as the file says; request header names in lower case (h11).
#[test]
fn pdm_publish_lands_byte_for_byte_and_a_denied_project_is_refused() {
    if let Err(why) = pdm_can_open_a_session() {
        panic!("pdm as installed cannot publish (outside the gateway): {why}");
    }
    let s = Setup::start();
    let publish = |dir: &Path| {
        let mut cmd = s.client(&tools().pdm(), dir);
        cmd.arg("publish")
            .arg("-p")
            .arg(dir)
            .args(["--no-build", "-r"])
            .arg(s.upload_url())
            .args(["-u", pypiserver::USER, "-P", pypiserver::PASSWORD])
            // pdm's own network use besides the upload: its self-update check.
            .env("PDM_CHECK_UPDATE", "false")
            .env("PDM_NON_INTERACTIVE", "1");
        cmd
    };

    let project = s.work.join("pdm-demo");
    project_with_dists(&project, "pdm-demo", "1.0");
    let run = s.run("pdm publish", publish(&project));
    s.assert_success("pdm publish", &run);
    let sent = files_in(&project.join("dist"));
    assert_eq!(sent.len(), 2, "a wheel and an sdist: {sent:?}");
    s.backend.assert_holds_exactly(&sent);
    assert_recorded(&s.gateway, "pdm-demo", &sent);

    let denied = s.work.join("pdm-denied");
    project_with_dists(&denied, DENIED, "1.0");
    let run = s.run("pdm publish denied", publish(&denied));
    assert_refused(&s, "pdm publish", &run, &sent);
}

/// `poetry publish -r gateway` with the repository's URL in `POETRY_REPOSITORIES_GATEWAY_URL`
/// and its credentials in `POETRY_HTTP_BASIC_GATEWAY_USERNAME` / `_PASSWORD`, run in a project
/// folder: uploads the files of the project's newest version in `dist/`, sdist first.
///
/// poetry's form (`poetry/publishing/uploader.py`, requests-toolbelt's `MultipartEncoder`,
/// streamed): the three digests come *first* (md5, sha256, blake2_256), before `name` and
/// `version`; then `filetype`, `pyversion`, and the metadata in the order packaging's
/// `parse_email` returns it (`summary`, `version`, `license`, `requires_python`,
/// `metadata_version`, `name`, ..., `description` last), multiple-use fields repeated,
/// `keywords` re-joined with commas; only fields the file has; `:action` and
/// `protocol_version` last before `content`.
#[test]
fn poetry_publish_lands_byte_for_byte_and_denied_and_oversized_uploads_are_refused() {
    let s = Setup::start();
    let publish = |dir: &Path| {
        let mut cmd = s.client(&tools().poetry(), dir);
        cmd.args(["publish", "--no-interaction", "-r", "gateway"])
            .env("POETRY_REPOSITORIES_GATEWAY_URL", s.upload_url())
            .env("POETRY_HTTP_BASIC_GATEWAY_USERNAME", pypiserver::USER)
            .env("POETRY_HTTP_BASIC_GATEWAY_PASSWORD", pypiserver::PASSWORD);
        cmd
    };

    let project = s.work.join("poetry-demo");
    project_with_dists(&project, "poetry-demo", "1.0");
    let run = s.run("poetry publish", publish(&project));
    s.assert_success("poetry publish", &run);
    let sent = files_in(&project.join("dist"));
    assert_eq!(sent.len(), 2, "a wheel and an sdist: {sent:?}");
    s.backend.assert_holds_exactly(&sent);
    assert_recorded(&s.gateway, "poetry-demo", &sent);

    let denied = s.work.join("poetry-denied");
    project_with_dists(&denied, DENIED, "1.0");
    let run = s.run("poetry publish denied", publish(&denied));
    assert_refused(&s, "poetry publish", &run, &sent);

    // Over the size limit: poetry streams the body, and the answer comes before its end.
    let big = s.work.join("poetry-big");
    std::fs::create_dir_all(&big).expect("project dir");
    std::fs::write(
        big.join("pyproject.toml"),
        "[project]\nname = \"big-pkg\"\nversion = \"1.0\"\n",
    )
    .expect("pyproject");
    make_dists(&big.join("dist"), "big-pkg", "1.0", Some(2 << 20));
    let run = s.run("poetry publish oversized", publish(&big));
    assert_too_large(&s, "poetry publish", &run, &sent);
}

/// `hatch publish -r URL -u USER -a PASSWORD --no-prompt FILES...`.
///
/// hatch's form (`hatch/index/core.py` and `publish.py`, httpx2's encoder fed a dict):
/// `description` (the METADATA body) *first*, then every METADATA header as the file has it,
/// lower-cased with `-` read as `_`, in the file's order (so `metadata_version` as the file
/// says), then `filetype`, `pyversion` (from the wheel tag's interpreters), `:action`,
/// `protocol_version`, and the digests after them: md5, sha256, blake2_256. Before a project's
/// first file it reads `<repository>/+simple/<name>/` (devpi's layout) with the credentials, to
/// skip files the index already lists, and ignores a failure there.
#[test]
fn hatch_publish_lands_byte_for_byte_and_denied_and_oversized_uploads_are_refused() {
    let s = Setup::start();
    let publish = |dir: &Path, files: &[PathBuf]| {
        let mut cmd = s.client(&tools().hatch(), dir);
        cmd.args(["publish", "--no-prompt", "-r"])
            .arg(s.upload_url())
            .args(["-u", pypiserver::USER, "-a", pypiserver::PASSWORD])
            .args(files);
        cmd
    };

    let dir = s.work.join("hatch");
    let (wheel, sdist) = make_dists(&dir.join("dist"), "hatch-demo", "1.0", None);
    let sent = vec![wheel, sdist];
    let run = s.run("hatch publish", publish(&dir, &sent));
    s.assert_success("hatch publish", &run);
    s.backend.assert_holds_exactly(&sent);
    assert_recorded(&s.gateway, "hatch-demo", &sent);

    let (denied_wheel, denied_sdist) = make_dists(&dir.join("denied"), DENIED, "1.0", None);
    let run = s.run("hatch publish denied", publish(&dir, &[denied_wheel, denied_sdist]));
    assert_refused(&s, "hatch publish", &run, &sent);

    let (big_wheel, big_sdist) = make_dists(&dir.join("big"), "big-pkg", "1.0", Some(2 << 20));
    let run = s.run("hatch publish oversized", publish(&dir, &[big_wheel, big_sdist]));
    assert_too_large(&s, "hatch publish", &run, &sent);
}

/// Writes a flit project for `name` 1.0: a `pyproject.toml` with flit_core as build backend
/// and the module, named as the project with `_`.
fn flit_project(dir: &Path, name: &str) {
    let module = name.replace('-', "_");
    std::fs::create_dir_all(dir.join(&module)).expect("module dir");
    std::fs::write(
        dir.join("pyproject.toml"),
        format!(
            "[build-system]\nrequires = [\"flit_core >=3.11,<5\"]\nbuild-backend = \"flit_core.buildapi\"\n\n\
             [project]\nname = \"{name}\"\nversion = \"1.0\"\ndescription = \"Portcullis test package\"\n"
        ),
    )
    .expect("pyproject.toml");
    std::fs::write(
        dir.join(&module).join("__init__.py"),
        "\"\"\"Portcullis test package.\"\"\"\n",
    )
    .expect("module");
}

/// `flit publish --no-use-vcs` with `FLIT_INDEX_URL`, `FLIT_USERNAME` and `FLIT_PASSWORD`, run
/// in a project folder. flit always builds (no option uploads existing files), with its own
/// flit_core in-process and no isolated environment, so nothing is fetched; `--no-use-vcs`
/// keeps the sdist to the module and pyproject (no `git ls-files`). The test compares what
/// pypiserver stores with the files flit left in `dist/`.
///
/// flit's form (`flit/upload.py`, requests' own encoder, the whole file read into memory):
/// `:action` *first*; `metadata_version` hard-coded to `2.3` whatever the built METADATA says
/// (flit_core 4.2 writes 2.5); the Metadata 1.1 field `provides` (the module name) that the
/// others never send; empty fields dropped; only md5 and sha256 digests (no blake2_256); no
/// `pyversion` at all for the sdist and `py2.py3` for the wheel when `requires-python` does
/// not exclude Python 2; and a `content` part with *no* `Content-Type` header. Wheel first.
#[test]
fn flit_publish_lands_byte_for_byte_and_a_denied_project_is_refused() {
    let s = Setup::start();
    let publish = |dir: &Path| {
        let mut cmd = s.client(&tools().flit(), dir);
        cmd.args(["publish", "--no-use-vcs"])
            .env("FLIT_INDEX_URL", s.upload_url())
            .env("FLIT_USERNAME", pypiserver::USER)
            .env("FLIT_PASSWORD", pypiserver::PASSWORD);
        cmd
    };

    let project = s.work.join("flit-demo");
    flit_project(&project, "flit-demo");
    let run = s.run("flit publish", publish(&project));
    s.assert_success("flit publish", &run);
    let sent = files_in(&project.join("dist"));
    let built: Vec<String> = sent.iter().map(|f| file_name(f)).collect();
    assert!(
        built.len() == 2
            && built.iter().all(|n| n.starts_with("flit_demo-1.0"))
            && built.iter().any(|n| n.ends_with(".whl"))
            && built.iter().any(|n| n.ends_with(".tar.gz")),
        "flit built a wheel and an sdist of flit-demo 1.0: {built:?}"
    );
    s.backend.assert_holds_exactly(&sent);
    assert_recorded(&s.gateway, "flit-demo", &sent);

    let denied = s.work.join("flit-denied");
    flit_project(&denied, DENIED);
    let run = s.run("flit publish denied", publish(&denied));
    assert_refused(&s, "flit publish", &run, &sent);
}
