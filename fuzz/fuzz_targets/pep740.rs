//! Provenance on the upload path, as the gateway runs it: a PyPI upload's raw `attestations`
//! field through `provenance::pep740::check` (JSON list, Warehouse's structural rules, PEP 740
//! object → bundle, verification, subject name and digest), and an npm publish's `.sigstore`
//! bundle through `provenance::npm::check` (verification, purl subject, SHA-512, repository).
//!
//! Input: one selector byte, then the field / bundle. Selector bit 7 picks npm; the rest picks
//! the real fixture case whose file name, digests, package name and repository are checked
//! against, so mutated real attestations can get all the way through.
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use portcullis::metrics::Metrics;
use portcullis::provenance::cache::{CacheSettings, VerificationCache};
use portcullis::provenance::{npm, pep740};
use portcullis_fuzz::{control, debug, fixture};
use portcullis_verify::TrustedRoot;
use sha2::{Digest, Sha256, Sha512};

const NOW: i64 = 1_795_651_200;

/// (fixture case, uploaded file name).
const PYPI: &[(&str, &str)] = &[
    (
        "github-publish-pypi-attestations-0.0.19",
        "pypi_attestations-0.0.19.tar.gz",
    ),
    (
        "github-slsa-v1-pypi-attestations-0.0.19",
        "pypi_attestations-0.0.19.tar.gz",
    ),
    (
        "gitlab-publish-gitlab-oidc-project-0.0.3",
        "gitlab_oidc_project-0.0.3.tar.gz",
    ),
    (
        "google-publish-gcb-attestation-test-0.0.0",
        "gcb_attestation_test-0.0.0.tar.gz",
    ),
    (
        "rfc3161-timestamp-pypi-attestations-0.0.19",
        "pypi_attestations-0.0.19.tar.gz",
    ),
];

/// (fixture case, package, version, declared repository URL).
const NPM: &[(&str, &str, &str, &str)] = &[
    (
        "slsa-v0.2-sigstore-1.0.0",
        "sigstore",
        "1.0.0",
        // Its 2023 certificate has no source-repository extension: npm then compares with "".
        "",
    ),
    (
        "slsa-v1-sigstore-2.3.1",
        "sigstore",
        "2.3.1",
        "git+https://github.com/sigstore/sigstore-js.git",
    ),
    (
        "slsa-v1-playwright-cli-0.1.1",
        "@playwright/cli",
        "0.1.1",
        "https://github.com/microsoft/playwright-cli",
    ),
    ("npm-publish-attestation-key-sigstore-2.3.1", "sigstore", "2.3.1", ""),
];

struct Case {
    name: &'static str,
    version: &'static str,
    repository: &'static str,
    sha256: [u8; 32],
    sha512: [u8; 64],
}

struct Setup {
    runtime: tokio::runtime::Runtime,
    root: Arc<TrustedRoot>,
    metrics: Arc<Metrics>,
    pypi: Vec<Case>,
    npm: Vec<Case>,
}

fn case(dir: &str, name: &'static str, version: &'static str, repository: &'static str) -> Case {
    let artifact = fixture(&format!("{dir}/artifact"));
    Case {
        name,
        version,
        repository,
        sha256: Sha256::digest(&artifact).into(),
        sha512: Sha512::digest(&artifact).into(),
    }
}

static SETUP: LazyLock<Setup> = LazyLock::new(|| Setup {
    // The cache verifies on tokio's blocking pool.
    runtime: tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(1)
        .build()
        .expect("runtime"),
    root: Arc::new(
        TrustedRoot::from_json(&fixture("trusted-roots/public-good-production.trusted_root.json"))
            .expect("production root"),
    ),
    metrics: Arc::new(Metrics::new()),
    pypi: PYPI
        .iter()
        .map(|(dir, file)| case(&format!("pep740/{dir}"), file, "", ""))
        .collect(),
    npm: NPM
        .iter()
        .map(|(dir, name, version, repo)| case(&format!("npm-provenance/{dir}"), name, version, repo))
        .collect(),
});

fuzz_target!(|data: &[u8]| {
    let setup = &*SETUP;
    let ([selector], body) = control::<1>(data);
    // A fresh cache per input: outcomes must not depend on what an earlier input cached.
    let cache = VerificationCache::new(CacheSettings::default(), setup.metrics.clone());
    if selector & 0x80 == 0 {
        let case = &setup.pypi[usize::from(selector) % setup.pypi.len()];
        let checked = setup
            .runtime
            .block_on(pep740::check(&cache, &setup.root, body, case.name, case.sha256, NOW));
        if debug() {
            eprintln!("pypi case {}: {checked:?}", case.name);
        }
        if let pep740::Checked::Verified(facts) = checked {
            assert!(!facts.is_empty() && facts.len() <= pep740::MAX_ATTESTATIONS);
        }
    } else {
        let case = &setup.npm[usize::from(selector & 0x7f) % setup.npm.len()];
        let checked = setup.runtime.block_on(npm::check(
            &cache,
            &setup.root,
            body,
            case.name,
            case.version,
            case.sha256,
            case.sha512,
            Some(case.repository),
            NOW,
        ));
        if debug() {
            eprintln!("npm case {}@{}: {checked:?}", case.name, case.version);
        }
    }
});
