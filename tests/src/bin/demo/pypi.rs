//! The PyPI half: a CI job mints an upload token with its OIDC ID token, then twine uploads the
//! real `pypi-attestations` 0.0.19 sdist with its real PEP 740 attestation (first with one byte
//! of the file changed, then as published); and a maintainer's upload without an attestation to
//! a project whose rules require one.

use std::path::{Path, PathBuf};
use std::process::Command;

use portcullis_e2e::pep740::{self, SDIST};
use portcullis_e2e::pypiserver;
use portcullis_e2e::tools::{make_dists, tools};
use portcullis_e2e::{http, sha256_hex};

use crate::decided::{self, Decided};
use crate::report::{clip, Report, Row};
use crate::stack::{Stack, PYPI_AUDIENCE};

/// Runs the PyPI steps; returns the request id of the tampered upload (for `explain`).
pub fn run(stack: &Stack, report: &mut Report) -> Option<String> {
    let signer = &stack.pypi_signer;
    report.step("PyPI trusted publishing: a CI job exchanges its OIDC token for an upload token");
    report.line(format!(
        "The job's ID token says: repository {}, owner id {}, workflow {} (the identity in the real \
         attestation's signing certificate; a local issuer stands in for GitHub Actions).",
        signer.repository, signer.owner_id, signer.workflow
    ));
    let claims = stack.ci_claims(PYPI_AUDIENCE, signer);
    let minted = http::mint_pypi_token(stack.gateway.addr(), &stack.issuer.token(claims));
    let token = minted.json()["token"].as_str().unwrap_or_default().to_owned();
    report.expect(
        minted.status == 200 && token.starts_with("pcul_"),
        format!("mint: {}", minted.text()),
    );
    report.line(format!(
        "POST /_/oidc/mint-token -> {} {}…, valid 15 minutes, for the projects of publisher tob-release",
        minted.status,
        token.chars().take(14).collect::<String>()
    ));
    report.row(Row {
        registry: "pypi",
        tried: "exchange a CI job's OIDC token".into(),
        client: "HTTP",
        decision: format!(
            "{} {}",
            if token.is_empty() { "refused" } else { "minted" },
            minted.status
        ),
        why: decided::last_exchange(stack),
        stored: "-".into(),
    });

    let (sdist, attestation) = pep740::genuine();
    let dist = stack.work.join("dist");
    std::fs::create_dir_all(&dist).expect("dist folder");

    report.step("twine upload --attestations: the real attestation, one byte of the sdist changed");
    let mut tampered = sdist.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x01;
    let files = write_dist(&dist.join("tampered"), &tampered, &attestation);
    let before = decided::mark(stack);
    let (ok, out) = twine(stack, "__token__", &token, &files);
    let refused = decided::since(stack, before, "pypi-attestations");
    let why = twine_error(&out);
    report.expect(!ok, "twine accepted a tampered file");
    report.expect(
        why.contains("Invalid attestations"),
        format!("twine shows the step: {out}"),
    );
    report.expect(
        stack.pypiserver.stored().is_empty(),
        "pypiserver stored the tampered file",
    );
    report.line(format!("twine: {}", clip(&why, 330)));
    report.line(format!("pypiserver holds: {:?}", stack.pypiserver.stored()));
    report.expect(
        refused.as_ref().is_some_and(|d| d.code == "provenance_invalid"),
        "the gateway logged a provenance_invalid refusal",
    );
    report.row(row(
        "sdist with 1 byte changed + real attestation",
        refused.as_ref(),
        stored(stack, "pypi_attestations"),
    ));
    let request_id = refused.map(|d| d.request_id);

    report.step("twine upload --attestations: the real sdist and its real attestation");
    let files = write_dist(&dist.join("genuine"), &sdist, &attestation);
    let before = decided::mark(stack);
    let (ok, out) = twine(stack, "__token__", &token, &files);
    let accepted = decided::since(stack, before, "pypi-attestations");
    report.expect(ok, format!("twine: {out}"));
    let sdist_path = stack.pypiserver.packages.join(SDIST);
    let same = std::fs::read(&sdist_path).map(|b| sha256_hex(&b)).ok() == Some(sha256_hex(&sdist));
    report.expect(same, "pypiserver holds the sdist byte for byte");
    report.line(format!(
        "twine: uploaded; pypiserver holds {SDIST} (sha256 {}…, as built)",
        &sha256_hex(&sdist)[..16]
    ));
    let integrity = format!("/pypi/integrity/pypi-attestations/0.0.19/{SDIST}/provenance");
    let served = http::get(stack.gateway.addr(), &integrity);
    let document = served.json();
    let publisher = &document["attestation_bundles"][0]["publisher"];
    report.expect(
        served.status == 200 && publisher["repository"] == signer.repository.as_str(),
        format!("Integrity API: {}", served.text()),
    );
    report.line(format!(
        "GET {integrity} -> {} ({} publisher {}, workflow {}); pypiserver knows nothing of it",
        served.status,
        publisher["kind"].as_str().unwrap_or("?"),
        publisher["repository"].as_str().unwrap_or("?"),
        publisher["workflow"].as_str().unwrap_or("?"),
    ));
    report.row(row(
        "real sdist + real PEP 740 attestation",
        accepted.as_ref(),
        stored(stack, "pypi_attestations"),
    ));

    report.step("twine upload (maintainer's password) of acme-widgets with no attestation");
    report.line("Rule `attested` requires provenance for acme-*.");
    let (wheel, sdist) = make_dists(&dist.join("acme"), "acme-widgets", "1.0", None);
    let before = decided::mark(stack);
    let (ok, out) = twine(stack, pypiserver::USER, pypiserver::PASSWORD, &[wheel, sdist]);
    let refused = decided::since(stack, before, "acme-widgets");
    report.expect(
        refused.as_ref().is_some_and(|d| d.code == "provenance_missing"),
        "the gateway logged a provenance_missing refusal",
    );
    let why = twine_error(&out);
    report.expect(!ok, "an upload without provenance passed");
    let leaked = stored(stack, "acme_widgets");
    report.expect(leaked == "nothing", format!("pypiserver stored {leaked}"));
    report.line(format!("twine: {}", clip(&why, 330)));
    report.row(row(
        "upload without attestation (acme-widgets)",
        refused.as_ref(),
        leaked,
    ));
    request_id
}

