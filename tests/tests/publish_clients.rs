//! The publishing front ends besides twine — pdm, poetry, hatch, flit and uv — run unmodified
//! through the gateway to a real pypiserver and to a real devpi-server (the index
//! `/alice/dev/`), each authenticating with the backend's own user and password by its
//! documented flags or environment variables. Each writes its own multipart form (the comment
//! on its case says how it differs from the others); for each, the test checks that the backend
//! stores exactly the files the client sent, byte for byte, that the gateway logged an allow
//! decision naming each file and the SHA-256 it computed, and that a project a rule denies is
//! refused: the client exits non-zero showing the gateway's reason, and the backend stores
//! nothing of it. With poetry and hatch, an upload over the rules' size limit (refused from its
//! `Content-Length`, while the client is still sending) likewise. pdm, poetry, hatch and flit
//! run the same case against both backends (`<client>_publish_…` against pypiserver,
//! `<client>_publish_to_devpi_…` against devpi); uv with a password, against devpi (its trusted
//! publishing is in `trusted_publishing_pypi`).
//!
//! Hermetic (`portcullis_e2e::publishers`): every client runs with `HOME` and the XDG folders in
//! the test's temporary folder, the keyring disabled, publishing variables of the caller's
//! environment removed, and HTTP(S) proxies pointing at a closed loopback port for every host
//! but loopback. Nothing is built in an isolated environment (that would fetch build backends
//! from PyPI): pdm, poetry, hatch and uv upload the distributions `tools::make_dists` writes;
//! flit always builds, with flit_core in its own venv.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use portcullis_e2e::devpi::{self, Devpi};
use portcullis_e2e::gateway::{Gateway, RegistrySpec};
use portcullis_e2e::publishers::{self, Run};
use portcullis_e2e::pypiserver::{self, Pypiserver};
use portcullis_e2e::tools::{make_dists, tools};
use portcullis_e2e::{sha256_hex, PYPI_UPLOAD_RULES};

/// The project the rules deny.
const DENIED: &str = "internal-tools";

/// What the gateway answers for [`DENIED`]: the reason phrase and the body's `message`.
const DENIED_REASON: &str =
    "writes to project 'internal-tools' are not allowed here: internal packages go to the private index";

/// Which backend a case runs against.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Pypiserver,
    Devpi,
}

/// The backend behind the gateway.
enum Backend {
    Pypiserver(Pypiserver),
    Devpi(Devpi),
}

impl Backend {
    fn start(kind: Kind, work: &Path) -> Backend {
        match kind {
            Kind::Pypiserver => Backend::Pypiserver(Pypiserver::start(&work.join("pypiserver"))),
            Kind::Devpi => Backend::Devpi(Devpi::start(&work.join("devpi"))),
        }
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Backend::Pypiserver(b) => b.addr(),
            Backend::Devpi(b) => b.addr(),
        }
    }

    /// The registry in front of it, configured as its operator would (devpi's `DELETE` API).
    fn registry(&self) -> RegistrySpec {
        let mut registry = RegistrySpec::new("pypi", "pypi", self.addr());
        if let Backend::Devpi(_) = self {
            registry.extra = "deletion_api = \"devpi\"\n".to_owned();
        }
        registry
    }

    /// Where uploads go: pypiserver's root, devpi's index.
    fn upload_path(&self) -> String {
        match self {
            Backend::Pypiserver(_) => "/".to_owned(),
            Backend::Devpi(_) => format!("{}/", devpi::INDEX),
        }
    }

    /// The backend's user and password.
    fn credentials(&self) -> (&'static str, &'static str) {
        match self {
            Backend::Pypiserver(_) => (pypiserver::USER, pypiserver::PASSWORD),
            Backend::Devpi(_) => (devpi::USER, devpi::PASSWORD),
        }
    }

    /// Asserts that the backend stores exactly `files`, each byte for byte.
    fn assert_holds_exactly(&self, files: &[PathBuf]) {
        match self {
            Backend::Pypiserver(b) => b.assert_holds_exactly(files),
            Backend::Devpi(b) => b.assert_holds_exactly(files),
        }
    }

    fn log(&self) -> String {
        match self {
            Backend::Pypiserver(b) => format!("--- pypiserver log ---\n{}", b.log()),
            Backend::Devpi(b) => format!("--- devpi-server log ---\n{}", b.log()),
        }
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    work: PathBuf,
    backend: Backend,
    gateway: Gateway,
}

