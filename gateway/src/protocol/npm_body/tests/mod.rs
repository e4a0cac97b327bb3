//! Tests of the npm publish inspector, grouped by the job they check; here the builders of
//! publish documents as libnpmpublish sends them, and the real provenance fixtures.

mod error;
mod facts;
mod scanner;
mod strip;
mod tarball;

use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha1::Sha1;
use sha2::{Digest, Sha512};

use super::*;

impl PublishInspector {
    /// Lets attachments other than a `.tgz` and a `.sigstore` through (skipped), to test
    /// stripping next to them.
    fn allowing_foreign_attachments(mut self) -> Self {
        self.allow_foreign_attachments = true;
        self
    }
}

const SIZES: &[usize] = &[1, 2, 3, 7, 64, 4096];

fn js(text: &str) -> String {
    serde_json::to_string(text).expect("JSON string")
}

/// An object with its members in this order (values are JSON text).
fn obj<K: AsRef<str>>(members: &[(K, String)]) -> String {
    let members: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("{}:{}", js(k.as_ref()), v))
        .collect();
    format!("{{{}}}", members.join(","))
}

fn sri(tarball: &[u8]) -> String {
    format!("sha512-{}", STANDARD.encode(Sha512::digest(tarball)))
}

fn shasum(tarball: &[u8]) -> String {
    hex::encode(Sha1::digest(tarball))
}

/// A version manifest as libnpmpublish sends it.
fn manifest(name: &str, version: &str, tarball: &[u8]) -> String {
    let file = name.rsplit('/').next().unwrap_or(name);
    obj(&[
        ("name", js(name)),
        ("version", js(version)),
        ("description", js("a demo package")),
        ("main", js("index.js")),
        (
            "repository",
            obj(&[("type", js("git")), ("url", js("git+https://github.com/acme/demo.git"))]),
        ),
        ("_id", js(&format!("{name}@{version}"))),
        (
            "dist",
            obj(&[
                ("integrity", js(&sri(tarball))),
                ("shasum", js(&shasum(tarball))),
                (
                    "tarball",
                    js(&format!("http://registry.example/{name}/-/{file}-{version}.tgz")),
                ),
            ]),
        ),
    ])
}

fn tgz_member(name: &str, version: &str, tarball: &[u8]) -> (String, String) {
    (
        format!("{name}-{version}.tgz"),
        obj(&[
            ("content_type", js("application/octet-stream")),
            ("data", js(&STANDARD.encode(tarball))),
            ("length", tarball.len().to_string()),
        ]),
    )
}

fn sigstore_member(name: &str, version: &str, bundle: &[u8]) -> (String, String) {
    let text = std::str::from_utf8(bundle).expect("the bundle is UTF-8");
    (
        format!("{name}-{version}.sigstore"),
        obj(&[
            ("content_type", js("application/vnd.dev.sigstore.bundle.v0.3+json")),
            ("data", js(text)),
            ("length", text.len().to_string()),
        ]),
    )
}

/// A publish document as libnpmpublish builds it, with these attachments.
fn document(
    name: &str,
    version: &str,
    manifest: String,
    attachments: &[(String, String)],
    attachments_first: bool,
) -> Vec<u8> {
    let mut members = vec![
        ("_id", js(name)),
        ("name", js(name)),
        ("description", js("a demo package")),
        ("dist-tags", obj(&[("latest", js(version))])),
        ("versions", obj(&[(version, manifest)])),
        ("access", "null".to_owned()),
    ];
    let attachments = ("_attachments", obj(attachments));
    if attachments_first {
        members.insert(0, attachments);
    } else {
        members.push(attachments);
    }
    obj(&members).into_bytes()
}

fn publish(name: &str, version: &str, tarball: &[u8], bundle: Option<&[u8]>) -> Vec<u8> {
    let mut attachments = vec![tgz_member(name, version, tarball)];
    attachments.extend(bundle.map(|b| sigstore_member(name, version, b)));
    document(name, version, manifest(name, version, tarball), &attachments, false)
}

fn run(mut inspector: PublishInspector, body: &[u8], chunk: usize) -> Result<(Vec<u8>, PublishFacts), PublishError> {
    let mut forwarded = Vec::new();
    for piece in body.chunks(chunk.max(1)) {
        forwarded.extend_from_slice(&inspector.feed(piece)?);
    }
    let (tail, facts) = inspector.finish()?;
    forwarded.extend_from_slice(&tail);
    Ok((forwarded, facts))
}

fn inspect(package: &str, body: &[u8], chunk: usize) -> Result<(Vec<u8>, PublishFacts), PublishError> {
    run(PublishInspector::new(package, Limits::default(), false), body, chunk)
}

fn facts(package: &str, body: &[u8]) -> PublishFacts {
    match inspect(package, body, 4096) {
        Ok((_, facts)) => facts,
        Err(e) => panic!(
            "refused: {e}\n{}",
            String::from_utf8_lossy(&body[..body.len().min(2000)])
        ),
    }
}

fn refused(package: &str, body: &[u8]) -> PublishError {
    let error = inspect(package, body, 4096).expect_err("the body was accepted");
    // The same refusal whatever the chunking.
    for chunk in [1, 7] {
        assert_eq!(
            inspect(package, body, chunk).expect_err("accepted in small chunks"),
            error
        );
    }
    error
}

fn replace(body: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = std::str::from_utf8(body).expect("UTF-8 body");
    assert!(text.contains(from), "{from:?} not in the body");
    text.replacen(from, to, 1).into_bytes()
}

fn tarball() -> Vec<u8> {
    // Not a real tarball: the inspector does not look inside. 1000 bytes, all values.
    (0..1000u32).map(|i| (i * 7 % 256) as u8).collect()
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/npm-provenance")
}

/// (case, package, version, sha512 of `artifact` from the case README).
const CASES: &[(&str, &str, &str, &str)] = &[
    (
        "npm-publish-attestation-key-sigstore-2.3.1",
        "sigstore",
        "2.3.1",
        "f06fbf5c353cc0db093904b9cac0d53b412d83dff6b80e6047d9786708a38e5c3105cad4e913dfc22dbe8c999b3fe029d47969fe75406843b8163db6fd22f681",
    ),
    (
        "slsa-v0.2-sigstore-1.0.0",
        "sigstore",
        "1.0.0",
        "7bea9f6e7ff37f5fab0b36bf061200fff03099fd2fd696b91d04bc5e4f225eb9fd6e0cadcad54ba980f43fb352a99e8810b4e0abeb5c0ef2cf9108cd1f258b36",
    ),
    (
        "slsa-v1-playwright-cli-0.1.1",
        "@playwright/cli",
        "0.1.1",
        "f64d7565f0f001f3150c322e1155b55afb3c4a80cd5c863574d43ef42f7f492f199849647317acbb97a82fbbcd6bdea7b626d419aab54ccdaa428aaf765fc8f6",
    ),
    (
        "slsa-v1-sigstore-2.3.1",
        "sigstore",
        "2.3.1",
        "f06fbf5c353cc0db093904b9cac0d53b412d83dff6b80e6047d9786708a38e5c3105cad4e913dfc22dbe8c999b3fe029d47969fe75406843b8163db6fd22f681",
    ),
];

fn fixture(case: &str) -> (Vec<u8>, Vec<u8>) {
    let dir = fixtures().join(case);
    let artifact = std::fs::read(dir.join("artifact")).expect("artifact");
    let bundle = std::fs::read(dir.join("bundle.sigstore.json")).expect("bundle");
    (artifact, bundle)
}