/// A twine row of the summary table, from the gateway's decision.
fn row(tried: &str, decided: Option<&Decided>, stored: String) -> Row {
    Row {
        registry: "pypi",
        tried: tried.into(),
        client: "twine",
        decision: decided.map_or("no decision logged".into(), Decided::verdict),
        why: decided.map_or(String::new(), Decided::why),
        stored,
    }
}

/// The files pypiserver holds whose names start with `prefix`, or `nothing`.
fn stored(stack: &Stack, prefix: &str) -> String {
    let files: Vec<String> = stack
        .pypiserver
        .stored()
        .into_iter()
        .filter(|f| f.starts_with(prefix))
        .collect();
    if files.is_empty() {
        "nothing".into()
    } else {
        files.join(", ")
    }
}

/// Writes the sdist and its attestation (named as twine expects) into `dir`.
fn write_dist(dir: &Path, sdist: &[u8], attestation: &str) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).expect("dist folder");
    let file = dir.join(SDIST);
    let attestation_file = dir.join(format!("{SDIST}.publish.attestation"));
    std::fs::write(&file, sdist).expect("sdist");
    std::fs::write(&attestation_file, attestation).expect("attestation");
    vec![file, attestation_file]
}

/// `twine upload [--attestations]` of `files` to the gateway; success and what twine printed.
fn twine(stack: &Stack, user: &str, password: &str, files: &[PathBuf]) -> (bool, String) {
    let mut command = Command::new(tools().twine());
    command.args(["upload", "--disable-progress-bar", "--non-interactive"]);
    if files.iter().any(|f| f.to_string_lossy().ends_with(".attestation")) {
        command.arg("--attestations");
    }
    let out = command
        .arg("--repository-url")
        .arg(stack.pypi_url())
        .args(["-u", user, "-p", password])
        .args(files)
        .env("COLUMNS", "1000")
        .env("NO_COLOR", "1")
        .output()
        .expect("run twine");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The gateway's answer as twine prints it: `HTTPError: 400 Bad Request from <url>` and the
/// reason on the next lines, as `400 <reason>`.
fn twine_error(out: &str) -> String {
    let Some(at) = out.find("HTTPError: ") else {
        return out.trim().to_owned();
    };
    let rest = &out[at + "HTTPError: ".len()..];
    let status = rest.get(..3).unwrap_or_default();
    let reason = rest.split_once('\n').map_or("", |(_, after)| after);
    format!("{status} {}", reason.split_whitespace().collect::<Vec<_>>().join(" "))
}
