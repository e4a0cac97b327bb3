//! One reading of every PyPI upload (docs/one-reading.md), against real pypiserver: each
//! ambiguous form is sent to a pypiserver directly, to show what the backend's own reader
//! (bottle on `cgi.FieldStorage`) makes of it, and to another pypiserver through the gateway,
//! which must refuse it with nothing stored — or, where the gateway canonicalises, forward it
//! so that pypiserver stores exactly the file the gateway read. Provenance is `required` for
//! the real `pypi-attestations` 0.0.19 sdist and its real PEP 740 attestation, so an attack
//! that smuggles other bytes past the verification shows as a stored file whose SHA-256 is
//! not the attested one.

use std::net::SocketAddr;
use std::path::Path;

use portcullis_e2e::gateway::{Gateway, RegistrySpec};
use portcullis_e2e::http::{self, Response};
use portcullis_e2e::pep740::{self, SDIST};
use portcullis_e2e::pypiserver::{self, Pypiserver};
use portcullis_e2e::{fixtures, sha256_hex};

const GOOD: &str = "3f6b0c9d2a8e4f1b9c7d5e3a1f0b2c4d";
const EVIL: &str = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b";

struct Setup {
    _dir: tempfile::TempDir,
    direct: Pypiserver,
    behind: Pypiserver,
    gateway: Gateway,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let direct = Pypiserver::start(&dir.path().join("direct"));
    let behind = Pypiserver::start(&dir.path().join("behind"));
    let root = fixtures().join("trusted-roots/public-good-production.trusted_root.json");
    let gateway = Gateway::builder()
        .registry(RegistrySpec::new("pypi", "pypi", behind.addr()))
        .rules(&pep740::rules("required"))
        .config(&format!(
            "[provenance]\ntrusted_root = {:?}\n",
            root.display().to_string()
        ))
        .start(&dir.path().join("gateway"));
    Setup {
        _dir: dir,
        direct,
        behind,
        gateway,
    }
}

/// The real sdist and its attestations field (a JSON list holding the publish attestation).
fn genuine() -> (Vec<u8>, String) {
    let (sdist, attestation) = pep740::genuine();
    (sdist, format!("[{attestation}]"))
}

/// One part as twine encodes it.
fn part(boundary: &str, name: &str, filename: Option<&str>, data: &[u8]) -> Vec<u8> {
    let head = match filename {
        Some(f) => format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        ),
        None => format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"),
    };
    [head.as_bytes(), data, b"\r\n"].concat()
}

/// The fields of an upload of the sdist's project and version, with `attestations`.
fn fields(boundary: &str, attestations: &str) -> Vec<u8> {
    [
        part(boundary, ":action", None, b"file_upload"),
        part(boundary, "protocol_version", None, b"1"),
        part(boundary, "name", None, b"pypi-attestations"),
        part(boundary, "version", None, b"0.0.19"),
        part(boundary, "attestations", None, attestations.as_bytes()),
    ]
    .concat()
}

fn close(boundary: &str) -> Vec<u8> {
    format!("--{boundary}--\r\n").into_bytes()
}

fn post(addr: SocketAddr, content_type: &str, body: &[u8]) -> Response {
    let auth = http::basic_auth(pypiserver::USER, pypiserver::PASSWORD);
    http::request(
        addr,
        "POST",
        "/",
        &[("content-type", content_type), ("authorization", &auth)],
        body,
    )
}

/// The files a pypiserver stores, with their SHA-256s, once it has settled.
fn stored(backend: &Pypiserver) -> Vec<(String, String)> {
    std::thread::sleep(std::time::Duration::from_millis(300));
    backend
        .stored()
        .into_iter()
        .map(|name| {
            let bytes = std::fs::read(Path::new(&backend.packages).join(&name)).expect("stored file");
            (name, sha256_hex(&bytes))
        })
        .collect()
}

fn clear(backend: &Pypiserver) {
    for name in backend.stored() {
        std::fs::remove_file(backend.packages.join(name)).expect("remove stored file");
    }
}

/// An ambiguous form: what pypiserver stores when sent it directly, and that the gateway
/// refuses it with `code` and the backend behind stores nothing.
struct Attack {
    what: &'static str,
    content_type: String,
    body: Vec<u8>,
    /// The SHA-256 of the file pypiserver stores from it directly.
    direct_stores: String,
    code: &'static str,
}

