//! PEP 740 attestations on the PyPI upload path, through the gateway in front of a real
//! pypiserver, with the real attestations and distributions of `tests/fixtures/pep740`:
//! genuine ones pass (twine `--attestations`), forged, misdirected or missing ones are refused
//! before the backend commits anything, audit and shadow modes pass and record.

use std::path::{Path, PathBuf};
use std::process::Command;

use portcullis_e2e::gateway::{Gateway, RegistrySpec};
use portcullis_e2e::http;
use portcullis_e2e::pep740::{self, SDIST, TOB_RELEASE_PUBLISHER};
use portcullis_e2e::pypiserver::{self, Pypiserver};
use portcullis_e2e::tools::tools;
use portcullis_e2e::{fixtures, sha256_hex};

const GITLAB_SDIST: &str = "gitlab_oidc_project-0.0.3.tar.gz";

fn case(name: &str) -> PathBuf {
    fixtures().join("pep740").join(name)
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The publish attestation of pypi-attestations 0.0.19 and its sdist.
fn genuine() -> (Vec<u8>, String) {
    pep740::genuine()
}

fn rules(mode: &str, shadow: bool) -> String {
    format!(
        r#"
[issuers.github]
url = "https://token.actions.githubusercontent.com"
kind = "github"

[issuers.gitlab]
url = "https://gitlab.com"
kind = "gitlab"

[registries.pypi]
audience = "portcullis-test"

[[registries.pypi.provenance_rules]]
id = "attested"
names = ["pypi-attestations", "gitlab-oidc-project"]
mode = "{mode}"
shadow = {shadow}

{TOB_RELEASE_PUBLISHER}
[[registries.pypi.publishers]]
id = "gitlab-elsewhere"
issuer = "gitlab"
projects = ["gitlab-oidc-project"]
project_path = "someone/else"
ci_config_path = ".gitlab-ci.yml"
"#
    )
}

struct Setup {
    _dir: tempfile::TempDir,
    work: PathBuf,
    backend: Pypiserver,
    gateway: Gateway,
}

fn setup(mode: &str, shadow: bool, root: &str) -> Setup {
    setup_full(mode, shadow, &fixtures().join("trusted-roots").join(root))
}

fn setup_with_root(mode: &str, root: &Path) -> Setup {
    setup_full(mode, false, root)
}

fn setup_full(mode: &str, shadow: bool, root: &Path) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().to_path_buf();
    let backend = Pypiserver::start(&work.join("pypiserver"));
    let gateway = Gateway::builder()
        .registry(RegistrySpec::new("pypi", "pypi", backend.addr()))
        .rules(&rules(mode, shadow))
        .config(&format!(
            "[provenance]\ntrusted_root = {:?}\n",
            root.display().to_string()
        ))
        .start(&work.join("gateway"));
    Setup {
        _dir: dir,
        work,
        backend,
        gateway,
    }
}

fn upload(
    s: &Setup,
    name: &str,
    version: &str,
    filename: &str,
    content: &[u8],
    attestations: Option<&str>,
) -> http::Response {
    pep740::upload(s.gateway.addr(), name, version, filename, content, attestations)
}

/// An upload of the real `pypi-attestations` 0.0.19 sdist's name and version carrying `content`.
fn upload_sdist(s: &Setup, content: &[u8], attestations: Option<&str>) -> http::Response {
    upload(s, "pypi-attestations", "0.0.19", SDIST, content, attestations)
}

fn settled(backend: &Pypiserver) -> Vec<String> {
    std::thread::sleep(std::time::Duration::from_millis(300));
    backend.stored()
}

