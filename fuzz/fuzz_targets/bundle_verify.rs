//! Sigstore bundle JSON → `Bundle::from_json` → full offline `verify` against the real
//! public-good trusted roots (production and staging) and the conformance suite's custom roots.
//! The root is the one whose transparency log knows the bundle's first entry (as a client
//! picks it), so mutated real bundles get past the log-key lookup and into the proofs,
//! checkpoints, SETs, timestamps, certificate path, SCTs and signatures.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use portcullis_fuzz::{debug, fixture, fixtures};
use portcullis_verify::bundle::SignerMaterial;
use portcullis_verify::{verify, Artifact, Bundle, Policy, SignerFacts, Step, TrustedRoot, VerifyError};

/// 2026-11-26: after every fixture was signed, inside the roots' validity windows.
const NOW: i64 = 1_795_651_200;

struct Setup {
    roots: Vec<TrustedRoot>,
    /// The conformance suite's default artifact first, then every other fixture artifact.
    artifacts: Vec<Artifact>,
    /// Managed keys (DER SPKI) from the conformance and npm cases.
    keys: Vec<Vec<u8>>,
}

fn spki_from_pem(pem: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let text = std::str::from_utf8(pem).ok()?;
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

static SETUP: LazyLock<Setup> = LazyLock::new(|| {
    let mut roots = vec![
        TrustedRoot::from_json(&fixture("trusted-roots/public-good-production.trusted_root.json"))
            .expect("production root"),
        TrustedRoot::from_json(&fixture("trusted-roots/public-good-staging.trusted_root.json")).expect("staging root"),
    ];
    let mut keys = Vec::new();
    let conformance = fixtures().join("sigstore-conformance/bundle-verify");
    let mut cases: Vec<_> = std::fs::read_dir(&conformance)
        .expect("conformance cases")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    cases.sort();
    for case in cases {
        // Custom roots of cases that must verify (the `_fail` ones may be broken on purpose).
        let ok_case = !case.to_string_lossy().ends_with("_fail");
        if let (true, Ok(json)) = (ok_case, std::fs::read(case.join("trusted_root.json"))) {
            if let Ok(root) = TrustedRoot::from_json(&json) {
                roots.push(root);
            }
        }
        if let Some(der) = std::fs::read(case.join("key.pub")).ok().and_then(|p| spki_from_pem(&p)) {
            keys.push(der);
        }
    }
    if let Some(der) = spki_from_pem(&fixture(
        "npm-provenance/npm-publish-attestation-key-sigstore-2.3.1/key.pub",
    )) {
        keys.push(der);
    }
    let mut artifacts = vec![fixture("sigstore-conformance/bundle-verify/a.txt")];
    for folder in ["sigstore-conformance/bundle-verify", "pep740", "npm-provenance"] {
        let mut found: Vec<_> = std::fs::read_dir(fixtures().join(folder))
            .expect("fixture folder")
            .filter_map(|e| std::fs::read(e.ok()?.path().join("artifact")).ok())
            .collect();
        found.sort();
        artifacts.extend(found);
    }
    artifacts.dedup();
    Setup {
        roots,
        artifacts: artifacts.into_iter().map(Artifact::from_bytes).collect(),
        keys,
    }
});

/// Verifies against the default artifact; when only the subject (the last step) does not
/// match, against the other fixture artifacts, so a mutated bundle that still verifies up to
/// the subject is checked to the end.
fn verify_any(setup: &Setup, bundle: &Bundle, root: &TrustedRoot, policy: &Policy) -> Result<SignerFacts, VerifyError> {
    let mut outcome = verify(bundle, &setup.artifacts[0], root, policy, NOW);
    for artifact in &setup.artifacts[1..] {
        match &outcome {
            Err(e) if e.step == Step::Subject => outcome = verify(bundle, artifact, root, policy, NOW),
            _ => break,
        }
    }
    outcome
}

fuzz_target!(|data: &[u8]| {
    let setup = &*SETUP;
    let Ok(bundle) = Bundle::from_json(data) else {
        return;
    };
    let log_id = bundle
        .tlog_entries
        .first()
        .map(|e| e.log_id.as_slice())
        .unwrap_or_default();
    let root = setup
        .roots
        .iter()
        .find(|r| r.tlog(log_id).is_some())
        .unwrap_or(&setup.roots[0]);
    match &bundle.signer {
        SignerMaterial::Certificate { .. } => {
            let outcome = verify_any(setup, &bundle, root, &Policy::AnyIdentity);
            if debug() {
                eprintln!("certificate bundle: {:?}", outcome.map(|f| f.verified_time));
            }
        }
        SignerMaterial::PublicKey { .. } => {
            for key in &setup.keys {
                let policy = Policy::Key { spki_der: key.clone() };
                let outcome = verify_any(setup, &bundle, root, &policy);
                if debug() {
                    eprintln!("key bundle: {:?}", outcome.as_ref().map(|f| f.verified_time));
                }
                if outcome.is_ok() {
                    break;
                }
            }
        }
    }
});
