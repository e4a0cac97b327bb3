//! npm provenance on the publish path, through the gateway in front of a real Verdaccio, with
//! the real `sigstore@2.3.1` tarball and its real provenance bundle
//! (`tests/fixtures/npm-provenance/slsa-v1-sigstore-2.3.1`). The npm CLI cannot sign offline,
//! so the test sends the body `npm publish --provenance` would send. Verdaccio refuses publishes
//! that carry provenance, so the gateway strips the attachment, keeps the bundle and serves it
//! at npm's attestations endpoint.

use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use portcullis_e2e::gateway::{Gateway, RegistrySpec};
use portcullis_e2e::http;
use portcullis_e2e::npm_provenance::{case, publish_body, REPOSITORY as REPO};
use portcullis_e2e::verdaccio::Verdaccio;
use portcullis_e2e::{fixtures, sha256_hex};
use serde_json::{json, Value};
use sha2::{Digest, Sha512};

const RULES: &str = r#"
[issuers.github]
url = "https://token.actions.githubusercontent.com"
kind = "github"

[registries.npm]
audience = "npm:127.0.0.1"

[[registries.npm.provenance_rules]]
id = "attested"
names = ["sigstore", "must-attest"]
mode = "required"

[[registries.npm.publishers]]
id = "sigstore-js"
issuer = "github"
projects = ["sigstore"]
repository = "sigstore/sigstore-js"
repository_owner_id = "71096353"
workflow = "release.yml"

[[registries.npm.publishers]]
id = "sigstore-js-2023"
issuer = "github"
projects = ["sigstore"]
repository = "sigstore/sigstore-js"
repository_owner_id = "71096353"
workflow = "publish.yml"
"#;

struct Setup {
    _dir: tempfile::TempDir,
    work: PathBuf,
    backend: Verdaccio,
    gateway: Gateway,
    token: String,
}

fn setup() -> Setup {
    setup_with(RULES, |_| {})
}

/// Verdaccio and a gateway with `rules`; `before` prepares the gateway's folder first.
fn setup_with(rules: &str, before: impl FnOnce(&std::path::Path)) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().to_path_buf();
    before(&work.join("gateway"));
    let backend = Verdaccio::start(&work.join("verdaccio"));
    let root = fixtures().join("trusted-roots/public-good-production.trusted_root.json");
    let gateway = Gateway::builder()
        .registry(RegistrySpec {
            extra: "strip_npm_provenance = true\n".into(),
            ..RegistrySpec::new("npm", "npm", backend.addr())
        })
        .rules(rules)
        .config(&format!(
            "[provenance]\ntrusted_root = {:?}\n",
            root.display().to_string()
        ))
        .start(&work.join("gateway"));
    let token = backend.token(backend.addr());
    Setup {
        _dir: dir,
        work,
        backend,
        gateway,
        token,
    }
}

fn publish(s: &Setup, name: &str, body: &[u8]) -> http::Response {
    http::request(
        s.gateway.addr(),
        "PUT",
        &format!("/{name}"),
        &[
            ("content-type", "application/json"),
            ("authorization", &format!("Bearer {}", s.token)),
        ],
        body,
    )
}

