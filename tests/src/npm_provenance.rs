//! The real npm provenance case most suites publish: `sigstore@2.3.1`'s tarball and its SLSA v1
//! provenance bundle (`tests/fixtures/npm-provenance/slsa-v1-sigstore-2.3.1`), and the publish
//! document `npm publish --provenance` sends (libnpmpublish's shape). The npm CLI cannot sign
//! offline, so the tests and the demo send that document themselves.

use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::json;
use sha2::{Digest, Sha512};

/// The `repository` the real package.json names.
pub const REPOSITORY: &str = "git+https://github.com/sigstore/sigstore-js.git";

/// The fixture folder of `sigstore@2.3.1`.
pub fn case() -> PathBuf {
    crate::fixtures().join("npm-provenance/slsa-v1-sigstore-2.3.1")
}

/// The tarball of `sigstore@2.3.1` and its provenance bundle (JSON text).
pub fn genuine() -> (Vec<u8>, String) {
    let dir = case();
    let tarball = std::fs::read(dir.join("artifact")).expect("tarball");
    let bundle = std::fs::read_to_string(dir.join("bundle.sigstore.json")).expect("bundle");
    (tarball, bundle)
}

/// The publish document as libnpmpublish builds it: the version with its `dist` (sha512
/// integrity, sha1 shasum), the tarball attachment and, when given, the provenance bundle as
/// the `<name>-<version>.sigstore` attachment.
pub fn publish_body(name: &str, version: &str, tarball: &[u8], repository: &str, provenance: Option<&str>) -> Vec<u8> {
    let integrity = format!("sha512-{}", STANDARD.encode(Sha512::digest(tarball)));
    let shasum = {
        use sha1::Digest as _;
        hex::encode(sha1::Sha1::digest(tarball))
    };
    let file = format!("{name}-{version}.tgz");
    let mut attachments = serde_json::Map::new();
    attachments.insert(
        file.clone(),
        json!({"content_type": "application/octet-stream", "data": STANDARD.encode(tarball), "length": tarball.len()}),
    );
    if let Some(bundle) = provenance {
        attachments.insert(
            format!("{name}-{version}.sigstore"),
            json!({"content_type": "application/vnd.dev.sigstore.bundle+json;version=0.2", "data": bundle, "length": bundle.len()}),
        );
    }
    serde_json::to_vec(&json!({
        "_id": name,
        "name": name,
        "description": "test",
        "dist-tags": {"latest": version},
        "versions": {version: {
            "name": name, "version": version, "_id": format!("{name}@{version}"),
            "repository": {"type": "git", "url": repository},
            "dist": {"integrity": integrity, "shasum": shasum, "tarball": format!("http://localhost/{name}/-/{file}")},
        }},
        "access": "public",
        "_attachments": attachments,
    }))
    .expect("json")
}