#[test]
fn ambiguous_forms_that_pypiserver_reads_otherwise_are_refused() {
    let s = setup();
    let (sdist, attestations) = genuine();
    let evil = b"not the attested sdist: a file the attestation never covered".to_vec();
    let form = |b: &str| fields(b, &attestations);

    // 1. Two boundary parameters. The form under GOOD carries the genuine sdist and
    // attestation; under EVIL, hidden in GOOD's first part (and so, for GOOD, part of a
    // field's value), a form with the same fields and other bytes. The gateway read the
    // first parameter (multer); pypiserver's cgi reads the last.
    let double_boundary = [
        part(
            GOOD,
            "comment",
            None,
            &[form(EVIL), part(EVIL, "content", Some(SDIST), &evil), close(EVIL)].concat(),
        ),
        form(GOOD),
        part(GOOD, "content", Some(SDIST), &sdist),
        close(GOOD),
    ]
    .concat();

    // 2. A second `content` part hidden behind an LF-only delimiter in a field after the
    // file: a CRLF-only reader sees one file, the genuine one; cgi splits the field there,
    // sees two files and pypiserver stores the last.
    let lf_delimiter = [
        form(GOOD),
        part(GOOD, "content", Some(SDIST), &sdist),
        part(
            GOOD,
            "description",
            None,
            &[
                format!(
                    "hello\n--{GOOD}\r\nContent-Disposition: form-data; name=\"content\"; filename=\"{SDIST}\"\r\n\r\n"
                )
                .as_bytes(),
                &evil,
            ]
            .concat(),
        ),
        close(GOOD),
    ]
    .concat();

    // 3. The file twice: pypiserver stores the last one.
    let two_files = [
        form(GOOD),
        part(GOOD, "content", Some(SDIST), &sdist),
        part(GOOD, "content", Some(SDIST), &evil),
        close(GOOD),
    ]
    .concat();

    // 4. A false MD5 next to a true SHA-256: pypiserver checks neither and stores the file;
    // a backend that records the claim would show a false digest for the file.
    let false_md5 = [
        part(GOOD, "md5_digest", None, b"00000000000000000000000000000000"),
        part(GOOD, "sha256_digest", None, sha256_hex(&sdist).as_bytes()),
        form(GOOD),
        part(GOOD, "content", Some(SDIST), &sdist),
        close(GOOD),
    ]
    .concat();

    let ct = |b: &str| format!("multipart/form-data; boundary={b}");
    let attacks = vec![
        Attack {
            what: "two boundary parameters",
            content_type: format!("multipart/form-data; boundary={GOOD}; boundary={EVIL}"),
            body: double_boundary,
            direct_stores: sha256_hex(&evil),
            code: "ambiguous_body",
        },
        Attack {
            what: "a file behind an LF-only delimiter",
            content_type: ct(GOOD),
            body: lf_delimiter,
            direct_stores: sha256_hex(&evil),
            code: "ambiguous_body",
        },
        Attack {
            what: "the file twice",
            content_type: ct(GOOD),
            body: two_files,
            direct_stores: sha256_hex(&evil),
            code: "ambiguous_body",
        },
        Attack {
            what: "a false MD5 beside a true SHA-256",
            content_type: ct(GOOD),
            body: false_md5,
            direct_stores: sha256_hex(&sdist),
            code: "digest_mismatch",
        },
    ];
    for attack in attacks {
        clear(&s.direct);
        let direct = post(s.direct.addr(), &attack.content_type, &attack.body);
        assert_eq!(
            direct.status,
            200,
            "{}: pypiserver answered {}",
            attack.what,
            direct.text()
        );
        assert_eq!(
            stored(&s.direct),
            vec![(SDIST.to_owned(), attack.direct_stores.clone())],
            "{}: what pypiserver stores from it",
            attack.what
        );
        let through = post(s.gateway.addr(), &attack.content_type, &attack.body);
        assert_eq!(through.status, 400, "{}: {}", attack.what, through.text());
        assert_eq!(
            through.json()["code"],
            attack.code,
            "{}: {}",
            attack.what,
            through.text()
        );
        assert!(
            stored(&s.behind).is_empty(),
            "{}: the backend behind the gateway stored it",
            attack.what
        );
        eprintln!(
            "{}: pypiserver alone stores {SDIST} with sha256 {}…; through the gateway: {} {}",
            attack.what,
            &attack.direct_stores[..12],
            through.status,
            attack.code
        );
    }
}

/// Spellings of the form's `Content-Type` that mean one thing but that pypiserver cannot read
/// (`Multipart/Form-Data` makes its `cgi` fail): the gateway forwards the one canonical
/// spelling, and pypiserver stores exactly the attested file.
#[test]
fn content_type_spellings_are_forwarded_canonical_and_stored_as_read() {
    let s = setup();
    let (sdist, attestations) = genuine();
    let body = [
        fields(GOOD, &attestations),
        part(GOOD, "content", Some(SDIST), &sdist),
        close(GOOD),
    ]
    .concat();
    let odd = format!("Multipart/Form-Data; BOUNDARY=\"{GOOD}\"");
    let direct = post(s.direct.addr(), &odd, &body);
    assert_ne!(
        direct.status,
        200,
        "pypiserver reads the odd spelling: {}",
        direct.text()
    );
    assert!(stored(&s.direct).is_empty());
    let through = post(s.gateway.addr(), &odd, &body);
    assert_eq!(through.status, 200, "{}", through.text());
    assert_eq!(stored(&s.behind), vec![(SDIST.to_owned(), sha256_hex(&sdist))]);
}
