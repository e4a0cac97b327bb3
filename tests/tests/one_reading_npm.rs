//! One reading of every npm publish (docs/one-reading.md), against real Verdaccio: each
//! ambiguous publish document is sent to a Verdaccio directly, to show what the backend's own
//! reader (express's body-parser and `JSON.parse`) makes of it, and to another Verdaccio
//! through the gateway, which must refuse it with nothing stored.

use std::io::Write as _;
use std::net::SocketAddr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use portcullis_e2e::gateway::{Gateway, RegistrySpec};
use portcullis_e2e::http;
use portcullis_e2e::verdaccio::Verdaccio;
use sha2::Digest as _;

const NAME: &str = "one-reading-demo";

struct Setup {
    _dir: tempfile::TempDir,
    direct: Verdaccio,
    direct_token: String,
    behind: Verdaccio,
    gateway: Gateway,
    gateway_token: String,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let direct = Verdaccio::start(&dir.path().join("direct"));
    let behind = Verdaccio::start(&dir.path().join("behind"));
    let gateway = Gateway::builder()
        .registry(RegistrySpec::new("npm", "npm", behind.addr()))
        .rules("[registries.npm]\n")
        .start(&dir.path().join("gateway"));
    let direct_token = direct.token(direct.addr());
    let gateway_token = behind.token(gateway.addr());
    Setup {
        _dir: dir,
        direct,
        direct_token,
        behind,
        gateway,
        gateway_token,
    }
}

/// A tarball's `dist` fields as libnpmpublish computes them.
fn dist(tarball: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "integrity": format!("sha512-{}", STANDARD.encode(sha2::Sha512::digest(tarball))),
        "shasum": hex::encode(<sha1::Sha1 as sha1::Digest>::digest(tarball)),
    })
}

/// The publish document of `NAME@version`; `{"description": …}` marks where cases splice.
fn document(version: &str, tarball: &[u8], description: &str) -> String {
    serde_json::json!({
        "_id": NAME,
        "name": NAME,
        "description": description,
        "dist-tags": {"latest": version},
        "versions": {version: {"name": NAME, "version": version, "description": description, "dist": dist(tarball)}},
        "_attachments": {format!("{NAME}-{version}.tgz"): {
            "content_type": "application/octet-stream",
            "data": STANDARD.encode(tarball),
            "length": tarball.len(),
        }},
    })
    .to_string()
}

fn put(addr: SocketAddr, token: &str, headers: &[(&str, &str)], body: &[u8]) -> http::Response {
    let auth = format!("Bearer {token}");
    let mut all = vec![("authorization", auth.as_str())];
    all.extend_from_slice(headers);
    http::request(addr, "PUT", &format!("/{NAME}"), &all, body)
}

/// The versions the backend's stored package document lists, and their descriptions.
fn stored_versions(backend: &Verdaccio) -> Vec<(String, String)> {
    std::thread::sleep(std::time::Duration::from_millis(300));
    let response = http::get(backend.addr(), &format!("/{NAME}"));
    if response.status != 200 {
        return Vec::new();
    }
    let doc = response.json();
    doc["versions"]
        .as_object()
        .map(|versions| {
            versions
                .iter()
                .map(|(v, m)| (v.clone(), m["description"].as_str().unwrap_or("").to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut child = std::process::Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip");
    child.stdin.take().expect("stdin").write_all(bytes).expect("write");
    child.wait_with_output().expect("gzip output").stdout
}

#[test]
fn ambiguous_publishes_that_verdaccio_reads_otherwise_are_refused() {
    let s = setup();
    let tarball = b"a tarball the gateway checked".to_vec();
    let good = document("1.0.0", &tarball, "checked");
    let json = [("content-type", "application/json")];

    // (what, headers, body, what Verdaccio alone stores, the gateway's code)
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, &'a str)>,
        Vec<u8>,
        Vec<(String, String)>,
        &'a str,
    );
    let stores = |v: &str, d: &str| vec![(v.to_owned(), d.to_owned())];
    let cases: Vec<Case> = vec![
        (
            // JSON.parse keeps the last of two equal keys; the gateway would have read the first.
            "a duplicate key in the version's manifest",
            json.to_vec(),
            good.replacen(
                "\"description\":\"checked\",\"dist\"",
                "\"description\":\"checked\",\"description\":\"other\",\"dist\"",
                1,
            )
            .into_bytes(),
            stores("1.0.0", "other"),
            "ambiguous_body",
        ),
        (
            "a duplicate key spelled with a \\u escape",
            json.to_vec(),
            good.replacen(
                "\"description\":\"checked\",\"dist\"",
                "\"description\":\"checked\",\"d\\u0065scription\":\"other\",\"dist\"",
                1,
            )
            .into_bytes(),
            stores("1.0.0", "other"),
            "ambiguous_body",
        ),
        (
            // body-parser decodes any declared utf-* charset, UTF-7 included: the gateway reads
            // "caf+AOk-" (UTF-8), Verdaccio "café". Keys can be spelled this way too.
            "a UTF-7 charset",
            vec![("content-type", "application/json; charset=utf-7")],
            document("1.0.0", &tarball, "caf+AOk-").into_bytes(),
            stores("1.0.0", "caf\u{e9}"),
            "ambiguous_body",
        ),
        (
            // body-parser inflates a gzip body; the gateway would read the compressed bytes.
            "a gzip Content-Encoding",
            vec![("content-type", "application/json"), ("content-encoding", "gzip")],
            gzip(good.as_bytes()),
            stores("1.0.0", "checked"),
            "ambiguous_body",
        ),
    ];
    for (what, headers, body, alone, code) in cases {
        let direct = put(s.direct.addr(), &s.direct_token, &headers, &body);
        assert!(
            direct.status < 300,
            "{what}: Verdaccio answered {} {}",
            direct.status,
            direct.text()
        );
        assert_eq!(
            stored_versions(&s.direct),
            alone,
            "{what}: what Verdaccio stores from it"
        );
        let unpublish = http::request(
            s.direct.addr(),
            "DELETE",
            &format!("/{NAME}/-rev/whatever"),
            &[("authorization", &format!("Bearer {}", s.direct_token))],
            b"",
        );
        assert!(unpublish.status < 300, "{what}: unpublish {}", unpublish.text());

        let through = put(s.gateway.addr(), &s.gateway_token, &headers, &body);
        assert_eq!(through.status, 400, "{what}: {}", through.text());
        assert_eq!(through.json()["code"], code, "{what}: {}", through.text());
        assert!(
            stored_versions(&s.behind).is_empty(),
            "{what}: stored behind the gateway"
        );
        eprintln!("{what}: Verdaccio alone stores {alone:?}; through the gateway: 400 {code}");
    }
    // The same document, sent plainly, is accepted and stored as read.
    let plain = put(s.gateway.addr(), &s.gateway_token, &json, good.as_bytes());
    assert!(plain.status < 300, "{}", plain.text());
    assert_eq!(stored_versions(&s.behind), stores("1.0.0", "checked"));
}