#[test]
fn the_real_provenance_passes_is_stripped_for_verdaccio_and_served_back() {
    let s = setup();
    let tarball = std::fs::read(case().join("artifact")).expect("tarball");
    let bundle = std::fs::read_to_string(case().join("bundle.sigstore.json")).expect("bundle");
    let response = publish(
        &s,
        "sigstore",
        &publish_body("sigstore", "2.3.1", &tarball, REPO, Some(&bundle)),
    );
    assert!(matches!(response.status, 200 | 201), "{}", response.text());
    let stored = s.backend.storage.join("sigstore/sigstore-2.3.1.tgz");
    assert_eq!(
        sha256_hex(&std::fs::read(&stored).expect("stored tarball")),
        sha256_hex(&tarball),
        "the tarball landed byte for byte"
    );
    let decision = &s.gateway.decisions(1)[0];
    let detail = decision["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("provenance=accepted"), "{decision}");
    assert!(detail.contains("signer_publisher=sigstore-js"), "{decision}");

    let served = http::get(s.gateway.addr(), "/-/npm/v1/attestations/sigstore@2.3.1");
    assert_eq!(served.status, 200, "{}", served.text());
    let original: Value = serde_json::from_str(&bundle).expect("json");
    assert_eq!(served.json()["attestations"][0]["bundle"], original);
    assert!(
        served.text().contains(bundle.as_str()),
        "the bundle is served byte for byte as published"
    );
    assert_eq!(
        served.json()["attestations"][0]["predicateType"],
        "https://slsa.dev/provenance/v1"
    );
    let _ = &s.work;
}

/// Provenance from February 2023, before Fulcio's CI extensions: its certificate carries only
/// the deprecated GitHub Workflow extensions (.2 to .6) and the workflow in the SAN, and no
/// Source Repository URI. npmjs.com accepted it; the gateway matches the publisher and the
/// package's repository from those extensions.
#[test]
fn provenance_signed_before_the_2023_extensions_is_accepted() {
    let s = setup();
    let case = fixtures().join("npm-provenance/slsa-v0.2-sigstore-1.0.0");
    let tarball = std::fs::read(case.join("artifact")).expect("tarball");
    let bundle = std::fs::read_to_string(case.join("bundle.sigstore.json")).expect("bundle");
    let response = publish(
        &s,
        "sigstore",
        &publish_body("sigstore", "1.0.0", &tarball, REPO, Some(&bundle)),
    );
    assert!(matches!(response.status, 200 | 201), "{}", response.text());
    let stored = s.backend.storage.join("sigstore/sigstore-1.0.0.tgz");
    assert_eq!(
        sha256_hex(&std::fs::read(&stored).expect("stored tarball")),
        sha256_hex(&tarball)
    );
    let decision = &s.gateway.decisions(1)[0];
    let detail = decision["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("provenance=accepted"), "{decision}");
    assert!(detail.contains("signer_publisher=sigstore-js-2023"), "{decision}");
    // The repository comes from the deprecated extensions: another one is refused.
    let other = publish(
        &s,
        "sigstore",
        &publish_body(
            "sigstore",
            "1.0.0",
            &tarball,
            "git+https://github.com/someone/else.git",
            Some(&bundle),
        ),
    );
    assert_eq!(other.status, 400, "{}", other.text());
    let code = other.json()["code"].as_str().unwrap_or_default().to_owned();
    assert!(code.starts_with("provenance_"), "{}", other.text());
}

#[test]
fn forged_misdirected_and_missing_provenance_is_refused_and_nothing_is_stored() {
    let s = setup();
    let tarball = std::fs::read(case().join("artifact")).expect("tarball");
    let bundle = std::fs::read_to_string(case().join("bundle.sigstore.json")).expect("bundle");
    let mut changed = tarball.clone();
    changed[100] ^= 0x01;
    let mut wrong_integrity: Value =
        serde_json::from_slice(&publish_body("sigstore", "2.3.1", &tarball, REPO, Some(&bundle))).expect("json");
    wrong_integrity["versions"]["2.3.1"]["dist"]["integrity"] =
        json!(format!("sha512-{}", STANDARD.encode(Sha512::digest(b"other"))));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "the tarball changed by one byte",
            publish_body("sigstore", "2.3.1", &changed, REPO, Some(&bundle)),
            "provenance_invalid",
        ),
        (
            "repository.url of another repository",
            publish_body(
                "sigstore",
                "2.3.1",
                &tarball,
                "git+https://github.com/someone/fork.git",
                Some(&bundle),
            ),
            "provenance_invalid",
        ),
        (
            "no provenance where required",
            publish_body("sigstore", "2.3.1", &tarball, REPO, None),
            "provenance_missing",
        ),
        (
            "integrity that is not the tarball's",
            serde_json::to_vec(&wrong_integrity).expect("json"),
            "digest_mismatch",
        ),
    ];
    for (what, body, code) in &cases {
        let response = publish(&s, "sigstore", body);
        assert_eq!(response.json()["code"], *code, "{what}: {}", response.text());
        assert!(matches!(response.status, 400 | 403), "{what}: {}", response.status);
    }
    // Nothing of the package reached Verdaccio's storage: not the tarball, not even the
    // package stub it writes before refusing a bad publish (the last bytes were held back).
    let stored: Vec<String> = s
        .backend
        .stored()
        .into_iter()
        .filter(|f| f.contains("sigstore"))
        .collect();
    assert!(stored.is_empty(), "{stored:?}");
    let none = http::get(s.gateway.addr(), "/-/npm/v1/attestations/sigstore@2.3.1");
    assert_eq!(none.status, 404);
}

