//! Uploads through the gateway to a real pypiserver with the real twine and pip: accepted
//! uploads land byte for byte, refused and abandoned ones leave nothing in backend storage.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use portcullis_e2e::gateway::{Gateway, RegistrySpec};
use portcullis_e2e::http::{self, Abort, Form};
use portcullis_e2e::pypiserver::{self, twine_upload, Pypiserver};
use portcullis_e2e::tools::{make_dists, tools};
use portcullis_e2e::{sha256_hex, wait_until, PYPI_UPLOAD_RULES};

struct Setup {
    _dir: tempfile::TempDir,
    work: std::path::PathBuf,
    backend: Pypiserver,
    gateway: Gateway,
}

fn setup() -> Setup {
    setup_with(Pypiserver::start)
}

fn setup_with(start: fn(&std::path::Path) -> Pypiserver) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().to_path_buf();
    let backend = start(&work.join("pypiserver"));
    let gateway = Gateway::builder()
        .registry(RegistrySpec::new("pypi", "pypi", backend.addr()))
        .rules(PYPI_UPLOAD_RULES)
        .start(&work.join("gateway"));
    Setup {
        _dir: dir,
        work,
        backend,
        gateway,
    }
}

/// Waits a little for a backend that might still be committing, then returns what it stores.
fn settled(backend: &Pypiserver) -> Vec<String> {
    std::thread::sleep(Duration::from_millis(300));
    backend.stored()
}

#[test]
fn twine_upload_lands_byte_for_byte_and_pip_installs_it_back() {
    let s = setup();
    let (wheel, sdist) = make_dists(&s.work.join("dist"), "demo-pkg", "1.0", None);
    let out = twine_upload(&format!("{}/", s.gateway.url()), &[&wheel, &sdist]);
    assert!(
        out.status.success(),
        "twine failed: {}\n--- gateway log ---\n{}\n--- pypiserver log ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        s.gateway.log(),
        s.backend.log()
    );

    let wheel_name = wheel.file_name().and_then(|n| n.to_str()).expect("name").to_owned();
    let sdist_name = sdist.file_name().and_then(|n| n.to_str()).expect("name").to_owned();
    let mut expected = vec![wheel_name.clone(), sdist_name.clone()];
    expected.sort();
    assert_eq!(s.backend.stored(), expected);
    for (local, name) in [(&wheel, &wheel_name), (&sdist, &sdist_name)] {
        let sent = std::fs::read(local).expect("local file");
        let stored = std::fs::read(s.backend.packages.join(name)).expect("stored file");
        assert_eq!(sha256_hex(&stored), sha256_hex(&sent), "{name} changed on the way");
    }

    // Back through the gateway: the simple index and the download are plain pass-through reads.
    let target = s.work.join("installed");
    let out = Command::new(tools().python())
        .args([
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--target",
        ])
        .arg(&target)
        .args(["--index-url", &format!("{}/simple/", s.gateway.url()), "demo-pkg==1.0"])
        .output()
        .expect("run pip");
    assert!(
        out.status.success(),
        "pip install failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::read_dir(&target)
            .expect("target")
            .any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("demo_pkg"))),
        "demo_pkg not installed"
    );

    // Decisions are logged with the rule and the rules revision.
    let rules = portcullis_e2e::http::get(s.gateway.admin(), "/rules").json();
    let revision = rules["revision"].as_str().expect("revision").to_owned();
    let decisions = s.gateway.decisions(2);
    assert_eq!(decisions.len(), 2, "{}", s.gateway.log());
    for d in decisions {
        assert_eq!(d["outcome"], "allow");
        assert_eq!(d["project"], "demo-pkg");
        assert_eq!(d["rules_revision"], revision.as_str());
        assert_eq!(d["rules_loaded_at"], rules["loaded_at"]);
        assert!(d["request_id"].as_str().is_some_and(|id| id.len() == 32));
    }
}

