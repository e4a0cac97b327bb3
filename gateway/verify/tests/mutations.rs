//! Targeted mutations of real bundles: each must be refused, at the step that owns the fault.

mod oracle;

use oracle::{fixtures, now, BEACON as IDENTITY, GITHUB as ISSUER};
use portcullis_verify::{verify, Artifact, Bundle, Policy, Step, TrustedRoot, VerifyError};
use serde_json::Value;

fn case(name: &str) -> Value {
    let path = fixtures()
        .join("sigstore-conformance/bundle-verify")
        .join(name)
        .join("bundle.sigstore.json");
    serde_json::from_slice(&std::fs::read(path).expect("bundle")).expect("json")
}

fn production_json() -> Value {
    let path = fixtures().join("trusted-roots/public-good-production.trusted_root.json");
    serde_json::from_slice(&std::fs::read(path).expect("root")).expect("json")
}

fn artifact() -> Vec<u8> {
    std::fs::read(fixtures().join("sigstore-conformance/bundle-verify/a.txt")).expect("a.txt")
}

fn identity() -> Policy {
    Policy::Identity {
        san: IDENTITY.into(),
        issuer: ISSUER.into(),
    }
}

/// This crate's verdict; every input with the artifact's bytes and a certificate identity also
/// goes through `sigstore-verify`, which must agree unless the disagreement is one that
/// docs/provenance.md explains (`oracle::EXPLAINED`).
fn run(bundle: &Value, root: &Value, artifact: Artifact, policy: &Policy) -> Result<(), VerifyError> {
    let bundle_json = serde_json::to_vec(bundle).expect("encode");
    let root_json = serde_json::to_vec(root).expect("encode");
    let ours = (|| {
        let bundle = Bundle::from_json(&bundle_json)?;
        let root = TrustedRoot::from_json(&root_json)?;
        verify(&bundle, &artifact, &root, policy, now()).map(|_| ())
    })();
    if let (Some(bytes), Policy::Identity { san, issuer }) = (&artifact.bytes, policy) {
        let case = oracle::Case {
            name: "mutation".to_owned(),
            bundle: bundle_json,
            artifact: bytes.clone(),
            root: root_json,
            signer: oracle::Signer::Identity {
                san: san.clone(),
                issuer: issuer.clone(),
            },
            must_verify: false,
        };
        let theirs = oracle::theirs(&case);
        let explained = match (&ours, &theirs) {
            (Err(refused), Ok(())) => oracle::EXPLAINED_REFUSALS
                .iter()
                .any(|(text, _)| refused.reason.contains(text)),
            _ => false,
        };
        assert!(
            ours.is_ok() == theirs.is_ok() || explained,
            "this crate and sigstore-verify disagree: ours {ours:?}, sigstore-verify {theirs:?}"
        );
    }
    ours
}

/// The step at which `bundle` is refused for the default artifact, root and identity.
fn refused_at(bundle: &Value) -> Step {
    step_of(run(
        bundle,
        &production_json(),
        Artifact::from_bytes(artifact()),
        &identity(),
    ))
}

fn step_of(result: Result<(), VerifyError>) -> Step {
    result.expect_err("the mutation must be refused").step
}

#[test]
fn the_unmutated_bundles_verify() {
    let root = production_json();
    run(
        &case("happy-path-v0.3"),
        &root,
        Artifact::from_bytes(artifact()),
        &identity(),
    )
    .expect("v0.3 verifies");
    run(
        &case("happy-path-intoto-in-dsse-v3"),
        &root,
        Artifact::from_bytes(artifact()),
        &identity(),
    )
    .expect("DSSE verifies");
}

#[test]
fn a_digest_works_in_place_of_the_artifact_and_a_wrong_one_does_not() {
    use sha2::Digest;
    let root = production_json();
    let digest: [u8; 32] = sha2::Sha256::digest(artifact()).into();
    run(
        &case("happy-path-v0.3"),
        &root,
        Artifact::from_sha256(digest),
        &identity(),
    )
    .expect("digest verifies");
    let mut other = digest;
    other[0] ^= 1;
    assert_eq!(
        step_of(run(
            &case("happy-path-v0.3"),
            &root,
            Artifact::from_sha256(other),
            &identity()
        )),
        Step::Tlog
    );
}

#[test]
fn one_byte_of_the_artifact_changed() {
    let mut bytes = artifact();
    bytes[0] ^= 0x20;
    let result = run(
        &case("happy-path-v0.3"),
        &production_json(),
        Artifact::from_bytes(bytes),
        &identity(),
    );
    assert_eq!(
        step_of(result),
        Step::Tlog,
        "the log entry no longer names this artifact"
    );
}