#[test]
fn twine_uploads_the_real_attestation_and_it_is_accepted() {
    let s = setup("required", false, "public-good-production.trusted_root.json");
    let (sdist, attestation) = genuine();
    let dist = s.work.join("dist");
    std::fs::create_dir_all(&dist).expect("dist");
    std::fs::write(dist.join(SDIST), &sdist).expect("sdist");
    std::fs::write(dist.join(format!("{SDIST}.publish.attestation")), &attestation).expect("attestation");
    let out = Command::new(tools().twine())
        .args([
            "upload",
            "--attestations",
            "--disable-progress-bar",
            "--non-interactive",
            "--repository-url",
        ])
        .arg(s.gateway.url() + "/")
        .args(["-u", pypiserver::USER, "-p", pypiserver::PASSWORD])
        .arg(dist.join(SDIST))
        .arg(dist.join(format!("{SDIST}.publish.attestation")))
        .env("NO_COLOR", "1")
        .output()
        .expect("run twine");
    assert!(
        out.status.success(),
        "twine:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.backend.stored(), vec![SDIST.to_owned()]);
    assert_eq!(sha256_hex(&read(&s.backend.packages.join(SDIST))), sha256_hex(&sdist));
    let decision = &s.gateway.decisions(1)[0];
    let detail = decision["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("provenance=accepted"), "{decision}");
    assert!(detail.contains("signer_publisher=tob-release"), "{decision}");
    assert!(
        s.gateway
            .metric("portcullis_provenance_decisions_total{mode=\"required\",outcome=\"accepted\",registry=\"pypi\"}")
            >= 1.0
    );

    // The gateway serves the accepted attestation back in PyPI's Integrity API shape; the
    // backend has no idea of it.
    let served = http::get(
        s.gateway.addr(),
        &format!("/integrity/pypi-attestations/0.0.19/{SDIST}/provenance"),
    );
    assert_eq!(served.status, 200, "{}", served.text());
    assert_eq!(
        served.header("content-type"),
        Some("application/vnd.pypi.integrity.v1+json")
    );
    let document = served.json();
    assert_eq!(document["version"], 1);
    let bundle = &document["attestation_bundles"][0];
    assert_eq!(bundle["publisher"]["kind"], "GitHub");
    assert_eq!(bundle["publisher"]["repository"], "trailofbits/pypi-attestations");
    let original: serde_json::Value = serde_json::from_str(&attestation).expect("json");
    assert_eq!(
        bundle["attestations"],
        serde_json::json!([original]),
        "the attestation as uploaded"
    );
    let missing = http::get(
        s.gateway.addr(),
        "/integrity/pypi-attestations/0.0.19/other-0.0.19.tar.gz/provenance",
    );
    assert_eq!(missing.status, 404);
}

#[test]
fn forged_misdirected_and_missing_attestations_are_refused_and_nothing_is_stored() {
    let s = setup("required", false, "public-good-production.trusted_root.json");
    let (sdist, attestation) = genuine();
    let mut changed = sdist.clone();
    let middle = changed.len() / 2;
    changed[middle] ^= 0x01;
    let gitlab_dir = case("gitlab-publish-gitlab-oidc-project-0.0.3");
    let gitlab_attestation =
        String::from_utf8(read(&gitlab_dir.join(format!("{GITLAB_SDIST}.publish.attestation")))).expect("utf-8");
    let gitlab_sdist = read(&gitlab_dir.join("artifact"));
    let mut tampered: serde_json::Value = serde_json::from_str(&attestation).expect("json");
    let hash = tampered["verification_material"]["transparency_entries"][0]["inclusionProof"]["hashes"][0]
        .as_str()
        .expect("a proof hash")
        .to_owned();
    let flipped = format!("{}{}", if hash.starts_with('A') { "B" } else { "A" }, &hash[1..]);
    tampered["verification_material"]["transparency_entries"][0]["inclusionProof"]["hashes"][0] = flipped.into();
    let tampered = tampered.to_string();
    let list = |a: &str| format!("[{a}]");
    // (what, file bytes, project, file name, attestations field, expected code)
    type Case<'a> = (&'a str, Vec<u8>, &'a str, &'a str, Option<String>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "the artifact changed by one byte",
            changed,
            "pypi-attestations",
            SDIST,
            Some(list(&attestation)),
            "provenance_invalid",
        ),
        (
            "the attestation of another file",
            sdist.clone(),
            "pypi-attestations",
            SDIST,
            Some(list(&gitlab_attestation)),
            "provenance_invalid",
        ),
        (
            "a tampered inclusion proof",
            sdist.clone(),
            "pypi-attestations",
            SDIST,
            Some(list(&tampered)),
            "provenance_invalid",
        ),
        (
            "two attestations of one predicate type",
            sdist.clone(),
            "pypi-attestations",
            SDIST,
            Some(format!("[{attestation},{attestation}]")),
            "provenance_invalid",
        ),
        (
            "an empty attestation list",
            sdist.clone(),
            "pypi-attestations",
            SDIST,
            Some("[]".into()),
            "provenance_invalid",
        ),
        (
            "no attestation where required",
            sdist.clone(),
            "pypi-attestations",
            SDIST,
            None,
            "provenance_missing",
        ),
        (
            "a genuine attestation by the wrong signer",
            gitlab_sdist,
            "gitlab-oidc-project",
            GITLAB_SDIST,
            Some(list(&gitlab_attestation)),
            "provenance_signer",
        ),
    ];
    for (what, content, name, filename, attestations, code) in &cases {
        let version = if name.starts_with("gitlab") { "0.0.3" } else { "0.0.19" };
        let response = upload(&s, name, version, filename, content, attestations.as_deref());
        assert_eq!(response.status, 400, "{what}: {}", response.text());
        assert_eq!(response.json()["code"], *code, "{what}: {}", response.text());
        // Every refusal can be explained by its request id.
        let id = response.json()["request_id"].as_str().expect("request id").to_owned();
        let explained = portcullis_e2e::wait_until(std::time::Duration::from_secs(5), || {
            http::get(s.gateway.admin(), &format!("/decisions/{id}")).status == 200
        });
        assert!(explained, "{what}: no explanation for {id}");
        let explanation = http::get(s.gateway.admin(), &format!("/decisions/{id}")).json();
        assert_eq!(explanation["refusal"]["code"], *code, "{what}: {explanation}");
        assert_eq!(explanation["outcome"], "refuse", "{what}");
        assert!(
            response
                .reason
                .starts_with("Invalid attestations supplied during upload"),
            "{what}: the reason phrase carries the message for twine: {:?}",
            response.reason
        );
    }
    assert!(settled(&s.backend).is_empty(), "{:?}", s.backend.stored());
    // The genuine upload still passes afterwards (refusals are not cached as verdicts on it).
    let ok = upload_sdist(&s, &sdist, Some(&list(&attestation)));
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(settled(&s.backend), vec![SDIST.to_owned()]);
    // ...and its attestations are served back byte for byte as uploaded.
    let served = http::get(
        s.gateway.addr(),
        &format!("/integrity/pypi-attestations/0.0.19/{SDIST}/provenance"),
    );
    assert_eq!(served.status, 200);
    assert!(served.text().contains(&list(&attestation)), "byte for byte");
}

