//! The PyPI protocol through the gateway in front of a real devpi-server 6.20.3, the third
//! legacy backend (after pypiserver and Verdaccio), which parses requests its own way (Pyramid
//! and webob): twine uploads land byte for byte and read back through the gateway, refused
//! uploads leave nothing in devpi, pip downloads and installs them from devpi's simple index
//! through the gateway, devpi's `DELETE`s are decided by the deletion rules
//! (`deletion_api = "devpi"`), and the project segment of a `DELETE` is read as devpi reads it.
//! What devpi holds is asserted through its own JSON API and its files folder.

use std::path::Path;

use portcullis_e2e::devpi::{self, Devpi, INDEX};
use portcullis_e2e::gateway::{admin_token_config, Gateway, RegistrySpec, ADMIN_TOKEN};
use portcullis_e2e::http::{self, Form, Response};
use portcullis_e2e::publishers;
use portcullis_e2e::tools::{make_dists, tools};
use portcullis_e2e::{sha256_hex, PYPI_UPLOAD_RULES};

const HOUR: i64 = 3600;

/// Deletion rules added to [`PYPI_UPLOAD_RULES`].
const DELETION_RULES: &str = r#"
[[registries.pypi.deletion_rules]]
id = "kept-forever"
names = ["keep-pkg"]
mode = "never"
message = "keep-pkg releases are never removed"
"#;

struct Setup {
    _dir: tempfile::TempDir,
    work: std::path::PathBuf,
    devpi: Devpi,
    gateway: Gateway,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().to_path_buf();
    let devpi = Devpi::start(&work.join("devpi"));
    let gateway = gateway_for(&devpi, &work.join("gateway"), "deletion_api = \"devpi\"\n");
    Setup {
        _dir: dir,
        work,
        devpi,
        gateway,
    }
}

/// A gateway with one PyPI registry in front of `devpi`, the registry table's `extra` lines,
/// an admin token and an adjustable clock.
fn gateway_for(devpi: &Devpi, dir: &Path, extra: &str) -> Gateway {
    let mut registry = RegistrySpec::new("pypi", "pypi", devpi.addr());
    registry.extra = extra.to_owned();
    Gateway::builder()
        .registry(registry)
        .rules(&format!("{PYPI_UPLOAD_RULES}{DELETION_RULES}"))
        .admin_config(&admin_token_config(dir))
        .config("[testing]\nadjustable_clock = true\n")
        .start(dir)
}

/// An upload of `<name>-<version>.tar.gz` (`-` in the name as `_`; content `sdist <version>`)
/// to the index through the gateway, as devpi's user.
fn upload(s: &Setup, name: &str, version: &str) -> Response {
    let filename = format!("{}-{version}.tar.gz", name.replace('-', "_"));
    let form = Form::pypi_upload(name, version, &filename, format!("sdist {version}").as_bytes());
    http::request(
        s.gateway.addr(),
        "POST",
        &format!("{INDEX}/"),
        &[
            ("content-type", &form.content_type()),
            ("authorization", &s.devpi.auth()),
        ],
        &form.body,
    )
}

/// A `DELETE` of `path` through the gateway as devpi's user, with extra headers.
fn delete(s: &Setup, path: &str, extra: &[(&str, &str)]) -> Response {
    delete_at(s.gateway.addr(), &s.devpi, path, extra)
}

fn delete_at(addr: std::net::SocketAddr, devpi: &Devpi, path: &str, extra: &[(&str, &str)]) -> Response {
    let auth = devpi.auth();
    let mut headers = vec![("authorization", auth.as_str()), ("accept", "application/json")];
    headers.extend_from_slice(extra);
    http::request(addr, "DELETE", path, &headers, b"")
}