#[test]
fn denied_project_is_refused_with_its_reason_through_twine() {
    let s = setup();
    let (wheel, _) = make_dists(&s.work.join("dist"), "internal-tools", "1.0", None);
    let out = twine_upload(&format!("{}/", s.gateway.url()), &[&wheel]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "twine accepted a denied project: {stdout}");
    assert!(stdout.contains("403"), "{stdout}");
    assert!(
        stdout.contains(
            "writes to project 'internal-tools' are not allowed here: internal packages go to the private index"
        ),
        "twine did not show the reason: {stdout}"
    );
    assert!(settled(&s.backend).is_empty(), "refused upload reached storage");
    assert_eq!(
        s.gateway.metric_reaching(
            "portcullis_decisions_total{outcome=\"refuse\",registry=\"pypi\",rule=\"no-internal\"}",
            1.0
        ),
        1.0
    );
    assert_eq!(
        s.gateway.metric_reaching(
            "portcullis_refusals_total{code=\"project_denied\",registry=\"pypi\"}",
            1.0
        ),
        1.0
    );
}

fn form_headers(form: &Form, auth: &str, length: Option<usize>) -> Vec<(&'static str, String)> {
    let mut h = vec![
        ("Content-Type", form.content_type()),
        ("Authorization", auth.to_owned()),
    ];
    match length {
        Some(n) => h.push(("Content-Length", n.to_string())),
        None => h.push(("Transfer-Encoding", "chunked".to_owned())),
    }
    h
}

fn auth() -> String {
    http::basic_auth(pypiserver::USER, pypiserver::PASSWORD)
}

fn send_upload(addr: SocketAddr, form: &Form, chunked: bool) -> http::Response {
    if chunked {
        let head = http::upload_head(addr, "POST", "/", &form_headers(form, &auth(), None));
        http::send_framed(addr, &head, &http::chunked(&form.body, 16 * 1024)).expect("response")
    } else {
        let head = http::upload_head(addr, "POST", "/", &form_headers(form, &auth(), Some(form.body.len())));
        http::send_framed(addr, &head, &form.body).expect("response")
    }
}

#[test]
fn refusals_for_both_framings_leave_nothing_in_storage() {
    refusals_leave_nothing(setup());
}

#[test]
fn refusals_leave_nothing_even_on_a_backend_that_stores_truncated_bodies() {
    refusals_leave_nothing(setup_with(Pypiserver::start_wsgiref));
}

fn refusals_leave_nothing(s: Setup) {
    let addr = s.gateway.addr();
    let small = vec![7u8; 4096];
    let big = vec![9u8; 2 << 20];
    for chunked in [false, true] {
        // Denied project: decided at the end of the body, the held-back tail never leaves.
        let denied = Form::pypi_upload("internal-thing", "1.0", "internal_thing-1.0.tar.gz", &small);
        let r = send_upload(addr, &denied, chunked);
        assert_eq!(r.status, 403, "chunked={chunked}: {}", r.text());
        assert_eq!(r.json()["code"], "project_denied");
        assert!(
            r.reason.contains("internal packages go to the private index"),
            "reason phrase: {}",
            r.reason
        );
        assert!(r.json()["request_id"].as_str().is_some());

        // Over the rules' size limit.
        let oversized = Form::pypi_upload("big-thing", "1.0", "big_thing-1.0.tar.gz", &big);
        let r = send_upload(addr, &oversized, chunked);
        assert_eq!(r.status, 413, "chunked={chunked}: {}", r.text());
        assert_eq!(r.json()["code"], "upload_too_large");

        // A digest that does not match the content.
        let mut lying = Form::pypi_upload("liar", "1.0", "liar-1.0.tar.gz", &small);
        let good = sha256_hex(&small);
        let pos = lying
            .body
            .windows(good.len())
            .position(|w| w == good.as_bytes())
            .expect("digest in form");
        lying.body[pos..pos + 4].copy_from_slice(b"0000");
        let r = send_upload(addr, &lying, chunked);
        assert_eq!(r.status, 400, "chunked={chunked}: {}", r.text());
        assert_eq!(r.json()["code"], "digest_mismatch");
    }
    assert!(
        settled(&s.backend).is_empty(),
        "refused uploads reached storage: {:?}",
        s.backend.stored()
    );

    // Control: the same framing with an acceptable upload is stored, so the checks above can fail.
    for chunked in [false, true] {
        let name = if chunked { "fine-chunked" } else { "fine-length" };
        let file = format!("{}-1.0.tar.gz", name.replace('-', "_"));
        let r = send_upload(addr, &Form::pypi_upload(name, "1.0", &file, &small), chunked);
        assert_eq!(r.status, 200, "chunked={chunked}: {} {}", r.text(), s.backend.log());
        assert!(wait_until(Duration::from_secs(2), || s
            .backend
            .stored()
            .contains(&file)));
        let stored = std::fs::read(s.backend.packages.join(&file)).expect("stored");
        assert_eq!(stored, small);
    }
}

