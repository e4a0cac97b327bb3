//! The real PEP 740 case most suites upload: pypi-attestations 0.0.19's sdist and its GitHub
//! Actions publish attestation (`tests/fixtures/pep740`), the rules that name its trusted
//! publisher, and an upload with the backend's own credential (legacy mode).

use std::net::SocketAddr;

use crate::http::{self, Form};

/// The sdist's file name.
pub const SDIST: &str = "pypi_attestations-0.0.19.tar.gz";

/// The sdist's bytes and its publish attestation (one JSON object, as twine sends it).
pub fn genuine() -> (Vec<u8>, String) {
    let dir = crate::fixtures().join("pep740/github-publish-pypi-attestations-0.0.19");
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let attestation = String::from_utf8(read(&format!("{SDIST}.publish.attestation"))).expect("utf-8");
    (read("artifact"), attestation)
}

/// The real trusted publisher of the attestation: the workflow that signed it, as a
/// `[[registries.pypi.publishers]]` entry with id `tob-release` and issuer `github`.
pub const TOB_RELEASE_PUBLISHER: &str = r#"[[registries.pypi.publishers]]
id = "tob-release"
issuer = "github"
projects = ["pypi-attestations"]
repository = "trailofbits/pypi-attestations"
repository_owner_id = "2314423"
workflow = "release.yml"
"#;

/// Rules for registry `pypi`: the GitHub issuer, provenance `mode` for `pypi-attestations`
/// (rule `attested`), and its real trusted publisher `tob-release`.
pub fn rules(mode: &str) -> String {
    format!(
        r#"
[issuers.github]
url = "https://token.actions.githubusercontent.com"
kind = "github"

[registries.pypi]
audience = "portcullis-test"

[[registries.pypi.provenance_rules]]
id = "attested"
names = ["pypi-attestations"]
mode = "{mode}"

{TOB_RELEASE_PUBLISHER}"#
    )
}

/// A PyPI upload of `content` as `filename` through `addr`, with pypiserver's credential and
/// the `attestations` field when given.
pub fn upload(
    addr: SocketAddr,
    name: &str,
    version: &str,
    filename: &str,
    content: &[u8],
    attestations: Option<&str>,
) -> http::Response {
    let extra: Vec<(&str, &str)> = attestations.map(|a| vec![("attestations", a)]).unwrap_or_default();
    let form = Form::pypi_upload_with(name, version, filename, content, &extra);
    let auth = http::basic_auth(crate::pypiserver::USER, crate::pypiserver::PASSWORD);
    http::request(
        addr,
        "POST",
        "/",
        &[("content-type", &form.content_type()), ("authorization", &auth)],
        &form.body,
    )
}