#[test]
fn npm_publish_without_provenance_under_optional_and_required() {
    let s = setup();
    let npmrc = s.work.join("npmrc");
    portcullis_e2e::npm::write_npmrc(&npmrc, &s.gateway, &s.token);
    let package = |name: &str| {
        let dir = s.work.join(format!("src-{name}"));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(
            dir.join("package.json"),
            json!({"name": name, "version": "1.0.0", "main": "index.js", "license": "MIT"}).to_string(),
        )
        .expect("package.json");
        std::fs::write(dir.join("index.js"), "module.exports = 1;\n").expect("index.js");
        dir
    };
    let optional = portcullis_e2e::npm::npm(&s.work, &npmrc, &package("plain-pkg"))
        .args(["publish", "--provenance=false"])
        .output()
        .expect("npm");
    assert!(
        optional.status.success(),
        "optional: {}",
        String::from_utf8_lossy(&optional.stderr)
    );
    let required = portcullis_e2e::npm::npm(&s.work, &npmrc, &package("must-attest"))
        .args(["publish", "--provenance=false"])
        .output()
        .expect("npm");
    let printed = String::from_utf8_lossy(&required.stderr);
    assert!(!required.status.success(), "required: {printed}");
    assert!(
        printed.contains("provenance is required for project must-attest"),
        "{printed}"
    );
    let stored = s.backend.stored();
    assert!(stored.iter().any(|f| f.ends_with("plain-pkg-1.0.0.tgz")), "{stored:?}");
    assert!(!stored.iter().any(|f| f.contains("must-attest")), "{stored:?}");
}

/// Records, as an earlier run of the gateway would have, that `sigstore@2.3.0` was published
/// with provenance built from `repository`.
fn seed_history(state_dir: &std::path::Path, repository: &str) {
    use portcullis::state::{LedgerEntry, SqliteStore, StateStore};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = SqliteStore::open(state_dir).await.expect("state store");
        let id = store
            .ledger_begin(&LedgerEntry {
                registry: "npm".into(),
                project: "sigstore".into(),
                version: "2.3.0".into(),
                filename: "sigstore-2.3.0.tgz".into(),
                sha256: "00".repeat(32),
                size: 1,
                credential: "legacy".into(),
                publisher: None,
                signer: Some(format!("{repository}/.github/workflows/release.yml@refs/heads/main")),
                source_repository: Some(repository.into()),
                provenance_kind: Some("npm-sigstore".into()),
                provenance: Some(b"{}".to_vec()),
                request_id: "seeded".into(),
                created_at: 1_700_000_000,
            })
            .await
            .expect("ledger_begin");
        store
            .ledger_finish(id, true, "201", 1_700_000_001, None)
            .await
            .expect("ledger_finish");
    });
}

fn setup_with_history(repository: &str, rules_extra: &str) -> Setup {
    let rules = RULES.replace("mode = \"required\"", &format!("mode = \"optional\"\n{rules_extra}"));
    setup_with(&rules, |gateway_dir| {
        seed_history(&gateway_dir.join("data"), repository)
    })
}

#[test]
fn the_source_repository_is_pinned_across_versions() {
    let tarball = std::fs::read(case().join("artifact")).expect("tarball");
    let bundle = std::fs::read_to_string(case().join("bundle.sigstore.json")).expect("bundle");
    let body = publish_body("sigstore", "2.3.1", &tarball, REPO, Some(&bundle));
    let stored = |s: &Setup| s.backend.storage.join("sigstore/sigstore-2.3.1.tgz").exists();

    // 2.3.0 came from sigstore/sigstore-js: 2.3.1 from the same repository passes, and the
    // same version without provenance would have been a downgrade.
    let same = setup_with_history("https://github.com/sigstore/sigstore-js", "");
    let downgrade = publish(
        &same,
        "sigstore",
        &publish_body("sigstore", "2.3.1", &tarball, REPO, None),
    );
    assert_eq!(downgrade.json()["code"], "provenance_downgrade", "{}", downgrade.text());
    assert!(!stored(&same));
    let accepted = publish(&same, "sigstore", &body);
    assert!(matches!(accepted.status, 200 | 201), "{}", accepted.text());
    assert!(stored(&same));

    // 2.3.0 came from another repository (a takeover, or a fork publishing under the name):
    // 2.3.1 with genuine provenance from sigstore-js is refused, nothing reaches Verdaccio.
    let moved = setup_with_history("https://github.com/someone-else/sigstore-js", "");
    let refused = publish(&moved, "sigstore", &body);
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert_eq!(refused.json()["code"], "provenance_repository", "{}", refused.text());
    let message = refused.json()["message"].as_str().unwrap_or_default().to_owned();
    assert!(
        message.contains("someone-else/sigstore-js") && message.contains("sigstore/sigstore-js"),
        "{message}"
    );
    assert!(!stored(&moved));
    assert!(moved.backend.stored().iter().all(|f| !f.contains("sigstore")));

    // The operator allows the move for this project: the same publish passes.
    let allowed = setup_with_history(
        "https://github.com/someone-else/sigstore-js",
        "allow_repository_change = true",
    );
    let accepted = publish(&allowed, "sigstore", &body);
    assert!(matches!(accepted.status, 200 | 201), "{}", accepted.text());
    assert!(stored(&allowed));
}