#[test]
fn abandoned_uploads_leave_nothing_in_storage() {
    abandoned_uploads_leave_nothing(setup());
}

#[test]
fn abandoned_uploads_leave_nothing_even_on_a_backend_that_stores_truncated_bodies() {
    abandoned_uploads_leave_nothing(setup_with(Pypiserver::start_wsgiref));
}

fn abandoned_uploads_leave_nothing(s: Setup) {
    let addr = s.gateway.addr();
    let content = vec![3u8; 200 * 1024];
    let mut cases = Vec::new();
    for abort in [Abort::Fin, Abort::Reset] {
        for chunked in [false, true] {
            for (place, keep) in [("start", 100usize), ("last-bytes", 8usize)] {
                cases.push((abort, chunked, place, keep));
            }
        }
    }
    for (i, (abort, chunked, place, keep)) in cases.iter().enumerate() {
        let name = format!("abandoned{i}");
        let form = Form::pypi_upload(&name, "1.0", &format!("{name}-1.0.tar.gz"), &content);
        let (head, framed) = if *chunked {
            (
                http::upload_head(addr, "POST", "/", &form_headers(&form, &auth(), None)),
                http::chunked(&form.body, 32 * 1024),
            )
        } else {
            (
                http::upload_head(addr, "POST", "/", &form_headers(&form, &auth(), Some(form.body.len()))),
                form.body.clone(),
            )
        };
        let sent = if *place == "start" { *keep } else { framed.len() - keep };
        let response = http::send_and_abort(addr, &head, &framed, sent, *abort);
        if let Some(r) = response {
            assert_ne!(
                r.status, 200,
                "case {i} ({abort:?}, chunked={chunked}, {place}) was accepted"
            );
        }
    }
    assert!(
        settled(&s.backend).is_empty(),
        "abandoned uploads reached storage: {:?}",
        s.backend.stored()
    );
    // The gateway is still serving.
    assert_eq!(http::get(addr, "/simple/").status, 200);
}

#[test]
fn pypiserver_on_wsgiref_alone_stores_a_truncated_upload_closed_with_fin() {
    // Why the reset matters: sent straight to pypiserver on wsgiref, a Content-Length upload
    // cut short by a clean close is answered 200 and stored. Through the gateway (tests above,
    // same backend) nothing is stored, because the gateway resets instead of closing.
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = Pypiserver::start_wsgiref(&dir.path().join("pypiserver"));
    let content = vec![5u8; 64 * 1024];
    let form = Form::pypi_upload("truncated", "1.0", "truncated-1.0.tar.gz", &content);
    let addr = backend.addr();
    let head = http::upload_head(addr, "POST", "/", &form_headers(&form, &auth(), Some(form.body.len())));
    let response = http::send_and_abort(addr, &head, &form.body, form.body.len() - 8, Abort::Fin);
    assert_eq!(response.map(|r| r.status), Some(200));
    assert!(wait_until(Duration::from_secs(3), || backend.stored()
        == vec!["truncated-1.0.tar.gz".to_owned()]));
}