#[test]
fn a_production_attestation_does_not_verify_under_another_trusted_root() {
    // The staging root trusts other CAs and logs: the production-signed attestation's
    // certificate chain and log entry do not verify under it.
    let s = setup("required", false, "public-good-staging.trusted_root.json");
    let (sdist, attestation) = genuine();
    let response = upload_sdist(&s, &sdist, Some(&format!("[{attestation}]")));
    assert_eq!(response.status, 400, "{}", response.text());
    assert_eq!(response.json()["code"], "provenance_invalid");
    assert!(settled(&s.backend).is_empty());
}

#[test]
fn audit_and_shadow_modes_pass_and_record() {
    let (sdist, attestation) = genuine();
    let mut changed = sdist.clone();
    changed[10] ^= 0x01;

    let audit = setup("audit", false, "public-good-production.trusted_root.json");
    let response = upload_sdist(&audit, &changed, Some(&format!("[{attestation}]")));
    assert_eq!(response.status, 200, "audit never refuses: {}", response.text());
    assert_eq!(settled(&audit.backend), vec![SDIST.to_owned()]);
    let detail = audit.gateway.decisions(1)[0]["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        detail.contains("provenance=audit") && detail.contains("provenance_invalid"),
        "{detail}"
    );
    assert_eq!(
        audit.gateway.metric_reaching(
            "portcullis_provenance_decisions_total{mode=\"audit\",outcome=\"audit\",registry=\"pypi\"}",
            1.0
        ),
        1.0
    );

    let shadow = setup("required", true, "public-good-production.trusted_root.json");
    let response = upload(&shadow, "pypi-attestations", "0.0.19", SDIST, &sdist, None);
    assert_eq!(response.status, 200, "shadow never refuses: {}", response.text());
    assert_eq!(settled(&shadow.backend), vec![SDIST.to_owned()]);
    let detail = shadow.gateway.decisions(1)[0]["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        detail.contains("provenance=shadow") && detail.contains("provenance_missing"),
        "{detail}"
    );
    assert!(shadow
        .gateway
        .log()
        .contains("provenance would have refused this upload"));
}

