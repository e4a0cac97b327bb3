//! Deletion rules on PyPI, through the gateway in front of a real pypiserver: `remove_pkg`
//! inside the window, refused after it (pypiserver exposes no owners, so the fact is unknown
//! and the default refuses), the deleted version never uploaded again (PEP 440-equal versions
//! included), the admin override, and delete-like requests the gateway cannot classify.

use portcullis_e2e::gateway::{admin_token_config, Gateway, RegistrySpec, ADMIN_TOKEN};
use portcullis_e2e::http::{self, Form};
use portcullis_e2e::pypiserver::{self, Pypiserver};

const HOUR: i64 = 3600;

struct Setup {
    _dir: tempfile::TempDir,
    backend: Pypiserver,
    gateway: Gateway,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().to_path_buf();
    let backend = Pypiserver::start(&work.join("pypiserver"));
    let gateway = Gateway::builder()
        .registry(RegistrySpec::new("pypi", "pypi", backend.addr()))
        .rules("")
        .admin_config(&admin_token_config(&work.join("gateway")))
        .config("[testing]\nadjustable_clock = true\n")
        .start(&work.join("gateway"));
    Setup {
        _dir: dir,
        backend,
        gateway,
    }
}

fn auth() -> String {
    http::basic_auth(pypiserver::USER, pypiserver::PASSWORD)
}

fn upload(s: &Setup, version: &str) -> http::Response {
    upload_of(s, "demo_pkg", version)
}

fn upload_of(s: &Setup, name: &str, version: &str) -> http::Response {
    let filename = format!("{name}-{version}.tar.gz");
    let form = Form::pypi_upload(name, version, &filename, format!("sdist {version}").as_bytes());
    http::request(
        s.gateway.addr(),
        "POST",
        "/",
        &[("content-type", &form.content_type()), ("authorization", &auth())],
        &form.body,
    )
}

/// pypiserver's `remove_pkg` form, with extra headers.
fn remove(s: &Setup, version: &str, extra: &[(&str, &str)]) -> http::Response {
    remove_of(s, "demo_pkg", version, extra)
}

fn remove_of(s: &Setup, name: &str, version: &str, extra: &[(&str, &str)]) -> http::Response {
    // pypiserver matches the name as its file names spell it.
    let form = http::Form::pypi_remove(name, version);
    let content_type = form.content_type();
    let auth = auth();
    let mut headers = vec![
        ("content-type", content_type.as_str()),
        ("authorization", auth.as_str()),
    ];
    headers.extend_from_slice(extra);
    http::request(s.gateway.addr(), "POST", "/", &headers, &form.body)
}

fn stored(s: &Setup) -> Vec<String> {
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut files = s.backend.stored();
    files.sort();
    files
}

#[test]
fn remove_pkg_follows_the_window_and_deleted_versions_never_return() {
    let s = setup();
    for v in ["1.0", "1.1", "1.2"] {
        assert_eq!(upload(&s, v).status, 200);
    }
    // Inside the window: removed.
    let r = remove(&s, "1.0", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(stored(&s), vec!["demo_pkg-1.1.tar.gz", "demo_pkg-1.2.tar.gz"]);

    // Never again, not even as the PEP 440-equal 1.0.0.
    for version in ["1.0", "1.0.0"] {
        let r = upload(&s, version);
        assert_eq!(r.status, 409, "{version}: {}", r.text());
        assert_eq!(r.json()["code"], "version_deleted");
        assert!(
            r.reason.contains("can never be uploaded again"),
            "twine prints the reason: {}",
            r.reason
        );
    }
    assert_eq!(stored(&s), vec!["demo_pkg-1.1.tar.gz", "demo_pkg-1.2.tar.gz"]);

    // After the window: pypiserver tells nothing of owners, so the default refuses.
    s.gateway.set_clock_offset(73 * HOUR);
    let r = remove(&s, "1.1", &[]);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["code"], "deletion_unknown_facts");
    assert!(r.reason.contains("yank"), "the refusal points to yanking: {}", r.reason);
    assert_eq!(stored(&s), vec!["demo_pkg-1.1.tar.gz", "demo_pkg-1.2.tar.gz"]);

    // An admin, with a reason, may.
    let r = remove(&s, "1.1", &[("x-portcullis-admin-token", ADMIN_TOKEN)]);
    assert_eq!(r.json()["code"], "override_reason_required", "{}", r.text());
    let r = remove(
        &s,
        "1.1",
        &[
            ("x-portcullis-admin-token", ADMIN_TOKEN),
            ("x-portcullis-override-reason", "malware report PYSEC-0000"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(stored(&s), vec!["demo_pkg-1.2.tar.gz"]);

    let audit = s.gateway.audit("pypi", "demo-pkg", 8);
    let outcomes: Vec<(String, String)> = audit
        .iter()
        .filter(|r| r["action"] == "delete_version")
        .map(|r| {
            (
                r["target"].as_str().unwrap_or_default().to_owned(),
                r["outcome"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("demo-pkg@1.1".to_owned(), "override".to_owned()),
            ("demo-pkg@1.1".to_owned(), "refuse".to_owned()),
            ("demo-pkg@1.0".to_owned(), "allow".to_owned()),
        ]
    );
    assert_eq!(audit[0]["reason"], "malware report PYSEC-0000");
    assert!(audit
        .iter()
        .any(|r| r["action"] == "upload" && r["outcome"] == "refuse" && r["rule"] == "builtin.tombstones"));
}

#[test]
fn removing_the_last_release_reserves_the_project_name() {
    let s = setup();
    assert_eq!(upload_of(&s, "lone_pkg", "1.0").status, 200);
    let r = remove_of(&s, "lone_pkg", "1.0", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(stored(&s).is_empty());
    // The name cannot be taken over, not even with a new version.
    let r = upload_of(&s, "lone_pkg", "2.0");
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["code"], "name_reserved");
    assert!(stored(&s).is_empty());
}

#[test]
fn delete_like_requests_the_gateway_cannot_classify_are_refused() {
    let s = setup();
    assert_eq!(upload(&s, "1.0").status, 200);
    let r = http::request(
        s.gateway.addr(),
        "DELETE",
        "/packages/demo_pkg-1.0.tar.gz",
        &[("authorization", &auth())],
        b"",
    );
    assert_eq!(r.status, 405, "{}", r.text());
    assert_eq!(r.json()["code"], "unclassified_write");
    // A form action the gateway does not know (pypiserver's own `doc_upload`, Warehouse's
    // long-gone `remove_file`...).
    let boundary = "b";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\":action\"\r\n\r\nremove_file\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\ndemo-pkg\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"version\"\r\n\r\n1.0\r\n--{boundary}--\r\n"
    );
    let r = http::request(
        s.gateway.addr(),
        "POST",
        "/",
        &[
            ("content-type", &format!("multipart/form-data; boundary={boundary}")),
            ("authorization", &auth()),
        ],
        body.as_bytes(),
    );
    assert_eq!(r.status, 405, "{}", r.text());
    assert_eq!(r.json()["code"], "unclassified_write");
    assert_eq!(stored(&s), vec!["demo_pkg-1.0.tar.gz"]);
}