/// The actions, targets and outcomes of a project's deletion audit records, newest first.
fn deletion_audit(s: &Setup, project: &str, count: usize) -> Vec<(String, String, String)> {
    s.gateway
        .audit("pypi", project, count)
        .iter()
        .filter(|r| r["action"].as_str().is_some_and(|a| a.starts_with("delete_")))
        .map(|r| {
            let field = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
            (field("action"), field("target"), field("outcome"))
        })
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn twine_uploads_land_byte_for_byte_and_read_back_through_the_gateway() {
    let s = setup();
    let (wheel, sdist) = make_dists(&s.work.join("dist"), "Demo_Pkg", "1.0", None);
    let url = format!("{}{INDEX}/", s.gateway.url());
    let out = devpi::twine_upload(&url, &[&wheel, &sdist]);
    assert!(
        out.status.success(),
        "twine through the gateway: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // devpi holds exactly the two files, byte for byte, under the normalised project.
    assert_eq!(s.devpi.versions("demo-pkg"), strings(&["1.0"]));
    let files = s.devpi.files("demo-pkg");
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["demo_pkg-1.0-py3-none-any.whl", "demo_pkg-1.0.tar.gz"]);
    for (local, (name, path)) in [&wheel, &sdist].into_iter().zip(files.iter()) {
        let sent = std::fs::read(local).expect("dist");
        assert_eq!(
            sha256_hex(&s.devpi.file_bytes(path)),
            sha256_hex(&sent),
            "{name} stored byte for byte"
        );
    }
    assert_eq!(s.devpi.stored().len(), 2, "{:?}", s.devpi.stored());

    // Read back through the gateway: devpi's simple page and the file links it lists.
    let page_path = format!("{INDEX}/+simple/demo-pkg/");
    let page = http::get(s.gateway.addr(), &page_path);
    assert_eq!(page.status, 200, "{}", page.text());
    let page = page.text();
    for (local, name) in [
        (&wheel, "demo_pkg-1.0-py3-none-any.whl"),
        (&sdist, "demo_pkg-1.0.tar.gz"),
    ] {
        let href = page
            .split("href=\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .find(|href| href.split('#').next().is_some_and(|h| h.ends_with(name)))
            .unwrap_or_else(|| panic!("{name} is not listed: {page}"));
        let (link, fragment) = href.split_once('#').unwrap_or((href, ""));
        let sent = std::fs::read(local).expect("dist");
        assert_eq!(fragment, format!("sha256={}", sha256_hex(&sent)), "the listed digest");
        // `../../+f/…` relative to the page.
        let relative = link
            .strip_prefix("../../")
            .expect("devpi links files relative to the index");
        let got = http::get(s.gateway.addr(), &format!("{INDEX}/{relative}"));
        assert_eq!(got.status, 200, "{link}: {}", got.text());
        assert_eq!(sha256_hex(&got.body), sha256_hex(&sent), "{name} through the gateway");
    }

    let decisions = s.gateway.decisions(2);
    assert_eq!(decisions.len(), 2, "one decision line per file: {}", s.gateway.log());
    for d in decisions {
        assert_eq!(d["project"], "demo-pkg", "{d}");
        assert_eq!(d["outcome"], "allow", "{d}");
    }
}

/// `pip` of the tools' venv, run hermetically (`portcullis_e2e::publishers`) and with
/// `--isolated` (no configuration file, no `PIP_*` variable), the gateway's view of devpi's
/// index its only index (`--index-url`), no cache, for `demo-pkg==1.0`, its dependencies left
/// out; `args` say what to do, and end with the option that takes `dest`.
fn pip(s: &Setup, what: &str, args: &[&str], dest: &Path) -> publishers::Run {
    let mut cmd = publishers::hermetic(&tools().python(), &s.work, &s.work.join("pip-home"));
    cmd.args(["-m", "pip", "--isolated", "--disable-pip-version-check", "--no-input"])
        .args(args)
        .arg(dest)
        .args(["--no-deps", "--no-cache-dir", "--index-url"])
        .arg(format!("{}{INDEX}/+simple/", s.gateway.url()))
        .arg("demo-pkg==1.0");
    publishers::run(&s.work, what, cmd)
}

/// twine uploads a wheel and an sdist of `demo-pkg` to devpi through the gateway; pip, given
/// only the gateway's view of `/alice/dev/+simple/`, downloads each (`pip download --no-deps`,
/// `--only-binary` then `--no-binary`, the sdist's in-tree backend needing nothing from an
/// index) and gets exactly the file uploaded, SHA-256 equal; `pip install --target` of it
/// installs the package. The gateway is the only place pip can read from (its only index, and
/// proxies closed for any other host), and it decided on nothing but the two uploads.
#[test]
fn pip_downloads_and_installs_through_the_gateway_what_twine_uploaded() {
    let s = setup();
    let (wheel, sdist) = make_dists(&s.work.join("dist"), "demo-pkg", "1.0", None);
    let out = devpi::twine_upload(&format!("{}{INDEX}/", s.gateway.url()), &[&wheel, &sdist]);
    assert!(
        out.status.success(),
        "twine through the gateway: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    s.devpi.assert_holds_exactly(&[&wheel, &sdist]);

    for (what, only, uploaded) in [
        ("pip download wheel", "--only-binary=:all:", &wheel),
        ("pip download sdist", "--no-binary=:all:", &sdist),
    ] {
        let dest = s.work.join(what.replace(' ', "-"));
        let run = pip(&s, what, &["download", only, "--dest"], &dest);
        assert!(
            run.success,
            "{what} failed:\n{}\n--- gateway log ---\n{}\n--- devpi-server log ---\n{}",
            run.output,
            s.gateway.log(),
            s.devpi.log()
        );
        let name = uploaded.file_name().expect("name").to_string_lossy().into_owned();
        assert_eq!(
            portcullis_e2e::list_files(&dest),
            std::slice::from_ref(&name),
            "{what}: {}",
            run.output
        );
        assert_eq!(
            sha256_hex(&std::fs::read(dest.join(&name)).expect("downloaded")),
            sha256_hex(&std::fs::read(uploaded).expect("uploaded")),
            "{name}: pip got the bytes twine uploaded"
        );
    }

    let target = s.work.join("installed");
    let run = pip(
        &s,
        "pip install",
        &["install", "--only-binary=:all:", "--target"],
        &target,
    );
    assert!(run.success, "pip install failed:\n{}", run.output);
    let module = std::fs::read_to_string(target.join("demo_pkg/__init__.py")).expect("the installed module");
    assert!(module.contains("__version__ = \"1.0\""), "{module}");
    assert!(
        portcullis_e2e::list_files(&target)
            .iter()
            .any(|n| n == "demo_pkg-1.0.dist-info"),
        "{:?}",
        portcullis_e2e::list_files(&target)
    );

    // Only the two uploads were decided on: pip's reads are pass-through.
    let decisions = s.gateway.decisions(2);
    assert_eq!(decisions.len(), 2, "{decisions:#?}");
}

/// A twine-like form with two `content` parts: webob (devpi's parser) takes the last.
fn twofold_form(boundary: &str, first: &[u8], second: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in [
        (":action", "file_upload"),
        ("protocol_version", "1"),
        ("name", "twofold"),
        ("version", "1.0"),
        ("filetype", "sdist"),
        ("pyversion", "source"),
        ("metadata_version", "2.1"),
    ] {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    for content in [first, second] {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"content\"; filename=\"twofold-1.0.tar.gz\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

#[test]
fn refused_uploads_leave_nothing_in_devpi() {
    let s = setup();
    // A project the rules deny: twine prints the refusal, devpi holds nothing of it.
    let (wheel, sdist) = make_dists(&s.work.join("dist"), "internal-tool", "1.0", None);
    let out = devpi::twine_upload(&format!("{}{INDEX}/", s.gateway.url()), &[&wheel, &sdist]);
    assert!(!out.status.success(), "a denied upload must fail");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed.contains("403") && printed.contains("internal packages go to the private index"),
        "twine prints the status and the rule's message: {printed}"
    );
    let r = http::request(
        s.gateway.addr(),
        "POST",
        &format!("{INDEX}/"),
        &[
            (
                "content-type",
                &Form::pypi_upload("internal-tool", "1.0", "internal_tool-1.0.tar.gz", b"x").content_type(),
            ),
            ("authorization", &s.devpi.auth()),
        ],
        &Form::pypi_upload("internal-tool", "1.0", "internal_tool-1.0.tar.gz", b"x").body,
    );
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (403, "project_denied".into()),
        "{}",
        r.text()
    );
    assert!(s.devpi.versions("internal-tool").is_empty());

    // Two `content` parts: refused, nothing stored.
    let boundary = "devpi-twofold-boundary";
    let good = b"the file the gateway would have checked";
    let evil = b"the file webob hands devpi";
    let body = twofold_form(boundary, good, evil);
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let auth = s.devpi.auth();
    let headers = [
        ("content-type", content_type.as_str()),
        ("authorization", auth.as_str()),
    ];
    let path = format!("{INDEX}/");
    let r = http::request(s.gateway.addr(), "POST", &path, &headers, &body);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["code"], "ambiguous_body");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(s.devpi.versions("twofold").is_empty());
    assert!(s.devpi.projects().is_empty(), "{:?}", s.devpi.projects());
    assert!(s.devpi.stored().is_empty(), "{:?}", s.devpi.stored());

    // What the gateway kept from devpi: sent directly, devpi stores the second file.
    let r = http::request(s.devpi.addr(), "POST", &path, &headers, &body);
    assert_eq!(r.status, 200, "devpi directly: {}", r.text());
    let files = s.devpi.files("twofold");
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(s.devpi.file_bytes(&files[0].1), evil.to_vec());
}

#[test]
fn release_deletions_follow_the_rules_and_deleted_versions_never_return() {
    let s = setup();
    for v in ["1.0", "1.1", "1.2"] {
        let r = upload(&s, "demo-pkg", v);
        assert_eq!(r.status, 200, "{v}: {}", r.text());
    }
    assert_eq!(s.devpi.versions("demo-pkg"), strings(&["1.0", "1.1", "1.2"]));

    // Inside the window: what `devpi remove` sends, removed.
    let r = delete(&s, &format!("{INDEX}/demo-pkg/1.0"), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.devpi.versions("demo-pkg"), strings(&["1.1", "1.2"]));

    // Never again, not even as the PEP 440-equal 1.0.0.
    for version in ["1.0", "1.0.0"] {
        let r = upload(&s, "demo-pkg", version);
        assert_eq!(r.status, 409, "{version}: {}", r.text());
        assert_eq!(r.json()["code"], "version_deleted");
    }
    assert_eq!(s.devpi.versions("demo-pkg"), strings(&["1.1", "1.2"]));

    // After the window: devpi tells nothing of owners, so the default refuses.
    s.gateway.set_clock_offset(73 * HOUR);
    let r = delete(&s, &format!("{INDEX}/demo-pkg/1.1"), &[]);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["code"], "deletion_unknown_facts");
    assert!(r.reason.contains("yank"), "the refusal points to yanking: {}", r.reason);
    assert_eq!(s.devpi.versions("demo-pkg"), strings(&["1.1", "1.2"]));

    // An admin, with a reason, may.
    let r = delete(
        &s,
        &format!("{INDEX}/demo-pkg/1.1"),
        &[
            ("x-portcullis-admin-token", ADMIN_TOKEN),
            ("x-portcullis-override-reason", "malware report PYSEC-0000"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.devpi.versions("demo-pkg"), strings(&["1.2"]));

    assert_eq!(
        deletion_audit(&s, "demo-pkg", 7),
        vec![
            ("delete_version".into(), "demo-pkg@1.1".into(), "override".into()),
            ("delete_version".into(), "demo-pkg@1.1".into(), "refuse".into()),
            ("delete_version".into(), "demo-pkg@1.0".into(), "allow".into()),
        ]
    );
    let stored = s.devpi.stored();
    assert!(
        stored.len() == 1 && stored[0].ends_with("/demo_pkg-1.2.tar.gz"),
        "devpi removed the files too: {stored:?}"
    );
}

#[test]
fn project_deletion_tombstones_every_version_and_reserves_the_name() {
    let s = setup();
    for v in ["1.0", "2.0"] {
        assert_eq!(upload(&s, "lone-pkg", v).status, 200);
    }
    // A project under a `never` rule is refused and stays.
    assert_eq!(upload(&s, "keep-pkg", "1.0").status, 200);
    let r = delete(&s, &format!("{INDEX}/keep-pkg"), &[]);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["code"], "deletion_never");
    assert_eq!(s.devpi.versions("keep-pkg"), strings(&["1.0"]));

    let r = delete(&s, &format!("{INDEX}/lone-pkg"), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.devpi.projects(), strings(&["keep-pkg"]));
    // The name cannot be taken over, not even with a new version.
    let r = upload(&s, "lone-pkg", "3.0");
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["code"], "name_reserved");
    assert!(s.devpi.versions("lone-pkg").is_empty());
    assert_eq!(
        deletion_audit(&s, "lone-pkg", 4),
        vec![("delete_project".into(), "lone-pkg".into(), "allow".into())]
    );
}

#[test]
fn deletes_the_gateway_does_not_know_are_refused_and_change_nothing() {
    let s = setup();
    assert_eq!(upload(&s, "demo-pkg", "1.0").status, 200);
    let (_, file) = s.devpi.files("demo-pkg").into_iter().next().expect("a stored file");
    let before = (s.devpi.index_config(), s.devpi.stored());

    for (method, path, status, code) in [
        ("DELETE", INDEX.to_owned(), 405, "unclassified_write"),
        ("DELETE", format!("{INDEX}/"), 405, "unclassified_write"),
        ("DELETE", "/alice".to_owned(), 405, "unclassified_write"),
        ("DELETE", file.clone(), 405, "unclassified_write"),
        (
            "DELETE",
            format!("{INDEX}/demo-pkg/1.0/demo_pkg-1.0.tar.gz"),
            405,
            "unclassified_write",
        ),
        ("DELETE", "/alice%2fdev/demo-pkg/1.0".to_owned(), 400, "bad_path"),
        ("DELETE", format!("{INDEX}/demo-pkg%2f1.0"), 400, "bad_path"),
        ("DELETE", format!("{INDEX}/demo-pkg/%2e%2e"), 400, "bad_path"),
        ("PATCH", INDEX.to_owned(), 405, "unclassified_write"),
        ("PUT", INDEX.to_owned(), 405, "unclassified_write"),
    ] {
        let body = br#"{"volatile": false, "bases": []}"#;
        let auth = s.devpi.auth();
        let headers = [
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
            ("accept", "application/json"),
        ];
        let sent: &[u8] = if method == "DELETE" { b"" } else { body };
        let r = http::request(s.gateway.addr(), method, &path, &headers, sent);
        assert_eq!(
            (r.status, r.json()["code"].clone()),
            (status, code.into()),
            "{method} {path}: {}",
            r.text()
        );
    }
    assert_eq!(s.devpi.versions("demo-pkg"), strings(&["1.0"]));
    assert_eq!((s.devpi.index_config(), s.devpi.stored()), before);

    // A gateway not configured for devpi's API (as in front of pypiserver) admits no DELETE.
    let plain = gateway_for(&s.devpi, &s.work.join("plain-gateway"), "");
    let r = delete_at(plain.addr(), &s.devpi, &format!("{INDEX}/demo-pkg/1.0"), &[]);
    assert_eq!(r.status, 405, "{}", r.text());
    assert_eq!(r.json()["code"], "unclassified_write");
    assert_eq!(s.devpi.versions("demo-pkg"), strings(&["1.0"]));
}

#[test]
fn project_segments_are_read_as_devpi_reads_them() {
    let s = setup();
    for (name, version) in [("demo-pkg", "1.0"), ("demo-pkg", "2.0"), ("keep-pkg", "1.0")] {
        assert_eq!(upload(&s, name, version).status, 200);
    }
    // `keep%21pkg` is `keep-pkg` to devpi (every run of other characters is '-'): a gateway
    // that decided on the name as sent would let it past the `never` rule. Refused.
    let odd = format!("{INDEX}/keep%21pkg/1.0");
    let r = delete(&s, &odd, &[]);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["code"], "bad_path");
    let r = delete(&s, &format!("{INDEX}/keep%20pkg/1.0"), &[]);
    assert_eq!(r.json()["code"], "bad_path", "{}", r.text());
    assert_eq!(s.devpi.versions("keep-pkg"), strings(&["1.0"]));
    // Spelled as a name, it is decided on the name devpi acts on: the rule refuses.
    let r = delete(&s, &format!("{INDEX}/Keep_Pkg/1.0"), &[]);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["code"], "deletion_never");
    assert_eq!(s.devpi.versions("keep-pkg"), strings(&["1.0"]));

    // A name spelled otherwise, with devpi's trailing '/', is the release devpi removes, and the
    // one the gateway tombstones.
    let r = delete(&s, &format!("{INDEX}/Demo_Pkg/2.0/"), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.devpi.versions("demo-pkg"), strings(&["1.0"]));
    assert_eq!(
        deletion_audit(&s, "demo-pkg", 4),
        vec![("delete_version".into(), "demo-pkg@2.0".into(), "allow".into())]
    );
    let r = upload(&s, "demo_pkg", "2.0");
    assert_eq!(r.json()["code"], "version_deleted", "{}", r.text());

    // What the refusal kept from devpi: sent to devpi directly, the odd spelling removes
    // keep-pkg's release.
    let r = delete_at(s.devpi.addr(), &s.devpi, &odd, &[]);
    assert_eq!(r.status, 200, "devpi directly: {}", r.text());
    assert!(s.devpi.versions("keep-pkg").is_empty());
}