#[test]
fn a_project_that_published_with_provenance_cannot_drop_it() {
    let s = setup("optional", false, "public-good-production.trusted_root.json");
    let (sdist, attestation) = genuine();
    // Optional: a first upload without provenance of another project passes.
    let plain = upload(
        &s,
        "pypi-attestations-extras",
        "1.0",
        "pypi_attestations_extras-1.0.tar.gz",
        b"plain",
        None,
    );
    assert_eq!(plain.status, 200, "{}", plain.text());
    // The attested release is recorded in the ledger...
    let attested = upload_sdist(&s, &sdist, Some(&format!("[{attestation}]")));
    assert_eq!(attested.status, 200, "{}", attested.text());
    // ...so the next release without provenance is a downgrade, refused before the backend
    // commits it.
    let next = upload(
        &s,
        "pypi-attestations",
        "0.0.20",
        "pypi_attestations-0.0.20.tar.gz",
        b"no provenance",
        None,
    );
    assert_eq!(next.status, 400, "{}", next.text());
    assert_eq!(next.json()["code"], "provenance_downgrade");
    assert!(
        next.reason.contains("has published 1 upload(s) with provenance"),
        "{}",
        next.reason
    );
    let mut stored = settled(&s.backend);
    stored.sort();
    assert_eq!(
        stored,
        vec![SDIST.to_owned(), "pypi_attestations_extras-1.0.tar.gz".to_owned()]
    );
}

/// The PEP 740 form (`{"version": 1, "verification_material", "envelope"}`) of a Sigstore
/// bundle v0.3 that holds a DSSE envelope: the inverse of pypi-attestations' `to_bundle()`.
fn attestation_of_bundle(bundle: &serde_json::Value) -> serde_json::Value {
    let material = &bundle["verificationMaterial"];
    let timestamps: Vec<serde_json::Value> = material["timestampVerificationData"]["rfc3161Timestamps"]
        .as_array()
        .map(|list| list.iter().map(|t| t["signedTimestamp"].clone()).collect())
        .unwrap_or_default();
    serde_json::json!({
        "version": 1,
        "verification_material": {
            "certificate": material["certificate"]["rawBytes"],
            "transparency_entries": material["tlogEntries"],
            "timestamps": timestamps,
        },
        "envelope": {
            "statement": bundle["dsseEnvelope"]["payload"],
            "signature": bundle["dsseEnvelope"]["signatures"][0]["sig"],
        },
    })
}

#[test]
fn a_bundle_from_the_staging_instance_is_refused_before_its_statement_is_read() {
    // A real bundle signed on Sigstore's staging instance (staging Fulcio, staging Rekor v2),
    // carried as a PEP 740 attestation on the real sdist's upload, against a gateway that
    // trusts production: refused for its signing time's authority, before its statement
    // (about another file) is even looked at.
    let bundle: serde_json::Value = serde_json::from_slice(&read(
        &fixtures().join("sigstore-conformance/bundle-verify/rekor2-dsse-happy-path/bundle.sigstore.json"),
    ))
    .expect("bundle");
    let staging = attestation_of_bundle(&bundle).to_string();
    let s = setup("optional", false, "public-good-production.trusted_root.json");
    let (sdist, _) = genuine();
    let response = upload_sdist(&s, &sdist, Some(&format!("[{staging}]")));
    assert_eq!(response.status, 400, "{}", response.text());
    assert_eq!(response.json()["code"], "provenance_invalid");
    let message = response.json()["message"].as_str().unwrap_or_default().to_owned();
    // Rekor v2 entries carry no integrated time: the signing time comes from the staging
    // timestamp authority, which production does not trust, and that is the first step.
    assert!(
        message.contains("timestamp: the timestamp was not signed by a timestamp authority of the trusted root"),
        "{message}"
    );
    assert!(!message.contains("subject"), "refused before the statement: {message}");
    assert!(settled(&s.backend).is_empty());

    // The same attestation verifies as far as its subject under the staging root it was
    // made with: the refusal above is the instance, not a broken conversion.
    let s2 = setup_with_root(
        "optional",
        &fixtures().join("sigstore-conformance/bundle-verify/rekor2-dsse-happy-path/trusted_root.json"),
    );
    let response = upload_sdist(&s2, &sdist, Some(&format!("[{staging}]")));
    assert_eq!(response.json()["code"], "provenance_invalid", "{}", response.text());
    let message = response.json()["message"].as_str().unwrap_or_default().to_owned();
    assert!(
        message.contains("subject: no subject of the statement has the artifact's digest"),
        "{message}"
    );
    assert!(settled(&s2.backend).is_empty());
}