impl Setup {
    fn start(kind: Kind) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path().to_path_buf();
        let backend = Backend::start(kind, &work);
        let gateway = Gateway::builder()
            .registry(backend.registry())
            .rules(PYPI_UPLOAD_RULES)
            .start(&work.join("gateway"));
        Setup {
            _dir: dir,
            work,
            backend,
            gateway,
        }
    }

    /// The upload URL through the gateway (pypiserver's root, or devpi's index).
    fn upload_url(&self) -> String {
        format!("{}{}", self.gateway.url(), self.backend.upload_path())
    }

    /// `program` to be run in `dir`, isolated from the user's configuration and the network.
    fn client(&self, program: &Path, dir: &Path) -> Command {
        publishers::hermetic(program, dir, &self.work.join("home"))
    }

    /// Runs `cmd`, its output logged under the test folder.
    fn run(&self, what: &str, cmd: Command) -> Run {
        publishers::run(&self.work, what, cmd)
    }

    /// Asserts a successful run, with everything that explains a failure.
    fn assert_success(&self, what: &str, run: &Run) {
        assert!(
            run.success,
            "{what} failed:\n{}\n--- gateway log ---\n{}\n{}",
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
/// status and `shown` (the gateway's reason, [`DENIED_REASON`], for every client but uv), the backend still stores exactly `stored` (the earlier, accepted files) and
/// the gateway logged one refusal by the deny rule (clients stop at the first refused file).
fn assert_refused(s: &Setup, what: &str, run: &Run, shown: &str, stored: &[PathBuf]) {
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
        run.output.contains(shown),
        "{what} did not show {shown:?}:\n{}",
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
/// showing the gateway's reason, the backend still stores exactly `stored`, and the refusal was
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
fn pdm_publish(kind: Kind) {
    if let Err(why) = pdm_can_open_a_session() {
        panic!("pdm as installed cannot publish (outside the gateway): {why}");
    }
    let s = Setup::start(kind);
    let (user, password) = s.backend.credentials();
    let publish = |dir: &Path| {
        let mut cmd = s.client(&tools().pdm(), dir);
        cmd.arg("publish")
            .arg("-p")
            .arg(dir)
            .args(["--no-build", "-r"])
            .arg(s.upload_url())
            .args(["-u", user, "-P", password])
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
    assert_refused(&s, "pdm publish", &run, DENIED_REASON, &sent);
}

/// [`pdm_publish`] to pypiserver.
#[test]
fn pdm_publish_lands_byte_for_byte_and_a_denied_project_is_refused() {
    pdm_publish(Kind::Pypiserver);
}

/// [`pdm_publish`] to devpi's index.
#[test]
fn pdm_publish_to_devpi_lands_byte_for_byte_and_a_denied_project_is_refused() {
    pdm_publish(Kind::Devpi);
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
fn poetry_publish(kind: Kind) {
    let s = Setup::start(kind);
    let (user, password) = s.backend.credentials();
    let publish = |dir: &Path| {
        let mut cmd = s.client(&tools().poetry(), dir);
        cmd.args(["publish", "--no-interaction", "-r", "gateway"])
            .env("POETRY_REPOSITORIES_GATEWAY_URL", s.upload_url())
            .env("POETRY_HTTP_BASIC_GATEWAY_USERNAME", user)
            .env("POETRY_HTTP_BASIC_GATEWAY_PASSWORD", password);
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
    assert_refused(&s, "poetry publish", &run, DENIED_REASON, &sent);

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

/// [`poetry_publish`] to pypiserver.
#[test]
fn poetry_publish_lands_byte_for_byte_and_denied_and_oversized_uploads_are_refused() {
    poetry_publish(Kind::Pypiserver);
}

/// [`poetry_publish`] to devpi's index.
#[test]
fn poetry_publish_to_devpi_lands_byte_for_byte_and_denied_and_oversized_uploads_are_refused() {
    poetry_publish(Kind::Devpi);
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
fn hatch_publish(kind: Kind) {
    let s = Setup::start(kind);
    let (user, password) = s.backend.credentials();
    let publish = |dir: &Path, files: &[PathBuf]| {
        let mut cmd = s.client(&tools().hatch(), dir);
        cmd.args(["publish", "--no-prompt", "-r"])
            .arg(s.upload_url())
            .args(["-u", user, "-a", password])
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
    assert_refused(&s, "hatch publish", &run, DENIED_REASON, &sent);

    let (big_wheel, big_sdist) = make_dists(&dir.join("big"), "big-pkg", "1.0", Some(2 << 20));
    let run = s.run("hatch publish oversized", publish(&dir, &[big_wheel, big_sdist]));
    assert_too_large(&s, "hatch publish", &run, &sent);
}

/// [`hatch_publish`] to pypiserver.
#[test]
fn hatch_publish_lands_byte_for_byte_and_denied_and_oversized_uploads_are_refused() {
    hatch_publish(Kind::Pypiserver);
}

/// [`hatch_publish`] to devpi's index.
#[test]
fn hatch_publish_to_devpi_lands_byte_for_byte_and_denied_and_oversized_uploads_are_refused() {
    hatch_publish(Kind::Devpi);
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
/// the backend stores with the files flit left in `dist/`.
///
/// flit's form (`flit/upload.py`, requests' own encoder, the whole file read into memory):
/// `:action` *first*; `metadata_version` hard-coded to `2.3` whatever the built METADATA says
/// (flit_core 4.2 writes 2.5); the Metadata 1.1 field `provides` (the module name) that the
/// others never send; empty fields dropped; only md5 and sha256 digests (no blake2_256); no
/// `pyversion` at all for the sdist and `py2.py3` for the wheel when `requires-python` does
/// not exclude Python 2; and a `content` part with *no* `Content-Type` header. Wheel first.
fn flit_publish(kind: Kind) {
    let s = Setup::start(kind);
    let (user, password) = s.backend.credentials();
    let publish = |dir: &Path| {
        let mut cmd = s.client(&tools().flit(), dir);
        cmd.args(["publish", "--no-use-vcs"])
            .env("FLIT_INDEX_URL", s.upload_url())
            .env("FLIT_USERNAME", user)
            .env("FLIT_PASSWORD", password);
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
    assert_refused(&s, "flit publish", &run, DENIED_REASON, &sent);
}

/// [`flit_publish`] to pypiserver.
#[test]
fn flit_publish_lands_byte_for_byte_and_a_denied_project_is_refused() {
    flit_publish(Kind::Pypiserver);
}

/// [`flit_publish`] to devpi's index.
#[test]
fn flit_publish_to_devpi_lands_byte_for_byte_and_a_denied_project_is_refused() {
    flit_publish(Kind::Devpi);
}

/// `uv publish --publish-url URL --username USER --password PASSWORD --trusted-publishing never
/// FILES...` (with `--no-config`: no `uv.toml` is read), to devpi's index.
///
/// uv's form (uv 0.13.10, reqwest's multipart encoder, with a Content-Length; as captured from
/// this uv): `:action` first, then the digests, sha256 and blake2_256 only (no md5), *before*
/// `protocol_version`; then `metadata_version` as the file says, `name`, `version`,
/// `filetype`, `pyversion` (`py3` from the wheel tag, `source` for the sdist) and only the
/// METADATA fields the file has (`description`, `description_content_type`, `license`,
/// `summary`, `requires_python`); `content` last, with *no* `Content-Type` header. Files go in
/// the order given, one request each, wheel first here. Of a refusal, uv shows the status and
/// the JSON body's `code` (`project_denied`), not the gateway's reason.
#[test]
fn uv_publish_to_devpi_lands_byte_for_byte_and_a_denied_project_is_refused() {
    let s = Setup::start(Kind::Devpi);
    let (user, password) = s.backend.credentials();
    let publish = |files: &[PathBuf]| {
        let mut cmd = s.client(&tools().uv(), &s.work);
        cmd.args([
            "publish",
            "--no-config",
            "--trusted-publishing",
            "never",
            "--publish-url",
        ])
        .arg(s.upload_url())
        .args(["--username", user, "--password", password])
        .args(files)
        .env("UV_CACHE_DIR", s.work.join("uv-cache"))
        .env("UV_NO_PROGRESS", "1");
        cmd
    };

    let dir = s.work.join("uv");
    let (wheel, sdist) = make_dists(&dir.join("dist"), "uv-demo", "1.0", None);
    let sent = vec![wheel, sdist];
    let run = s.run("uv publish", publish(&sent));
    s.assert_success("uv publish", &run);
    s.backend.assert_holds_exactly(&sent);
    assert_recorded(&s.gateway, "uv-demo", &sent);

    let (denied_wheel, denied_sdist) = make_dists(&dir.join("denied"), DENIED, "1.0", None);
    let run = s.run("uv publish denied", publish(&[denied_wheel, denied_sdist]));
    // uv shows the status and, of a JSON error body, only its `code` (a body without one it
    // shows whole); not the reason phrase, which it replaces with the status's own name.
    assert_refused(
        &s,
        "uv publish",
        &run,
        "403 Forbidden. Server says: project_denied",
        &sent,
    );
}