#[test]
fn a_flipped_proof_hash() {
    let mut bundle = case("happy-path-v0.3");
    let hash = &mut bundle["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["hashes"][0];
    let mut bytes = base64_decode(hash.as_str().expect("hash"));
    bytes[5] ^= 0xff;
    *hash = Value::String(base64_encode(&bytes));
    assert_eq!(refused_at(&bundle), Step::InclusionProof);
}

#[test]
fn a_rekor_v2_entry_whose_index_differs_from_its_proof() {
    let dir = fixtures().join("sigstore-conformance/bundle-verify/rekor2-happy-path");
    let root: Value =
        serde_json::from_slice(&std::fs::read(dir.join("trusted_root.json")).expect("root")).expect("json");
    let mut bundle = case("rekor2-happy-path");
    assert!(run(&bundle, &root, Artifact::from_bytes(artifact()), &identity()).is_ok());
    let index = &mut bundle["verificationMaterial"]["tlogEntries"][0]["logIndex"];
    let moved = index.as_str().and_then(|i| i.parse::<u64>().ok()).expect("logIndex") + 1;
    *index = Value::String(moved.to_string());
    let refused = run(&bundle, &root, Artifact::from_bytes(artifact()), &identity()).expect_err("refused");
    assert_eq!(refused.step, Step::InclusionProof);
    assert!(
        refused.to_string().contains("differs from its inclusion proof"),
        "{refused}"
    );
}

#[test]
fn a_swapped_log_key() {
    let mut root = production_json();
    let ct_key = root["ctlogs"][1]["publicKey"]["rawBytes"].clone();
    root["tlogs"][0]["publicKey"]["rawBytes"] = ct_key;
    let result = run(
        &case("happy-path-v0.3"),
        &root,
        Artifact::from_bytes(artifact()),
        &identity(),
    );
    assert_eq!(
        step_of(result),
        Step::Tlog,
        "the signed entry timestamp no longer verifies"
    );
}

#[test]
fn integrated_time_moved_outside_the_certificate_validity() {
    let mut bundle = case("happy-path-v0.3");
    let entry = &mut bundle["verificationMaterial"]["tlogEntries"][0];
    let t: i64 = entry["integratedTime"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("time");
    entry["integratedTime"] = Value::String((t + 3600).to_string());
    // The log signed the original time, so the signed entry timestamp catches the change first.
    assert_eq!(refused_at(&bundle), Step::Tlog);
}

#[test]
fn a_san_wrong_by_one_character_and_a_wrong_issuer() {
    let mut san = IDENTITY.to_owned();
    san.pop();
    let wrong_issuer = "https://token.actions.githubusercontent.co";
    for (san, issuer) in [(san.as_str(), ISSUER), (IDENTITY, wrong_issuer)] {
        let policy = Policy::Identity {
            san: san.into(),
            issuer: issuer.into(),
        };
        let result = run(
            &case("happy-path-v0.3"),
            &production_json(),
            Artifact::from_bytes(artifact()),
            &policy,
        );
        assert_eq!(step_of(result), Step::Identity, "{san} / {issuer}");
    }
}

#[test]
fn a_changed_dsse_payload_type() {
    let mut bundle = case("happy-path-intoto-in-dsse-v3");
    bundle["dsseEnvelope"]["payloadType"] = Value::String("application/vnd.in-toto+json; x=1".into());
    assert_eq!(refused_at(&bundle), Step::Signature);
}

#[test]
fn a_statement_about_other_bytes() {
    let mut bytes = artifact();
    bytes.push(b'!');
    let result = run(
        &case("happy-path-intoto-in-dsse-v3"),
        &production_json(),
        Artifact::from_bytes(bytes),
        &identity(),
    );
    assert_eq!(step_of(result), Step::Subject);
}

#[test]
fn a_bundle_from_the_staging_instance_is_refused_by_the_production_root() {
    let result = run(
        &case("rekor2-happy-path"),
        &production_json(),
        Artifact::from_bytes(artifact()),
        &identity(),
    );
    assert_eq!(step_of(result), Step::Timestamp);
}

#[test]
fn unknown_versions_and_oversized_bundles_fail_closed() {
    let mut bundle = case("happy-path-v0.3");
    bundle["mediaType"] = Value::String("application/vnd.dev.sigstore.bundle+json;version=0.4".into());
    assert_eq!(refused_at(&bundle), Step::Bundle);
    let huge = vec![b' '; portcullis_verify::bundle::MAX_BUNDLE_BYTES + 1];
    assert_eq!(Bundle::from_json(&huge).expect_err("too large").step, Step::Bundle);
}

fn base64_decode(text: &str) -> Vec<u8> {
    portcullis_verify::trust_root::b64(text).expect("base64")
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn a_bundle_carrying_a_root_that_is_not_the_trusted_one() {
    // A real v0.1 bundle with a 3-certificate chain (leaf, intermediate, root) verifies as is:
    // its extra certificates are exactly the trusted root's. Swap its root for another
    // self-signed CA (the staging Fulcio root) and it is refused at the certificate path.
    let dir = fixtures().join("npm-provenance/slsa-v0.2-sigstore-1.0.0");
    let mut bundle: Value =
        serde_json::from_slice(&std::fs::read(dir.join("bundle.sigstore.json")).expect("bundle")).expect("json");
    let artifact = Artifact::from_bytes(std::fs::read(dir.join("artifact")).expect("artifact"));
    let san = std::fs::read_to_string(dir.join("identity"))
        .expect("identity")
        .trim()
        .to_owned();
    let policy = Policy::Identity {
        san,
        issuer: ISSUER.into(),
    };
    run(&bundle, &production_json(), artifact.clone(), &policy).expect("the real bundle verifies");

    let staging: Value = serde_json::from_slice(
        &std::fs::read(fixtures().join("trusted-roots/public-good-staging.trusted_root.json")).expect("staging"),
    )
    .expect("json");
    let chain = staging["certificateAuthorities"][0]["certChain"]["certificates"]
        .as_array()
        .expect("chain");
    let foreign_root = chain.last().expect("root")["rawBytes"].clone();
    bundle["verificationMaterial"]["x509CertificateChain"]["certificates"][2]["rawBytes"] = foreign_root;
    let err = run(&bundle, &production_json(), artifact, &policy).expect_err("a foreign root must be refused");
    assert_eq!(err.step, Step::CertificateChain, "{err}");
    assert!(err.reason.contains("not in the trusted root"), "{err}");
}

/// A case's own trusted root (or production's), identity policy and artifact.
fn case_inputs(name: &str) -> (Value, Policy, Vec<u8>) {
    let dir = fixtures().join("sigstore-conformance/bundle-verify").join(name);
    let read = |file: &str| std::fs::read_to_string(dir.join(file)).map(|s| s.trim().to_owned());
    let root = match std::fs::read(dir.join("trusted_root.json")) {
        Ok(json) => serde_json::from_slice(&json).expect("json"),
        Err(_) => production_json(),
    };
    let policy = match (read("identity"), read("issuer")) {
        (Ok(san), Ok(issuer)) => Policy::Identity { san, issuer },
        _ => identity(),
    };
    (root, policy, artifact())
}

/// `bundle` with the first element of the array at `path` repeated to `count` elements.
fn repeated(mut bundle: Value, path: &[&str], count: usize) -> Value {
    let mut slot = &mut bundle;
    for key in path {
        slot = &mut slot[*key];
    }
    let first = slot[0].clone();
    *slot = Value::Array(vec![first; count]);
    bundle
}

#[test]
fn at_most_32_transparency_log_entries() {
    let (root, policy, bytes) = case_inputs("happy-path-v0.3");
    let path = ["verificationMaterial", "tlogEntries"];
    let at_limit = repeated(case("happy-path-v0.3"), &path, 32);
    run(&at_limit, &root, Artifact::from_bytes(bytes.clone()), &policy).expect("32 entries verify");
    let over = repeated(case("happy-path-v0.3"), &path, 33);
    let e = run(&over, &root, Artifact::from_bytes(bytes.clone()), &policy).expect_err("33 entries");
    assert_eq!(e.step, Step::Bundle);
    assert_eq!(e.reason, "too many transparency log entries: 33 > 32");

    // A bundle built in code is held to the same limit by the verifier.
    let mut built = Bundle::from_json(&serde_json::to_vec(&at_limit).expect("encode")).expect("parses");
    built.tlog_entries.push(built.tlog_entries[0].clone());
    let root = TrustedRoot::from_json(&serde_json::to_vec(&root).expect("encode")).expect("root");
    let e = verify(&built, &Artifact::from_bytes(bytes), &root, &policy, now()).expect_err("33 entries");
    assert_eq!(e.reason, "too many transparency log entries: 33 > 32");
}

#[test]
fn at_most_32_signed_timestamps() {
    let (root, policy, bytes) = case_inputs("rekor2-happy-path");
    let path = ["verificationMaterial", "timestampVerificationData", "rfc3161Timestamps"];
    let at_limit = repeated(case("rekor2-happy-path"), &path, 32);
    run(&at_limit, &root, Artifact::from_bytes(bytes.clone()), &policy).expect("32 timestamps verify");
    let over = repeated(case("rekor2-happy-path"), &path, 33);
    let e = run(&over, &root, Artifact::from_bytes(bytes), &policy).expect_err("33 timestamps");
    assert_eq!(e.step, Step::Bundle);
    assert_eq!(e.reason, "too many signed timestamps: 33 > 32");
}
